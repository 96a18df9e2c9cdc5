/* daemon_metrics: the metrics key in a daemon's life (DESIGN.md §3, §7):
 * the shared counters mapped and the endpoint bound at start-up by the
 * master (as root, before forking workers), served on the master's loop with the certificates
 * of the running server, no new scrapes after SIGTERM, freed at the end.
 * Each call is a no-op with metrics = "". Kept apart from daemon.c so
 * that the process model around it can change without touching it. */
#ifndef MG_DAEMON_METRICS_H
#define MG_DAEMON_METRICS_H

#include <stddef.h>

#include "conf.h"
#include "server.h"

/* metrics_init() and the endpoint's socket. Returns 0, or -1 with err. */
int daemon_metrics_start(const struct conf *c, char *err, size_t errsz);
/* Serves scrapes on the loop; srv's certificates give cert_expiry. */
void daemon_metrics_serve(const struct server *srv, unsigned workers);
/* A reload's new generation serves: its certificates and names. */
void daemon_metrics_server(const struct server *srv);
/* In a forked worker: the endpoint is the master's (the counters stay
 * mapped). */
void daemon_metrics_forget(void);
/* SIGTERM: no new scrapes. */
void daemon_metrics_stop(void);
/* After the loop: the endpoint and the region go. */
void daemon_metrics_free(void);

#endif
