/* fdlimit: the open-file limit (RLIMIT_NOFILE) the listeners need - each
 * session may hold two descriptors (the client and its upstream), plus the
 * daemon's own and the closed connections still lingering - raised at
 * start-up and checked by -t (DESIGN.md §3: when the hard limit cannot be
 * raised, the soft one goes to the hard one, with a warning saying how
 * many sessions fit). */
#ifndef MG_FDLIMIT_H
#define MG_FDLIMIT_H

#include <stddef.h>

#include "conf.h"
#include "diag.h"

/* Descriptors kept aside for the daemon itself: listeners, log, upstream
 * probes, DNS. */
#define FDLIMIT_RESERVE 64

/* Raises the limit, gives the connection layer its linger budget, and
 * logs a warning when max_connections does not fit. Returns the sessions
 * one process can hold (at least 1). */
size_t fdlimit_apply(const struct conf *c);
/* The sessions one process could hold in its open-file limit as it is
 * now, whatever the configuration says (0 if unknown). */
size_t fdlimit_capacity(void);
/* -t (and start-up, on stderr): a warning when the limit this process
 * can get does not fit max_connections. Raises the limit as a start
 * would. */
void fdlimit_check(const struct conf *c, struct diag *d);

#endif
