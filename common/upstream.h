/* upstream: non-blocking connect to an upstream's address list with a
 * connect timeout and failover in order (DESIGN.md §3 upstream). The
 * protocol layer calls upstream_dial_next() when a connected server turns
 * out unusable (bad greeting, TLS failure) before any client command was
 * forwarded. Results arrive through the callback, always from the event
 * loop, never from inside upstream_dial_*(). */
#ifndef MG_UPSTREAM_H
#define MG_UPSTREAM_H

#include "conf.h"

struct upstream_dial;

/* fd >= 0: connected to u->addrs[index]; the callee owns fd.
 * fd < 0: every remaining address failed; err says what the last did. */
typedef void (*upstream_dial_cb)(void *arg, int fd, int index, const char *err);

struct upstream_dial *upstream_dial_start(const struct conf_upstream *u, upstream_dial_cb cb,
					  void *arg);
/* Tries only u->addrs[index] (the start-up probe). */
struct upstream_dial *upstream_dial_start_at(const struct conf_upstream *u, int index,
					     upstream_dial_cb cb, void *arg);
/* Try the address after the one last reported. */
void upstream_dial_next(struct upstream_dial *d, const char *why);
void upstream_dial_free(struct upstream_dial **d);

#endif
