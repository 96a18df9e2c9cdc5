/* smtp_txn: everything that goes through the upstream (DESIGN.md §4.3-4.5):
 * MAIL/RCPT with parameter and relay checks, DATA streaming with the
 * Received header and the end-of-data scanner, AUTH relaying, the lazy
 * upstream connection and what each upstream failure means for the client.
 * One command is outstanding at a time (ss->op), so replies stay in order
 * however much the client pipelines. */
#include "smtp_session_int.h"
#include "b64.h"
#include "conn.h"
#include "log.h"
#include "peer.h"
#include "proxyproto.h"
#include "smtp_policy.h"
#include "smtp_received.h"
#include "smtp_server.h"
#include "strbuf.h"
#include "tls.h"
#include "xmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const struct conf *conf_of(const struct smtp_session *ss)
{
	return ss->srv->base.conf;
}

static uint64_t size_limit(const struct smtp_session *ss)
{
	return smtp_server_size(ss->srv, ss->s.listener->upstream);
}

/* Relays an upstream reply line by line (validated by smtp_reply_parse). */
static void relay_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	for (size_t i = 0; i < r->nlines; i++)
		smtp_reply(ss, "%d%c%.*s", r->code, i + 1 == r->nlines ? ' ' : '-',
			   (int)r->lines[i].len, r->lines[i].text);
}

static void up_cb(void *owner, enum up_event ev, const struct smtp_reply *r, int detail,
		  const char *why);
static void on_failed(struct smtp_session *ss, int detail, const char *why);

static void start_upstream(struct smtp_session *ss)
{
	struct smtp_up_params p;
	char addr[80];
	if (ss->rdns_status == RDNS_PENDING) {
		ss->wait_rdns = 1;	/* XCLIENT NAME needs it; at most 5 s */
		return;
	}
	memset(&p, 0, sizeof(p));
	p.srv = ss->srv;
	p.cu = ss->s.listener->upstream;
	p.hostname = conf_of(ss)->hostname;
	p.client_helo = ss->helo_arg;
	p.only_index = -1;
	if (ss->s.client.u.sa.sa_family == AF_INET6)
		snprintf(addr, sizeof(addr), "IPV6:%s", ss->s.ip);
	else
		snprintf(addr, sizeof(addr), "%s", ss->s.ip);
	p.xclient.name = ss->rdns_status == RDNS_OK ? ss->rdns_name
			 : ss->rdns_status == RDNS_TEMP ? "[TEMPUNAVAIL]" : "[UNAVAILABLE]";
	p.xclient.addr = addr;
	p.xclient.port = addr_port(&ss->s.client);
	p.xclient.proto = ss->esmtp ? "ESMTP" : "SMTP";
	p.xclient.helo = ss->helo_arg;
	unsigned char pp[PP_V2_MAX];
	p.pp_len = session_proxy_header(&ss->s, p.cu->proxy_protocol, pp, sizeof(pp));
	p.pp = pp;
	if (p.cu->proxy_protocol != PROXY_OUT_OFF && !p.pp_len) {
		/* Without its header the upstream would take the gateway for
		 * the client: fail closed (sized to fit, so cannot happen). */
		on_failed(ss, UPF_CONFIG, "the PROXY header does not fit");
		return;
	}
	/* LOGIN: a relay peer's section name, or the SASL user when the
	 * upstream is re-opened in an authenticated session. */
	p.xclient.login = (ss->s.peer && ss->s.peer->relay) ? ss->s.peer->name
			  : ss->authed ? ss->user : NULL;
	ss->up = smtp_up_start(&p, up_cb, ss);
}

/* Sends line (with CRLF) for op, connecting first if needed. */
static void upstream_command(struct smtp_session *ss, enum smtp_op op, const char *line, size_t len)
{
	if (ss->up && smtp_up_ready(ss->up)) {
		ss->op = op;
		smtp_up_command(ss->up, line, len);
		return;
	}
	free(ss->pending);
	ss->pending = xmemdup0(line, len);
	ss->pending_len = len;
	ss->pending_op = op;
	ss->op = OP_CONNECT;
	if (!ss->up)
		start_upstream(ss);
}

void smtp_txn_rdns_done(struct smtp_session *ss)
{
	if (!ss->wait_rdns)
		return;
	ss->wait_rdns = 0;
	if (ss->state != SS_CLOSING && ss->op == OP_CONNECT && !ss->up)
		start_upstream(ss);
}

void smtp_txn_drop_upstream(struct smtp_session *ss, bool polite)
{
	if (polite)
		smtp_up_quit(&ss->up);
	else
		smtp_up_free(&ss->up);
	/* Without XCLIENT a new upstream connection would not know the
	 * client authenticated: such sessions end after this reply. */
	if (ss->authed && !ss->s.listener->upstream->xclient)
		ss->reconnect_closes = 1;
}

void smtp_txn_rset_then(struct smtp_session *ss, const char *local_reply)
{
	if (ss->up && smtp_up_ready(ss->up)) {
		free(ss->local_reply);
		ss->local_reply = xstrdup(local_reply);
		ss->op = OP_RSET;
		smtp_up_command(ss->up, "RSET\r\n", 6);
		return;
	}
	conn_write(ss->s.conn, local_reply, strlen(local_reply));
}

static bool reject_8bit(struct smtp_session *ss, const struct smtp_path *p)
{
	if (p->has_8bit && !ss->utf8) {
		smtp_reply_err(ss, "553 5.6.7 Address requires SMTPUTF8");
		return true;
	}
	return false;
}

static bool path_error(struct smtp_session *ss, enum smtp_path_rc rc, bool rcpt)
{
	switch (rc) {
	case SMTP_PATH_OK:
		return false;
	case SMTP_PATH_SYNTAX:
		smtp_reply_err(ss, "501 5.5.4 Syntax: %s", rcpt ? "RCPT TO:<address>" : "MAIL FROM:<address>");
		return true;
	case SMTP_PATH_TOO_LONG:
		/* RFC 5321 §4.5.3.1.3; refused before anything goes upstream. */
		smtp_reply_err(ss, "501 5.1.3 Path too long");
		return true;
	case SMTP_PATH_BAD_ADDRESS:
		smtp_reply_err(ss, "501 %s Bad %s address syntax", rcpt ? "5.1.3" : "5.1.7",
			       rcpt ? "recipient" : "sender");
		return true;
	default:
		smtp_reply_err(ss, "555 5.5.4 Unsupported or malformed parameter");
		return true;
	}
}

/* Appends " KEY[=VALUE]" to the command being built. */
static void add_param(struct strbuf *b, const struct smtp_param *p)
{
	sb_addc(b, ' ');
	sb_add(b, p->key, p->keylen);
	if (p->val) {
		sb_addc(b, '=');
		sb_add(b, p->val, p->vallen);
	}
}

/* The command built for the upstream, CRLF added; false (and 500 sent)
 * when it does not fit: it is refused whole, never sent cut short. */
static bool finish_line(struct smtp_session *ss, struct strbuf *b)
{
	sb_add(b, "\r\n", 2);
	if (sb_ok(b))
		return true;
	smtp_reply_err(ss, "500 5.5.2 Line too long");
	return false;
}

static bool value_in(const struct smtp_param *p, const char *const *words)
{
	for (int i = 0; words[i]; i++)
		if (p->val && strlen(words[i]) == p->vallen && !strncasecmp(p->val, words[i], p->vallen))
			return true;
	return false;
}

void smtp_txn_mail(struct smtp_session *ss, const char *args, size_t len)
{
	static const char *const body_words[] = { "7BIT", "8BITMIME", NULL };
	static const char *const ret_words[] = { "FULL", "HDRS", NULL };
	struct smtp_path p;
	char line[SMTP_CMD_LINE_MAX];
	struct strbuf b;
	unsigned pass = smtp_server_passthrough(ss->srv, ss->s.listener->upstream);

	if (!ss->helo) {
		smtp_reply_err(ss, "503 5.5.1 Send EHLO or HELO first");
		return;
	}
	if (ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (path_error(ss, smtp_parse_path(args, len, "FROM:", false, &p), false))
		return;
	ss->utf8 = 0;
	for (size_t i = 0; i < p.nparams; i++)
		if (smtp_param_is(&p.params[i], "SMTPUTF8") && !p.params[i].val && (pass & EXT_SMTPUTF8))
			ss->utf8 = 1;
	if (reject_8bit(ss, &p))
		return;
	sb_init(&b, line, sizeof(line));
	sb_adds(&b, "MAIL FROM:<");
	sb_add(&b, p.mailbox, p.mailboxlen);
	sb_addc(&b, '>');
	for (size_t i = 0; i < p.nparams; i++) {
		const struct smtp_param *q = &p.params[i];
		unsigned long long sz;
		if (smtp_param_is(q, "SIZE")) {
			if (!q->val || !smtp_parse_u64(q->val, q->vallen, &sz)) {
				smtp_reply_err(ss, "501 5.5.4 Bad SIZE parameter");
				return;
			}
			if (sz > size_limit(ss)) {
				smtp_reply_err(ss, "552 5.3.4 Message size exceeds fixed maximum message size");
				return;
			}
			continue;	/* enforced here, not forwarded */
		}
		if (smtp_param_is(q, "AUTH") && q->val)
			continue;	/* RFC 4954 §5: ours to judge; not forwarded */
		if ((smtp_param_is(q, "BODY") && (pass & EXT_8BITMIME) && value_in(q, body_words)) ||
		    (smtp_param_is(q, "SMTPUTF8") && !q->val && (pass & EXT_SMTPUTF8)) ||
		    (smtp_param_is(q, "RET") && (pass & EXT_DSN) && value_in(q, ret_words)) ||
		    (smtp_param_is(q, "ENVID") && (pass & EXT_DSN) && q->val)) {
			add_param(&b, q);
			continue;
		}
		smtp_reply_err(ss, "555 5.5.4 Unsupported parameter %.*s", (int)q->keylen, q->key);
		return;
	}
	if (!finish_line(ss, &b))
		return;
	if (!ss->up && ss->reconnect_closes) {
		smtp_reply(ss, "421 4.4.2 Upstream connection lost, closing");
		smtp_close(ss, "upstream-failed");
		return;
	}
	upstream_command(ss, OP_MAIL, sb_str(&b), sb_len(&b));
}

void smtp_txn_rcpt(struct smtp_session *ss, const char *args, size_t len)
{
	struct smtp_path p;
	char line[SMTP_CMD_LINE_MAX];
	struct strbuf b;
	unsigned pass = smtp_server_passthrough(ss->srv, ss->s.listener->upstream);

	if (!ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 Need MAIL command");
		return;
	}
	if (path_error(ss, smtp_parse_path(args, len, "TO:", true, &p), true))
		return;
	if (reject_8bit(ss, &p))
		return;
	if (ss->rcpts >= (unsigned)conf_of(ss)->max_recipients) {
		smtp_reply_err(ss, "452 4.5.3 Too many recipients");
		return;
	}
	if (smtp_rcpt_policy(&conf_of(ss)->accept_domains, &p) != RCPT_LOCAL && !smtp_may_relay(ss)) {
		ss->relay_denied = 1;
		struct logkv kv;
		logkv_begin(&kv, "relay-denied", 1);
		logkv_raw(&kv, "session", ss->s.id);
		logkv_raw(&kv, "client", ss->s.ip);
		logkv_mem(&kv, "rcpt", p.mailbox, p.mailboxlen);
		logkv_end(&kv, LOG_LVL_NOTICE);
		smtp_reply_err(ss, "554 5.7.1 Relay access denied");
		return;
	}
	sb_init(&b, line, sizeof(line));
	sb_adds(&b, "RCPT TO:<");
	sb_add(&b, p.mailbox, p.mailboxlen);
	sb_addc(&b, '>');
	for (size_t i = 0; i < p.nparams; i++) {
		const struct smtp_param *q = &p.params[i];
		if ((pass & EXT_DSN) && q->val &&
		    (smtp_param_is(q, "NOTIFY") || smtp_param_is(q, "ORCPT"))) {
			add_param(&b, q);
			continue;
		}
		smtp_reply_err(ss, "555 5.5.4 Unsupported parameter %.*s", (int)q->keylen, q->key);
		return;
	}
	if (!finish_line(ss, &b))
		return;
	upstream_command(ss, OP_RCPT, sb_str(&b), sb_len(&b));
}

void smtp_txn_data(struct smtp_session *ss, const char *args, size_t len)
{
	if (!ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 Need MAIL command");
		return;
	}
	if (len) {
		smtp_reply_err(ss, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (ss->rcpts == 0) {
		smtp_reply_err(ss, "554 5.5.1 No valid recipients");
		return;
	}
	upstream_command(ss, OP_DATA, "DATA\r\n", 6);
}

static void send_received(struct smtp_session *ss)
{
	struct smtp_received_info in;
	char hdr[2048];
	struct tls_session *t = conn_tls_ready(ss->s.conn) ? conn_tls(ss->s.conn) : NULL;
	const struct tls_peer *peer = t ? tls_peer(t) : NULL;
	memset(&in, 0, sizeof(in));
	in.helo = ss->helo_arg;
	in.ip = ss->s.ip;
	in.rdns = ss->rdns_status == RDNS_OK ? ss->rdns_name : NULL;
	in.ipv6 = ss->s.client.u.sa.sa_family == AF_INET6;
	in.hostname = conf_of(ss)->hostname;
	in.proto = smtp_received_proto(ss->esmtp, t != NULL, ss->authed, ss->utf8);
	if (t) {
		in.suite = tls_cipher_name(t);
		in.cert_status = tls_cert_status_name(peer_cert_status(peer, ss->s.pin));
		if (peer && peer->status == CERT_VERIFIED && peer->cn) {
			in.cn = peer->cn;
			in.cn_len = peer->cn_len;
		}
	}
	if (t && ss->s.peer)
		in.peer = ss->s.peer->name;
	in.id = ss->s.id;
	in.msgno = ss->msgs;
	in.when = time(NULL);
	size_t n = smtp_received_build(&in, hdr, sizeof(hdr));
	if (n)
		smtp_up_data(ss->up, hdr, n);
}

static void begin_data(struct smtp_session *ss)
{
	ss->msgs++;
	smtp_data_init(&ss->scan, size_limit(ss));
	ss->data_fail = DF_NONE;
	smtp_enter(ss, SS_DATA);
	conn_set_timeout(ss->s.conn, conf_of(ss)->timeout_data);
	if (conf_of(ss)->received_header)
		send_received(ss);
}

static void end_of_data(struct smtp_session *ss)
{
	smtp_enter(ss, SS_CMD);
	conn_set_timeout(ss->s.conn, conf_of(ss)->timeout_command);
	if (ss->data_fail == DF_NONE && ss->up) {
		ss->op = OP_DOT;
		smtp_up_expect_reply(ss->up, 600);
		return;
	}
	smtp_reset_tx(ss);
	switch (ss->data_fail) {
	case DF_SIZE:
		smtp_reply_err(ss, "552 5.3.4 Message size exceeds fixed maximum message size");
		break;
	case DF_BARE:
		smtp_reply_err(ss, "550 5.6.0 Message contains bare CR or LF");
		break;
	default:
		smtp_reply_err(ss, "451 4.4.2 Upstream connection lost");
		break;
	}
	if (ss->reconnect_closes && ss->state != SS_CLOSING) {
		smtp_reply(ss, "421 4.4.2 Upstream connection lost, closing");
		smtp_close(ss, "upstream-failed");
	}
}

void smtp_txn_data_input(struct smtp_session *ss)
{
	struct conn *c = ss->s.conn;
	while (conn_in_len(c)) {
		if (ss->up && smtp_up_out_len(ss->up) > SMTP_UP_HIGH_WATER) {
			conn_read_stop(c);	/* back-pressure until the upstream drains */
			smtp_up_notify_drained(ss->up);
			return;
		}
		struct smtp_data_result r = smtp_data_feed(&ss->scan, conn_in_data(c), conn_in_len(c));
		if (ss->up && ss->data_fail == DF_NONE && r.clean)
			smtp_up_data(ss->up, conn_in_data(c), r.clean);
		if (ss->data_fail == DF_NONE && (ss->scan.bare || ss->scan.oversize)) {
			ss->data_fail = ss->scan.bare ? DF_BARE : DF_SIZE;
			/* Close without the final dot: nothing is delivered. */
			smtp_txn_drop_upstream(ss, false);
		}
		conn_in_consume(c, r.consumed);
		if (ss->scan.done) {
			end_of_data(ss);
			return;
		}
	}
}

/* PLAIN: authzid NUL authcid NUL passwd -> authcid. */
static char *plain_user(const char *b64, size_t len)
{
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	char *user = NULL;
	if (b64_decode(b64, len, &raw, &rawlen) < 0)
		return NULL;
	unsigned char *z1 = memchr(raw, 0, rawlen);
	if (z1) {
		unsigned char *z2 = memchr(z1 + 1, 0, rawlen - (size_t)(z1 + 1 - raw));
		if (z2)
			user = xmemdup0(z1 + 1, (size_t)(z2 - z1 - 1));
	}
	free(raw);
	return user;
}

static char *login_user(const char *b64, size_t len)
{
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	if (b64_decode(b64, len, &raw, &rawlen) < 0)
		return NULL;
	char *u = xmemdup0(raw, strnlen((char *)raw, rawlen));
	free(raw);
	return u;
}

/* The user name of an AUTH exchange comes from the client's FIRST
 * response only - PLAIN's authcid, or LOGIN's first answer (RFC 4954's
 * initial response or the answer to the first 334). Later responses hold
 * the password: never parsed for a name, never logged or forwarded. */
static void note_auth_response(struct smtp_session *ss, const char *b64, size_t len)
{
	if (ss->auth_first_seen)
		return;
	ss->auth_first_seen = 1;
	if (len <= 1)
		return;
	if (!strcmp(ss->auth_mech, "PLAIN"))
		ss->auth_user = plain_user(b64, len);
	else if (!strcmp(ss->auth_mech, "LOGIN"))
		ss->auth_user = login_user(b64, len);
}

void smtp_txn_auth(struct smtp_session *ss, const char *args, size_t len)
{
	char mech[24], line[SMTP_AUTH_LINE_MAX];
	struct strbuf b;
	size_t ml = 0;
	const char *ir = NULL;
	size_t irlen = 0;

	if (!smtp_auth_allowed(ss)) {
		if (ss->s.listener->auth && !smtp_tls_active(ss))
			smtp_reply_err(ss, "530 5.7.0 Must issue a STARTTLS command first");
		else
			smtp_reply_err(ss, "503 5.5.1 Authentication not enabled");
		return;
	}
	if (!ss->helo) {
		/* The upstream would get no HELO for the session (Postfix
		 * answers this the same way). */
		smtp_reply_err(ss, "503 5.5.1 Send EHLO or HELO first");
		return;
	}
	if (ss->authed) {
		smtp_reply_err(ss, "503 5.5.1 Already authenticated");
		return;
	}
	if (ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 AUTH not allowed during a mail transaction");
		return;
	}
	while (ml < len && args[ml] != ' ' && ml < sizeof(mech) - 1) {
		char ch = args[ml];
		mech[ml++] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
	}
	mech[ml] = '\0';
	if (ml < len && args[ml] == ' ') {
		ir = args + ml + 1;
		irlen = len - ml - 1;
	}
	bool offered = false;
	for (size_t i = 0; i < conf_of(ss)->auth_mechanisms.n; i++)
		if (!strcmp(conf_of(ss)->auth_mechanisms.v[i], mech) &&
		    smtp_server_auth_offered(ss->srv, ss->s.listener->upstream, mech))
			offered = true;
	if (!ml || !offered || (ml < len && args[ml] != ' ')) {
		smtp_reply_err(ss, "504 5.5.4 Unrecognized authentication type");
		return;
	}
	if (ir && !(irlen == 1 && ir[0] == '=') && !b64_valid(ir, irlen)) {
		smtp_reply_err(ss, "501 5.5.2 Invalid base64 data");
		return;
	}
	sb_init(&b, line, sizeof(line));
	sb_adds(&b, "AUTH ");
	sb_adds(&b, mech);
	if (ir) {
		sb_addc(&b, ' ');
		sb_add(&b, ir, irlen);
	}
	if (!finish_line(ss, &b))
		return;
	snprintf(ss->auth_mech, sizeof(ss->auth_mech), "%s", mech);
	XFREE(ss->auth_user);
	ss->auth_first_seen = 0;
	if (ir)
		note_auth_response(ss, ir, irlen);
	upstream_command(ss, OP_AUTH, sb_str(&b), sb_len(&b));
}

/* Ends a running exchange: "*" upstream (RFC 4954 §4), whose reply is
 * replaced by ours; the session is back in the command state. */
void smtp_txn_auth_abort(struct smtp_session *ss, enum auth_abort why)
{
	smtp_enter(ss, SS_CMD);
	ss->auth_abort = (uint8_t)why;
	upstream_command(ss, OP_AUTH, "*\r\n", 3);
}

void smtp_txn_auth_line(struct smtp_session *ss, const char *line, size_t len)
{
	size_t content;
	if (smtp_line_check(line, len, &content) != SMTP_LINE_OK ||
	    !((content == 1 && line[0] == '*') || b64_valid(line, content) || content == 0)) {
		smtp_txn_auth_abort(ss, AUTH_ABORT_BASE64);
		return;
	}
	smtp_enter(ss, SS_CMD);
	if (!(content == 1 && line[0] == '*'))
		note_auth_response(ss, line, content);
	upstream_command(ss, OP_AUTH, line, len);
}

static void auth_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	if (ss->auth_abort) {
		bool too_long = ss->auth_abort == AUTH_ABORT_TOO_LONG;
		ss->auth_abort = AUTH_ABORT_NONE;
		smtp_reply_err(ss, too_long ? "501 5.5.2 Line too long, authentication aborted"
					    : "501 5.5.2 Invalid base64 data, authentication aborted");
		return;
	}
	if (r->code == 334) {
		relay_reply(ss, r);
		smtp_enter(ss, SS_AUTH);
		return;
	}
	if (r->code == 235) {
		ss->authed = 1;
		free(ss->user);
		ss->user = ss->auth_user ? xstrdup(ss->auth_user) : xstrdup("");
		relay_reply(ss, r);
		return;
	}
	relay_reply(ss, r);
	if (r->code == 535) {
		ss->auth_failures++;
		session_log_auth_failed(&ss->s, ss->auth_user, ss->auth_mech);
		if (++ss->errors >= conf_of(ss)->max_errors) {
			smtp_reply(ss, "421 4.7.0 Too many errors");
			smtp_close(ss, "auth-failures");
		}
	}
}

static void on_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	enum smtp_op op = ss->op;
	ss->op = OP_NONE;
	bool ok = r->code >= 200 && r->code < 300;
	switch (op) {
	case OP_MAIL:
		relay_reply(ss, r);
		if (ok) {
			ss->in_tx = 1;
			ss->rcpts = 0;
		}
		break;
	case OP_RCPT:
		relay_reply(ss, r);
		if (ok)
			ss->rcpts++;
		break;
	case OP_DATA:
		relay_reply(ss, r);
		if (r->code == 354)
			begin_data(ss);
		break;
	case OP_DOT:
		relay_reply(ss, r);
		if (ok)
			ss->delivered++;
		smtp_reset_tx(ss);
		break;
	case OP_RSET:
		if (ss->local_reply)
			conn_write(ss->s.conn, ss->local_reply, strlen(ss->local_reply));
		XFREE(ss->local_reply);
		break;
	case OP_AUTH:
		auth_reply(ss, r);
		break;
	default:
		break;
	}
}

static void on_failed(struct smtp_session *ss, int detail, const char *why)
{
	enum smtp_op op = ss->pending_op;
	ss->op = OP_NONE;
	XFREE(ss->pending);
	log_warn("session %s: upstream %s unavailable: %s", ss->s.id,
		 ss->s.listener->upstream->name, why);
	if (detail == UPF_CONFIG) {
		smtp_reply(ss, "421 4.3.0 Upstream configuration error");
		smtp_close(ss, "upstream-failed");
		return;
	}
	if (op == OP_AUTH) {
		smtp_reply_err(ss, "454 4.7.0 Temporary authentication failure");
		return;
	}
	smtp_reply(ss, "421 4.4.1 Upstream unavailable, try again later");
	smtp_close(ss, "upstream-failed");
}

/* Lost or silent upstream after set-up. */
static void on_lost(struct smtp_session *ss, bool timeout, const char *why)
{
	enum smtp_op op = ss->op;
	log_warn("session %s: upstream %s: %s", ss->s.id, ss->up_addr, why ? why : "lost");
	smtp_txn_drop_upstream(ss, false);
	ss->op = OP_NONE;
	if (ss->state == SS_DATA) {
		/* Keep reading to the final dot, then 451 (end_of_data). */
		ss->data_fail = DF_LOST;
		return;
	}
	if (op == OP_AUTH) {
		ss->auth_abort = AUTH_ABORT_NONE;
		smtp_reply_err(ss, "454 4.7.0 Temporary authentication failure");
		return;
	}
	if (ss->in_tx || op == OP_DOT || op == OP_DATA)
		smtp_reply(ss, "451 4.4.2 Upstream %s", timeout ? "timeout" : "connection lost");
	else
		smtp_reply(ss, "421 4.4.2 Upstream %s, closing", timeout ? "timeout" : "connection lost");
	smtp_close(ss, timeout ? "timeout" : "upstream-failed");
}

static void up_cb(void *owner, enum up_event ev, const struct smtp_reply *r, int detail,
		  const char *why)
{
	struct smtp_session *ss = owner;
	if (ss->magic != SMTP_SESSION_MAGIC)
		abort();
	conn_cork(ss->s.conn);
	switch (ev) {
	case UP_READY:
		snprintf(ss->up_addr, sizeof(ss->up_addr), "%s", smtp_up_addr(ss->up));
		ss->op = ss->pending_op;
		smtp_up_command(ss->up, ss->pending, ss->pending_len);
		XFREE(ss->pending);
		break;
	case UP_REPLY:
		on_reply(ss, r);
		break;
	case UP_DRAINED:
		conn_read_start(ss->s.conn);
		break;
	case UP_FAILED: {
		char reason[512];	/* why points into the upstream we free */
		snprintf(reason, sizeof(reason), "%s", why ? why : "?");
		smtp_up_free(&ss->up);
		on_failed(ss, detail, reason);
		break;
	}
	case UP_LOST:
	case UP_TIMEOUT:
		if (ss->state == SS_TLS) {
			/* The client is switching to TLS, after which this
			 * connection (set up with pre-TLS data) is dropped
			 * anyway: nothing to tell anyone. */
			smtp_txn_drop_upstream(ss, false);
			ss->op = OP_NONE;
			break;
		}
		on_lost(ss, ev == UP_TIMEOUT, why);
		break;
	}
	/* Carry on with pipelined input that waited for this event. */
	if (ss->state == SS_CLOSING)
		conn_uncork(ss->s.conn);
	else
		smtp_process(ss);
}
