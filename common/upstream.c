/* upstream: see upstream.h. One state with one setter (up_enter); the
 * connection's events arrive in conn_event(), the dialer's in dialed().
 * Every report to the owner is the last statement of its path: the owner
 * may free us there. */
#include "upstream.h"
#include "certlog.h"
#include "conn.h"
#include "dial.h"
#include "log.h"
#include "metrics.h"
#include "timer.h"
#include "tls.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>

#define UPSTREAM_MAGIC 0x55505354u
#define QUIT_GRACE 10.0		/* seconds for a QUIT to go out */

enum up_state {
	UP_DIAL,		/* connecting (dial.c) */
	UP_TLS_IMPLICIT,	/* handshake right after connect */
	UP_SETUP,		/* the protocol's dialogue */
	UP_TLS_STARTTLS,	/* handshake after the protocol's STARTTLS */
	UP_READY,		/* set-up done: commands and responses */
	UP_QUITTING,		/* detached; closes once the last line is out */
};

static const char *const state_names[] = { "dial", "tls-implicit", "setup", "tls-starttls", "ready",
					   "quitting" };

struct upstream {
	uint32_t magic;
	enum up_state st;
	struct upstream_params p;
	upstream_cb cb;
	void *owner;
	struct dial *dial;
	struct conn *conn;
	int index;
	struct mg_timer *fail_soon;	/* reports a failure from the loop */
	unsigned char *pp;
	bool sensitive;
};

static void up_enter(struct upstream *up, enum up_state st)
{
	log_debug("%s %s%s%s: connection %s -> %s", up->p.log_name, up->p.cu->name,
		  up->p.who[0] ? " for " : "", up->p.who, state_names[up->st], state_names[st]);
	up->st = st;
}

static bool in_setup(const struct upstream *up)
{
	return up->st < UP_READY;
}

static void destroy(struct upstream *up)
{
	dial_free(&up->dial);
	mg_timer_stop(&up->fail_soon);
	conn_free(&up->conn);
	free(up->pp);
	up->magic = 0;
	free(up);
}

static void report(struct upstream *up, enum upstream_event ev, const char *data, size_t len)
{
	up->cb(up->owner, up, ev, data, len);
}

static void report_str(struct upstream *up, enum upstream_event ev, const char *why)
{
	/* mailgate_upstream_failures_total: every address that failed in
	 * set-up (dial.c counts failed connects, upstream_failover() the
	 * rest), and every connection lost or silent once ready. FAILED
	 * sums up the addresses already counted. */
	if (ev == UPSTREAM_LOST || ev == UPSTREAM_TIMEOUT)
		metrics_upstream_failure();
	report(up, ev, why, strlen(why));
}

void upstream_failover(struct upstream *up, const char *why)
{
	log_info("%s %s %s: %s", up->p.log_name, up->p.cu->name, up->p.cu->addrs[up->index].text, why);
	metrics_upstream_failure();
	conn_free(&up->conn);
	up_enter(up, UP_DIAL);
	dial_next(up->dial, why);	/* reports from the loop: dialed() */
}

static void start_tls(struct upstream *up, enum up_state next)
{
	struct tls_session *t = up->p.tls ? tls_session_client(up->p.tls, conn_fd(up->conn),
								 up->p.cu->addrs[up->index].host) : NULL;
	if (!t) {
		upstream_failover(up, "cannot create a TLS session");
		return;
	}
	conn_start_tls(up->conn, t);	/* discards what was queued: response injection */
	conn_set_timeout(up->conn, up->p.cu->timeout_reply);
	up_enter(up, next);
}

void upstream_start_tls(struct upstream *up)
{
	start_tls(up, UP_TLS_STARTTLS);
}

/* A framed response, moved out of the input queue whole (the owner may
 * free us, and the queue with us, while it looks at it). */
static void on_read(struct upstream *up)
{
	long n = up->p.frame(conn_in_data(up->conn), conn_in_len(up->conn));
	if (n == 0 && !conn_in_full(up->conn))
		return;
	if (n <= 0) {	/* malformed, or (cannot happen) beyond the framer's bound */
		if (in_setup(up))
			upstream_failover(up, up->p.frame_error);
		else
			report_str(up, UPSTREAM_LOST, up->p.frame_error);
		return;
	}
	char *copy = xmemdup0(conn_in_data(up->conn), (size_t)n);
	conn_in_consume(up->conn, (size_t)n);
	if (conn_in_len(up->conn))
		conn_kick(up->conn);	/* more responses queued: come back */
	bool wipe = up->sensitive;
	report(up, UPSTREAM_RESPONSE, copy, (size_t)n);
	if (wipe)
		explicit_bzero(copy, (size_t)n);
	free(copy);
}

static bool in_handshake(const struct upstream *up)
{
	return up->st == UP_TLS_IMPLICIT || up->st == UP_TLS_STARTTLS;
}

/* The upstream's certificate: at debug level when it was accepted (and
 * by what: a pin or verify_name), at warning level when it was refused,
 * with what an admin needs to fix either side (certlog.c). */
static void log_cert(struct upstream *up, const char *refused)
{
	struct tls_session *t = conn_tls(up->conn);
	const struct tls_peer *p = t ? tls_peer(t) : NULL;
	enum log_level lvl = refused ? LOG_LVL_WARNING : LOG_LVL_DEBUG;
	if (!p || !log_enabled(lvl))
		return;
	struct logkv kv;
	logkv_begin(&kv, "upstream-cert", 1);
	logkv_str(&kv, "upstream", up->p.cu->name);
	logkv_str(&kv, "address", up->p.cu->addrs[up->index].text);
	if (up->p.who[0])
		logkv_raw(&kv, "session", up->p.who);
	logkv_raw(&kv, "result", refused ? "refused" : "accepted");
	logkv_raw(&kv, "cert", tls_cert_status_name(p->status));
	logkv_raw(&kv, "match", certlog_match_name(p->match));
	if (tls_verify_name(t)[0])
		logkv_str(&kv, "verify_name", tls_verify_name(t));
	certlog_add(&kv, p);
	if (refused)
		logkv_str(&kv, "reason", refused);
	logkv_end(&kv, lvl);
}

static void on_end(struct upstream *up, enum conn_event ev)
{
	char why[300];
	if (ev == CONN_EV_TIMEOUT && !in_setup(up)) {
		report_str(up, UPSTREAM_TIMEOUT, "no response within timeout_reply");
		return;
	}
	if (ev == CONN_EV_ERROR && in_handshake(up))
		log_cert(up, conn_error(up->conn));
	strncpy(why, ev == CONN_EV_EOF ? "connection closed"
		: ev == CONN_EV_TIMEOUT ? (in_handshake(up) ? "TLS handshake timed out" : "timeout")
		: conn_error(up->conn), sizeof(why) - 1);
	why[sizeof(why) - 1] = '\0';
	if (in_setup(up))
		upstream_failover(up, why);
	else
		report_str(up, UPSTREAM_LOST, why);
}

static void conn_event(struct conn *c, enum conn_event ev, void *arg)
{
	struct upstream *up = arg;
	if (up->magic != UPSTREAM_MAGIC)
		abort();
	if (up->st == UP_QUITTING) {
		if (ev == CONN_EV_READ)
			conn_in_clear(c);
		else if (ev != CONN_EV_HANDSHAKE)
			destroy(up);	/* the last line is out, or the peer went away */
		return;
	}
	switch (ev) {
	case CONN_EV_READ:
		on_read(up);
		return;
	case CONN_EV_HANDSHAKE:
		log_cert(up, NULL);
		if (up->st == UP_TLS_IMPLICIT) {
			up_enter(up, UP_SETUP);
			report(up, UPSTREAM_CONNECTED, NULL, 0);	/* the greeting comes next */
		} else {
			up_enter(up, UP_SETUP);
			report(up, UPSTREAM_TLS_READY, NULL, 0);
		}
		return;
	case CONN_EV_DRAINED:
		report(up, UPSTREAM_DRAINED, NULL, 0);
		return;
	case CONN_EV_TIMEOUT:
	case CONN_EV_EOF:
	case CONN_EV_ERROR:
		on_end(up, ev);
		return;
	}
}

static void dialed(void *arg, int fd, int index, const char *err)
{
	struct upstream *up = arg;
	if (fd < 0) {
		char why[600];
		strncpy(why, err, sizeof(why) - 1);	/* err lives in the dialer */
		why[sizeof(why) - 1] = '\0';
		report_str(up, UPSTREAM_FAILED, why);
		return;
	}
	up->index = index;
	up->conn = conn_new_nonblocking(fd, up->p.in_max, conn_event, up);	/* dial.c: SOCK_NONBLOCK */
	conn_set_sensitive(up->conn, up->sensitive);
	conn_read_start(up->conn);
	if (up->p.pp_len)	/* before anything else, TLS included */
		conn_write(up->conn, up->pp, up->p.pp_len);
	conn_set_timeout(up->conn, up->p.cu->timeout_reply);
	if (up->p.cu->tls == TLS_MODE_IMPLICIT) {
		start_tls(up, UP_TLS_IMPLICIT);
		return;
	}
	up_enter(up, UP_SETUP);
	report(up, UPSTREAM_CONNECTED, NULL, 0);
}

static void fail_now(void *arg)
{
	struct upstream *up = arg;
	mg_timer_stop(&up->fail_soon);
	metrics_upstream_failure();	/* no address was even tried */
	report_str(up, UPSTREAM_FAILED, "the PROXY header does not fit (not sent without it)");
}

struct upstream *upstream_open(const struct upstream_params *p, upstream_cb cb, void *owner)
{
	struct upstream *up = xcalloc(1, sizeof(*up));
	up->magic = UPSTREAM_MAGIC;
	up->p = *p;
	up->p.who = p->who ? p->who : "";
	up->p.log_name = p->log_name ? p->log_name : "upstream";
	up->p.frame_error = p->frame_error ? p->frame_error : "malformed response from upstream";
	up->cb = cb;
	up->owner = owner;
	if (p->pp_len) {
		up->pp = xmalloc(p->pp_len);
		memcpy(up->pp, p->pp, p->pp_len);
	}
	up->p.pp = NULL;
	up->st = UP_DIAL;
	if (p->cu->proxy_protocol != PROXY_OUT_OFF && !p->pp_len) {
		/* Fail closed: without its header the upstream would judge
		 * the gateway's address instead of the client's. */
		up->fail_soon = mg_timer_start(0, 0, fail_now, up);
		return up;
	}
	up->dial = p->only_index >= 0 ? dial_start_at(p->cu, p->only_index, dialed, up)
				      : dial_start(p->cu, dialed, up);
	return up;
}

void upstream_send(struct upstream *up, const void *data, size_t len)
{
	conn_write(up->conn, data, len);
	conn_set_timeout(up->conn, up->p.cu->timeout_reply);
}

void upstream_write(struct upstream *up, const void *data, size_t len)
{
	conn_write(up->conn, data, len);
}

void upstream_expect(struct upstream *up, double seconds)
{
	conn_set_timeout(up->conn, seconds);
}

void upstream_ready(struct upstream *up)
{
	dial_free(&up->dial);	/* no more failover */
	up_enter(up, UP_READY);
	conn_set_timeout(up->conn, 0);
}

void upstream_quit(struct upstream **upp, const char *line, size_t len)
{
	struct upstream *up = *upp;
	*upp = NULL;
	if (!up)
		return;
	if (up->st != UP_READY) {
		destroy(up);	/* nothing said yet that needs a goodbye */
		return;
	}
	conn_write(up->conn, line, len);
	up->owner = NULL;
	up_enter(up, UP_QUITTING);
	conn_set_timeout(up->conn, QUIT_GRACE);
	conn_notify_drained(up->conn);
}

void upstream_close(struct upstream **upp)
{
	if (*upp)
		destroy(*upp);
	*upp = NULL;
}

struct conn *upstream_detach(struct upstream **upp)
{
	struct upstream *up = *upp;
	struct conn *c = up->conn;
	up->conn = NULL;
	destroy(up);
	*upp = NULL;
	return c;
}

size_t upstream_out_len(const struct upstream *up)
{
	return up->conn ? conn_out_len(up->conn) : 0;
}

void upstream_notify_drained(struct upstream *up)
{
	conn_notify_drained(up->conn);
}

bool upstream_is_ready(const struct upstream *up)
{
	return up->st == UP_READY;
}

int upstream_index(const struct upstream *up)
{
	return up->index;
}

const char *upstream_addr(const struct upstream *up)
{
	return up->p.cu->addrs[up->index].text;
}

void upstream_set_sensitive(struct upstream *up, bool on)
{
	up->sensitive = on;
	if (up->conn)
		conn_set_sensitive(up->conn, on);
}
