/* smtp_protocol: SMTP's session hooks - the greeting (or the peers_only
 * refusal and its deadline), the reverse lookup started with the session,
 * the command-line loop (line limits, pipelining, AUTH responses, DATA),
 * the restart after STARTTLS, timeouts, shutdown, and the end: the
 * upstream told goodbye (or dropped mid-message), the result refined, the
 * log keys (DESIGN.md §4, §7). */
#include "smtp_protocol.h"
#include "smtp_conf.h"
#include "conn.h"
#include "log.h"
#include "rdns.h"
#include "server.h"
#include "smtp_auth.h"
#include "smtp_body.h"
#include "smtp_cmd.h"
#include "smtp_relay.h"
#include "smtp_session.h"
#include "xmem.h"

#include <stdlib.h>
#include <strings.h>
#include <string.h>

#define RDNS_TIMEOUT 5.0	/* DESIGN.md §3 reverse_dns */

static void rdns_done(void *arg, enum rdns_status st, const char *name)
{
	struct smtp_session *ss = arg;
	session_assert(&ss->s);
	ss->rdns = NULL;
	ss->rdns_status = (uint8_t)st;
	if (st == RDNS_OK)
		ss->rdns_name = xstrdup(name);
	log_debug("session %s: reverse DNS %s", ss->s.id,
		  st == RDNS_OK ? name : st == RDNS_NONE ? "[UNAVAILABLE]" : "[TEMPUNAVAIL]");
	smtp_relay_rdns_done(ss);
}

static void start(struct session *s)
{
	struct smtp_session *ss = smtp_of(s);
	ss->server = (struct smtp_server *)s->srv;
	ss->keys = smtpd_conf(s->srv->conf);
	conn_set_sensitive(s->conn, true);	/* AUTH: wiped on release (not in DATA) */
	ss->rdns_status = SMTP_RDNS_OFF;
	if (ss->keys->reverse_dns) {
		ss->rdns_status = SMTP_RDNS_PENDING;
		ss->rdns = rdns_lookup(&s->client, RDNS_TIMEOUT, rdns_done, ss);
	}
}

static void greet(struct session *s)
{
	struct smtp_session *ss = smtp_of(s);
	/* timeout_command counts from the last complete command line (or
	 * reply): a line trickled byte by byte does not reset it. */
	conn_set_line_activity(s->conn, true);
	conn_set_timeout(s->conn, ss->keys->timeout_command);
	if (ss->peer_refused == PEER_REFUSED_GREETED) {
		/* RFC 5321 §3.1: refuse with 554, then only QUIT works - for
		 * PEER_REFUSED_GRACE from now, however busy the client is. */
		smtp_reply(ss, "554 5.7.1 Certificate not accepted");
		session_set_deadline(s, PEER_REFUSED_GRACE);
	} else {
		smtp_reply(ss, "220 %s ESMTP", session_conf(&ss->s)->hostname);
	}
	conn_read_start(s->conn);
}

static void deadline(struct session *s)
{
	conn_cork(s->conn);
	smtp_reply(smtp_of(s), "421 4.7.1 Certificate not accepted");
	session_close(s, RESULT_CERT_REJECTED);
}

/* After every handshake: who is this certificate (§6)? */
static void identified(struct session *s, bool implicit)
{
	struct smtp_session *ss = smtp_of(s);
	if (!s->listener->peers_only || s->peer)
		return;
	ss->peer_refused = implicit ? PEER_REFUSED_GREETED : PEER_REFUSED_NEXT;
	session_set_result(s, RESULT_CERT_REJECTED);
	log_info("session %s: peers_only: certificate not accepted (%s)", s->id, s->peer_reason);
}

static void restarted(struct session *s)
{
	struct smtp_session *ss = smtp_of(s);
	/* RFC 3207 §4.2: forget everything learnt before TLS. */
	ss->helo = ss->esmtp = 0;
	XFREE(ss->helo_arg);
	smtp_reset_tx(ss);
	/* An open upstream was set up with pre-TLS data: reconnect later. */
	smtp_relay_drop(ss, true);
	smtp_enter(ss, SMTP_CMD);
	conn_set_timeout(s->conn, ss->keys->timeout_command);
	conn_read_start(s->conn);
}

/* A line over max_line: 500, or - inside an AUTH exchange - the exchange
 * ends (a SASL line that is too long must not leave it open, or the next
 * command would be taken as a SASL response). */
static void line_too_long(struct smtp_session *ss)
{
	if (ss->state == SMTP_AUTH)
		smtp_auth_abort(ss, AUTH_ABORT_TOO_LONG);
	else
		smtp_reply_err(ss, "500 5.5.2 Line too long");
}

/* The next complete line into line[] (CRLF kept), or 0; over-long lines
 * are answered and skipped here. */
static size_t next_line(struct smtp_session *ss, char *line)
{
	struct conn *c = ss->s.conn;
	size_t max = (size_t)ss->keys->max_line + 2;
	for (;;) {
		size_t end = conn_in_line_end(c);
		if (!end) {
			if (conn_in_len(c) > max) {	/* no LF within max_line */
				conn_in_clear(c);
				if (!ss->skip_line) {
					ss->skip_line = 1;
					line_too_long(ss);
				}
			}
			return 0;
		}
		if (ss->skip_line) {	/* the tail of an over-long line */
			conn_in_consume(c, end);
			ss->skip_line = 0;
			continue;
		}
		if (end > max) {
			conn_in_consume(c, end);
			line_too_long(ss);
			return 0;
		}
		memcpy(line, conn_in_data(c), end);
		conn_in_consume(c, end);
		return end;
	}
}

/* After the client's EOF, once nothing more can be answered. */
static void end_after_eof(struct smtp_session *ss)
{
	if (ss->s.state != SESSION_ACTIVE || ss->state == SMTP_WAIT || ss->s.out_full)
		return;	/* replies still to come */
	if (ss->state == SMTP_DATA)
		session_set_result(&ss->s, RESULT_ERROR);	/* vanished mid-message */
	session_close(&ss->s, RESULT_UNCHANGED);
}

/* The command loop: in order, until the input is exhausted or a command
 * waits for the upstream. Replies are corked so a pipelined burst is
 * answered with one write. */
static void input(struct session *s)
{
	static char line[SMTP_MAX_LINE_LIMIT + 2];
	struct smtp_session *ss = smtp_of(s);
	conn_cork(s->conn);
	while (s->state == SESSION_ACTIVE && ss->state != SMTP_WAIT) {
		if (ss->state == SMTP_DATA) {
			smtp_body_input(ss);
			if (ss->state == SMTP_DATA)
				break;	/* more to come */
			continue;
		}
		if (session_output_full(s))
			break;	/* the client is not reading its replies */
		size_t n = next_line(ss, line);
		if (!n) {
			if (ss->state == SMTP_WAIT || !conn_in_line_end(s->conn))
				break;
			continue;
		}
		bool secret = ss->state == SMTP_AUTH || (n > 5 && !strncasecmp(line, "AUTH ", 5));
		if (ss->state == SMTP_AUTH)
			smtp_auth_line(ss, line, n);
		else
			smtp_cmd_dispatch(ss, line, n);
		explicit_bzero(line, n);	/* it may have been a SASL response */
		if (secret)
			xmem_wipe_stack();	/* and what the calls for it left below */
	}
	conn_uncork(s->conn);
	if (ss->client_eof)
		end_after_eof(ss);
}

/* A half-close (the client shut down its write side after its last
 * commands, as any TCP client may): every complete command still gets
 * its reply - a message whose final dot arrived its upstream's verdict -
 * then the session ends. A message cut short is not delivered. */
static bool eof(struct session *s)
{
	struct smtp_session *ss = smtp_of(s);
	ss->client_eof = 1;
	if (ss->state != SMTP_WAIT)
		input(s);	/* answers what is queued, then ends the session */
	return true;
}

/* The client reset its connection. Once its final dot is with the
 * upstream the message may be accepted whatever happens to the client
 * (Postfix queues before it answers): the session stays for the verdict,
 * so the log and metrics count what was delivered, then ends as after an
 * EOF (nothing more can be read or written). */
static bool lost(struct session *s)
{
	struct smtp_session *ss = smtp_of(s);
	if (ss->state != SMTP_WAIT || ss->wait.op != OP_DOT || !ss->up)
		return false;
	ss->client_eof = 1;
	conn_in_clear(s->conn);
	return true;
}

static void timeout(struct session *s)
{
	struct smtp_session *ss = smtp_of(s);
	if (ss->state == SMTP_WAIT) {
		/* Waiting for the upstream is not client inactivity: the
		 * upstream's own timeout_reply decides. */
		conn_set_timeout(s->conn, ss->keys->timeout_command);
		return;
	}
	if (ss->state == SMTP_DATA && ss->data_paused && ss->up) {
		/* Not reading the message because the upstream is behind: the
		 * same (smtp_relay_data arms timeout_reply for it). */
		conn_set_timeout(s->conn, ss->keys->timeout_data);
		return;
	}
	if (ss->state == SMTP_DATA && ss->keys->min_data_rate)
		log_info("session %s: DATA deadline passed (timeout_data %d s, min_data_rate %d bytes/s)",
			 s->id, ss->keys->timeout_data, ss->keys->min_data_rate);
	conn_cork(s->conn);
	smtp_reply(ss, "421 4.4.2 Timeout");
	session_close(s, RESULT_TIMEOUT);
}

/* SIGTERM: nothing at once; the next command gets 421 4.3.2 (smtp_cmd.c)
 * unless a transaction is in progress. shutdown_timeout: */
static void kill_(struct session *s)
{
	struct smtp_session *ss = smtp_of(s);
	if (ss->state == SMTP_CMD || ss->state == SMTP_AUTH)
		smtp_reply(ss, "421 4.3.2 Service shutting down");
}

static void closing(struct session *s)
{
	smtp_relay_end(smtp_of(s));
}

static enum session_result result(struct session *s, enum session_result r)
{
	struct smtp_session *ss = smtp_of(s);
	if (r == RESULT_OK && ss->quit_seen)
		r = RESULT_QUIT;
	if (r == RESULT_OK || r == RESULT_QUIT) {
		if (ss->relay_denied && !ss->delivered)
			return RESULT_RELAY_DENIED;
		if (ss->auth_failures && !ss->authed)
			return RESULT_AUTH_FAILURES;
	}
	return r;
}

static void log_keys(struct session *s, struct logkv *kv)
{
	struct smtp_session *ss = smtp_of(s);
	if (ss->helo_arg)
		logkv_str(kv, "helo", ss->helo_arg);
	if (ss->user)
		logkv_str(kv, "user", ss->user);
	logkv_u64(kv, "msgs", ss->delivered);
}

static const char *upstream_addr(const struct session *s)
{
	return ((const struct smtp_session *)s)->up_addr;
}

static void free_(struct session *s)
{
	struct smtp_session *ss = smtp_of(s);
	smtp_relay_end(ss);
	rdns_cancel(&ss->rdns);
	free(ss->rdns_name);
	free(ss->helo_arg);
	free(ss->user);
	free(ss->auth_user);
	free(ss->local_reply);
}

static size_t in_max(const struct conf *c)
{
	return (size_t)smtpd_conf(c)->max_line + 2 + SMTP_PIPELINE_WINDOW;
}

const struct session_ops smtp_session_ops = {
	.name = "smtp",
	.size = sizeof(struct smtp_session),
	.in_max = in_max,
	.limit_refusal = "421 4.7.0 Too many connections\r\n",
	.internal_error = "451 4.3.0 Internal error\r\n",
	/* from accept to the greeting, and after STARTTLS */
	.start = start, .identified = identified, .greet = greet, .restarted = restarted,
	/* the client's side */
	.input = input, .eof = eof, .timeout = timeout, .lost = lost, .deadline = deadline,
	/* the end */
	.kill = kill_, .closing = closing, .result = result, .log = log_keys, .upstream = upstream_addr, .free = free_,
};
