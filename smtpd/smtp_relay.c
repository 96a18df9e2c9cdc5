/* smtp_relay: see smtp_relay.h. Entering WAIT is smtp_relay_command()
 * (or smtp_relay_expect_dot() after a message); leaving it is
 * leave_wait(), called only from up_cb(), which then hands the reply to
 * the waiting command's handler and resumes command processing as its
 * last statement. One command is outstanding at a time, so replies keep
 * their order however much the client pipelines. */
#include "smtp_relay.h"
#include "smtp_conf.h"
#include "conn.h"
#include "log.h"
#include "proxyproto.h"
#include "rdns.h"
#include "smtp_server.h"
#include "smtp_upstream.h"
#include "upstream.h"
#include "strbuf.h"
#include "xmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMTP_UP_HIGH_WATER (256 * 1024)	/* message bytes queued upstream */
#define SMTP_DOT_TIMEOUT 600		/* DESIGN.md §4.4: after the final dot */

static void up_cb(void *owner, enum up_event ev, const struct smtp_reply *r, int detail,
		  const char *why);

/* XCLIENT's ADDR: the client address, IPv6 as "IPV6:..." (Postfix). */
static void xclient_addr(const struct smtp_session *ss, char *out, size_t sz)
{
	struct strbuf b;
	sb_init(&b, out, sz);
	if (ss->s.client.u.sa.sa_family == AF_INET6)
		sb_adds(&b, "IPV6:");
	sb_adds(&b, ss->s.ip);
}

static void start_upstream(struct smtp_session *ss)
{
	char addr[80];
	unsigned char pp[PP_V2_MAX];
	const struct conf_upstream *cu = ss->s.listener->upstream;
	if (ss->rdns_status == SMTP_RDNS_PENDING) {
		ss->wait_rdns = 1;	/* XCLIENT NAME needs it; at most 5 s */
		return;
	}
	xclient_addr(ss, addr, sizeof(addr));
	struct smtp_up_params p = {
		.srv = ss->server,
		.cu = cu,
		.hostname = session_conf(&ss->s)->hostname,
		.client_helo = ss->helo_arg,
		.only_index = -1,
		.pp = pp,
		.pp_len = session_proxy_header(&ss->s, cu->proxy_protocol, pp, sizeof(pp)),
		.who = ss->s.id,
		.xclient = {
			.name = ss->rdns_status == RDNS_OK ? ss->rdns_name
				: ss->rdns_status == RDNS_TEMP ? "[TEMPUNAVAIL]" : "[UNAVAILABLE]",
			.addr = addr,
			.port = addr_port(&ss->s.client),
			.proto = ss->esmtp ? "ESMTP" : "SMTP",
			.helo = ss->helo_arg,
			/* a relay peer's section name, or the SASL user when the
			 * upstream is re-opened in an authenticated session */
			.login = (ss->s.peer && ss->s.peer->relay) ? ss->s.peer->name
				 : ss->authed && ss->user && ss->user[0] ? ss->user : NULL,
		},
	};
	ss->up = smtp_up_start(&p, up_cb, ss);
	upstream_set_sensitive(smtp_up_link(ss->up), true);	/* AUTH passes through (command phase) */
}

/* A command line kept for the upstream may be an AUTH with its initial
 * response: wiped before it is freed. */
static void drop_line(struct smtp_session *ss)
{
	if (ss->wait.line)
		explicit_bzero(ss->wait.line, ss->wait.len);
	XFREE(ss->wait.line);
}

void smtp_relay_command(struct smtp_session *ss, enum smtp_op op, const char *line, size_t len,
			smtp_reply_fn on_reply)
{
	ss->wait.op = op;
	ss->wait.on_reply = on_reply;
	smtp_enter(ss, SMTP_WAIT);
	if (ss->up && smtp_up_ready(ss->up)) {
		smtp_up_command(ss->up, line, len);
		return;
	}
	drop_line(ss);
	ss->wait.line = xmemdup0(line, len);	/* sent at UP_READY */
	ss->wait.len = len;
	if (!ss->up)
		start_upstream(ss);
}

void smtp_relay_expect_dot(struct smtp_session *ss, smtp_reply_fn on_reply)
{
	ss->wait.op = OP_DOT;
	ss->wait.on_reply = on_reply;
	smtp_enter(ss, SMTP_WAIT);
	smtp_up_expect_reply(ss->up, SMTP_DOT_TIMEOUT);
}

static void leave_wait(struct smtp_session *ss)
{
	ss->wait.op = OP_NONE;
	ss->wait.on_reply = NULL;
	drop_line(ss);
	smtp_enter(ss, SMTP_CMD);
}

static void rset_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	if (ss->local_reply)
		session_write(&ss->s, ss->local_reply, strlen(ss->local_reply));
	XFREE(ss->local_reply);
}

void smtp_relay_rset_then(struct smtp_session *ss, const char *local_reply)
{
	static const char rset[] = "RSET\r\n";
	if (!ss->up || !smtp_up_ready(ss->up)) {
		session_write(&ss->s, local_reply, strlen(local_reply));
		return;
	}
	free(ss->local_reply);
	ss->local_reply = xstrdup(local_reply);
	smtp_relay_command(ss, OP_RSET, rset, sizeof(rset) - 1, rset_reply);
}

bool smtp_relay_data(struct smtp_session *ss, const char *p, size_t len)
{
	if (!ss->up)
		return true;
	upstream_write(smtp_up_link(ss->up), p, len);
	if (upstream_out_len(smtp_up_link(ss->up)) <= SMTP_UP_HIGH_WATER)
		return true;
	upstream_notify_drained(smtp_up_link(ss->up));	/* UP_DRAINED resumes reading */
	/* An upstream that stops reading is lost after timeout_reply (the
	 * client then gets 451 after its dot), not at timeout_data. */
	upstream_expect(smtp_up_link(ss->up), ss->s.listener->upstream->timeout_reply);
	return false;
}

void smtp_relay_drop(struct smtp_session *ss, bool polite)
{
	if (polite)
		smtp_up_quit(&ss->up);
	else
		smtp_up_free(&ss->up);
	/* A new upstream connection cannot be told who logged in: without
	 * XCLIENT, or without a name to give it (XCLIENT LOGIN= empty is
	 * refused), the session ends at the next command that needs it. */
	if (ss->authed && (!ss->s.listener->upstream->xclient || !ss->user || !ss->user[0]))
		ss->reconnect_closes = 1;
	if (ss->state == SMTP_DATA) {
		conn_read_start(ss->s.conn);	/* no drain will come: read on to the dot */
		if (ss->data_paused) {
			ss->data_paused = 0;
			conn_set_timeout(ss->s.conn, ss->keys->timeout_data);
		}
	}
}

void smtp_relay_rdns_done(struct smtp_session *ss)
{
	if (!ss->wait_rdns)
		return;
	ss->wait_rdns = 0;
	if (ss->state == SMTP_WAIT && !ss->up)
		start_upstream(ss);
}

/* Set-up failed on every address (or fails closed: XCLIENT). */
static void on_failed(struct smtp_session *ss, int detail, const char *why)
{
	enum smtp_op op = ss->wait.op;
	leave_wait(ss);
	log_warn("session %s: upstream %s unavailable: %s", ss->s.id, ss->s.listener->upstream->name,
		 why ? why : "?");
	if (detail == UPF_CONFIG) {
		smtp_reply(ss, "421 4.3.0 Upstream configuration error");
		smtp_close(ss, RESULT_UPSTREAM_FAILED);
	} else if (op == OP_AUTH) {
		smtp_reply_err(ss, "454 4.7.0 Temporary authentication failure");
	} else {
		smtp_reply(ss, "421 4.4.1 Upstream unavailable, try again later");
		smtp_close(ss, RESULT_UPSTREAM_FAILED);
	}
}

/* An upstream's 421 ends the session: its words in our log. */
static void log_421(const struct smtp_session *ss, const struct smtp_reply *r)
{
	struct logkv kv;
	logkv_begin(&kv, "upstream-closing", 1);
	logkv_raw(&kv, "session", ss->s.id);
	logkv_raw(&kv, "upstream", ss->up_addr ? ss->up_addr : "?");
	logkv_mem(&kv, "reply", r->lines[0].text, r->lines[0].len);
	logkv_end(&kv, LOG_LVL_NOTICE);
}

/* Lost or silent upstream after set-up; r: the 421 it said on its way
 * out, unasked (Postfix's "Error: too many errors"), or NULL. */
static void on_lost(struct smtp_session *ss, bool timeout, const struct smtp_reply *r, const char *why)
{
	enum smtp_op op = ss->wait.op;
	log_warn("session %s: upstream %s: %s", ss->s.id, ss->up_addr, why ? why : "lost");
	if (r && r->code == 421) {
		/* It said why it is going (Postfix: "too many errors"): the
		 * words go to our log; the client gets the loss's reply, and
		 * in DATA, after the 451 at its dot, 421 and the close - no
		 * fresh upstream connection (nor error count) behind it. */
		log_421(ss, r);
		ss->reconnect_closes = 1;
	}
	smtp_relay_drop(ss, false);
	if (ss->state == SMTP_DATA) {
		ss->data_fail = DF_LOST;	/* read on to the final dot, then 451 */
		return;
	}
	if (ss->state == SMTP_WAIT)
		leave_wait(ss);
	if (op == OP_AUTH) {
		ss->auth_abort = AUTH_ABORT_NONE;
		ss->auth_cancel = 0;
		smtp_reply_err(ss, "454 4.7.0 Temporary authentication failure");
		return;
	}
	if (op == OP_DOT || op == OP_DATA) {
		/* The message is lost, the session is not (as when the upstream
		 * goes during DATA): the next MAIL reconnects. */
		smtp_reset_tx(ss);
		smtp_reply(ss, "451 4.4.2 Upstream %s", timeout ? "timeout" : "connection lost");
		if (!ss->reconnect_closes)
			return;
		smtp_reply(ss, "421 4.4.2 Upstream connection lost, closing");
	} else if (ss->in_tx && op != OP_NONE) {
		/* the waiting command's reply; between commands nothing is
		 * waiting for one: 421 (DESIGN.md §4.4) */
		smtp_reply(ss, "451 4.4.2 Upstream %s", timeout ? "timeout" : "connection lost");
	} else {
		smtp_reply(ss, "421 4.4.2 Upstream %s, closing", timeout ? "timeout" : "connection lost");
	}
	smtp_close(ss, timeout ? RESULT_TIMEOUT : RESULT_UPSTREAM_FAILED);
}

static void on_event(struct smtp_session *ss, enum up_event ev, const struct smtp_reply *r,
		     int detail, const char *why)
{
	switch (ev) {
	case UP_READY:
		ss->up_addr = upstream_addr(smtp_up_link(ss->up));
		smtp_up_command(ss->up, ss->wait.line, ss->wait.len);
		drop_line(ss);
		return;
	case UP_REPLY: {
		smtp_reply_fn fn = ss->wait.on_reply;
		leave_wait(ss);
		if (r->code == 421) {
			/* RFC 5321 §3.8: the upstream is closing the channel
			 * (Postfix: too many errors, a configuration problem).
			 * The client hears it as it was said, whatever it asked
			 * (a RSET's local reply, a message's dot), and the session
			 * ends with it: no fresh upstream behind its back. */
			log_421(ss, r);
			smtp_reply_relay(ss, r);
			smtp_close(ss, RESULT_UPSTREAM_FAILED);
			return;
		}
		if (fn)
			fn(ss, r);
		return;
	}
	case UP_DRAINED:
		/* The wait for the drain ends; a wait for a reply does not (the
		 * chunk that filled the queue may have held the final dot: its
		 * SMTP_DOT_TIMEOUT stays armed). */
		if (ss->state == SMTP_DATA)
			upstream_expect(smtp_up_link(ss->up), 0);
		conn_read_start(ss->s.conn);	/* back-pressure released */
		if (ss->data_paused && ss->state == SMTP_DATA) {
			/* The client is not charged for the time the gateway
			 * did not read: its DATA deadline starts afresh. */
			ss->data_paused = 0;
			conn_set_timeout(ss->s.conn, ss->keys->timeout_data);
		}
		return;
	case UP_FAILED:
		smtp_up_free(&ss->up);
		on_failed(ss, detail, why);
		return;
	case UP_LOST:
	case UP_TIMEOUT:
		if (ss->s.state == SESSION_STARTTLS) {
			/* The client is switching to TLS, after which this
			 * connection (set up with pre-TLS data) is dropped
			 * anyway: nothing to tell anyone. */
			smtp_relay_drop(ss, false);
			return;
		}
		on_lost(ss, ev == UP_TIMEOUT, r, why);
		return;
	}
}

static void up_cb(void *owner, enum up_event ev, const struct smtp_reply *r, int detail,
		  const char *why)
{
	struct smtp_session *ss = owner;
	char reason[512];
	session_assert(&ss->s);	/* why may point into the upstream freed below */
	snprintf(reason, sizeof(reason), "%s", why ? why : "");
	conn_cork(ss->s.conn);
	on_event(ss, ev, r, detail, why ? reason : NULL);
	/* The one place command processing resumes after the upstream. */
	if (ss->s.state == SESSION_ACTIVE)
		session_resume(&ss->s);
	else
		conn_uncork(ss->s.conn);
}

void smtp_relay_end(struct smtp_session *ss)
{
	/* A message in flight is aborted without its final dot. */
	if (ss->state == SMTP_DATA || ss->wait.op == OP_DATA || ss->wait.op == OP_DOT)
		smtp_up_free(&ss->up);
	else
		smtp_up_quit(&ss->up);
	ss->wait.op = OP_NONE;
	ss->wait_rdns = 0;	/* a name arriving now opens no upstream */
	drop_line(ss);
}
