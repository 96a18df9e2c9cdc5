/* smtp_auth: see smtp_auth.h. */
#include "smtp_auth.h"
#include "smtp_conf.h"
#include "b64.h"
#include "log.h"
#include "metrics.h"
#include "sasl.h"
#include "smtp_parse.h"
#include "smtp_relay.h"
#include "smtp_server.h"
#include "strbuf.h"
#include "xmem.h"

#include <stdlib.h>
#include <strings.h>
#include <string.h>

/* The user name of an AUTH exchange comes from the client's FIRST
 * response only - PLAIN's authcid, or LOGIN's first answer (RFC 4954's
 * initial response or the answer to the first 334). Later responses hold
 * the password: never parsed for a name, never logged or forwarded. */
static void note_response(struct smtp_session *ss, const char *b64, size_t len)
{
	if (ss->auth_first_seen)
		return;
	ss->auth_first_seen = 1;
	if (len <= 1)
		return;
	if (!strcmp(ss->auth_mech, "PLAIN")) {
		struct sasl_plain p;
		if (sasl_plain_decode(b64, len, &p) == 0)
			ss->auth_user = xstrdup(p.authcid);
		explicit_bzero(&p, sizeof(p));
	} else if (!strcmp(ss->auth_mech, "LOGIN")) {
		char name[SASL_NAME_MAX + 1];
		if (sasl_login_name(b64, len, name) == 0)
			ss->auth_user = xstrdup(name);
	}
}

/* Whether a 334's challenge asks for the user name ("Username:", "User
 * Name", as LOGIN servers word it) - after "AUTH LOGIN =" a server may
 * take the "=" as an empty name and ask for the password next (Exim). */
static bool asks_user_name(const struct smtp_reply *r)
{
	unsigned char *d;
	size_t n;
	if (r->nlines != 1 || b64_decode(r->lines[0].text, r->lines[0].len, &d, &n) < 0)
		return false;
	while (n && (d[n - 1] == ':' || d[n - 1] == ' '))
		n--;
	bool yes = (n == 8 && !strncasecmp((char *)d, "username", 8)) ||
		   (n == 9 && !strncasecmp((char *)d, "user name", 9));
	free(d);
	return yes;
}

static void auth_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	bool cancelled = ss->auth_cancel;
	ss->auth_cancel = 0;
	if (cancelled && r->code == 334) {
		/* RFC 4954 §4: a "*" ends the exchange (501). An upstream still
		 * asking is out of step with us: whatever the client sends next
		 * would reach it as a SASL response. */
		ss->auth_abort = AUTH_ABORT_NONE;
		log_warn("session %s: upstream %s: 334 after an AUTH cancel", ss->s.id, ss->up_addr ? ss->up_addr : "?");
		smtp_relay_drop(ss, false);
		smtp_reply_err(ss, "454 4.7.0 Temporary authentication failure");
		return;
	}
	if (ss->auth_abort) {
		bool too_long = ss->auth_abort == AUTH_ABORT_TOO_LONG;
		ss->auth_abort = AUTH_ABORT_NONE;
		smtp_reply_err(ss, too_long ? "501 5.5.2 Line too long, authentication aborted"
					    : "501 5.5.2 Invalid base64 data, authentication aborted");
		return;
	}
	smtp_reply_relay(ss, r);
	if (cancelled && r->code != 235 && smtp_junk(ss)) {
		/* AUTH then "*" does no work either: one every timeout_command
		 * - 1 seconds must not hold a slot for ever. */
		smtp_too_many_errors(ss);
		return;
	}
	if (r->code == 334) {
		if (ss->auth_need_prompt) {
			ss->auth_need_prompt = 0;
			if (!asks_user_name(r))
				ss->auth_first_seen = 1;	/* what comes next is no name */
		}
		smtp_enter(ss, SMTP_AUTH);
		return;
	}
	if (r->code == 235) {
		ss->authed = 1;
		metrics_auth(true);
		free(ss->user);
		ss->user = xstrdup(ss->auth_user ? ss->auth_user : "");
		return;
	}
	if (r->code == 535) {
		ss->auth_failures++;
		session_log_auth_failed(&ss->s, ss->auth_user, ss->auth_mech);
		if (session_error(&ss->s)) {
			smtp_reply(ss, "421 4.7.0 Too many errors");
			smtp_close(ss, RESULT_AUTH_FAILURES);
		}
	}
}

/* Whether AUTH may run now; replies (counted) when not. */
static bool auth_refused(struct smtp_session *ss)
{
	if (!smtp_auth_allowed(ss)) {
		if (ss->s.listener->auth && !session_secure(&ss->s))
			smtp_reply_err(ss, "530 5.7.0 Must issue a STARTTLS command first");
		else
			smtp_reply_err(ss, "503 5.5.1 Authentication not enabled");
		return true;
	}
	if (ss->authed) {
		smtp_reply_err(ss, "503 5.5.1 Already authenticated");
		return true;
	}
	if (ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 AUTH not allowed during a mail transaction");
		return true;
	}
	return false;
}

/* The mechanism, upper-cased, if it is offered here (auth_mechanisms and
 * the upstream's list); its length in *ml, or false. */
static bool offered_mech(struct smtp_session *ss, const char *args, size_t len, char *mech,
			 size_t sz, size_t *ml)
{
	size_t n = 0;
	while (n < len && args[n] != ' ' && n < sz - 1) {
		char ch = args[n];
		mech[n++] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
	}
	mech[n] = '\0';
	*ml = n;
	if (!n || (n < len && args[n] != ' '))
		return false;
	const struct conf *c = session_conf(&ss->s);
	for (size_t i = 0; i < smtpd_conf(c)->auth_mechanisms.n; i++)
		if (!strcmp(smtpd_conf(c)->auth_mechanisms.v[i], mech) &&
		    smtp_server_auth_offered(ss->server, ss->s.listener->upstream, mech))
			return true;
	return false;
}

void smtp_auth(struct smtp_session *ss, const char *args, size_t len)
{
	char mech[sizeof(ss->auth_mech)], line[SMTP_AUTH_LINE_MAX];
	struct strbuf b;
	size_t ml;
	const char *ir = NULL;
	size_t irlen = 0;

	if (auth_refused(ss))
		return;
	if (!offered_mech(ss, args, len, mech, sizeof(mech), &ml)) {
		smtp_reply_err(ss, "504 5.5.4 Unrecognized authentication type");
		return;
	}
	if (ml < len) {
		ir = args + ml + 1;
		irlen = len - ml - 1;
		if (!(irlen == 1 && ir[0] == '=') && !b64_valid(ir, irlen)) {
			smtp_reply_err(ss, "501 5.5.2 Invalid base64 data");
			return;
		}
	}
	sb_init(&b, line, sizeof(line));
	sb_adds(&b, "AUTH ");
	sb_adds(&b, mech);
	if (ir) {
		sb_addc(&b, ' ');
		sb_add(&b, ir, irlen);
	}
	sb_add(&b, "\r\n", 2);
	if (!sb_ok(&b)) {
		smtp_reply_err(ss, "500 5.5.2 Line too long");
		return;
	}
	memcpy(ss->auth_mech, mech, sizeof(mech));
	XFREE(ss->auth_user);
	ss->auth_first_seen = 0;
	ss->auth_need_prompt = 0;
	ss->auth_cancel = 0;	/* a cancel whose reply never came is not this exchange's */
	ss->auth_abort = AUTH_ABORT_NONE;
	/* "=" is an empty initial response (RFC 4954 §4): the server's 334
	 * asks for the first real one - LOGIN's user name comes next. */
	if (ir && !(irlen == 1 && ir[0] == '='))
		note_response(ss, ir, irlen);
	else if (ir && !strcmp(mech, "LOGIN"))
		ss->auth_need_prompt = 1;
	smtp_relay_command(ss, OP_AUTH, sb_str(&b), sb_len(&b), auth_reply);
	explicit_bzero(line, sb_len(&b));	/* a PLAIN initial response */
}

void smtp_auth_abort(struct smtp_session *ss, enum auth_abort why)
{
	static const char cancel[] = "*\r\n";
	ss->auth_abort = (uint8_t)why;
	ss->auth_cancel = 1;
	smtp_relay_command(ss, OP_AUTH, cancel, sizeof(cancel) - 1, auth_reply);
}

void smtp_auth_line(struct smtp_session *ss, const char *line, size_t len)
{
	size_t content;
	if (smtp_line_check(line, len, &content) != SMTP_LINE_OK ||
	    !((content == 1 && line[0] == '*') || b64_valid(line, content) || content == 0)) {
		smtp_auth_abort(ss, AUTH_ABORT_BASE64);
		return;
	}
	if (content == 1 && line[0] == '*')
		ss->auth_cancel = 1;
	else
		note_response(ss, line, content);
	smtp_relay_command(ss, OP_AUTH, line, len, auth_reply);
}
