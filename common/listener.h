/* listener: binding listening sockets (in the master, before privileges
 * are dropped) and accepting on them without blocking (in workers). IPv6
 * sockets set IPV6_V6ONLY so "0.0.0.0:465" and "[::]:465" bind side by
 * side; accepted peer addresses are IPv4-unmapped. Exposes no libev types. */
#ifndef MG_LISTENER_H
#define MG_LISTENER_H

#include <stdbool.h>

#include "addr.h"

/* Returns a listening fd, or -1 with *err set (strerror text). With
 * reuseport, several sockets (one per worker) share the address and the
 * kernel spreads connections over them (SO_REUSEPORT). */
int listener_bind(const struct mg_addr *a, bool reuseport, const char **err);

struct listener_watch;
typedef void (*listener_accept_cb)(void *arg, int fd, const struct mg_addr *peer,
				   const struct mg_addr *local);

struct listener_watch *listener_watch_new(int fd, listener_accept_cb cb, void *arg);
void listener_watch_free(struct listener_watch **w);	/* does not close the fd */
/* Accepts what is queued now (before the socket closes, so that no
 * completed connection is reset). */
void listener_accept_pending(struct listener_watch *w);

#endif
