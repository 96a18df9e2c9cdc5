/* smtp_mail: see smtp_mail.h. */
#include "smtp_mail.h"
#include "smtp_conf.h"
#include "log.h"
#include "metrics.h"
#include "smtp_parse.h"
#include "smtp_policy.h"
#include "smtp_relay.h"
#include "smtp_server.h"
#include "strbuf.h"

#include <string.h>
#include <strings.h>

static unsigned passthrough(const struct smtp_session *ss)
{
	return smtp_server_passthrough(ss->server, ss->s.listener->upstream);
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

/* "VERB:<mailbox>" for the upstream. */
static void start_line(struct strbuf *b, char *line, size_t sz, const char *verb,
		       const struct smtp_path *p)
{
	sb_init(b, line, sz);
	sb_adds(b, verb);
	sb_addc(b, '<');
	sb_add(b, p->mailbox, p->mailboxlen);
	sb_addc(b, '>');
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

/* 555 naming the parameter - at most KEYWORD_ECHO_MAX octets of it: the
 * reply stays a reply of ours, whatever the client sent. */
#define KEYWORD_ECHO_MAX 64
static void unsupported(struct smtp_session *ss, const struct smtp_param *q)
{
	smtp_reply_err(ss, "555 5.5.4 Unsupported parameter %.*s",
		       (int)(q->keylen > KEYWORD_ECHO_MAX ? KEYWORD_ECHO_MAX : q->keylen), q->key);
}

static bool value_in(const struct smtp_param *p, const char *const *words)
{
	for (int i = 0; words[i]; i++)
		if (p->val && strlen(words[i]) == p->vallen && !strncasecmp(p->val, words[i], p->vallen))
			return true;
	return false;
}

/* SIZE= against the limit (DESIGN.md §4.2): true when refused. */
static bool size_refused(struct smtp_session *ss, const struct smtp_param *q)
{
	unsigned long long sz;
	if (!q->val || !smtp_parse_u64(q->val, q->vallen, &sz)) {
		smtp_reply_err(ss, "501 5.5.4 Bad SIZE parameter");
		return true;
	}
	if (sz > smtp_server_size(ss->server, ss->s.listener->upstream)) {
		smtp_reply_err(ss, "552 5.3.4 Message size exceeds fixed maximum message size");
		return true;
	}
	return false;
}

/* MAIL's parameters: forwarded when their extension is on, SIZE and
 * AUTH= judged here. False (reply sent) on a refusal. */
static bool mail_params(struct smtp_session *ss, const struct smtp_path *p, struct strbuf *b)
{
	static const char *const body_words[] = { "7BIT", "8BITMIME", NULL };
	static const char *const ret_words[] = { "FULL", "HDRS", NULL };
	unsigned pass = passthrough(ss);
	for (size_t i = 0; i < p->nparams; i++) {
		const struct smtp_param *q = &p->params[i];
		if (smtp_param_is(q, "SIZE")) {
			if (size_refused(ss, q))
				return false;
			continue;	/* enforced here, not forwarded */
		}
		if (smtp_param_is(q, "AUTH") && q->val)
			continue;	/* RFC 4954 §5: ours to judge; not forwarded */
		if ((smtp_param_is(q, "BODY") && (pass & EXT_8BITMIME) && value_in(q, body_words)) ||
		    (smtp_param_is(q, "SMTPUTF8") && !q->val && (pass & EXT_SMTPUTF8)) ||
		    (smtp_param_is(q, "RET") && (pass & EXT_DSN) && value_in(q, ret_words)) ||
		    (smtp_param_is(q, "ENVID") && (pass & EXT_DSN) && q->val)) {
			add_param(b, q);
			continue;
		}
		unsupported(ss, q);
		return false;
	}
	return true;
}

static void mail_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	smtp_reply_relay(ss, r);
	if (r->code >= 200 && r->code < 300) {
		ss->in_tx = 1;
		ss->rcpts = 0;
	}
}

void smtp_mail(struct smtp_session *ss, const char *args, size_t len)
{
	struct smtp_path p;
	char line[SMTP_CMD_LINE_MAX];
	struct strbuf b;

	if (ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (path_error(ss, smtp_parse_path(args, len, "FROM:", false, &p), false))
		return;
	ss->utf8 = 0;
	for (size_t i = 0; i < p.nparams; i++)
		if (smtp_param_is(&p.params[i], "SMTPUTF8") && !p.params[i].val &&
		    (passthrough(ss) & EXT_SMTPUTF8))
			ss->utf8 = 1;
	if (reject_8bit(ss, &p))
		return;
	start_line(&b, line, sizeof(line), "MAIL FROM:", &p);
	if (!mail_params(ss, &p, &b) || !finish_line(ss, &b))
		return;
	if (!ss->up && ss->reconnect_closes) {
		smtp_reply(ss, "421 4.4.2 Upstream connection lost, closing");
		smtp_close(ss, RESULT_UPSTREAM_FAILED);
		return;
	}
	smtp_relay_command(ss, OP_MAIL, sb_str(&b), sb_len(&b), mail_reply);
}

static bool relay_refused(struct smtp_session *ss, const struct smtp_path *p)
{
	if (smtp_rcpt_policy(&ss->keys->accept_domains, p) == RCPT_LOCAL || smtp_may_relay(ss))
		return false;
	ss->relay_denied = 1;
	metrics_relay_denied();
	struct logkv kv;
	logkv_begin(&kv, "relay-denied", 1);
	logkv_raw(&kv, "session", ss->s.id);
	logkv_raw(&kv, "client", ss->s.ip);
	logkv_mem(&kv, "rcpt", p->mailbox, p->mailboxlen);
	logkv_end(&kv, LOG_LVL_NOTICE);
	smtp_reply_err(ss, "554 5.7.1 Relay access denied");
	return true;
}

static void rcpt_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	smtp_reply_relay(ss, r);
	if (r->code >= 200 && r->code < 300)
		ss->rcpts++;
}

void smtp_rcpt(struct smtp_session *ss, const char *args, size_t len)
{
	struct smtp_path p;
	char line[SMTP_CMD_LINE_MAX];
	struct strbuf b;

	if (!ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 Need MAIL command");
		return;
	}
	if (path_error(ss, smtp_parse_path(args, len, "TO:", true, &p), true) || reject_8bit(ss, &p))
		return;
	if (ss->rcpts >= (unsigned)ss->keys->max_recipients) {
		smtp_reply_err(ss, "452 4.5.3 Too many recipients");
		return;
	}
	if (relay_refused(ss, &p))
		return;
	start_line(&b, line, sizeof(line), "RCPT TO:", &p);
	for (size_t i = 0; i < p.nparams; i++) {
		const struct smtp_param *q = &p.params[i];
		if (!(passthrough(ss) & EXT_DSN) || !q->val ||
		    !(smtp_param_is(q, "NOTIFY") || smtp_param_is(q, "ORCPT"))) {
			unsupported(ss, q);
			return;
		}
		add_param(&b, q);
	}
	if (!finish_line(ss, &b))
		return;
	smtp_relay_command(ss, OP_RCPT, sb_str(&b), sb_len(&b), rcpt_reply);
}
