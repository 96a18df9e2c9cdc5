/* imap_session: one IMAP client session of mailgate-imapd (DESIGN.md §5). */
#ifndef MG_IMAP_SESSION_H
#define MG_IMAP_SESSION_H

#include "addr.h"
#include "conf.h"

struct imap_server;

/* Takes ownership of fd. */
void imap_session_start(struct imap_server *srv, const struct conf_listener *l, int fd,
			const struct mg_addr *peer, const struct mg_addr *local);

#endif
