/* smtp_upstream: the SMTP dialogue of the gateway's client side towards
 * one upstream (DESIGN.md §4.4), on top of common/upstream.c (which dials
 * with failover, sends the PROXY header and runs TLS): greeting 220, EHLO
 * with our hostname, STARTTLS + EHLO again when tls = starttls, then with
 * xclient: XCLIENT lines and EHLO with the client's own HELO argument. A
 * set-up problem (bad greeting, no STARTTLS, EHLO refused) moves on to the
 * next address; never after a client command was forwarded. Afterwards it
 * sends command lines and DATA bytes and reports each reply. With probe
 * set it only learns each address's extensions (the start-up probe). */
#ifndef MG_SMTP_UPSTREAM_H
#define MG_SMTP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "smtp_reply.h"
#include "smtp_xclient.h"

struct smtp_server;
struct smtp_upstream;

enum up_event {
	UP_READY,	/* set-up done; commands may be sent */
	UP_REPLY,	/* reply to the last command sent */
	UP_DRAINED,	/* output queue empty (after upstream_notify_drained) */
	UP_FAILED,	/* set-up failed; detail says how */
	UP_LOST,	/* connection lost or garbled after set-up */
	UP_TIMEOUT,	/* no reply within the timeout */
};

enum up_fail {
	UPF_UNREACHABLE,	/* every address failed */
	UPF_CONFIG,		/* XCLIENT missing or refused: fail closed */
};

typedef void (*smtp_up_cb)(void *owner, enum up_event ev, const struct smtp_reply *r,
			   int detail, const char *why);

struct smtp_up_params {
	struct smtp_server *srv;
	const struct conf_upstream *cu;
	const char *hostname;		/* our EHLO name */
	const char *client_helo;	/* for EHLO after XCLIENT */
	struct smtp_xclient_attrs xclient;
	bool probe;
	int only_index;			/* probe: this address only; else -1 */
	const unsigned char *pp;	/* PROXY header for every attempt (copied) */
	size_t pp_len;
	const char *who;		/* session id for logs ("" for the probe) */
};

/* Events reach the owner only from the loop; it may free the upstream
 * in its callback. */
struct smtp_upstream *smtp_up_start(const struct smtp_up_params *p, smtp_up_cb cb, void *owner);
/* Sends one command line (CRLF included) and arms timeout_reply. */
void smtp_up_command(struct smtp_upstream *up, const char *line, size_t len);
/* After the final dot: wait for the reply, at most seconds. */
void smtp_up_expect_reply(struct smtp_upstream *up, double seconds);
/* The connection itself, for what the dialogue adds nothing to: message
 * bytes (upstream_write), back-pressure (upstream_out_len,
 * upstream_notify_drained -> UP_DRAINED), a stall limit without waiting
 * for a reply (upstream_expect), wiping (upstream_set_sensitive: AUTH
 * passes in the command phase), the address in use (upstream_addr). */
struct upstream *smtp_up_link(const struct smtp_upstream *up);
/* Polite end: QUIT is queued and the connection closes once it is sent. */
void smtp_up_quit(struct smtp_upstream **up);
/* Abrupt end: close now (e.g. abort a message without its final dot). */
void smtp_up_free(struct smtp_upstream **up);
bool smtp_up_ready(const struct smtp_upstream *up);

#endif
