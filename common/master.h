/* master: the process that holds what workers need and serves no client
 * itself (nginx's and Postfix's master). It keeps root, binds every
 * listener, raises RLIMIT_NOFILE, makes the shared admission counts,
 * writes the pidfile and forks `workers` worker processes (0 = one per
 * CPU), then watches them:
 *
 *   - a worker that dies is restarted in its place, at once the first
 *     time, then with a growing back-off while it keeps dying young (a
 *     crash loop does not spin); what it held is given back (its
 *     sessions are gone: only they are lost);
 *   - SIGHUP reloads: the configuration and every file it names are read
 *     again (as root); a broken one is logged line by line and the
 *     running one stays; else a new generation of workers starts with
 *     it, listeners added by the reload are bound, and once every new
 *     worker is ready the old ones drain (no new connections, sessions
 *     finish for at most shutdown_timeout) and listeners no longer
 *     configured are closed;
 *   - SIGTERM: the listening sockets close, every worker stops as on
 *     SIGTERM, and the master exits once they are gone; SIGINT: every
 *     worker and the master exit at once; SIGUSR1 is passed on.
 *
 * Readiness (process_ready, the "ready" log line) is reported once every
 * worker of the first generation is accepting. */
#ifndef MG_MASTER_H
#define MG_MASTER_H

#include "daemon_ops.h"

/* Takes ownership of c and srv (loaded and checked). Returns the exit
 * status. */
int master_run(const struct daemon_ops *ops, const struct daemon_options *o, struct conf *c,
	       struct server *srv);

#endif
