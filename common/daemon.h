/* daemon: the start-up sequence both daemons share - command line (-c -f
 * -t -d -V), configuration loading and checking, detaching, binding,
 * pidfile, privilege drop, signals and graceful shutdown. The protocol
 * plugs in through struct daemon_ops (Dovecot login-common style). */
#ifndef MG_DAEMON_H
#define MG_DAEMON_H

#include "addr.h"
#include "conf.h"
#include "diag.h"
#include "server.h"

struct daemon_ops {
	const char *name;		/* "mailgate-smtpd" */
	enum daemon_kind kind;
	/* Builds the protocol's server state (TLS objects etc.); problems go to d. */
	void *(*server_new)(const struct conf *c, struct diag *d);
	void (*server_free)(void *srv);
	/* Called in the running process once listeners are bound. */
	void (*server_start)(void *srv);
	void (*accept)(void *srv, const struct conf_listener *l, int fd, const struct mg_addr *peer,
		       const struct mg_addr *local);
	/* The common part of the protocol's server state (sessions, limits). */
	struct server *(*base)(void *srv);
};

int daemon_main(const struct daemon_ops *ops, int argc, char **argv);

#endif
