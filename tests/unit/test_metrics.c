/* test_metrics: the shared series table (names claimed, counts summed,
 * gauges per worker slot summed and reset, a forked process writing the
 * same region, overflow counted rather than lost), the renderer (the
 * exact exposition text for a known state, label escaping of \, " and
 * newline, invalid UTF-8 replaced, growth past the first buffer) and the
 * metrics endpoint's HTTP request parser, table-driven with every prefix
 * of every request (a byte-at-a-time arrival). */
#include "cu_main.h"
#include "http.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct conf_listener test_listeners[] = {
	{ .name = "smtps", .tls_mode = TLS_MODE_IMPLICIT },
	{ .name = "local", .tls_mode = TLS_MODE_NONE },
};
static struct conf_peer test_peers[] = { { .name = "partner" } };

static void init_conf(struct conf *c, struct conf_listener *ls, size_t nls)
{
	memset(c, 0, sizeof(*c));
	c->metrics = "127.0.0.1:9465";
	c->listeners = ls;
	c->nlisteners = nls;
	c->peers = test_peers;
	c->npeers = 1;
}

static void start(void)
{
	struct conf c;
	init_conf(&c, test_listeners, 2);
	metrics_fini();
	CU_ASSERT_EQUAL_FATAL(metrics_init(&c), 0);
}

/* The rendered text (static buffer). */
static const char *render(time_t now)
{
	static char out[1 << 18];
	struct strbuf b;
	static const struct metrics_cert certs[] = {
		{ "/etc/mailgate/rsa.pem", 1000 + 86400 },
		{ "/etc/mailgate/ecdsa.pem", 1000 - 10 },	/* expired */
		{ "/etc/mailgate/rsa.pem", 1000 + 86400 },	/* the same file twice */
	};
	sb_init(&b, out, sizeof(out));
	metrics_render(&b, certs, 3, now);
	CU_ASSERT_FATAL(sb_ok(&b));
	return out;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static void test_disabled(void)
{
	struct conf c;
	init_conf(&c, test_listeners, 2);
	c.metrics = "";
	metrics_fini();
	CU_ASSERT_EQUAL(metrics_init(&c), 0);
	CU_ASSERT_FALSE(metrics_enabled());
	metrics_connection("smtps", RESULT_OK);	/* no-ops, no crash */
	metrics_session_open();
	metrics_peer_cert("partner", 5);
	char out[64];
	struct strbuf b;
	sb_init(&b, out, sizeof(out));
	metrics_render(&b, NULL, 0, 0);
	CU_ASSERT_EQUAL(sb_len(&b), 0);
}

static const char exact[] =
	"# HELP mailgate_connections_total Client connections by listener and how they "
	"ended (result= of the session log line).\n"
	"# TYPE mailgate_connections_total counter\n"
	"mailgate_connections_total{listener=\"local\",result=\"ok\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"quit\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"timeout\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"tls-failed\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"cert-rejected\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"relay-denied\"} 1\n"
	"mailgate_connections_total{listener=\"local\",result=\"too-many-errors\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"auth-failures\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"upstream-failed\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"limit\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"shutdown\"} 0\n"
	"mailgate_connections_total{listener=\"local\",result=\"error\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"ok\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"quit\"} 2\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"timeout\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"tls-failed\"} 1\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"cert-rejected\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"relay-denied\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"too-many-errors\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"auth-failures\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"upstream-failed\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"limit\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"shutdown\"} 0\n"
	"mailgate_connections_total{listener=\"smtps\",result=\"error\"} 0\n"
	"# HELP mailgate_tls_handshakes_total TLS handshakes with clients by listener "
	"and result (ok or failed).\n"
	"# TYPE mailgate_tls_handshakes_total counter\n"
	"mailgate_tls_handshakes_total{listener=\"smtps\",result=\"ok\"} 2\n"
	"mailgate_tls_handshakes_total{listener=\"smtps\",result=\"failed\"} 1\n"
	"# HELP mailgate_client_certs_total Client certificates in TLS handshakes, by "
	"status (as logged in cert=; none: a handshake without one).\n"
	"# TYPE mailgate_client_certs_total counter\n"
	"mailgate_client_certs_total{status=\"none\"} 1\n"
	"mailgate_client_certs_total{status=\"verified\"} 1\n"
	"mailgate_client_certs_total{status=\"unknown-ca\"} 0\n"
	"mailgate_client_certs_total{status=\"expired\"} 1\n"
	"mailgate_client_certs_total{status=\"not-yet-valid\"} 0\n"
	"mailgate_client_certs_total{status=\"revoked\"} 0\n"
	"mailgate_client_certs_total{status=\"bad-signature\"} 0\n"
	"mailgate_client_certs_total{status=\"insecure-algorithm\"} 0\n"
	"mailgate_client_certs_total{status=\"bad-usage\"} 0\n"
	"mailgate_client_certs_total{status=\"chain-too-long\"} 0\n"
	"mailgate_client_certs_total{status=\"invalid\"} 0\n"
	"# HELP mailgate_relay_denied_total Recipients refused with 554 5.7.1 (relay "
	"access denied).\n"
	"# TYPE mailgate_relay_denied_total counter\n"
	"mailgate_relay_denied_total 3\n"
	"# HELP mailgate_auth_total Logins (SMTP AUTH, IMAP LOGIN and AUTHENTICATE) by "
	"result; failed counts the auth-failed log lines.\n"
	"# TYPE mailgate_auth_total counter\n"
	"mailgate_auth_total{result=\"ok\"} 1\n"
	"mailgate_auth_total{result=\"failed\"} 2\n"
	"# HELP mailgate_messages_total Messages the upstream accepted (2xx after the final dot).\n"
	"# TYPE mailgate_messages_total counter\n"
	"mailgate_messages_total 4\n"
	"# HELP mailgate_bytes_total Bytes read from clients (in) and written to them "
	"(out), counted when a session ends.\n"
	"# TYPE mailgate_bytes_total counter\n"
	"mailgate_bytes_total{direction=\"in\"} 1200\n"
	"mailgate_bytes_total{direction=\"out\"} 34\n"
	"# HELP mailgate_upstream_failures_total Upstream addresses that failed during "
	"set-up, and upstream connections lost or timed out.\n"
	"# TYPE mailgate_upstream_failures_total counter\n"
	"mailgate_upstream_failures_total 1\n"
	"# HELP mailgate_sessions_active Client sessions open now, over all workers.\n"
	"# TYPE mailgate_sessions_active gauge\n"
	"mailgate_sessions_active 1\n"
	"# HELP mailgate_cert_expiry_seconds Seconds until notAfter of each certificate "
	"the gateway presents (negative once expired).\n"
	"# TYPE mailgate_cert_expiry_seconds gauge\n"
	"mailgate_cert_expiry_seconds{cert=\"/etc/mailgate/ecdsa.pem\"} -10\n"
	"mailgate_cert_expiry_seconds{cert=\"/etc/mailgate/rsa.pem\"} 86400\n"
	"# HELP mailgate_peer_cert_expiry_seconds Seconds until the earliest notAfter "
	"among the client certificates each peer presented since start (negative once expired).\n"
	"# TYPE mailgate_peer_cert_expiry_seconds gauge\n"
	"mailgate_peer_cert_expiry_seconds{peer=\"partner\"} 500\n"
	"# HELP mailgate_workers Worker processes running.\n"
	"# TYPE mailgate_workers gauge\n"
	"mailgate_workers 2\n"
	"# HELP mailgate_metrics_overflow_total Counts that found no series slot (table "
	"full or name too long; logged once).\n"
	"# TYPE mailgate_metrics_overflow_total counter\n"
	"mailgate_metrics_overflow_total 0\n";

static void test_render_exact(void)
{
	start();
	metrics_set_workers(2);
	metrics_connection("smtps", RESULT_QUIT);
	metrics_connection("smtps", RESULT_QUIT);
	metrics_connection("smtps", RESULT_TLS_FAILED);
	metrics_connection("local", RESULT_RELAY_DENIED);
	metrics_handshake("smtps", true);
	metrics_handshake("smtps", true);
	metrics_handshake("smtps", false);
	metrics_client_cert(CERT_VERIFIED);
	metrics_client_cert(CERT_EXPIRED);
	metrics_client_cert(CERT_NONE);		/* a handshake without one */
	for (int i = 0; i < 3; i++)
		metrics_relay_denied();
	metrics_auth(true);
	metrics_auth(false);
	metrics_auth(false);
	for (int i = 0; i < 4; i++)
		metrics_message();
	metrics_bytes(1000, 30);
	metrics_bytes(200, 4);
	metrics_upstream_failure();
	metrics_session_open();
	metrics_session_open();
	metrics_session_close();
	metrics_peer_cert("partner", 3000);
	metrics_peer_cert("partner", 1500);	/* the least counts */
	metrics_peer_cert("partner", 2000);
	const char *got = render(1000);
	CU_ASSERT_STRING_EQUAL(got, exact);
	if (strcmp(got, exact))
		fprintf(stderr, "\n--- got:\n%s", got);
	metrics_fini();
}

static void test_escaping(void)
{
	/* a listener name with \, " and a newline, and a byte that is not
	 * UTF-8; a valid multi-byte character stays as it is */
	struct conf_listener ls[] = {
		{ .name = "we\"ird\\na\nme\xff\xc3\xa9", .tls_mode = TLS_MODE_NONE },
	};
	struct conf c;
	init_conf(&c, ls, 1);
	metrics_fini();
	CU_ASSERT_EQUAL_FATAL(metrics_init(&c), 0);
	metrics_connection(ls[0].name, RESULT_OK);
	const char *got = render(0);
	CU_ASSERT(has_line(got, "mailgate_connections_total{listener=\"we\\\"ird\\\\na\\nme\xef\xbf\xbd\xc3\xa9\","
				"result=\"ok\"} 1"));
	/* no raw newline inside any sample: every line is a comment or a sample */
	for (const char *p = got; *p; p = strchr(p, '\n') + 1)
		CU_ASSERT(!strncmp(p, "# ", 2) || !strncmp(p, "mailgate_", 9));
	/* an overlong encoding, a surrogate and a truncated sequence are not UTF-8 */
	ls[0].name = "a\xc0\xafz\xed\xa0\x80z\xe2\x82";
	metrics_register(&c);
	got = render(0);
	CU_ASSERT(has_line(got, "mailgate_connections_total{listener=\"a\xef\xbf\xbd\xef\xbf\xbdz"
				"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd\",result=\"ok\"} 0"));
	metrics_fini();
}

static void test_new_names_claimed(void)
{
	start();
	size_t limit = metrics_series_limit();
	CU_ASSERT(limit >= 4 + METRICS_SERIES_MARGIN);	/* 2 + 1 + 1 series, plus the margin */
	metrics_connection("added-by-reload", RESULT_QUIT);
	metrics_connection("added-by-reload", RESULT_QUIT);
	metrics_handshake("added-by-reload", true);
	metrics_peer_cert("new-peer", 10);
	const char *got = render(0);
	CU_ASSERT(has_line(got, "mailgate_connections_total{listener=\"added-by-reload\",result=\"quit\"} 2"));
	CU_ASSERT(has_line(got, "mailgate_tls_handshakes_total{listener=\"added-by-reload\",result=\"ok\"} 1"));
	CU_ASSERT(has_line(got, "mailgate_peer_cert_expiry_seconds{peer=\"new-peer\"} 10"));
	/* a peer that has shown no certificate has no sample */
	CU_ASSERT(strstr(got, "peer=\"partner\"") == NULL);
	CU_ASSERT(has_line(got, "mailgate_metrics_overflow_total 0"));
	metrics_fini();
}

static void test_overflow(void)
{
	start();
	size_t limit = metrics_series_limit();
	/* 4 series are taken by the configuration; fill the rest, then 5 more */
	char name[32];
	for (size_t i = 0; i < limit - 4 + 5; i++) {
		snprintf(name, sizeof(name), "l%zu", i);
		metrics_connection(name, RESULT_OK);
	}
	char longname[METRICS_LABEL_MAX + 1];
	memset(longname, 'x', METRICS_LABEL_MAX);
	longname[METRICS_LABEL_MAX] = '\0';
	metrics_handshake("smtps", true);	/* an existing series still counts */
	const char *got = render(0);
	CU_ASSERT(has_line(got, "mailgate_metrics_overflow_total 5"));
	CU_ASSERT(has_line(got, "mailgate_connections_total{listener=\"l0\",result=\"ok\"} 1"));
	CU_ASSERT(has_line(got, "mailgate_tls_handshakes_total{listener=\"smtps\",result=\"ok\"} 1"));
	snprintf(name, sizeof(name), "l%zu", limit - 4);	/* the first that found no room */
	CU_ASSERT(strstr(got, name) == NULL);
	metrics_fini();

	/* a name too long for a series: counted as overflow, not cut short */
	start();
	metrics_connection(longname, RESULT_OK);
	got = render(0);
	CU_ASSERT(has_line(got, "mailgate_metrics_overflow_total 1"));
	CU_ASSERT(strstr(got, "xxxxxxxx") == NULL);
	metrics_fini();
}

static void test_slots_summed(void)
{
	start();
	metrics_set_slot(0);
	metrics_session_open();
	metrics_session_open();
	metrics_set_slot(5);
	metrics_session_open();
	metrics_session_open();
	metrics_session_open();
	metrics_session_close();
	CU_ASSERT(has_line(render(0), "mailgate_sessions_active 4"));
	metrics_slot_reset(5);	/* worker 5 died: its sessions are gone */
	CU_ASSERT(has_line(render(0), "mailgate_sessions_active 2"));
	metrics_set_slot(METRICS_SLOTS_MAX + 1);	/* taken modulo: slot 1 */
	metrics_session_open();
	CU_ASSERT(has_line(render(0), "mailgate_sessions_active 3"));
	metrics_slot_reset(1);
	CU_ASSERT(has_line(render(0), "mailgate_sessions_active 2"));
	metrics_set_slot(0);

	/* another process (a worker) writes the same region: counters and
	 * its own slot, including a name no one had claimed yet */
	pid_t pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		metrics_set_slot(7);
		metrics_session_open();
		for (int i = 0; i < 1000; i++)
			metrics_connection("smtps", RESULT_OK);
		metrics_connection("from-worker", RESULT_QUIT);
		metrics_message();
		_exit(0);
	}
	for (int i = 0; i < 1000; i++)
		metrics_connection("smtps", RESULT_OK);
	int st;
	waitpid(pid, &st, 0);
	CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	const char *got = render(0);
	CU_ASSERT(has_line(got, "mailgate_connections_total{listener=\"smtps\",result=\"ok\"} 2000"));
	CU_ASSERT(has_line(got, "mailgate_connections_total{listener=\"from-worker\",result=\"quit\"} 1"));
	CU_ASSERT(has_line(got, "mailgate_messages_total 1"));
	CU_ASSERT(has_line(got, "mailgate_sessions_active 3"));
	metrics_slot_reset(7);	/* the master saw it die */
	got = render(0);
	CU_ASSERT(has_line(got, "mailgate_sessions_active 2"));
	CU_ASSERT(has_line(got, "mailgate_connections_total{listener=\"smtps\",result=\"ok\"} 2000"));
	metrics_fini();
}

static void test_render_alloc_grows(void)
{
	/* 200 listeners: far more text than the first 16 KiB buffer */
	static struct conf_listener many[200];
	static char names[200][32];
	for (int i = 0; i < 200; i++) {
		snprintf(names[i], sizeof(names[i]), "listener-%03d", i);
		many[i].name = names[i];
		many[i].tls_mode = TLS_MODE_IMPLICIT;
	}
	struct conf c;
	init_conf(&c, many, 200);
	metrics_fini();
	CU_ASSERT_EQUAL_FATAL(metrics_init(&c), 0);
	metrics_connection("listener-199", RESULT_QUIT);
	size_t len = 0;
	char *body = metrics_render_alloc(NULL, 0, 0, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	CU_ASSERT(len > 16 * 1024);
	CU_ASSERT_EQUAL(strlen(body), len);
	CU_ASSERT(has_line(body, "mailgate_connections_total{listener=\"listener-199\",result=\"quit\"} 1"));
	CU_ASSERT(has_line(body, "mailgate_metrics_overflow_total 0"));
	free(body);
	metrics_fini();
}

/* ---- the HTTP request parser ---- */

struct http_case {
	const char *req;
	int status;
	bool head;
};

static const struct http_case http_cases[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, false },
	{ "GET /metrics HTTP/1.0\r\n\r\n", 200, false },
	{ "GET /metrics?name[]=up HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", 200, false },
	{ "HEAD /metrics HTTP/1.1\r\n\r\n", 200, true },
	{ "GET /metrics HTTP/1.1\nHost: x\n\n", 200, false },	/* bare LF line ends */
	{ "GET /metrics HTTP/1.1\r\nUser-Agent: Prometheus/2.45.0\r\nX-Empty:\r\n"
	  "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n", 200, false },
	{ "GET /metrics HTTP/1.1\r\nX-8bit: caf\xc3\xa9\r\n\r\n", 200, false },	/* obs-text */
	{ "GET /other HTTP/1.1\r\n\r\n", 404, false },
	{ "GET / HTTP/1.1\r\n\r\n", 404, false },
	{ "GET /metrics/ HTTP/1.1\r\n\r\n", 404, false },
	{ "GET /metricsx HTTP/1.1\r\n\r\n", 404, false },
	{ "GET http://h/metrics HTTP/1.1\r\n\r\n", 404, false },
	{ "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405, false },
	{ "DELETE /metrics HTTP/1.1\r\n\r\n", 405, false },
	{ "get /metrics HTTP/1.1\r\n\r\n", 405, false },	/* methods are case-sensitive */
	{ "POST /other HTTP/1.1\r\n\r\n", 404, false },
	{ "GET /metrics HTTP/2.0\r\n\r\n", 505, false },
	{ "GET /metrics HTTP/1.2\r\n\r\n", 505, false },
	{ "GET /metrics HTTP/0.9\r\n\r\n", 505, false },
	{ "GET /metrics\r\n\r\n", 400, false },			/* HTTP/0.9 form */
	{ "GET  /metrics HTTP/1.1\r\n\r\n", 400, false },
	{ "GET /metrics  HTTP/1.1\r\n\r\n", 400, false },
	{ "GET /metrics HTTP/1.1 \r\n\r\n", 400, false },
	{ "GET /metrics http/1.1\r\n\r\n", 400, false },
	{ "GET /metrics HTTP/1.10\r\n\r\n", 400, false },
	{ "GET /met\x01rics HTTP/1.1\r\n\r\n", 400, false },
	{ "GET /metrics HTTP/1.1\r\rHost: x\r\n\r\n", 400, false },	/* bare CR */
	{ "\r\nGET /metrics HTTP/1.1\r\n\r\n", 400, false },
	{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, false },	/* a TLS ClientHello */
	{ "G\0ET /metrics HTTP/1.1\r\n\r\n", 400, false },
	{ "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n", 400, false },
	{ "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400, false },
	{ "GET /metrics HTTP/1.1\r\n: x\r\n\r\n", 400, false },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, false },	/* obs-fold */
	{ "GET /metrics HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400, false },
	{ "GET /metrics HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, false },
};

static void test_http_cases(void)
{
	for (size_t i = 0; i < sizeof(http_cases) / sizeof(http_cases[0]); i++) {
		const struct http_case *t = &http_cases[i];
		/* the NUL case: its bytes up to the end of the literal */
		size_t len = strlen(t->req) + (t->req[1] == '\0' ? 1 + strlen(t->req + 2) : 0);
		struct http_req r;
		int got = http_req_parse(t->req, len, 4096, &r);
		if (got != t->status)
			fprintf(stderr, "\ncase %zu: got %d, want %d\n", i, got, t->status);
		CU_ASSERT_EQUAL(got, t->status);
		if (got == 200)
			CU_ASSERT_EQUAL(r.head, t->head);
		/* byte by byte: every prefix needs more, or already has the answer */
		for (size_t n = 0; n < len; n++) {
			int part = http_req_parse(t->req, n, 4096, &r);
			if (part != 0 && part != t->status)
				fprintf(stderr, "\ncase %zu prefix %zu: got %d\n", i, n, part);
			CU_ASSERT(part == 0 || part == t->status);
		}
	}
}

static void test_http_limits(void)
{
	struct http_req r;
	char buf[4096];
	/* an endless header: 431 once the buffer is full, not before */
	const char *start = "GET /metrics HTTP/1.1\r\nX-Long: ";
	memcpy(buf, start, strlen(start));
	memset(buf + strlen(start), 'a', sizeof(buf) - strlen(start));
	CU_ASSERT_EQUAL(http_req_parse(buf, sizeof(buf) - 1, sizeof(buf), &r), 0);
	CU_ASSERT_EQUAL(http_req_parse(buf, sizeof(buf), sizeof(buf), &r), 431);
	/* endless header lines */
	const char *line = "GET /metrics HTTP/1.1\r\n";
	memcpy(buf, line, strlen(line));
	for (size_t i = strlen(line); i < sizeof(buf); i += 6)
		memcpy(buf + i, "A: bc\n", sizeof(buf) - i < 6 ? sizeof(buf) - i : 6);
	CU_ASSERT_EQUAL(http_req_parse(buf, sizeof(buf) - 1, sizeof(buf), &r), 0);
	CU_ASSERT_EQUAL(http_req_parse(buf, sizeof(buf), sizeof(buf), &r), 431);
	/* a request line that never ends */
	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', sizeof(buf) - 5);
	CU_ASSERT_EQUAL(http_req_parse(buf, sizeof(buf) - 1, sizeof(buf), &r), 0);
	CU_ASSERT_EQUAL(http_req_parse(buf, sizeof(buf), sizeof(buf), &r), 431);
	/* a complete request that fills the buffer exactly is answered */
	const char *req = "GET /metrics HTTP/1.1\r\n\r\n";
	CU_ASSERT_EQUAL(http_req_parse(req, strlen(req), strlen(req), &r), 200);
	CU_ASSERT_EQUAL(http_req_parse(req, 0, 4096, &r), 0);
}

static void test_http_response_head(void)
{
	char out[256];
	size_t n = http_resp_head(out, sizeof(out), 200, 1234);
	const char *want = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
			   "Content-Length: 1234\r\nConnection: close\r\n\r\n";
	CU_ASSERT_EQUAL(n, strlen(want));
	CU_ASSERT_STRING_EQUAL(out, want);
	n = http_resp_head(out, sizeof(out), 405, 19);
	want = "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
	       "Allow: GET, HEAD\r\nContent-Length: 19\r\nConnection: close\r\n\r\n";
	CU_ASSERT_STRING_EQUAL(out, want);
	CU_ASSERT_EQUAL(n, strlen(want));
	http_resp_head(out, sizeof(out), 431, 0);
	CU_ASSERT(!strncmp(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46));
	http_resp_head(out, sizeof(out), 500, 0);
	CU_ASSERT(!strncmp(out, "HTTP/1.1 500 Internal Server Error\r\n", 36));
	http_resp_head(out, sizeof(out), 302, 0);	/* not ours: 500 */
	CU_ASSERT(!strncmp(out, "HTTP/1.1 500 ", 13));
	CU_ASSERT_EQUAL(http_resp_head(out, 40, 200, 1), 0);	/* does not fit: nothing */
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("metrics", NULL, NULL);
	CU_ADD(s, test_disabled);
	CU_ADD(s, test_render_exact);
	CU_ADD(s, test_escaping);
	CU_ADD(s, test_new_names_claimed);
	CU_ADD(s, test_overflow);
	CU_ADD(s, test_slots_summed);
	CU_ADD(s, test_render_alloc_grows);
	CU_ADD(s, test_http_cases);
	CU_ADD(s, test_http_limits);
	CU_ADD(s, test_http_response_head);
}

CU_MAIN
