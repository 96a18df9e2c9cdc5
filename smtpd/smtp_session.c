/* smtp_session: see smtp_session.h. */
#include "smtp_session.h"
#include "conn.h"
#include "log.h"
#include "smtp_conf.h"
#include "smtp_server.h"

#include <stdarg.h>
#include <stdlib.h>

void smtp_enter(struct smtp_session *ss, enum smtp_state st)
{
	static const char *const names[] = { "cmd", "auth", "data", "wait" };
	session_trace(&ss->s, "smtp", names[ss->state], names[st]);
	ss->state = st;
}

/* Lines are built whole by the session core (common/session.c). */
static void reply_v(struct smtp_session *ss, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void reply_v(struct smtp_session *ss, const char *fmt, va_list ap)
{
	session_vline(&ss->s, fmt, ap);
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
	if (session_error(&ss->s))
		smtp_too_many_errors(ss);
}

void smtp_too_many_errors(struct smtp_session *ss)
{
	smtp_reply(ss, "421 4.7.0 Too many errors");
	smtp_close(ss, ss->peer_refused ? RESULT_CERT_REJECTED : RESULT_TOO_MANY_ERRORS);
}

bool smtp_junk(struct smtp_session *ss)
{
	if (ss->junk < SMTP_JUNK_LIMIT) {
		ss->junk++;
		return false;
	}
	return session_error(&ss->s);
}

void smtp_reply_relay(struct smtp_session *ss, const struct smtp_reply *r)
{
	for (size_t i = 0; i < r->nlines; i++)
		smtp_reply(ss, "%d%c%.*s", r->code, i + 1 == r->nlines ? ' ' : '-',
			   (int)r->lines[i].len, r->lines[i].text);
}

void smtp_close(struct smtp_session *ss, enum session_result r)
{
	session_close(&ss->s, r);
}

bool smtp_auth_allowed(const struct smtp_session *ss)
{
	return ss->s.listener->auth && session_secure(&ss->s);
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
