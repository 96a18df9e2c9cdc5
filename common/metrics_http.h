/* metrics_http: the GET /metrics endpoint on the process's event loop
 * (today the single process, later the master). Each scrape is one
 * connection: a request of at most METRICS_HTTP_REQ_MAX bytes (decided by
 * http.c), one response, "Connection: close". A slow or hostile scraper
 * can neither block the loop nor hold memory: at most
 * METRICS_HTTP_SCRAPES_MAX connections at once (a new one evicts the
 * oldest that has not sent its request yet), and each has
 * METRICS_HTTP_DEADLINE seconds from accept to the end of its response.
 * Built on conn, listener and timer: no libev or HTTP detail leaks out,
 * and the body comes from the caller (the daemon renders it). */
#ifndef MG_METRICS_HTTP_H
#define MG_METRICS_HTTP_H

#include <stddef.h>

#define METRICS_HTTP_REQ_MAX 4096
#define METRICS_HTTP_SCRAPES_MAX 16
#define METRICS_HTTP_DEADLINE 10.0

/* Binds the listening socket for addr ("IP:PORT", "[v6]:PORT") - as root,
 * before privileges are dropped. Returns the fd, or -1 with err filled. */
int metrics_http_bind(const char *addr, char *err, size_t errsz);

/* The body of a 200: a heap buffer the endpoint frees, *len set; NULL
 * makes the scrape a 500. */
typedef char *(*metrics_http_body)(void *arg, size_t *len);

struct metrics_http;
/* Serves fd (taking ownership) on the loop. */
struct metrics_http *metrics_http_start(int fd, metrics_http_body body, void *arg);
/* No new scrapes (the socket is closed); those in progress finish. */
void metrics_http_stop(struct metrics_http *m);
/* Ends everything, scrapes in progress included; *m becomes NULL. */
void metrics_http_free(struct metrics_http **m);
/* In a forked child: the endpoint and its scrapes are the parent's; only
 * this process's descriptors are closed (no shutdown, no lingering). */
void metrics_http_abandon(struct metrics_http **m);

#endif
