/* daemon_ops: what a daemon plugs into the shared start-up, master and
 * worker code (Dovecot login-common style), and the command-line options
 * they all follow. */
#ifndef MG_DAEMON_OPS_H
#define MG_DAEMON_OPS_H

#include <stdbool.h>

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
	/* Optional: in each worker once it accepts. */
	void (*server_start)(struct server *srv);
};

struct daemon_options {
	const char *path;	/* -c */
	bool foreground;	/* -f */
	bool test;		/* -t */
	bool debug;		/* -d */
};

#endif
