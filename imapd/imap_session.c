/* imap_session: see imap_session.h. */
#include "imap_session.h"
#include "imap_conf.h"
#include "imap_login.h"
#include "log.h"
#include "server.h"
#include "xmem.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void imap_enter(struct imap_session *is, enum imap_state st)
{
	static const char *const names[] = { "preauth", "sasl", "login", "relay" };
	session_trace(&is->s, "imap", names[is->state], names[st]);
	is->state = st;
}

void imap_reply(struct imap_session *is, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	session_vline(&is->s, fmt, ap);
	va_end(ap);
}

void imap_bad(struct imap_session *is, const char *tag, const char *text)
{
	imap_reply(is, "%s BAD %s", tag && tag[0] ? tag : "*", text);
	if (session_error(&is->s)) {
		imap_reply(is, "* BYE Too many invalid commands");
		imap_close(is, RESULT_TOO_MANY_ERRORS);
	}
}

void imap_close(struct imap_session *is, enum session_result r)
{
	session_close(&is->s, r);
}

void imap_drop_credentials(struct imap_session *is)
{
	if (is->cred) {
		explicit_bzero(is->cred, sizeof(*is->cred));	/* memset before free may be elided */
		XFREE(is->cred);
	}
}
