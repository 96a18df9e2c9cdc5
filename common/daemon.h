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

struct session_ops;

struct daemon_ops {
	const char *name;		/* "mailgate-smtpd" */
	const struct conf_schema *schema;	/* the daemon's own configuration keys */
	const struct session_ops *session;	/* the protocol's session hooks */
	/* Builds the protocol's server state (struct server first; TLS
	 * objects etc.); problems go to d. NULL on error. */
	struct server *(*server_new)(const struct conf *c, struct diag *d);
	void (*server_free)(struct server *srv);
	/* Optional: in the running process once listeners are bound. */
	void (*server_start)(struct server *srv);
};

int daemon_main(const struct daemon_ops *ops, int argc, char **argv);

#endif
