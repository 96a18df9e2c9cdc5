/* smtp_session: the life of one client session - accept (connection
 * limits), implicit TLS or greeting, the command-line loop with line
 * limits and pipelining, STARTTLS switch-over, timeouts, the closing
 * sequence and the session-end log line. Commands are in smtp_cmd.c and
 * the upstream-backed transaction in smtp_txn.c.
 *
 * Lifetime rule: only the conn and upstream callbacks free a session, and
 * always as their last statement (smtp_free()). Everything else marks the
 * session closing and lets the drain notification finish the job. */
#include "smtp_session_int.h"
#include "conn.h"
#include "server.h"
#include "log.h"
#include "smtp_server.h"
#include "strbuf.h"
#include "timer.h"
#include "tls.h"
#include "xmem.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLOSE_GRACE 10.0	/* seconds to flush a final reply */

static const struct session_hooks smtp_hooks;

static const char *const state_names[] = { "handshake", "cmd", "auth", "data", "tls", "closing" };

void smtp_enter(struct smtp_session *ss, enum smtp_state st)
{
	log_debug("session %s: %s -> %s", ss->s.id, state_names[ss->state], state_names[st]);
	ss->state = st;
}

static const struct conf *conf_of(const struct smtp_session *ss)
{
	return ss->srv->base.conf;
}

/* Every reply line the gateway writes is built here, whole or not at
 * all: lines are sized so that the longest reply we build (a relayed
 * upstream line of SMTP_REPLY_MAX_LINE) fits; anything else would be a
 * bug, answered with a generic reply rather than a truncated one. */
static void reply_v(struct smtp_session *ss, const char *fmt, va_list ap)
{
	char line[SMTP_REPLY_MAX_LINE + 3];
	struct strbuf b;
	sb_init(&b, line, sizeof(line));
	sb_vaddf(&b, fmt, ap);
	sb_add(&b, "\r\n", 2);
	if (!sb_ok(&b)) {
		log_error("session %s: a reply did not fit in %zu octets", ss->s.id, sizeof(line));
		sb_init(&b, line, sizeof(line));
		sb_adds(&b, "451 4.3.0 Internal error\r\n");
	}
	conn_write(ss->s.conn, sb_str(&b), sb_len(&b));
}

void smtp_reply(struct smtp_session *ss, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_v(ss, fmt, ap);
	va_end(ap);
}

void smtp_reply_err(struct smtp_session *ss, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_v(ss, fmt, ap);
	va_end(ap);
	if (++ss->errors >= conf_of(ss)->max_errors && ss->state != SS_CLOSING) {
		smtp_reply(ss, "421 4.7.0 Too many errors");
		smtp_close(ss, ss->peer_refused ? "cert-rejected" : "too-many-errors");
	}
}

bool smtp_tls_active(const struct smtp_session *ss)
{
	return conn_tls_ready(ss->s.conn);
}

bool smtp_auth_allowed(const struct smtp_session *ss)
{
	const struct conf_listener *l = ss->s.listener;
	if (!l->auth)
		return false;
	return smtp_tls_active(ss) || l->tls_mode == TLS_MODE_NONE;
}

bool smtp_may_relay(const struct smtp_session *ss)
{
	if (ss->authed || (ss->s.peer && ss->s.peer->relay))
		return true;
	const struct cidrlist *nets = &ss->s.listener->relay_networks;
	for (size_t i = 0; i < nets->n; i++)
		if (addr_cidr_match(&nets->v[i], &ss->s.client))
			return true;
	return false;
}

void smtp_reset_tx(struct smtp_session *ss)
{
	ss->in_tx = 0;
	ss->utf8 = 0;
	ss->rcpts = 0;
}

static void smtp_free(struct smtp_session *ss)
{
	struct logkv kv;

	if (ss->s.result && strcmp(ss->s.result, "ok") == 0 && ss->quit_seen)
		ss->s.result = "quit";
	if (ss->s.result && (!strcmp(ss->s.result, "ok") || !strcmp(ss->s.result, "quit"))) {
		if (ss->relay_denied && !ss->delivered)
			ss->s.result = "relay-denied";
		else if (ss->auth_failures && !ss->authed)
			ss->s.result = "auth-failures";
	}
	session_log_begin(&ss->s, &kv);
	if (ss->helo_arg)
		logkv_str(&kv, "helo", ss->helo_arg);
	if (ss->user)
		logkv_str(&kv, "user", ss->user);
	logkv_u64(&kv, "msgs", ss->delivered);
	if (ss->up_addr[0])
		logkv_str(&kv, "upstream", ss->up_addr);
	session_log_end(&ss->s, &kv);

	/* A message in flight is aborted without its final dot. */
	if (ss->state == SS_DATA || ss->op == OP_DATA)
		smtp_up_free(&ss->up);
	else
		smtp_up_quit(&ss->up);
	server_unlink(&ss->srv->base, &ss->s);
	mg_timer_stop(&ss->deadline);
	rdns_cancel(&ss->rdns);
	conn_free(&ss->s.conn);
	free(ss->rdns_name);
	free(ss->helo_arg);
	free(ss->user);
	free(ss->auth_user);
	free(ss->pending);
	free(ss->local_reply);
	ss->magic = 0;
	free(ss);
}

void smtp_close(struct smtp_session *ss, const char *result)
{
	if (ss->state == SS_CLOSING)
		return;
	if (result)
		ss->s.result = result;
	if (ss->state == SS_DATA || ss->op == OP_DATA || ss->op == OP_DOT)
		smtp_up_free(&ss->up);
	else
		smtp_up_quit(&ss->up);
	ss->op = OP_NONE;
	mg_timer_stop(&ss->deadline);
	smtp_enter(ss, SS_CLOSING);
	conn_read_stop(ss->s.conn);
	conn_in_clear(ss->s.conn);
	conn_uncork(ss->s.conn);
	conn_set_timeout(ss->s.conn, CLOSE_GRACE);
	conn_notify_drained(ss->s.conn);
}

/* The 30 s a refused peer gets to say QUIT: a deadline, not an
 * inactivity timer, so talking does not extend it. */
static void refused_deadline(void *arg)
{
	struct smtp_session *ss = arg;
	if (ss->magic != SMTP_SESSION_MAGIC)
		abort();
	mg_timer_stop(&ss->deadline);
	if (ss->state == SS_CLOSING)
		return;
	conn_cork(ss->s.conn);
	smtp_reply(ss, "421 4.7.1 Certificate not accepted, closing connection");
	smtp_close(ss, "cert-rejected");
}

static void greet(struct smtp_session *ss)
{
	smtp_enter(ss, SS_CMD);
	conn_set_timeout(ss->s.conn, conf_of(ss)->timeout_command);
	if (ss->peer_refused == PEER_REFUSED_GREETED) {
		/* RFC 5321 §3.1: refuse with 554, then only QUIT works. */
		smtp_reply(ss, "554 5.7.1 Certificate not accepted");
		ss->deadline = mg_timer_start(PEER_REFUSED_GRACE, 0, refused_deadline, ss);
	} else {
		smtp_reply(ss, "220 %s ESMTP", conf_of(ss)->hostname);
	}
	conn_read_start(ss->s.conn);
}

/* After every handshake: who is this certificate (§6)? */
static void identify(struct smtp_session *ss)
{
	session_identify(&ss->s, conf_of(ss));
	if (ss->s.listener->peers_only && !ss->s.peer) {
		ss->peer_refused = ss->state == SS_HANDSHAKE ? PEER_REFUSED_GREETED : PEER_REFUSED_NEXT;
		ss->s.result = "cert-rejected";
		log_info("session %s: peers_only: certificate not accepted (%s)", ss->s.id,
			 ss->s.peer_reason);
	}
}

/* A line over max_line: 500, or - inside an AUTH exchange - the exchange
 * ends (a SASL line that is too long must not leave it open, or the next
 * command would be taken as a SASL response). */
static void line_too_long(struct smtp_session *ss)
{
	if (ss->state == SS_AUTH)
		smtp_txn_auth_abort(ss, AUTH_ABORT_TOO_LONG);
	else
		smtp_reply_err(ss, "500 5.5.2 Line too long");
}

/* The command loop: one line at a time, in order, until the input is
 * exhausted or a command waits for the upstream. Replies are corked so a
 * pipelined burst is answered with one write. */
void smtp_process(struct smtp_session *ss)
{
	static char line[CONF_MAX_LINE_LIMIT + 2];
	struct conn *c = ss->s.conn;
	size_t max = (size_t)conf_of(ss)->max_line + 2;

	conn_cork(c);
	while (ss->op == OP_NONE &&
	       (ss->state == SS_CMD || ss->state == SS_AUTH || ss->state == SS_DATA)) {
		if (ss->state == SS_DATA) {
			smtp_txn_data_input(ss);
			if (ss->state == SS_DATA)
				break;
			continue;
		}
		size_t end = conn_in_line_end(c);
		if (!end) {
			if (conn_in_len(c) > max) {
				conn_in_clear(c);
				if (!ss->skip_line) {
					ss->skip_line = 1;
					line_too_long(ss);
				}
			}
			break;
		}
		if (ss->skip_line) {	/* the tail of an overlong line */
			conn_in_consume(c, end);
			ss->skip_line = 0;
			continue;
		}
		if (end > max) {
			conn_in_consume(c, end);
			line_too_long(ss);
			continue;
		}
		memcpy(line, conn_in_data(c), end);
		conn_in_consume(c, end);
		if (ss->state == SS_AUTH)
			smtp_txn_auth_line(ss, line, end);
		else
			smtp_cmd_dispatch(ss, line, end);
	}
	conn_uncork(c);
}

static void after_starttls(struct smtp_session *ss)
{
	/* RFC 3207 §4.2: forget everything learnt before TLS. */
	ss->helo = ss->esmtp = 0;
	XFREE(ss->helo_arg);
	smtp_reset_tx(ss);
	/* An open upstream was set up with pre-TLS data: reconnect later. */
	smtp_up_quit(&ss->up);
	smtp_enter(ss, SS_CMD);
	conn_set_timeout(ss->s.conn, conf_of(ss)->timeout_command);
	conn_read_start(ss->s.conn);
}

static void tls_failed(struct smtp_session *ss)
{
	struct tls_session *t = conn_tls(ss->s.conn);
	bool cert = t && tls_failed_on_cert(t);
	struct logkv kv;
	logkv_begin(&kv, "tls-failed", 1);
	logkv_raw(&kv, "session", ss->s.id);
	logkv_raw(&kv, "client", ss->s.ip);
	logkv_str(&kv, "reason", conn_error(ss->s.conn));
	logkv_end(&kv, LOG_LVL_INFO);
	ss->s.result = cert ? "cert-rejected" : "tls-failed";
}

static void client_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct smtp_session *ss = arg;
	if (ss->magic != SMTP_SESSION_MAGIC)
		abort();
	switch (ev) {
	case CONN_EV_READ:
		if (ss->state == SS_CLOSING || ss->state == SS_TLS) {
			conn_in_clear(c);	/* discarded, never executed */
			return;
		}
		smtp_process(ss);
		return;
	case CONN_EV_HANDSHAKE:
		if (ss->state == SS_CLOSING)
			return;	/* closed means closed: nothing re-opens it */
		identify(ss);
		if (ss->state == SS_HANDSHAKE)
			greet(ss);
		else
			after_starttls(ss);
		return;
	case CONN_EV_DRAINED:
		if (ss->state == SS_CLOSING) {
			smtp_free(ss);
			return;
		}
		if (ss->state == SS_TLS) {
			struct tls_server *ts = server_tls(&ss->srv->base, ss->s.listener->tls);
			struct tls_session *t = tls_session_server(ts, conn_fd(c), ss->s.listener->client_cert);
			conn_set_timeout(c, conf_of(ss)->timeout_handshake);
			conn_start_tls(c, t);	/* drops bytes pipelined after STARTTLS */
		}
		return;
	case CONN_EV_EOF:
		if (ss->s.result && !strcmp(ss->s.result, "ok") && ss->state == SS_DATA)
			ss->s.result = "error";	/* vanished mid-message: nothing delivered */
		smtp_free(ss);
		return;
	case CONN_EV_ERROR:
		if (ss->state == SS_HANDSHAKE || ss->state == SS_TLS)
			tls_failed(ss);
		else if (ss->state != SS_CLOSING)
			ss->s.result = "error";
		smtp_free(ss);
		return;
	case CONN_EV_TIMEOUT:
		if (ss->state == SS_CLOSING || ss->state == SS_HANDSHAKE || ss->state == SS_TLS) {
			if (ss->state != SS_CLOSING)
				ss->s.result = "timeout";
			smtp_free(ss);
			return;
		}
		if (ss->op != OP_NONE) {
			/* Waiting for the upstream is not client inactivity: the
			 * upstream's own timeout_reply decides. */
			conn_set_timeout(c, conf_of(ss)->timeout_command);
			return;
		}
		conn_cork(c);
		smtp_reply(ss, "421 4.4.2 %s Timeout, closing connection", conf_of(ss)->hostname);
		smtp_close(ss, "timeout");
		return;
	}
}

static void rdns_done(void *arg, enum rdns_status st, const char *name)
{
	struct smtp_session *ss = arg;
	if (ss->magic != SMTP_SESSION_MAGIC)
		abort();
	ss->rdns = NULL;
	ss->rdns_status = (uint8_t)st;
	if (st == RDNS_OK)
		ss->rdns_name = xstrdup(name);
	log_debug("session %s: reverse DNS %s", ss->s.id,
		  st == RDNS_OK ? name : st == RDNS_NONE ? "[UNAVAILABLE]" : "[TEMPUNAVAIL]");
	smtp_txn_rdns_done(ss);
}

void smtp_session_start(struct smtp_server *srv, const struct conf_listener *l, int fd,
			const struct mg_addr *peer, const struct mg_addr *local)
{
	if (!server_admit(&srv->base, l, fd, peer, "421 4.7.0 Too many connections\r\n"))
		return;
	struct smtp_session *ss = xcalloc(1, sizeof(*ss));
	ss->magic = SMTP_SESSION_MAGIC;
	ss->srv = srv;
	session_init(&ss->s, l, peer, local);
	ss->s.conn = conn_new(fd, (size_t)srv->base.conf->max_line + 2 + SMTP_PIPELINE_WINDOW, client_cb,
			      ss);
	ss->s.hooks = &smtp_hooks;
	server_link(&srv->base, &ss->s);
	log_debug("session %s: connect from %s listener=%s", ss->s.id, ss->s.ip, l->name);
	ss->rdns_status = RDNS_OFF;
	if (srv->base.conf->reverse_dns) {
		ss->rdns_status = RDNS_PENDING;
		ss->rdns = rdns_lookup(&ss->s.client, 5.0, rdns_done, ss);
	}
	if (l->tls_mode == TLS_MODE_IMPLICIT) {
		struct tls_session *t = tls_session_server(server_tls(&srv->base, l->tls), fd, l->client_cert);
		ss->state = SS_HANDSHAKE;
		conn_set_timeout(ss->s.conn, srv->base.conf->timeout_handshake);
		conn_start_tls(ss->s.conn, t);
		return;
	}
	greet(ss);
}

/* SIGTERM: nothing to do at once; the next command gets 421 4.3.2
 * (smtp_cmd_dispatch) unless a transaction is in progress. */
static void hook_notice(struct session *s)
{
}

static void hook_kill(struct session *s)
{
	struct smtp_session *ss = (struct smtp_session *)((char *)s - offsetof(struct smtp_session, s));
	if (ss->state == SS_CLOSING)
		return;
	if (ss->state == SS_CMD || ss->state == SS_AUTH)
		smtp_reply(ss, "421 4.3.2 Service shutting down");
	smtp_close(ss, "shutdown");
}

static const struct session_hooks smtp_hooks = { hook_notice, hook_kill };
