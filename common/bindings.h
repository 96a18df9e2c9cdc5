/* bindings: the master's listening sockets, one per configured address,
 * bound as root before any worker starts and kept across reloads: a
 * reload binds only the addresses that are new and closes only the ones
 * no listener uses any more, so an address that stays keeps its socket
 * (and the connections queued on it) from one generation of workers to
 * the next. Workers inherit the sockets and accept on them.
 *
 * With reuseport = true, each worker instead gets a set of its own,
 * bound by the master (as root) right before the fork with SO_REUSEPORT
 * and closed in the master after it: the kernel spreads connections over
 * the workers' sockets, and a worker's socket closes with it. */
#ifndef MG_BINDINGS_H
#define MG_BINDINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "conf.h"

struct binding {
	struct mg_addr addr;
	int fd;
	bool wanted;		/* used by the configuration being applied */
};

struct bindings {
	struct binding *v;
	size_t n;
};

/* Binds every address of c not bound yet (with SO_REUSEPORT when
 * reuseport: a worker's own set) and marks which bindings c uses; quiet:
 * no log line per listener. On a failure nothing new stays bound: -1
 * with err filled. */
int bindings_apply(struct bindings *b, const struct conf *c, bool reuseport, bool quiet, char *err,
		   size_t errsz);
/* Closes the bindings the last bindings_apply did not mark (after the
 * old workers stopped using them). */
void bindings_prune(struct bindings *b);
/* The socket bound to a, or -1. */
int bindings_fd(const struct bindings *b, const struct mg_addr *a);
void bindings_close_all(struct bindings *b);

#endif
