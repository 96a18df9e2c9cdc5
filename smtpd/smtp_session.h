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

#endif
