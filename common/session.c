/* session: the life cycle of a client session (see session.h). One
 * connection callback, client_cb(), receives every event of the client
 * connection and routes it by the core state: the handshake and the
 * closing sequence are handled here, everything in ACTIVE goes to the
 * protocol's hooks. session_free() is the one teardown, always the last
 * statement of the callback that calls it. */
#include "session.h"
#include "session_int.h"
#include "session_id.h"
#include "certlog.h"
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "strbuf.h"
#include "timer.h"
#include "tls.h"
#include "xmem.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_MAGIC 0x53455353u
#define CLOSE_GRACE 10.0	/* seconds to flush the last words */
#define HANDSHAKE_MIN_LEFT 0.001	/* a handshake whose time is up still gets its timer */

static const char *const state_names[] = { "handshake", "active", "starttls", "closing" };

void session_trace(const struct session *s, const char *machine, const char *from, const char *to)
{
	log_debug("session %s: %s%s%s -> %s", s->id, machine, machine[0] ? " " : "", from, to);
}

/* The one setter of the core state. */
static void session_enter(struct session *s, enum session_state st)
{
	session_trace(s, "", state_names[s->state], state_names[st]);
	s->state = st;
}

const struct conf *session_conf(const struct session *s)
{
	return s->srv->conf;
}

void session_assert(const struct session *s)
{
	if (s->magic != SESSION_MAGIC)
		abort();
}

bool session_tls(const struct session *s)
{
	return conn_tls_ready(s->conn);
}

bool session_secure(const struct session *s)
{
	return session_tls(s) || s->listener->tls_mode == TLS_MODE_NONE;
}

const struct tls_peer *session_cert(const struct session *s)
{
	return session_tls(s) ? tls_peer(conn_tls(s->conn)) : NULL;
}

const char *session_cipher(const struct session *s)
{
	return session_tls(s) ? tls_cipher_name(conn_tls(s->conn)) : NULL;
}

void session_set_result(struct session *s, enum session_result r)
{
	if (s->state != SESSION_CLOSING && r != RESULT_UNCHANGED)
		s->result = r;
}

void session_write(struct session *s, const void *p, size_t n)
{
	conn_write(s->conn, p, n);
}

void session_vline(struct session *s, const char *fmt, va_list ap)
{
	char line[SESSION_LINE_MAX];
	struct strbuf b;
	sb_init(&b, line, sizeof(line));
	sb_vaddf(&b, fmt, ap);
	sb_add(&b, "\r\n", 2);
	if (!sb_ok(&b)) {	/* sized for every line a protocol builds */
		log_error("session %s: a line did not fit in %zu octets", s->id, sizeof(line));
		sb_init(&b, line, sizeof(line));
		sb_adds(&b, s->ops->internal_error);
	}
	conn_write(s->conn, sb_str(&b), sb_len(&b));
}

void session_line(struct session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	session_vline(s, fmt, ap);
	va_end(ap);
}

void session_resume(struct session *s)
{
	if (s->state == SESSION_ACTIVE)
		s->ops->input(s);
}

bool session_output_full(struct session *s)
{
	if (conn_out_len(s->conn) <= SESSION_OUT_HIGH_WATER)
		return false;
	if (!s->out_full) {
		s->out_full = 1;
		conn_read_stop(s->conn);
		conn_notify_drained(s->conn);
	}
	return true;
}

bool session_error(struct session *s)
{
	return ++s->errors >= session_conf(s)->max_errors && s->state != SESSION_CLOSING;
}

/* The server's list of live sessions (shutdown walks it). */
static void link_session(struct session *s)
{
	struct server *srv = s->srv;
	s->prev = NULL;
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	metrics_session_open();
}

static void unlink_session(struct session *s)
{
	struct server *srv = s->srv;
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nsessions--;
	server_release(srv, s->listener, s->admission);
	metrics_session_close();
}

static void session_free(struct session *s)
{
	/* A handshake that never finished failed - unless no client was
	 * there: a balancer's check connects and closes (not counted). */
	if (s->handshaking && !session_is_null_check(s))
		session_count_handshake(s, false);
	session_log_end(s);
	if (s->ops->free)
		s->ops->free(s);
	mg_timer_stop(&s->deadline);
	unlink_session(s);
	conn_free(&s->conn);
	s->magic = 0;
	free(s);
}

void session_close(struct session *s, enum session_result r)
{
	if (s->state == SESSION_CLOSING)
		return;
	session_set_result(s, r);
	session_enter(s, SESSION_CLOSING);
	mg_timer_stop(&s->deadline);
	if (s->ops->closing)
		s->ops->closing(s);
	conn_read_stop(s->conn);
	conn_in_clear(s->conn);
	conn_uncork(s->conn);
	conn_set_min_rate(s->conn, 0);	/* the last words' progress counts, not input */
	conn_set_timeout(s->conn, CLOSE_GRACE);
	conn_notify_drained(s->conn);	/* then freed (client_cb) */
}

void session_starttls(struct session *s)
{
	/* Stop reading at once: anything queued after the STARTTLS line is
	 * discarded, never executed (CVE-2011-0411 class); the handshake
	 * starts once the reply is out (client_cb, CONN_EV_DRAINED). */
	session_enter(s, SESSION_STARTTLS);
	conn_read_stop(s->conn);
	conn_in_clear(s->conn);
	conn_uncork(s->conn);
	conn_notify_drained(s->conn);
}

/* since: when the handshake's time started - the accept, for an implicit
 * handshake (a PROXY header's wait counts), or now (STARTTLS). Nothing
 * during a handshake moves conn's timer (its reads and writes go through
 * GnuTLS), so the timeout is a deadline: a trickled ClientHello is cut. */
static void start_handshake(struct session *s, double since)
{
	struct tls_server *ts = server_tls(s->srv, s->listener->tls);
	double left = session_conf(s)->timeout_handshake - (conn_now() - since);
	s->handshaking = 1;
	conn_set_timeout(s->conn, left > HANDSHAKE_MIN_LEFT ? left : HANDSHAKE_MIN_LEFT);
	conn_start_tls(s->conn, tls_session_server(ts, conn_fd(s->conn), s->listener->client_cert));
}

/* One line per failed handshake. A refused client certificate comes with
 * what an admin needs to act on it: its status, fingerprint, names,
 * issuer and expiry (certlog.c). */
static void log_tls_failed(struct session *s, const char *reason)
{
	struct tls_session *t = conn_tls(s->conn);
	const struct tls_peer *p = t && tls_failed_on_cert(t) ? tls_peer(t) : NULL;
	struct logkv kv;
	logkv_begin(&kv, "tls-failed", 1);
	logkv_raw(&kv, "session", s->id);
	logkv_raw(&kv, "client", s->ip);
	logkv_str(&kv, "reason", reason);
	logkv_str(&kv, "listener", s->listener->name);
	if (p) {
		logkv_raw(&kv, "cert", tls_cert_status_name(p->status));
		certlog_add(&kv, p);
	}
	logkv_end(&kv, session_is_null_check(s) ? LOG_LVL_DEBUG : LOG_LVL_INFO);
}

static void tls_failed(struct session *s)
{
	struct tls_session *t = conn_tls(s->conn);
	log_tls_failed(s, conn_error(s->conn));
	s->result = t && tls_failed_on_cert(t) ? RESULT_CERT_REJECTED : RESULT_TLS_FAILED;
}

/* Every handshake ends here: who is this certificate (§6), then the
 * greeting or the restart. */
static void handshake_done(struct session *s)
{
	bool implicit = s->state == SESSION_HANDSHAKE;
	session_identify(s);
	session_count_handshake(s, true);
	session_enter(s, SESSION_ACTIVE);
	if (s->ops->identified)
		s->ops->identified(s, implicit);
	if (s->state != SESSION_ACTIVE)
		return;	/* refused */
	if (implicit)
		s->ops->greet(s);
	else
		s->ops->restarted(s);
}

static void on_drained(struct session *s)
{
	if (s->state == SESSION_STARTTLS && !conn_tls(s->conn)) {
		start_handshake(s, conn_now());
		return;
	}
	if (s->state != SESSION_ACTIVE)
		return;
	if (s->out_full) {	/* the replies went out: back to the commands */
		s->out_full = 0;
		conn_read_start(s->conn);
		s->ops->input(s);
		return;
	}
	if (s->ops->drained)
		s->ops->drained(s);
}

/* Returns true when the session must be freed now. */
static bool on_end(struct session *s, enum conn_event ev)
{
	switch (ev) {
	case CONN_EV_EOF:
		if (s->state == SESSION_ACTIVE && s->ops->eof && s->ops->eof(s))
			return false;
		return true;
	case CONN_EV_ERROR:
		if (s->state == SESSION_HANDSHAKE || s->state == SESSION_STARTTLS) {
			tls_failed(s);
			return true;
		}
		session_set_result(s, RESULT_ERROR);
		return !(s->state == SESSION_ACTIVE && s->ops->lost && s->ops->lost(s));
	default:	/* CONN_EV_TIMEOUT */
		if (s->state != SESSION_ACTIVE) {
			if (conn_tls(s->conn) && !conn_tls_ready(s->conn))
				log_tls_failed(s, "handshake timed out");
			session_set_result(s, RESULT_TIMEOUT);
			return true;
		}
		s->ops->timeout(s);
		return false;
	}
}

static void client_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct session *s = arg;
	if (s->magic != SESSION_MAGIC)
		abort();
	switch (ev) {
	case CONN_EV_READ:
		if (s->state == SESSION_ACTIVE)
			s->ops->input(s);
		else
			conn_in_clear(c);	/* discarded, never executed */
		return;
	case CONN_EV_HANDSHAKE:
		if (s->state != SESSION_CLOSING)	/* closed means closed */
			handshake_done(s);
		return;
	case CONN_EV_DRAINED:
		if (s->state == SESSION_CLOSING) {
			session_free(s);
			return;
		}
		on_drained(s);
		return;
	case CONN_EV_EOF:
	case CONN_EV_ERROR:
	case CONN_EV_TIMEOUT:
		if (s->state == SESSION_CLOSING || on_end(s, ev))
			session_free(s);
		return;
	}
}

static void deadline_cb(void *arg)
{
	struct session *s = arg;
	if (s->magic != SESSION_MAGIC)
		abort();
	mg_timer_stop(&s->deadline);
	if (s->state != SESSION_CLOSING && s->ops->deadline)
		s->ops->deadline(s);
}

void session_set_deadline(struct session *s, double seconds)
{
	mg_timer_stop(&s->deadline);
	if (seconds > 0)
		s->deadline = mg_timer_start(seconds, 0, deadline_cb, s);
}

static void shutdown_one(struct session *s)
{
	if (s->state == SESSION_ACTIVE && s->ops->shutdown)
		s->ops->shutdown(s);
}

static void kill_one(struct session *s)
{
	if (s->state == SESSION_CLOSING)
		return;
	if (s->state == SESSION_ACTIVE && s->ops->kill) {
		conn_cork(s->conn);
		s->ops->kill(s);
	}
	session_close(s, RESULT_SHUTDOWN);
}

void session_shutdown_all(struct server *srv)
{
	srv->shutting_down = true;
	for (struct session *s = srv->sessions, *next; s; s = next) {
		next = s->next;
		shutdown_one(s);
	}
}

void session_kill_all(struct server *srv)
{
	for (struct session *s = srv->sessions, *next; s; s = next) {
		next = s->next;
		kill_one(s);
	}
}

void session_accept(struct server *srv, const struct session_ops *ops, const struct conf_listener *l,
		    int fd, const struct mg_addr *peer, const struct mg_addr *local, bool lb_local)
{
	session_accept_at(srv, ops, l, fd, peer, local, lb_local, conn_now());
}

void session_accept_at(struct server *srv, const struct session_ops *ops, const struct conf_listener *l,
		       int fd, const struct mg_addr *peer, const struct mg_addr *local, bool lb_local,
		       double accepted)
{
	int admission = server_admit(srv, l, fd, peer, ops->limit_refusal);
	if (admission < 0)
		return;
	struct session *s = xcalloc(1, ops->size);
	s->admission = admission;
	s->magic = SESSION_MAGIC;
	s->ops = ops;
	s->srv = srv;
	session_new_id(s->id);
	s->listener = l;
	s->client = *peer;
	s->local = *local;
	s->lb_local = lb_local;
	addr_ip_str(&s->client, s->ip, sizeof(s->ip));
	s->start = conn_now();
	s->result = RESULT_OK;
	s->conn = conn_new_nonblocking(fd, ops->in_max(srv->conf), client_cb, s);
	link_session(s);
	log_debug("session %s: %s connect from %s listener=%s", s->id, ops->name, s->ip, l->name);
	if (ops->start)
		ops->start(s);
	if (s->state == SESSION_CLOSING)
		return;	/* start() ended it: closed means closed */
	if (l->tls_mode == TLS_MODE_IMPLICIT) {
		s->state = SESSION_HANDSHAKE;
		start_handshake(s, accepted);
		return;
	}
	s->state = SESSION_ACTIVE;
	ops->greet(s);
}
