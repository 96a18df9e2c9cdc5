/* upstream: the gateway's client side towards one upstream server, for any
 * protocol (nginx's proxy module, Dovecot's login-proxy): dial with
 * failover over the address list, the PROXY header first (one that does
 * not fit is an error, never left out: the upstream would take the
 * gateway for the client), TLS - implicit right after connect, or when the
 * protocol's dialogue says STARTTLS - with the tls_client's name or pin
 * checks, responses framed by the protocol's framer and handed over whole,
 * and the failure semantics of DESIGN.md §3: during set-up every problem
 * (connect, timeout, a bad greeting the protocol reports, TLS) moves on to
 * the next address; once the protocol declares the upstream ready, a
 * problem is reported as lost, never retried elsewhere.
 *
 * The protocol keeps only its dialogue (SMTP: greeting, EHLO, STARTTLS,
 * XCLIENT; IMAP: greeting, CAPABILITY, STARTTLS, ID, login). Events reach
 * the owner only from the loop; the owner may free the upstream in its
 * callback, which is then the last thing that happens to it. */
#ifndef MG_UPSTREAM_H
#define MG_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

struct conn;
struct tls_client;
struct upstream;

enum upstream_event {
	UPSTREAM_CONNECTED,	/* set-up: connected (PROXY header and implicit TLS done) */
	UPSTREAM_RESPONSE,	/* one complete response, data/len (stable during the call) */
	UPSTREAM_TLS_READY,	/* set-up: the handshake after upstream_start_tls() succeeded */
	UPSTREAM_DRAINED,	/* output queue empty (after upstream_notify_drained) */
	UPSTREAM_FAILED,	/* set-up failed on every address; data = why */
	UPSTREAM_LOST,		/* after upstream_ready(): closed, error, bad response; data = why */
	UPSTREAM_TIMEOUT,	/* after upstream_ready(): no response in time */
};

/* The length of the first complete response in buf, 0 if more bytes are
 * needed, -1 if it is malformed. It must decide (non-zero) before len
 * reaches the in_max the upstream was opened with. */
typedef long (*upstream_framer)(const char *buf, size_t len);

typedef void (*upstream_cb)(void *owner, struct upstream *up, enum upstream_event ev,
			    const char *data, size_t len);

struct upstream_params {
	const struct conf_upstream *cu;
	struct tls_client *tls;		/* for tls = starttls | implicit */
	int only_index;			/* -1: every address in order; else this one only */
	const unsigned char *pp;	/* PROXY header for every attempt (copied) */
	size_t pp_len;			/* 0 with cu->proxy_protocol on: fails at once */
	upstream_framer frame;
	size_t in_max;			/* the framer's decision bound */
	const char *frame_error;	/* what a -1 from the framer is called in logs */
	const char *log_name;		/* "upstream", "imap upstream": log prefix */
	const char *who;		/* session id, for logs ("" for probes) */
};

struct upstream *upstream_open(const struct upstream_params *p, upstream_cb cb, void *owner);
/* A command: written, and the response timeout (timeout_reply) armed. */
void upstream_send(struct upstream *up, const void *data, size_t len);
/* Raw bytes (a message body): written, no timeout change. */
void upstream_write(struct upstream *up, const void *data, size_t len);
/* Waits at most seconds for the next response (0: no limit). */
void upstream_expect(struct upstream *up, double seconds);
/* The upstream accepted STARTTLS: bytes it sent after that reply are
 * discarded (response injection), the handshake runs, then
 * UPSTREAM_TLS_READY (or the next address). */
void upstream_start_tls(struct upstream *up);
/* Set-up problem the protocol found (bad greeting, no STARTTLS, ...):
 * logged, then the next address (UPSTREAM_CONNECTED again) or
 * UPSTREAM_FAILED. */
void upstream_failover(struct upstream *up, const char *why);
/* Set-up is over: from now on problems are UPSTREAM_LOST. */
void upstream_ready(struct upstream *up);
/* Polite end: line (e.g. "QUIT\r\n") is sent, the upstream detaches from
 * its owner and closes once it is out (10 s at most). *up becomes NULL. */
void upstream_quit(struct upstream **up, const char *line, size_t len);
/* Abrupt end (e.g. a message aborted without its final dot). */
void upstream_close(struct upstream **up);
/* Hands the connection over (a byte relay after login); *up is freed. */
struct conn *upstream_detach(struct upstream **up);

size_t upstream_out_len(const struct upstream *up);
void upstream_notify_drained(struct upstream *up);
bool upstream_is_ready(const struct upstream *up);
int upstream_index(const struct upstream *up);
const char *upstream_addr(const struct upstream *up);	/* "host:port" being used */
/* Wipe the connection's buffers on release (credentials pass through). */
void upstream_set_sensitive(struct upstream *up, bool on);

#endif
