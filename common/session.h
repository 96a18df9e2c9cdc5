/* session: what every client session has in common, whatever the
 * protocol: its id, listener, addresses, start time, the client conn, and
 * the "session end" log line of DESIGN.md §7 (protocol code adds its own
 * keys between session_log_begin() and session_log_end()). */
#ifndef MG_SESSION_H
#define MG_SESSION_H

#include <stdint.h>

#include "addr.h"
#include "conf.h"
#include "log.h"

struct conn;
struct session;

/* What graceful shutdown asks of a protocol's session. */
struct session_hooks {
	void (*shutdown_notice)(struct session *s);	/* SIGTERM */
	void (*kill)(struct session *s);		/* shutdown_timeout */
};

struct session {
	struct session *next, *prev;	/* the server's list of live sessions */
	const struct session_hooks *hooks;
	char id[16];		/* 12 upper-case hex digits */
	const struct conf_listener *listener;
	struct mg_addr client;	/* after PROXY header, IPv4-unmapped */
	struct mg_addr local;
	double start;
	struct conn *conn;	/* the client connection */
	const char *result;	/* one of the §7 result tokens */
	char ip[48];		/* client IP as text, cached for logs */
	/* After the TLS handshake (session_identify): */
	const struct conf_peer *peer;	/* matched peer section, or NULL */
	const char *peer_reason;	/* why none matched (static) */
	unsigned pin : 1;		/* matched by a pin */
};

void session_init(struct session *s, const struct conf_listener *l, const struct mg_addr *client,
		  const struct mg_addr *local);
void session_new_id(char out[16]);
/* Starts the end-of-session line with session, listener, client and the
 * TLS fields (tls, cipher, cert, cn, fp). */
void session_log_begin(struct session *s, struct logkv *kv);
/* After a TLS handshake: matches the client certificate against the peer
 * sections (DESIGN.md §6) and records the result in s. */
void session_identify(struct session *s, const struct conf *c);
/* The PROXY header (v1 or v2 with the TLS TLVs) describing this client
 * for an upstream with proxy_protocol; returns its length (0: none). */
size_t session_proxy_header(struct session *s, enum proxy_out v, unsigned char *out, size_t sz);
/* Adds bytes_in, bytes_out, duration, result and emits the line. */
void session_log_end(struct session *s, struct logkv *kv);
/* "auth-failed session=... client=IP user=... mech=..." (fail2ban). */
void session_log_auth_failed(const struct session *s, const char *user, const char *mech);

#endif
