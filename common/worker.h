/* worker: one worker process, from the master's fork() to its exit. It
 * takes its slot in the shared admission counts, drops privileges (any
 * failure is fatal; root must not be regainable), makes every pkcs11:
 * key sign once as the unprivileged user (fatal too), accepts on the
 * master's listening sockets, tells the master it is ready, and serves
 * until it is told to stop:
 *
 *   SIGTERM (shutdown) or "drain" from the master (a reload replaced its
 *   generation), or the master's end of the control socket closing (the
 *   master died): no new connections; sessions finish as on SIGTERM
 *   (DESIGN.md §7) for at most shutdown_timeout, then are closed.
 *   SIGINT: exits at once.
 *
 * The control socket carries one byte per message: worker -> master 'R'
 * (ready) or 'F' + a line (fatal start-up error, then exit); master ->
 * worker 'D' (drain). */
#ifndef MG_WORKER_H
#define MG_WORKER_H

#include <stdbool.h>

#include "daemon_ops.h"

struct bindings;
struct admission;

/* Exit status of a worker that could not start (privileges, ...): the
 * master does not restart it in a loop but reports it. */
#define WORKER_EXIT_FATAL 78

#define WORKER_MSG_READY 'R'
#define WORKER_MSG_FATAL 'F'
#define WORKER_MSG_DRAIN 'D'	/* master -> worker: replaced, stop accepting */
#define WORKER_MSG_STOPPED 'S'	/* worker -> master: accepts no more */

struct worker_params {
	const struct daemon_ops *ops;
	const struct conf *conf;
	struct server *srv;
	const struct bindings *bindings;
	struct admission *admission;
	int slot;		/* in the admission counts */
	int ctl_fd;		/* this worker's end of the control socket */
	unsigned number;	/* 1.., for logs */
	unsigned generation;
};

void worker_run(const struct worker_params *p) __attribute__((noreturn));

#endif
