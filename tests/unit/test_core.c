/* test_core: the shared core of common/ over real sockets on 127.0.0.1,
 * the real libev loop and real GnuTLS - no mocks. conn: a TLS handshake
 * between two conns, bytes both ways, back-pressure and the drained
 * notification, close_notify seen as EOF, the lingering close (what was
 * written before the close survives the closer's unread input), a refused
 * certificate reported once. session: the core's life cycle driven by a
 * stub protocol through session_accept() (greeting and echo, implicit TLS,
 * the STARTTLS switch discarding pipelined bytes, the error budget, a
 * close during the handshake or from the start hook, the free hook once
 * per session, connection limits). upstream: failover over refusing,
 * silent, badly greeting and good addresses, all bad, a loss or a timeout
 * after ready, PROXY fail-closed. A throwaway CA and a "localhost" server
 * certificate (ECDSA P-256) are made in-process for each suite. Every test
 * checks that its descriptors are closed again. */
#include "addr.h"
#include "conf.h"
#include "conn.h"
#include "cu_main.h"
#include "diag.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "timer.h"
#include "tls.h"
#include "upstream.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- fixture: a temporary folder, certificates, a configuration ---- */

static char tmpdir[256];

/* A daemon without keys of its own: the core is protocol-blind. */
static const struct conf_key no_keys[] = { { .name = NULL } };
static const struct conf_schema core_schema = {
	.name = "test-core",
	.alpn_id = "test-core",
	.size = sizeof(int),
	.keys = no_keys,
};

static int write_file(const char *name, const void *data, size_t len, mode_t mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	int ok = write(fd, data, len) == (ssize_t)len && fchmod(fd, mode) == 0;
	close(fd);
	return ok ? 0 : -1;
}

static int gen_key(gnutls_x509_privkey_t *k)
{
	if (gnutls_x509_privkey_init(k) < 0) {
		*k = NULL;
		return -1;
	}
	return gnutls_x509_privkey_generate(*k, GNUTLS_PK_ECDSA,
					    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
}

/* A CA certificate (self-signed when issuer is NULL) or a TLS server
 * certificate for "localhost" signed by issuer. */
static int make_cert(gnutls_x509_crt_t *out, gnutls_x509_privkey_t key, const char *cn, bool ca,
		     unsigned char serial, gnutls_x509_crt_t issuer, gnutls_x509_privkey_t issuer_key)
{
	gnutls_x509_crt_t c;
	unsigned char id[64];
	size_t idlen = sizeof(id);
	time_t now = time(NULL);
	int r = gnutls_x509_crt_init(&c);
	if (r < 0)
		return r;
	if ((r = gnutls_x509_crt_set_version(c, 3)) < 0 ||
	    (r = gnutls_x509_crt_set_serial(c, &serial, 1)) < 0 ||
	    (r = gnutls_x509_crt_set_activation_time(c, now - 3600)) < 0 ||
	    (r = gnutls_x509_crt_set_expiration_time(c, now + 365 * 86400)) < 0 ||
	    (r = gnutls_x509_crt_set_dn_by_oid(c, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
					       (unsigned)strlen(cn))) < 0 ||
	    (r = gnutls_x509_crt_set_key(c, key)) < 0 ||
	    (r = gnutls_x509_crt_set_basic_constraints(c, ca, -1)) < 0 ||
	    (r = gnutls_x509_crt_get_key_id(c, 0, id, &idlen)) < 0 ||
	    (r = gnutls_x509_crt_set_subject_key_id(c, id, idlen)) < 0)
		goto out;
	if (ca) {
		r = gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN);
	} else if ((r = gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE)) >= 0 &&
		   (r = gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_DNSNAME, "localhost", 9,
							     GNUTLS_FSAN_SET)) >= 0) {
		r = gnutls_x509_crt_set_key_purpose_oid(c, GNUTLS_KP_TLS_WWW_SERVER, 0);
	}
	if (r >= 0)
		r = gnutls_x509_crt_sign2(c, issuer ? issuer : c, issuer_key ? issuer_key : key,
					  GNUTLS_DIG_SHA256, 0);
out:
	if (r < 0) {
		gnutls_x509_crt_deinit(c);
		return r;
	}
	*out = c;
	return 0;
}

static int save_crt(const char *name, gnutls_x509_crt_t c)
{
	gnutls_datum_t d = { NULL, 0 };
	if (gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d) < 0)
		return -1;
	int r = write_file(name, d.data, d.size, 0644);
	gnutls_free(d.data);
	return r;
}

static int save_key(const char *name, gnutls_x509_privkey_t k)
{
	gnutls_datum_t d = { NULL, 0 };
	if (gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d) < 0)
		return -1;
	int r = write_file(name, d.data, d.size, 0600);
	gnutls_free(d.data);
	return r;
}

/* ca.pem, server.pem + server.key ("localhost", signed by ca.pem) and
 * other-ca.pem, a CA that signed nothing here. */
static int make_pki(void)
{
	gnutls_x509_privkey_t cak = NULL, otherk = NULL, srvk = NULL;
	gnutls_x509_crt_t ca = NULL, other = NULL, srv = NULL;
	int r;
	if ((r = gen_key(&cak)) < 0 || (r = gen_key(&otherk)) < 0 || (r = gen_key(&srvk)) < 0 ||
	    (r = make_cert(&ca, cak, "mailgate test CA", true, 1, NULL, NULL)) < 0 ||
	    (r = make_cert(&other, otherk, "another test CA", true, 2, NULL, NULL)) < 0 ||
	    (r = make_cert(&srv, srvk, "localhost", false, 3, ca, cak)) < 0 ||
	    (r = save_crt("ca.pem", ca)) < 0 || (r = save_crt("other-ca.pem", other)) < 0 ||
	    (r = save_crt("server.pem", srv)) < 0 || (r = save_key("server.key", srvk)) < 0)
		fprintf(stderr, "\ntest PKI: %s\n", r < -1 ? gnutls_strerror(r) : "cannot write");
	if (ca)
		gnutls_x509_crt_deinit(ca);
	if (other)
		gnutls_x509_crt_deinit(other);
	if (srv)
		gnutls_x509_crt_deinit(srv);
	if (cak)
		gnutls_x509_privkey_deinit(cak);
	if (otherk)
		gnutls_x509_privkey_deinit(otherk);
	if (srvk)
		gnutls_x509_privkey_deinit(srvk);
	return r < 0 ? -1 : 0;
}

/* Writes text as <tmpdir>/NAME and loads it; NULL (diagnostics printed)
 * unless it loads without errors. */
static struct conf *load_conf(const char *name, const char *text)
{
	char path[512];
	struct diag d;
	if (write_file(name, text, strlen(text), 0644) < 0)
		return NULL;
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	diag_init(&d);
	struct conf *c = conf_load(path, &core_schema, &d);
	if (d.errors) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "\n  %s", d.lines[i]);
		conf_free(&c);
	}
	diag_free(&d);
	return c;
}

#define CONF_TOP                                                                    \
	"hostname = \"mx.example.org\"\n"                                           \
	"max_errors = 3\n"                                                          \
	"timeout_handshake = 5\n"                                                   \
	"tls \"default\" {\n  cert = \"server.pem\"\n  key = \"server.key\"\n}\n"   \
	"tls_client \"good\" {\n  ca = \"ca.pem\"\n  verify_name = \"localhost\"\n}\n" \
	"tls_client \"wrong-ca\" {\n  ca = \"other-ca.pem\"\n  verify_name = \"localhost\"\n}\n"

/* The listeners' addresses are never bound: each test binds port 0 and
 * hands what it accepts to session_accept() with the listener's section. */
static const char core_conf_text[] = CONF_TOP
	"upstream \"u\" {\n  address = \"127.0.0.1:9\"\n}\n"
	"listener \"plain\" {\n  address = \"127.0.0.1:10001\"\n  tls_mode = \"none\"\n}\n"
	"listener \"implicit\" {\n  address = \"127.0.0.1:10002\"\n  tls_mode = \"implicit\"\n}\n"
	"listener \"starttls\" {\n  address = \"127.0.0.1:10003\"\n  tls_mode = \"starttls\"\n}\n"
	"listener \"maxconn\" {\n  address = \"127.0.0.1:10004\"\n  tls_mode = \"none\"\n"
	"  max_connections = 1\n}\n"
	"listener \"perip\" {\n  address = \"127.0.0.1:10005\"\n  tls_mode = \"none\"\n"
	"  max_per_ip = 1\n}\n"
	"listener \"implicit-maxconn\" {\n  address = \"127.0.0.1:10006\"\n"
	"  tls_mode = \"implicit\"\n  max_connections = 1\n}\n";

static struct conf *cconf;
static struct server srv;
static bool srv_up;
static struct tls_server *tsrv;
static struct tls_client *tcli_good, *tcli_wrong;

static void once(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	tls_global_init();
	conn_loop_init();
	log_configure(LOG_TARGET_STDERR, LOG_FORMAT_TEXT,
		      getenv("MG_TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
}

static int suite_down(void)
{
	tls_client_free(&tcli_good);
	tls_client_free(&tcli_wrong);
	if (srv_up)
		server_fini(&srv);
	srv_up = false;
	tsrv = NULL;
	conf_free(&cconf);
	if (tmpdir[0]) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			return -1;
		tmpdir[0] = '\0';
	}
	return 0;
}

static int suite_up(void)
{
	struct diag d;
	once();
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-core-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		tmpdir[0] = '\0';
		return -1;
	}
	if (make_pki() < 0 || !(cconf = load_conf("core.conf", core_conf_text)))
		return suite_down(), -1;
	diag_init(&d);
	memset(&srv, 0, sizeof(srv));
	srv_up = server_init(&srv, cconf, &d) == 0;
	if (srv_up) {
		tsrv = server_tls(&srv, cconf->listeners[1].tls);
		tcli_good = tls_client_new(&cconf->tls_clients[0], &d);
		tcli_wrong = tls_client_new(&cconf->tls_clients[1], &d);
	}
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "\n  %s", d.lines[i]);
	int bad = d.errors || !tsrv || !tcli_good || !tcli_wrong;
	diag_free(&d);
	if (bad)
		return suite_down(), -1;
	return 0;
}

/* ---- the loop ---- */

typedef bool (*pred_fn)(void *arg);

struct waiter {
	pred_fn pred;
	void *arg;
};

static void wait_poll(void *arg)
{
	struct waiter *w = arg;
	if (w->pred(w->arg))
		conn_loop_break();
}

static void wait_expired(void *arg)
{
	conn_loop_break();
}

/* Runs the loop until pred holds (checked every 2 ms) or max seconds
 * have passed; returns pred. */
static bool run_until(pred_fn pred, void *arg, double max)
{
	if (pred(arg))
		return true;
	struct waiter w = { pred, arg };
	struct mg_timer *poll_t = mg_timer_start(0.002, 0.002, wait_poll, &w);
	struct mg_timer *limit = mg_timer_start(max, 0, wait_expired, NULL);
	conn_loop_run();
	mg_timer_stop(&poll_t);
	mg_timer_stop(&limit);
	return pred(arg);
}

static bool never(void *arg)
{
	return false;
}

static void run_for(double seconds)
{
	run_until(never, NULL, seconds);
}

/* ---- descriptors ---- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own */
}

static bool fds_back(void *arg)
{
	return count_fds() == *(int *)arg;
}

/* Lingering closes end from the loop: give them a moment, then compare. */
static void check_fds(int base)
{
	run_until(fds_back, &base, 3.0);
	CU_ASSERT_EQUAL(count_fds(), base);
}

/* ---- sockets and connection ends ---- */

static uint16_t port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	if (getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		return 0;
	return ntohs(a.sin_port);
}

static int connect_to(uint16_t port, int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A connected pair on 127.0.0.1: *cl connected (its receive buffer set
 * before the connect when cl_rcvbuf), *sv accepted (its send buffer set
 * when sv_sndbuf). Returns 0 or -1. */
static int tcp_pair(int *cl, int *sv, int cl_rcvbuf, int sv_sndbuf)
{
	struct mg_addr a;
	const char *err = NULL;
	*cl = *sv = -1;
	if (addr_from_literal("127.0.0.1", 0, &a) < 0)
		return -1;
	int l = listener_bind(&a, false, &err);
	if (l < 0)
		return -1;
	*cl = connect_to(port_of(l), cl_rcvbuf);
	if (*cl >= 0)
		*sv = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	close(l);
	if (*sv < 0) {
		if (*cl >= 0)
			close(*cl);
		*cl = -1;
		return -1;
	}
	if (sv_sndbuf)
		setsockopt(*sv, SOL_SOCKET, SO_SNDBUF, &sv_sndbuf, sizeof(sv_sndbuf));
	return 0;
}

/* One end of a connection: a conn whose events are counted and whose
 * input is collected (NUL-terminated) once reading is started. */
struct ep {
	struct conn *c;
	char *in;
	size_t in_len, in_cap;
	int reads, handshakes, drained, eofs, errors, timeouts;
	char err[256];
};

static void ep_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct ep *e = arg;
	switch (ev) {
	case CONN_EV_READ: {
		size_t n = conn_in_len(c);
		if (e->in_len + n + 1 > e->in_cap) {
			e->in_cap = (e->in_len + n + 1) * 2;
			e->in = realloc(e->in, e->in_cap);
			if (!e->in)
				abort();
		}
		memcpy(e->in + e->in_len, conn_in_data(c), n);
		e->in_len += n;
		e->in[e->in_len] = '\0';
		conn_in_consume(c, n);
		e->reads++;
		return;
	}
	case CONN_EV_HANDSHAKE:
		e->handshakes++;
		return;
	case CONN_EV_DRAINED:
		e->drained++;
		return;
	case CONN_EV_EOF:
		e->eofs++;
		return;
	case CONN_EV_ERROR:
		e->errors++;
		snprintf(e->err, sizeof(e->err), "%s", conn_error(c));
		return;
	case CONN_EV_TIMEOUT:
		e->timeouts++;
		return;
	}
}

static struct ep *ep_new(int fd)
{
	struct ep *e = calloc(1, sizeof(*e));
	if (!e)
		abort();
	e->c = conn_new(fd, 64 * 1024, ep_cb, e);
	return e;
}

static void ep_free(struct ep **ep)
{
	struct ep *e = *ep;
	if (!e)
		return;
	conn_free(&e->c);
	free(e->in);
	free(e);
	*ep = NULL;
}

static const char *ep_text(const struct ep *e)
{
	return e->in ? e->in : "";
}

/* A client of port, reading (plain until the caller starts TLS). */
static struct ep *ep_dial(uint16_t port)
{
	int fd = connect_to(port, 0);
	if (fd < 0)
		return NULL;
	struct ep *e = ep_new(fd);
	conn_read_start(e->c);
	return e;
}

static void ep_start_tls_client(struct ep *e, struct tls_client *cli)
{
	conn_start_tls(e->c, tls_session_client(cli, conn_fd(e->c), "localhost"));
}

static void ep_send(struct ep *e, const char *text)
{
	conn_write(e->c, text, strlen(text));
}

struct ep_wait {
	struct ep *e;
	const char *text;	/* received */
	size_t len;		/* bytes received */
};

static bool got_text(void *arg)
{
	struct ep_wait *w = arg;
	return strstr(ep_text(w->e), w->text) != NULL;
}

static bool got_len(void *arg)
{
	struct ep_wait *w = arg;
	return w->e->in_len >= w->len;
}

static bool ended(void *arg)
{
	struct ep *e = arg;
	return e->eofs || e->errors;
}

static bool ep_drained(void *arg)
{
	struct ep *e = arg;
	return e->drained || e->errors;
}

static bool ep_handshaken(void *arg)
{
	struct ep *e = arg;
	return e->handshakes || e->errors || e->eofs;
}

static bool wait_text(struct ep *e, const char *text, double max)
{
	struct ep_wait w = { e, text, 0 };
	return run_until(got_text, &w, max);
}

static bool wait_len(struct ep *e, size_t len, double max)
{
	struct ep_wait w = { e, NULL, len };
	return run_until(got_len, &w, max);
}

static bool wait_end(struct ep *e, double max)
{
	return run_until(ended, e, max);
}

static void pattern(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 7 + (i >> 9) + seed);
}

static bool same_pattern(const char *p, size_t n, unsigned seed)
{
	unsigned char *want = malloc(n ? n : 1);
	if (!want)
		abort();
	pattern(want, n, seed);
	bool ok = memcmp(p, want, n) == 0;
	free(want);
	return ok;
}

/* ==== 1. conn + TLS over a loopback pair ==== */

struct pair {
	struct ep *cl, *sv;	/* the connecting end (TLS client), the accepted one */
};

static bool pair_handshaken(void *arg)
{
	struct pair *p = arg;
	return (p->cl->handshakes || p->cl->errors) && (p->sv->handshakes || p->sv->errors);
}

static bool pair_failed(void *arg)
{
	struct pair *p = arg;
	return p->cl->errors && p->sv->errors;
}

/* Makes the pair and runs both handshakes (cli: the client's trust). */
static int pair_open(struct pair *p, struct tls_client *cli, int cl_rcvbuf, int sv_sndbuf)
{
	int a, b;
	p->cl = p->sv = NULL;
	if (tcp_pair(&a, &b, cl_rcvbuf, sv_sndbuf) < 0)
		return -1;
	p->cl = ep_new(a);
	p->sv = ep_new(b);
	if (!cli)
		return 0;
	conn_start_tls(p->sv->c, tls_session_server(tsrv, b, CLIENT_CERT_NONE));
	conn_start_tls(p->cl->c, tls_session_client(cli, a, "localhost"));
	run_until(pair_handshaken, p, 5.0);
	return 0;
}

static void pair_close(struct pair *p)
{
	ep_free(&p->cl);
	ep_free(&p->sv);
}

static void test_conn_handshake(void)
{
	int base = count_fds();
	struct pair p;
	CU_ASSERT_FATAL(pair_open(&p, tcli_good, 0, 0) == 0);
	CU_ASSERT_EQUAL(p.cl->handshakes, 1);
	CU_ASSERT_EQUAL(p.sv->handshakes, 1);
	CU_ASSERT_EQUAL(p.cl->errors + p.sv->errors, 0);
	CU_ASSERT(conn_tls_ready(p.cl->c));
	CU_ASSERT(conn_tls_ready(p.sv->c));
	if (conn_tls_ready(p.cl->c)) {
		CU_ASSERT_STRING_EQUAL(tls_version_name(conn_tls(p.cl->c)), "TLS1.3");
		/* The client verified the chain and read the server's name. */
		const struct tls_peer *peer = tls_peer(conn_tls(p.cl->c));
		CU_ASSERT_PTR_NOT_NULL(peer);
		if (peer && peer->ndns == 1)
			CU_ASSERT_STRING_EQUAL(peer->dns[0], "localhost");
		/* No client certificate was asked for. */
		CU_ASSERT_PTR_NULL(tls_peer(conn_tls(p.sv->c)));
	}
	/* Nothing more happens by itself. */
	run_for(0.05);
	CU_ASSERT_EQUAL(p.cl->handshakes + p.sv->handshakes, 2);
	CU_ASSERT_EQUAL(p.cl->reads + p.sv->reads + p.cl->eofs + p.sv->eofs, 0);
	pair_close(&p);
	check_fds(base);
}

static void test_conn_roundtrip(void)
{
	int base = count_fds();
	struct pair p;
	enum { UP = 100000, DOWN = 300000 };	/* DOWN: more than one wake-up's read budget */
	unsigned char *buf = malloc(DOWN);
	CU_ASSERT_FATAL(buf != NULL);
	CU_ASSERT_FATAL(pair_open(&p, tcli_good, 0, 0) == 0);
	conn_read_start(p.cl->c);
	conn_read_start(p.sv->c);

	/* Client to server: a line, then a block in the same burst. */
	ep_send(p.cl, "hello over TLS\r\n");
	pattern(buf, UP, 1);
	conn_write(p.cl->c, buf, UP);
	CU_ASSERT(wait_len(p.sv, 16 + UP, 5.0));
	CU_ASSERT_EQUAL(p.sv->in_len, 16 + UP);
	if (p.sv->in_len == 16 + UP) {
		CU_ASSERT(memcmp(p.sv->in, "hello over TLS\r\n", 16) == 0);
		CU_ASSERT(same_pattern(p.sv->in + 16, UP, 1));
	}

	/* Server to client: more than the client's input queue holds. */
	pattern(buf, DOWN, 2);
	conn_write(p.sv->c, buf, DOWN);
	CU_ASSERT(wait_len(p.cl, DOWN, 5.0));
	CU_ASSERT_EQUAL(p.cl->in_len, DOWN);
	if (p.cl->in_len == DOWN)
		CU_ASSERT(same_pattern(p.cl->in, DOWN, 2));

	/* The counters are plaintext bytes. */
	CU_ASSERT_EQUAL(conn_bytes_out(p.cl->c), 16 + UP);
	CU_ASSERT_EQUAL(conn_bytes_in(p.sv->c), 16 + UP);
	CU_ASSERT_EQUAL(conn_bytes_out(p.sv->c), DOWN);
	CU_ASSERT_EQUAL(conn_bytes_in(p.cl->c), DOWN);
	CU_ASSERT_EQUAL(p.cl->errors + p.sv->errors + p.cl->eofs + p.sv->eofs, 0);
	free(buf);
	pair_close(&p);
	check_fds(base);
}

static bool drained_and_read(void *arg)
{
	struct pair *p = arg;
	return p->sv->drained && p->cl->in_len >= (1u << 20);
}

static void test_conn_backpressure(void)
{
	int base = count_fds();
	struct pair p;
	const size_t total = 1u << 20;
	unsigned char *buf = malloc(total);
	CU_ASSERT_FATAL(buf != NULL);
	/* Small socket buffers, so that the kernel cannot swallow 1 MiB. */
	CU_ASSERT_FATAL(pair_open(&p, tcli_good, 16384, 16384) == 0);
	CU_ASSERT_FATAL(p.cl->handshakes == 1 && p.sv->handshakes == 1);

	/* The client does not read: most of the 1 MiB stays queued. */
	pattern(buf, total, 3);
	conn_write(p.sv->c, buf, total);
	run_for(0.1);
	size_t stuck = conn_out_len(p.sv->c);
	CU_ASSERT(stuck > 0);
	CU_ASSERT(stuck < total);
	/* The kernel may still find a little room (its own timing), never
	 * the better part of a MiB. */
	run_for(0.05);
	CU_ASSERT(conn_out_len(p.sv->c) > total / 2);
	CU_ASSERT(conn_out_len(p.sv->c) <= stuck);

	/* Asked for, the drain notification waits for the queue to empty. */
	conn_notify_drained(p.sv->c);
	CU_ASSERT_EQUAL(p.sv->drained, 0);	/* never synchronously */
	run_for(0.05);
	CU_ASSERT_EQUAL(p.sv->drained, 0);
	CU_ASSERT_EQUAL(p.cl->in_len, 0);

	/* The client reads everything: then one CONN_EV_DRAINED. */
	conn_read_start(p.cl->c);
	CU_ASSERT(run_until(drained_and_read, &p, 10.0));
	CU_ASSERT_EQUAL(conn_out_len(p.sv->c), 0);
	CU_ASSERT_EQUAL(p.cl->in_len, total);
	if (p.cl->in_len == total)
		CU_ASSERT(same_pattern(p.cl->in, total, 3));
	run_for(0.05);
	CU_ASSERT_EQUAL(p.sv->drained, 1);
	CU_ASSERT_EQUAL(p.cl->errors + p.sv->errors, 0);
	free(buf);
	pair_close(&p);
	check_fds(base);
}

static void test_conn_close_notify(void)
{
	int base = count_fds();
	struct pair p;
	CU_ASSERT_FATAL(pair_open(&p, tcli_good, 0, 0) == 0);
	CU_ASSERT_FATAL(p.cl->handshakes == 1 && p.sv->handshakes == 1);
	conn_read_start(p.cl->c);
	conn_read_start(p.sv->c);
	/* Last words, then conn_free: close_notify follows them. */
	ep_send(p.cl, "last words\r\n");
	conn_free(&p.cl->c);
	CU_ASSERT(wait_end(p.sv, 3.0));
	CU_ASSERT_EQUAL(p.sv->eofs, 1);
	CU_ASSERT_EQUAL(p.sv->errors, 0);
	CU_ASSERT_STRING_EQUAL(ep_text(p.sv), "last words\r\n");
	run_for(0.05);
	CU_ASSERT_EQUAL(p.sv->eofs, 1);		/* once */
	CU_ASSERT_EQUAL(p.sv->errors, 0);
	pair_close(&p);
	check_fds(base);
}

/* The closing side (the accepted end) has unread input from its peer
 * when it is freed, and most of what it wrote is still in its socket's
 * send queue (the peer's small receive buffer is full): a plain close()
 * would send RST at once and lose that. With the lingering close the
 * peer reads every byte, then a clean EOF. */
static void lingering_close(bool tls)
{
	int base = count_fds();
	struct pair p;
	const size_t total = 192 * 1024;
	unsigned char *buf = malloc(total);
	CU_ASSERT_FATAL(buf != NULL);
	CU_ASSERT_FATAL(pair_open(&p, tls ? tcli_good : NULL, 16384, 256 * 1024) == 0);
	if (tls)
		CU_ASSERT_FATAL(p.cl->handshakes == 1 && p.sv->handshakes == 1);

	/* The peer says something the closer never reads. */
	memset(buf, 'x', 4096);
	conn_write(p.cl->c, buf, 4096);
	run_for(0.02);
	CU_ASSERT_EQUAL(conn_out_len(p.cl->c), 0);

	/* The closer writes, waits for its queue to reach the kernel, closes. */
	pattern(buf, total, 4);
	conn_write(p.sv->c, buf, total);
	conn_notify_drained(p.sv->c);
	CU_ASSERT(run_until(ep_drained, p.sv, 5.0));
	CU_ASSERT_EQUAL(p.sv->drained, 1);
	int unread = 0;
	CU_ASSERT(ioctl(conn_fd(p.sv->c), FIONREAD, &unread) == 0);
	CU_ASSERT(unread > 0);	/* the case under test: input left unread */
	conn_free(&p.sv->c);

	/* The peer reads now: everything, then EOF - no reset. */
	conn_read_start(p.cl->c);
	CU_ASSERT(wait_end(p.cl, 5.0));
	CU_ASSERT_EQUAL(p.cl->in_len, total);
	if (p.cl->in_len == total)
		CU_ASSERT(same_pattern(p.cl->in, total, 4));
	CU_ASSERT_EQUAL(p.cl->eofs, 1);
	CU_ASSERT_EQUAL(p.cl->errors, 0);
	if (p.cl->errors)
		fprintf(stderr, "\n  peer error after %zu of %zu bytes: %s\n", p.cl->in_len, total,
			p.cl->err);
	free(buf);
	pair_close(&p);
	check_fds(base);
}

static void test_conn_lingering_close_tls(void)
{
	lingering_close(true);
}

static void test_conn_lingering_close_plain(void)
{
	lingering_close(false);
}

static void test_conn_handshake_failure(void)
{
	int base = count_fds();
	struct pair p;
	/* The client trusts another CA: it refuses the server's chain. */
	CU_ASSERT_FATAL(pair_open(&p, tcli_wrong, 0, 0) == 0);
	run_until(pair_failed, &p, 5.0);
	CU_ASSERT_EQUAL(p.cl->errors, 1);
	CU_ASSERT_EQUAL(p.cl->handshakes, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.cl->err, "server certificate rejected"));
	/* The server learns it from the client's alert. */
	CU_ASSERT_EQUAL(p.sv->errors, 1);
	CU_ASSERT_EQUAL(p.sv->handshakes, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.sv->err, "alert"));
	/* Reported once. */
	run_for(0.1);
	CU_ASSERT_EQUAL(p.cl->errors, 1);
	CU_ASSERT_EQUAL(p.sv->errors, 1);
	CU_ASSERT_EQUAL(p.cl->eofs + p.sv->eofs + p.cl->reads + p.sv->reads, 0);
	CU_ASSERT(!conn_tls_ready(p.cl->c));
	pair_close(&p);
	check_fds(base);
}

/* ==== 2. the session core with a stub protocol ==== */

/* What the stub's hooks saw; reset by each test. */
static struct {
	int start, greet, identified, implicit, restarted, input, closing, deadline, timeout, eof,
	    free;
	char trace[512];	/* hook names in call order */
	char lines[1024];	/* every line input() executed, "|"-terminated */
	char started[16][16];	/* session ids, in order */
	char freed[16][16];
	enum session_result result;
	/* knobs */
	bool close_in_start;
	bool last_words;	/* the deadline hook says BYE before closing */
	double deadline_in_start, deadline_at_starttls;
} H;

static void cat(char *dst, size_t sz, const char *s)
{
	strncat(dst, s, sz - strlen(dst) - 1);
}

static void trace(const char *hook)
{
	cat(H.trace, sizeof(H.trace), hook);
	cat(H.trace, sizeof(H.trace), " ");
}

struct stub_session {
	struct session s;
	int n;
};

static size_t stub_in_max(const struct conf *c)
{
	return 4096;
}

static void stub_start(struct session *s)
{
	trace("start");
	if (H.start < 16)
		snprintf(H.started[H.start], sizeof(H.started[0]), "%s", s->id);
	H.start++;
	if (H.deadline_in_start > 0)
		session_set_deadline(s, H.deadline_in_start);
	if (H.close_in_start)
		session_close(s, RESULT_ERROR);
}

static void stub_greet(struct session *s)
{
	H.greet++;
	trace("greet");
	session_line(s, "HELLO");
	conn_read_start(s->conn);
}

static void stub_identified(struct session *s, bool implicit)
{
	H.identified++;
	H.implicit += implicit;
	trace(implicit ? "identified(implicit)" : "identified");
}

static void stub_restarted(struct session *s)
{
	H.restarted++;
	trace("restarted");
	conn_read_start(s->conn);
}

/* Lines: ECHO x, INFO, STARTTLS, QUIT, ERR; anything else is "WHAT". */
static void stub_input(struct session *s)
{
	size_t n;
	H.input++;
	while (s->state == SESSION_ACTIVE && (n = conn_in_line_end(s->conn)) > 0) {
		char line[256];
		size_t len = n;
		while (len && (conn_in_data(s->conn)[len - 1] == '\n' || conn_in_data(s->conn)[len - 1] == '\r'))
			len--;
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, conn_in_data(s->conn), len);
		line[len] = '\0';
		conn_in_consume(s->conn, n);
		cat(H.lines, sizeof(H.lines), line);
		cat(H.lines, sizeof(H.lines), "|");
		if (strncmp(line, "ECHO ", 5) == 0) {
			session_line(s, "%s", line + 5);
		} else if (strcmp(line, "INFO") == 0) {
			session_line(s, "TLS %s", session_tls(s) ? "yes" : "no");
		} else if (strcmp(line, "STARTTLS") == 0) {
			session_line(s, "GO");
			if (H.deadline_at_starttls > 0)
				session_set_deadline(s, H.deadline_at_starttls);
			session_starttls(s);
		} else if (strcmp(line, "QUIT") == 0) {
			session_line(s, "BYE");
			session_close(s, RESULT_QUIT);
		} else if (strcmp(line, "ERR") == 0) {
			if (session_error(s)) {
				session_line(s, "TOO MANY");
				session_close(s, RESULT_TOO_MANY_ERRORS);
			} else {
				session_line(s, "ERROR");
			}
		} else {
			session_line(s, "WHAT");
		}
	}
}

static bool stub_eof(struct session *s)
{
	H.eof++;
	trace("eof");
	return false;
}

static void stub_timeout(struct session *s)
{
	H.timeout++;
	trace("timeout");
	session_close(s, RESULT_TIMEOUT);
}

static void stub_deadline(struct session *s)
{
	H.deadline++;
	trace("deadline");
	if (H.last_words)
		session_line(s, "BYE");
	session_close(s, RESULT_TIMEOUT);
}

static void stub_closing(struct session *s)
{
	H.closing++;
	trace("closing");
}

static enum session_result stub_result(struct session *s, enum session_result r)
{
	H.result = r;
	return r;
}

static void stub_free(struct session *s)
{
	trace("free");
	if (H.free < 16)
		snprintf(H.freed[H.free], sizeof(H.freed[0]), "%s", s->id);
	H.free++;
}

static const struct session_ops stub_ops = {
	.name = "stub",
	.size = sizeof(struct stub_session),
	.in_max = stub_in_max,
	.limit_refusal = "BUSY\r\n",
	.internal_error = "INTERNAL\r\n",
	.start = stub_start,
	.greet = stub_greet,
	.identified = stub_identified,
	.restarted = stub_restarted,
	.input = stub_input,
	.eof = stub_eof,
	.timeout = stub_timeout,
	.deadline = stub_deadline,
	.closing = stub_closing,
	.result = stub_result,
	.free = stub_free,
};

/* A bound socket accepting into session_accept() with one listener's
 * section, as daemon.c does. */
struct gate {
	int fd;
	uint16_t port;
	struct listener_watch *w;
	const struct conf_listener *l;
};

static void gate_accept(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local)
{
	struct gate *g = arg;
	session_accept(&srv, &stub_ops, g->l, fd, peer, local, false);
}

static int gate_open(struct gate *g, const char *listener)
{
	struct mg_addr a;
	const char *err = NULL;
	memset(g, 0, sizeof(*g));
	g->fd = -1;
	for (size_t i = 0; i < cconf->nlisteners; i++)
		if (strcmp(cconf->listeners[i].name, listener) == 0)
			g->l = &cconf->listeners[i];
	if (!g->l || addr_from_literal("127.0.0.1", 0, &a) < 0 || (g->fd = listener_bind(&a, false, &err)) < 0)
		return -1;
	g->port = port_of(g->fd);
	g->w = listener_watch_new(g->fd, gate_accept, g);
	return 0;
}

static void gate_close(struct gate *g)
{
	listener_watch_free(&g->w);
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
}

static bool no_sessions(void *arg)
{
	return srv.nsessions == 0;
}

static bool n_freed(void *arg)
{
	return H.free >= *(int *)arg;
}

static bool n_deadlines(void *arg)
{
	return H.deadline >= *(int *)arg;
}

static bool n_started(void *arg)
{
	return H.start >= *(int *)arg;
}

static void hooks_reset(void)
{
	memset(&H, 0, sizeof(H));
	H.result = RESULT_UNCHANGED;
}

/* End of a session test: every session gone (any left over is a failure,
 * then closed so the next test starts clean), the listeners' counts back
 * to zero, each session freed once. */
static void sessions_done(void)
{
	CU_ASSERT(run_until(no_sessions, NULL, 2.0));
	if (srv.nsessions) {
		session_kill_all(&srv);
		run_until(no_sessions, NULL, 2.0);
	}
	CU_ASSERT_EQUAL(srv.nsessions, 0);
	CU_ASSERT_PTR_NULL(srv.sessions);
	CU_ASSERT_EQUAL(H.free, H.start);
	for (size_t i = 0; i < cconf->nlisteners; i++)
		CU_ASSERT_EQUAL(srv.ls[i].active, 0);
	for (int i = 0; i < H.free && i < 16; i++)
		for (int j = i + 1; j < H.free && j < 16; j++)
			CU_ASSERT(strcmp(H.freed[i], H.freed[j]) != 0);
}

static void test_session_plain(void)
{
	int base = count_fds();
	struct gate g;
	hooks_reset();
	CU_ASSERT_FATAL(gate_open(&g, "plain") == 0);
	struct ep *cl = ep_dial(g.port);
	CU_ASSERT_FATAL(cl != NULL);
	CU_ASSERT(wait_text(cl, "HELLO\r\n", 3.0));
	CU_ASSERT_EQUAL(srv.nsessions, 1);
	ep_send(cl, "ECHO one\r\nECHO two\r\n");
	CU_ASSERT(wait_text(cl, "two\r\n", 3.0));
	ep_send(cl, "INFO\r\nQUIT\r\n");
	CU_ASSERT(wait_end(cl, 3.0));
	CU_ASSERT_STRING_EQUAL(ep_text(cl), "HELLO\r\none\r\ntwo\r\nTLS no\r\nBYE\r\n");
	CU_ASSERT_EQUAL(cl->eofs, 1);
	CU_ASSERT_EQUAL(cl->errors, 0);
	CU_ASSERT_STRING_EQUAL(H.lines, "ECHO one|ECHO two|INFO|QUIT|");
	CU_ASSERT_STRING_EQUAL(H.trace, "start greet closing free ");
	CU_ASSERT_EQUAL(H.result, RESULT_QUIT);
	CU_ASSERT_EQUAL(H.identified, 0);
	ep_free(&cl);
	gate_close(&g);
	sessions_done();
	check_fds(base);
}

static void test_session_implicit_tls(void)
{
	int base = count_fds();
	struct gate g;
	hooks_reset();
	CU_ASSERT_FATAL(gate_open(&g, "implicit") == 0);
	struct ep *cl = ep_dial(g.port);
	CU_ASSERT_FATAL(cl != NULL);
	ep_start_tls_client(cl, tcli_good);
	CU_ASSERT(wait_text(cl, "HELLO\r\n", 5.0));
	CU_ASSERT_EQUAL(cl->handshakes, 1);
	/* The identity is known before the greeting. */
	CU_ASSERT_STRING_EQUAL(H.trace, "start identified(implicit) greet ");
	CU_ASSERT_EQUAL(H.implicit, 1);
	ep_send(cl, "INFO\r\nECHO secret\r\nQUIT\r\n");
	CU_ASSERT(wait_end(cl, 3.0));
	CU_ASSERT_STRING_EQUAL(ep_text(cl), "HELLO\r\nTLS yes\r\nsecret\r\nBYE\r\n");
	/* The server's close_notify: a clean end. */
	CU_ASSERT_EQUAL(cl->eofs, 1);
	CU_ASSERT_EQUAL(cl->errors, 0);
	CU_ASSERT_EQUAL(H.restarted, 0);
	CU_ASSERT_EQUAL(H.result, RESULT_QUIT);
	ep_free(&cl);
	gate_close(&g);
	sessions_done();
	check_fds(base);
}

static void test_session_starttls(void)
{
	int base = count_fds();
	struct gate g;
	hooks_reset();
	CU_ASSERT_FATAL(gate_open(&g, "starttls") == 0);
	struct ep *cl = ep_dial(g.port);
	CU_ASSERT_FATAL(cl != NULL);
	CU_ASSERT(wait_text(cl, "HELLO\r\n", 3.0));
	/* A command pipelined behind STARTTLS, in the same packet: it must
	 * never be executed (CVE-2011-0411 class). */
	ep_send(cl, "INFO\r\nSTARTTLS\r\nECHO injected\r\n");
	CU_ASSERT(wait_text(cl, "GO\r\n", 3.0));
	run_for(0.02);
	CU_ASSERT_STRING_EQUAL(ep_text(cl), "HELLO\r\nTLS no\r\nGO\r\n");
	CU_ASSERT_EQUAL(H.restarted, 0);
	ep_start_tls_client(cl, tcli_good);
	CU_ASSERT(run_until(ep_handshaken, cl, 5.0));
	CU_ASSERT_EQUAL(cl->handshakes, 1);
	ep_send(cl, "INFO\r\nECHO x\r\nQUIT\r\n");
	CU_ASSERT(wait_end(cl, 3.0));
	CU_ASSERT_STRING_EQUAL(ep_text(cl), "HELLO\r\nTLS no\r\nGO\r\nTLS yes\r\nx\r\nBYE\r\n");
	CU_ASSERT_EQUAL(cl->eofs, 1);
	CU_ASSERT_EQUAL(cl->errors, 0);
	CU_ASSERT_STRING_EQUAL(H.lines, "INFO|STARTTLS|INFO|ECHO x|QUIT|");
	CU_ASSERT_PTR_NULL(strstr(H.lines, "injected"));
	CU_ASSERT_STRING_EQUAL(H.trace, "start greet identified restarted closing free ");
	CU_ASSERT_EQUAL(H.implicit, 0);
	CU_ASSERT_EQUAL(H.restarted, 1);
	ep_free(&cl);
	gate_close(&g);
	sessions_done();
	check_fds(base);
}

static void test_session_error_budget(void)
{
	int base = count_fds();
	struct gate g;
	hooks_reset();
	CU_ASSERT_FATAL(gate_open(&g, "plain") == 0);
	CU_ASSERT_EQUAL_FATAL(cconf->max_errors, 3);
	struct ep *cl = ep_dial(g.port);
	CU_ASSERT_FATAL(cl != NULL);
	CU_ASSERT(wait_text(cl, "HELLO\r\n", 3.0));
	ep_send(cl, "ERR\r\n");
	CU_ASSERT(wait_text(cl, "ERROR\r\n", 3.0));
	/* The rest pipelined: the third error spends the budget, and what
	 * follows it is never executed. */
	ep_send(cl, "ERR\r\nERR\r\nECHO after\r\n");
	CU_ASSERT(wait_end(cl, 3.0));
	CU_ASSERT_STRING_EQUAL(ep_text(cl), "HELLO\r\nERROR\r\nERROR\r\nTOO MANY\r\n");
	CU_ASSERT_EQUAL(cl->eofs, 1);
	CU_ASSERT_EQUAL(cl->errors, 0);
	CU_ASSERT_STRING_EQUAL(H.lines, "ERR|ERR|ERR|");
	CU_ASSERT_EQUAL(H.closing, 1);
	CU_ASSERT_EQUAL(H.result, RESULT_TOO_MANY_ERRORS);
	ep_free(&cl);
	gate_close(&g);
	sessions_done();
	check_fds(base);
}

/* Waits (at most max) until fd has an EOF; returns the bytes read before
 * it, or -1 on an error or time-out. */
static long raw_read_to_eof(int fd, double max)
{
	char buf[512];
	long total = 0;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	for (;;) {
		if (poll(&pfd, 1, (int)(max * 1000)) <= 0)
			return -1;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			return total;
		if (n < 0)
			return errno == EAGAIN ? total : -1;
		total += n;
	}
}

static void test_session_closed_during_handshake(void)
{
	int base = count_fds();
	struct gate g;
	int one = 1;

	/* Implicit TLS: the client starts a ClientHello and stalls; the
	 * protocol's deadline closes the session in the middle. */
	hooks_reset();
	H.deadline_in_start = 0.1;
	CU_ASSERT_FATAL(gate_open(&g, "implicit") == 0);
	int fd = connect_to(g.port, 0);
	CU_ASSERT_FATAL(fd >= 0);
	static const unsigned char partial[] = { 0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00 };
	CU_ASSERT(send(fd, partial, sizeof(partial), MSG_NOSIGNAL) == (ssize_t)sizeof(partial));
	CU_ASSERT(run_until(n_freed, &one, 3.0));
	CU_ASSERT_STRING_EQUAL(H.trace, "start deadline closing free ");
	CU_ASSERT_EQUAL(H.greet, 0);
	CU_ASSERT_EQUAL(H.identified, 0);
	CU_ASSERT_EQUAL(H.result, RESULT_TIMEOUT);
	CU_ASSERT_EQUAL(raw_read_to_eof(fd, 2.0), 0);	/* nothing, then EOF */
	close(fd);
	run_for(0.05);
	CU_ASSERT_EQUAL(H.free, 1);
	gate_close(&g);
	sessions_done();

	/* Implicit TLS again, but the protocol queued last words when it
	 * closed: the handshake goes on to deliver them and finishes after
	 * the close began - the session stays closed all the same. */
	hooks_reset();
	H.deadline_in_start = 0.1;
	H.last_words = true;
	CU_ASSERT_FATAL(gate_open(&g, "implicit") == 0);
	struct ep *cl = ep_dial(g.port);
	CU_ASSERT_FATAL(cl != NULL);
	CU_ASSERT(run_until(n_deadlines, &one, 3.0));
	CU_ASSERT_EQUAL(H.free, 0);	/* the last words wait for the handshake */
	ep_start_tls_client(cl, tcli_good);
	CU_ASSERT(wait_end(cl, 3.0));
	CU_ASSERT_EQUAL(cl->handshakes, 1);
	CU_ASSERT_STRING_EQUAL(ep_text(cl), "BYE\r\n");
	CU_ASSERT_EQUAL(cl->eofs, 1);
	CU_ASSERT(run_until(n_freed, &one, 1.0));
	CU_ASSERT_STRING_EQUAL(H.trace, "start deadline closing free ");
	CU_ASSERT_EQUAL(H.greet + H.identified, 0);
	ep_free(&cl);
	gate_close(&g);
	sessions_done();

	/* STARTTLS: the deadline fires while the server waits for the
	 * client's handshake; the TLS layer is never restarted. */
	hooks_reset();
	H.deadline_at_starttls = 0.1;
	CU_ASSERT_FATAL(gate_open(&g, "starttls") == 0);
	cl = ep_dial(g.port);
	CU_ASSERT_FATAL(cl != NULL);
	CU_ASSERT(wait_text(cl, "HELLO\r\n", 3.0));
	ep_send(cl, "STARTTLS\r\n");
	CU_ASSERT(wait_end(cl, 3.0));
	CU_ASSERT_STRING_EQUAL(ep_text(cl), "HELLO\r\nGO\r\n");
	CU_ASSERT_EQUAL(cl->eofs, 1);
	CU_ASSERT(run_until(n_freed, &one, 1.0));
	CU_ASSERT_STRING_EQUAL(H.trace, "start greet deadline closing free ");
	CU_ASSERT_EQUAL(H.identified + H.restarted, 0);
	ep_free(&cl);
	gate_close(&g);
	sessions_done();
	check_fds(base);
}

/* A protocol that ends the session from its start hook: CLOSING is
 * final, so the session is never greeted (nor handshaken) and is freed
 * at once. */
static void test_session_closed_in_start(void)
{
	static const char *const listeners[] = { "plain", "implicit" };
	int base = count_fds();
	int one = 1;
	for (size_t i = 0; i < 2; i++) {
		struct gate g;
		hooks_reset();
		H.close_in_start = true;
		CU_ASSERT_FATAL(gate_open(&g, listeners[i]) == 0);
		struct ep *cl = ep_dial(g.port);
		CU_ASSERT_FATAL(cl != NULL);
		CU_ASSERT(run_until(n_freed, &one, 1.0));
		CU_ASSERT(wait_end(cl, 1.0));
		CU_ASSERT_EQUAL(cl->in_len, 0);
		CU_ASSERT_EQUAL(H.greet, 0);
		CU_ASSERT_EQUAL(H.identified, 0);
		CU_ASSERT_EQUAL(H.free, 1);
		CU_ASSERT_EQUAL(H.result, RESULT_ERROR);
		if (H.greet || H.free != 1)
			fprintf(stderr, "\n  listener %s: hooks: %s\n", listeners[i], H.trace);
		ep_free(&cl);
		gate_close(&g);
		sessions_done();
	}
	check_fds(base);
}

static bool all_started_greeted(void *arg)
{
	struct ep **cl = arg;
	for (int i = 0; i < 4; i++)
		if (!strstr(ep_text(cl[i]), "HELLO\r\n"))
			return false;
	return true;
}

/* Four sessions ending four ways: each is freed exactly once and the
 * server's list empties. */
static void test_session_free_once(void)
{
	int base = count_fds();
	struct gate plain, implicit, starttls;
	int four = 4;
	hooks_reset();
	CU_ASSERT_FATAL(gate_open(&plain, "plain") == 0);
	CU_ASSERT_FATAL(gate_open(&implicit, "implicit") == 0);
	CU_ASSERT_FATAL(gate_open(&starttls, "starttls") == 0);
	struct ep *cl[4] = { ep_dial(plain.port), ep_dial(plain.port), ep_dial(implicit.port),
			     ep_dial(starttls.port) };
	for (int i = 0; i < 4; i++)
		CU_ASSERT_FATAL(cl[i] != NULL);
	ep_start_tls_client(cl[2], tcli_good);
	CU_ASSERT(run_until(all_started_greeted, cl, 5.0));
	CU_ASSERT_EQUAL(H.start, 4);
	CU_ASSERT_EQUAL(srv.nsessions, 4);

	ep_send(cl[0], "QUIT\r\n");		/* the protocol closes */
	ep_send(cl[1], "ECHO half\r\n");	/* the client half-closes */
	conn_shutdown_write(cl[1]->c);
	conn_free(&cl[2]->c);			/* close_notify */
	conn_free(&cl[3]->c);			/* a plain close before STARTTLS */
	CU_ASSERT(run_until(n_freed, &four, 3.0));
	CU_ASSERT(wait_end(cl[0], 2.0));
	CU_ASSERT(wait_end(cl[1], 2.0));
	CU_ASSERT_PTR_NOT_NULL(strstr(ep_text(cl[0]), "BYE\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(ep_text(cl[1]), "half\r\n"));
	CU_ASSERT_EQUAL(cl[1]->errors, 0);
	run_for(0.05);
	CU_ASSERT_EQUAL(H.free, 4);
	CU_ASSERT_EQUAL(H.closing, 1);
	CU_ASSERT_EQUAL(H.eof, 3);
	CU_ASSERT_EQUAL(srv.nsessions, 0);
	/* The same sessions that started. */
	for (int i = 0; i < 4; i++) {
		int found = 0;
		for (int j = 0; j < 4; j++)
			found += strcmp(H.started[i], H.freed[j]) == 0;
		CU_ASSERT_EQUAL(found, 1);
	}
	for (int i = 0; i < 4; i++)
		ep_free(&cl[i]);
	gate_close(&plain);
	gate_close(&implicit);
	gate_close(&starttls);
	sessions_done();
	check_fds(base);
}

/* One listener whose limit is 1: the second client is refused, with the
 * refusal line on a plain listener and silently with implicit TLS; once
 * the first has gone, a new client is admitted again. */
static void limit_case(const char *listener, bool tls)
{
	struct gate g;
	int n;
	hooks_reset();
	CU_ASSERT_FATAL(gate_open(&g, listener) == 0);
	struct ep *first = ep_dial(g.port);
	CU_ASSERT_FATAL(first != NULL);
	if (tls)
		ep_start_tls_client(first, tcli_good);
	CU_ASSERT(wait_text(first, "HELLO\r\n", 5.0));

	struct ep *second = ep_dial(g.port);
	CU_ASSERT_FATAL(second != NULL);
	CU_ASSERT(wait_end(second, 3.0));
	CU_ASSERT_STRING_EQUAL(ep_text(second), tls ? "" : "BUSY\r\n");
	CU_ASSERT_EQUAL(second->eofs, 1);
	CU_ASSERT_EQUAL(H.start, 1);	/* no session for it */
	CU_ASSERT_EQUAL(srv.nsessions, 1);
	CU_ASSERT_EQUAL(srv.ls[g.l->index].active, 1);

	ep_send(first, "QUIT\r\n");
	CU_ASSERT(wait_end(first, 3.0));
	n = 1;
	CU_ASSERT(run_until(n_freed, &n, 2.0));
	CU_ASSERT_EQUAL(srv.ls[g.l->index].active, 0);

	struct ep *third = ep_dial(g.port);
	CU_ASSERT_FATAL(third != NULL);
	if (tls)
		ep_start_tls_client(third, tcli_good);
	CU_ASSERT(wait_text(third, "HELLO\r\n", 5.0));
	n = 2;
	CU_ASSERT(run_until(n_started, &n, 1.0));
	ep_send(third, "QUIT\r\n");
	CU_ASSERT(wait_end(third, 3.0));
	ep_free(&first);
	ep_free(&second);
	ep_free(&third);
	gate_close(&g);
	sessions_done();
}

static void test_session_limits(void)
{
	int base = count_fds();
	limit_case("maxconn", false);
	limit_case("perip", false);
	limit_case("implicit-maxconn", true);
	check_fds(base);
}

/* ==== 3. upstream failover ==== */

/* A fake upstream server: a listening socket that greets whoever it
 * accepts (or, not accepting, lets connections wait in its backlog). */
struct fake {
	int fd;
	uint16_t port;
	struct listener_watch *w;
	const char *greeting;	/* NULL: silent */
	int accepts;
	struct ep *peer[8];
};

static void fake_accept(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local)
{
	struct fake *f = arg;
	if (f->accepts >= 8) {
		close(fd);
		return;
	}
	struct ep *e = ep_new(fd);
	f->peer[f->accepts++] = e;
	conn_read_start(e->c);
	if (f->greeting)
		ep_send(e, f->greeting);
}

static int fake_open(struct fake *f, const char *greeting, bool accepting)
{
	struct mg_addr a;
	const char *err = NULL;
	memset(f, 0, sizeof(*f));
	f->greeting = greeting;
	if (addr_from_literal("127.0.0.1", 0, &a) < 0 || (f->fd = listener_bind(&a, false, &err)) < 0)
		return -1;
	f->port = port_of(f->fd);
	if (accepting)
		f->w = listener_watch_new(f->fd, fake_accept, f);
	return 0;
}

static void fake_close(struct fake *f)
{
	listener_watch_free(&f->w);
	for (int i = 0; i < f->accepts; i++)
		ep_free(&f->peer[i]);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/* A port nobody listens on (bound, then closed). */
static uint16_t closed_port(void)
{
	struct mg_addr a;
	if (addr_from_literal("127.0.0.1", 0, &a) < 0)
		return 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	uint16_t port = bind(fd, &a.u.sa, a.len) == 0 ? port_of(fd) : 0;
	close(fd);
	return port;
}

/* An upstream section listing 127.0.0.1 at ports, 1 s timeouts. */
static struct conf *upstream_conf(const uint16_t *ports, size_t n, const char *extra)
{
	char text[4096], addr[64];
	snprintf(text, sizeof(text), "hostname = \"mx.example.org\"\nupstream \"up\" {\n  address = {");
	for (size_t i = 0; i < n; i++) {
		snprintf(addr, sizeof(addr), "%s\"127.0.0.1:%u\"", i ? ", " : " ", ports[i]);
		cat(text, sizeof(text), addr);
	}
	cat(text, sizeof(text), " }\n  connect_timeout = 1\n  timeout_reply = 1\n");
	cat(text, sizeof(text), extra);
	cat(text, sizeof(text), "}\nlistener \"plain\" {\n  address = \"127.0.0.1:10001\"\n"
				"  tls_mode = \"none\"\n}\n");
	return load_conf("upstream.conf", text);
}

/* The upstream's owner: records every event; a greeting "220 ..." makes
 * the upstream ready, any other one is a set-up failure. */
struct owner {
	struct upstream *up;
	int n;
	struct {
		enum upstream_event ev;
		int index;
		double at;
		char data[128];
	} ev[32];
	int connected, responses, failed, lost, timeouts;
	char why[600];
};

static void owner_cb(void *arg, struct upstream *up, enum upstream_event ev, const char *data,
		     size_t len)
{
	struct owner *o = arg;
	if (o->n < 32) {
		o->ev[o->n].ev = ev;
		o->ev[o->n].index = upstream_index(up);
		o->ev[o->n].at = conn_now();
		snprintf(o->ev[o->n].data, sizeof(o->ev[0].data), "%.*s", (int)(data ? len : 0),
			 data ? data : "");
		o->n++;
	}
	switch (ev) {
	case UPSTREAM_CONNECTED:
		o->connected++;
		return;
	case UPSTREAM_RESPONSE:
		o->responses++;
		if (upstream_is_ready(up))
			return;
		if (len >= 4 && memcmp(data, "220 ", 4) == 0)
			upstream_ready(up);
		else
			upstream_failover(up, "unexpected greeting");
		return;
	case UPSTREAM_FAILED:
		o->failed++;
		snprintf(o->why, sizeof(o->why), "%.*s", (int)len, data);
		return;
	case UPSTREAM_LOST:
		o->lost++;
		snprintf(o->why, sizeof(o->why), "%.*s", (int)len, data);
		return;
	case UPSTREAM_TIMEOUT:
		o->timeouts++;
		return;
	case UPSTREAM_TLS_READY:
	case UPSTREAM_DRAINED:
		return;
	}
}

/* Responses are lines (at most 1023 octets). */
static long line_frame(const char *buf, size_t len)
{
	const char *lf = memchr(buf, '\n', len);
	if (lf)
		return (long)(lf - buf + 1);
	return len >= 1024 ? -1 : 0;
}

static void owner_open(struct owner *o, const struct conf *c, const void *pp, size_t pp_len)
{
	struct upstream_params p = {
		.cu = &c->upstreams[0],
		.tls = NULL,
		.only_index = -1,
		.pp = pp,
		.pp_len = pp_len,
		.frame = line_frame,
		.in_max = 1024,
		.frame_error = "malformed line",
		.log_name = "test upstream",
		.who = "T",
	};
	memset(o, 0, sizeof(*o));
	o->up = upstream_open(&p, owner_cb, o);
}

static bool owner_settled(void *arg)
{
	struct owner *o = arg;
	return (o->up && upstream_is_ready(o->up)) || o->failed || o->lost || o->timeouts;
}

static bool owner_ended(void *arg)
{
	struct owner *o = arg;
	return o->failed || o->lost || o->timeouts;
}

static bool owner_responses(void *arg)
{
	struct owner *o = arg;
	return o->responses >= 3 || o->failed || o->lost;
}

static bool peer_got_ping(void *arg)
{
	struct fake *f = arg;
	return f->accepts && strstr(ep_text(f->peer[0]), "PING\r\n");
}

static void check_event(const struct owner *o, int i, enum upstream_event ev, int index, const char *data)
{
	CU_ASSERT(i < o->n);
	if (i >= o->n)
		return;
	CU_ASSERT_EQUAL(o->ev[i].ev, ev);
	if (index >= 0)
		CU_ASSERT_EQUAL(o->ev[i].index, index);
	if (data)
		CU_ASSERT_STRING_EQUAL(o->ev[i].data, data);
}

static void test_upstream_failover(void)
{
	int base = count_fds();
	struct fake stall, bad, good;
	struct owner o;
	char want[64];
	CU_ASSERT_FATAL(fake_open(&stall, NULL, false) == 0);
	CU_ASSERT_FATAL(fake_open(&bad, "554 not today\r\n", true) == 0);
	CU_ASSERT_FATAL(fake_open(&good, "220 welcome\r\n", true) == 0);
	uint16_t ports[4] = { closed_port(), stall.port, bad.port, good.port };
	struct conf *c = upstream_conf(ports, 4, "");
	CU_ASSERT_FATAL(c != NULL);

	owner_open(&o, c, NULL, 0);
	CU_ASSERT(run_until(owner_settled, &o, 6.0));
	CU_ASSERT(upstream_is_ready(o.up));
	/* The refused address is passed over silently; the silent one is
	 * connected, then given up after timeout_reply; the bad greeting is
	 * read, then failed over by the dialogue; the good one is used. */
	CU_ASSERT_EQUAL(o.n, 5);
	check_event(&o, 0, UPSTREAM_CONNECTED, 1, NULL);
	check_event(&o, 1, UPSTREAM_CONNECTED, 2, NULL);
	check_event(&o, 2, UPSTREAM_RESPONSE, 2, "554 not today\r\n");
	check_event(&o, 3, UPSTREAM_CONNECTED, 3, NULL);
	check_event(&o, 4, UPSTREAM_RESPONSE, 3, "220 welcome\r\n");
	if (o.n >= 2)
		CU_ASSERT(o.ev[1].at - o.ev[0].at >= 0.95);	/* the stall's timeout_reply */
	CU_ASSERT_EQUAL(upstream_index(o.up), 3);
	snprintf(want, sizeof(want), "127.0.0.1:%u", good.port);
	CU_ASSERT_STRING_EQUAL(upstream_addr(o.up), want);
	CU_ASSERT_EQUAL(o.failed + o.lost + o.timeouts, 0);
	CU_ASSERT_EQUAL(bad.accepts, 1);
	CU_ASSERT_EQUAL(good.accepts, 1);

	/* Ready: a command and its response. */
	upstream_send(o.up, "PING\r\n", 6);
	CU_ASSERT(run_until(peer_got_ping, &good, 2.0));
	if (good.accepts)
		ep_send(good.peer[0], "250 pong\r\n");
	CU_ASSERT(run_until(owner_responses, &o, 2.0));
	check_event(&o, 5, UPSTREAM_RESPONSE, 3, "250 pong\r\n");
	CU_ASSERT_EQUAL(o.n, 6);

	upstream_close(&o.up);
	CU_ASSERT_PTR_NULL(o.up);
	fake_close(&stall);
	fake_close(&bad);
	fake_close(&good);
	conf_free(&c);
	check_fds(base);
}

static void test_upstream_all_bad(void)
{
	int base = count_fds();
	struct fake bad;
	struct owner o;
	char want[64];
	CU_ASSERT_FATAL(fake_open(&bad, "421 busy\r\n", true) == 0);
	uint16_t ports[3] = { closed_port(), bad.port, closed_port() };
	struct conf *c = upstream_conf(ports, 3, "");
	CU_ASSERT_FATAL(c != NULL);

	owner_open(&o, c, NULL, 0);
	CU_ASSERT(run_until(owner_settled, &o, 5.0));
	run_for(0.1);
	CU_ASSERT_EQUAL(o.failed, 1);
	CU_ASSERT_EQUAL(o.n, 3);
	check_event(&o, 0, UPSTREAM_CONNECTED, 1, NULL);
	check_event(&o, 1, UPSTREAM_RESPONSE, 1, "421 busy\r\n");
	check_event(&o, 2, UPSTREAM_FAILED, -1, NULL);
	/* The reason: what the last address did. */
	snprintf(want, sizeof(want), "127.0.0.1:%u", ports[2]);
	CU_ASSERT_PTR_NOT_NULL(strstr(o.why, want));
	CU_ASSERT_PTR_NOT_NULL(strstr(o.why, strerror(ECONNREFUSED)));
	CU_ASSERT(!upstream_is_ready(o.up));
	upstream_close(&o.up);
	fake_close(&bad);
	conf_free(&c);
	check_fds(base);
}

/* After upstream_ready(), the peer closing or sending garbage is a loss,
 * reported once and never retried at the next address. */
static void test_upstream_lost_after_ready(void)
{
	int base = count_fds();
	for (int garbage = 0; garbage < 2; garbage++) {
		struct fake first, second;
		struct owner o;
		CU_ASSERT_FATAL(fake_open(&first, "220 first\r\n", true) == 0);
		CU_ASSERT_FATAL(fake_open(&second, "220 second\r\n", true) == 0);
		uint16_t ports[2] = { first.port, second.port };
		struct conf *c = upstream_conf(ports, 2, "");
		CU_ASSERT_FATAL(c != NULL);
		owner_open(&o, c, NULL, 0);
		CU_ASSERT(run_until(owner_settled, &o, 3.0));
		CU_ASSERT(upstream_is_ready(o.up));
		CU_ASSERT_EQUAL(upstream_index(o.up), 0);
		if (first.accepts && garbage) {
			char junk[1100];
			memset(junk, 'z', sizeof(junk));	/* no line end within the bound */
			conn_write(first.peer[0]->c, junk, sizeof(junk));
		} else if (first.accepts) {
			ep_free(&first.peer[0]);
		}
		CU_ASSERT(run_until(owner_ended, &o, 3.0));
		run_for(0.2);
		CU_ASSERT_EQUAL(o.lost, 1);
		CU_ASSERT_STRING_EQUAL(o.why, garbage ? "malformed line" : "connection closed");
		CU_ASSERT_EQUAL(o.connected, 1);
		CU_ASSERT_EQUAL(o.failed + o.timeouts, 0);
		CU_ASSERT_EQUAL(second.accepts, 0);
		CU_ASSERT_EQUAL(upstream_index(o.up), 0);
		upstream_close(&o.up);
		fake_close(&first);
		fake_close(&second);
		conf_free(&c);
	}
	check_fds(base);
}

/* After upstream_ready(), no response within timeout_reply is
 * UPSTREAM_TIMEOUT for the owner to handle, not a failover. */
static void test_upstream_timeout_after_ready(void)
{
	int base = count_fds();
	struct fake first, second;
	struct owner o;
	CU_ASSERT_FATAL(fake_open(&first, "220 first\r\n", true) == 0);
	CU_ASSERT_FATAL(fake_open(&second, "220 second\r\n", true) == 0);
	uint16_t ports[2] = { first.port, second.port };
	struct conf *c = upstream_conf(ports, 2, "");
	CU_ASSERT_FATAL(c != NULL);
	owner_open(&o, c, NULL, 0);
	CU_ASSERT(run_until(owner_settled, &o, 3.0));
	CU_ASSERT_FATAL(upstream_is_ready(o.up));
	double sent = conn_now();
	upstream_send(o.up, "PING\r\n", 6);	/* never answered */
	CU_ASSERT(run_until(owner_ended, &o, 3.0));
	CU_ASSERT_EQUAL(o.timeouts, 1);
	if (o.n)
		CU_ASSERT(o.ev[o.n - 1].at - sent >= 0.95);
	CU_ASSERT_EQUAL(o.lost + o.failed, 0);
	CU_ASSERT_EQUAL(second.accepts, 0);
	upstream_close(&o.up);
	fake_close(&first);
	fake_close(&second);
	conf_free(&c);
	check_fds(base);
}

static void test_upstream_proxy_fail_closed(void)
{
	int base = count_fds();
	struct fake f;
	struct owner o;
	static const char hdr[] = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n";
	CU_ASSERT_FATAL(fake_open(&f, "220 hi\r\n", true) == 0);
	uint16_t port = f.port;
	struct conf *c = upstream_conf(&port, 1, "  proxy_protocol = \"v1\"\n");
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT_EQUAL(c->upstreams[0].proxy_protocol, PROXY_OUT_V1);

	/* No header to send: failed, and the upstream never connected to. */
	owner_open(&o, c, NULL, 0);
	CU_ASSERT(run_until(owner_settled, &o, 2.0));
	run_for(0.1);
	CU_ASSERT_EQUAL(o.failed, 1);
	CU_ASSERT_EQUAL(o.n, 1);
	CU_ASSERT_EQUAL(o.connected, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o.why, "PROXY"));
	CU_ASSERT_EQUAL(f.accepts, 0);
	upstream_close(&o.up);

	/* With one, it goes first, before anything else. */
	owner_open(&o, c, hdr, strlen(hdr));
	CU_ASSERT(run_until(owner_settled, &o, 2.0));
	CU_ASSERT(o.up && upstream_is_ready(o.up));
	upstream_send(o.up, "PING\r\n", 6);
	CU_ASSERT(run_until(peer_got_ping, &f, 2.0));
	if (f.accepts) {
		CU_ASSERT_EQUAL(f.accepts, 1);
		CU_ASSERT_STRING_EQUAL(ep_text(f.peer[0]), "PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\nPING\r\n");
	}
	upstream_close(&o.up);
	fake_close(&f);
	conf_free(&c);
	check_fds(base);
}

void register_tests(void)
{
	CU_pSuite c = CU_add_suite("conn", suite_up, suite_down);
	CU_ADD(c, test_conn_handshake);
	CU_ADD(c, test_conn_roundtrip);
	CU_ADD(c, test_conn_backpressure);
	CU_ADD(c, test_conn_close_notify);
	CU_ADD(c, test_conn_lingering_close_tls);
	CU_ADD(c, test_conn_lingering_close_plain);
	CU_ADD(c, test_conn_handshake_failure);

	CU_pSuite s = CU_add_suite("session", suite_up, suite_down);
	CU_ADD(s, test_session_plain);
	CU_ADD(s, test_session_implicit_tls);
	CU_ADD(s, test_session_starttls);
	CU_ADD(s, test_session_error_budget);
	CU_ADD(s, test_session_closed_during_handshake);
	CU_ADD(s, test_session_closed_in_start);
	CU_ADD(s, test_session_free_once);
	CU_ADD(s, test_session_limits);

	CU_pSuite u = CU_add_suite("upstream", suite_up, suite_down);
	CU_ADD(u, test_upstream_failover);
	CU_ADD(u, test_upstream_all_bad);
	CU_ADD(u, test_upstream_lost_after_ready);
	CU_ADD(u, test_upstream_timeout_after_ready);
	CU_ADD(u, test_upstream_proxy_fail_closed);
}

CU_MAIN
