/* smtp_session: one SMTP client session of mailgate-smtpd (DESIGN.md §4). */
#ifndef MG_SMTP_SESSION_H
#define MG_SMTP_SESSION_H

#include "addr.h"
#include "conf.h"

struct smtp_server;
struct smtp_session;

/* Takes ownership of fd. */
void smtp_session_start(struct smtp_server *srv, const struct conf_listener *l, int fd,
			const struct mg_addr *peer, const struct mg_addr *local);
/* SIGTERM: idle sessions get 421 at their next command. */
void smtp_session_shutdown_notice(struct smtp_session *ss);
/* shutdown_timeout: close now. */
void smtp_session_kill(struct smtp_session *ss);

#endif
