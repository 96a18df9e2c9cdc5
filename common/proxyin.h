/* proxyin: the PROXY header a listener with proxy_protocol = true expects
 * before anything else (DESIGN.md §3): only from trusted_proxies, within
 * timeout_handshake; a missing, bad or untrusted header closes the
 * connection silently. The header is read with MSG_PEEK and then consumed
 * exactly, so the bytes behind it (a TLS ClientHello) stay in the socket.
 * Exposes no libev types. */
#ifndef MG_PROXYIN_H
#define MG_PROXYIN_H

#include <stdbool.h>

#include "addr.h"
#include "conf.h"

/* Called with the declared addresses (or the socket's for LOCAL);
 * lb_local: the header was v2 LOCAL - a connection the balancer made
 * itself, which is what HAProxy's health checks of a send-proxy-v2
 * server send. accepted: when the connection was accepted (conn_now()
 * clock) - timeout_handshake is one deadline for the header and the TLS
 * handshake behind it. */
typedef void (*proxyin_cb)(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local,
			   bool lb_local, double accepted);

/* Takes ownership of fd. */
void proxyin_start(int fd, const struct conf_listener *l, double timeout, const struct mg_addr *peer,
		   const struct mg_addr *local, proxyin_cb cb, void *arg);

#endif
