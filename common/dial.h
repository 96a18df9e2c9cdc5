/* dial: non-blocking connect to an upstream's address list with a
 * connect timeout and failover in order (DESIGN.md §3 upstream). The
 * upstream client (upstream.c) calls dial_next() when a connected server
 * turns out unusable (bad greeting, TLS failure) before any client command
 * was forwarded. Results arrive through the callback, always from the
 * event loop, never from inside dial_*(). */
#ifndef MG_DIAL_H
#define MG_DIAL_H

#include "conf.h"

struct dial;

/* fd >= 0: connected to u->addrs[index]; the callee owns fd.
 * fd < 0: every remaining address failed; err says what the last did. */
typedef void (*dial_cb)(void *arg, int fd, int index, const char *err);

struct dial *dial_start(const struct conf_upstream *u, dial_cb cb, void *arg);
/* Tries only u->addrs[index] (the start-up probe). */
struct dial *dial_start_at(const struct conf_upstream *u, int index, dial_cb cb, void *arg);
/* Try the address after the one last reported. */
void dial_next(struct dial *d, const char *why);
void dial_free(struct dial **d);

#endif
