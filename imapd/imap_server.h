/* imap_server: the imapd worker's shared state - the common server state
 * (TLS objects, limits, sessions) plus the user_map routing table and the
 * master password (EXTERNAL logins). */
#ifndef MG_IMAP_SERVER_H
#define MG_IMAP_SERVER_H

#include "conf.h"
#include "server.h"

struct imap_route {
	char *user;
	const struct conf_upstream *up;
};

struct imap_server {
	struct server base;
	struct imap_route *routes;
	size_t nroutes;
	char *master_password;	/* NULL unless master_user is set */
};

struct imap_server *imap_server_new(const struct conf *c, struct diag *d);
void imap_server_free(struct imap_server **srv);
/* The upstream for an authorization identity: its user_map entry (exact
 * match) or the listener's. */
const struct conf_upstream *imap_server_route(const struct imap_server *srv, const char *user,
					      const struct conf_listener *l);

#endif
