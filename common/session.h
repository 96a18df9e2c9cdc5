/* session: the life of one client session, whatever the protocol
 * (Dovecot login-common's shape): admission (max_connections, max_per_ip),
 * the implicit TLS handshake, the greeting, the protocol's own phase, the
 * STARTTLS switch-over, the client certificate's identity after every
 * handshake, the error budget, timeouts and an absolute deadline, graceful
 * shutdown, the closing sequence and the session-end log line and
 * metrics (DESIGN.md §7). A protocol embeds struct session as the first
 * member of its own session struct and plugs in through struct
 * session_ops.
 *
 * States, with one setter (session_enter):
 *
 *	HANDSHAKE --> ACTIVE <--> STARTTLS
 *	    \            |            /
 *	     `-------> CLOSING <----'
 *
 * ACTIVE is where the protocol's own state machine runs. CLOSING is
 * final: nothing re-opens a session, not even a handshake that finishes
 * after the close began.
 *
 * Lifetime: only this module frees a session, and only from its own
 * connection and timer callbacks, as their last statement. Protocol code
 * ends a session with session_close(); it never frees one. A protocol file
 * sees no libev or GnuTLS type. */
#ifndef MG_SESSION_H
#define MG_SESSION_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "conf.h"
#include "log.h"
#include "result.h"

struct conn;
struct server;
struct session;
struct mg_timer;
struct tls_peer;

enum session_state { SESSION_HANDSHAKE, SESSION_ACTIVE, SESSION_STARTTLS, SESSION_CLOSING };

/* What a protocol plugs in. Every hook runs from the loop; none may free
 * the session (session_close() is how it ends). Hooks marked optional
 * may be NULL. */
struct session_ops {
	const char *name;	/* "smtp" / "imap", for debug logs */
	size_t size;		/* of the protocol's struct; struct session first */
	/* The input queue limit: the protocol's longest command plus what
	 * may be pipelined behind it. */
	size_t (*in_max)(const struct conf *c);
	/* Refusal when over a connection limit (CRLF included); listeners
	 * with implicit TLS close without it (no handshake is spent). */
	const char *limit_refusal;
	/* Sent instead of a line that could not be built (cannot happen). */
	const char *internal_error;
	void (*start)(struct session *s);	/* optional: after set-up, before TLS; may close */
	void (*greet)(struct session *s);	/* ACTIVE begins: the greeting */
	/* After every handshake, with s->peer known (implicit: the one
	 * before the greeting; else after STARTTLS): peers_only refusals,
	 * certificate identities. May close. Optional. */
	void (*identified)(struct session *s, bool implicit);
	void (*restarted)(struct session *s);	/* ACTIVE again after STARTTLS */
	void (*input)(struct session *s);	/* client bytes queued (ACTIVE) */
	void (*drained)(struct session *s);	/* optional: conn_notify_drained */
	/* The client closed its side after what was queued. Return true to
	 * go on (replies still due: the protocol closes later), false to end
	 * the session now. Optional (= false). */
	bool (*eof)(struct session *s);
	/* The client connection's inactivity timeout (ACTIVE): last words,
	 * then session_close(), or re-arm. */
	void (*timeout)(struct session *s);
	/* The client connection failed (a reset) while ACTIVE (optional):
	 * true keeps the session - it writes nothing more to the client -
	 * until the protocol closes it, e.g. to learn the upstream's verdict
	 * on a message whose end it has already relayed. */
	bool (*lost)(struct session *s);
	void (*deadline)(struct session *s);	/* optional: session_set_deadline fired */
	void (*shutdown)(struct session *s);	/* optional: SIGTERM */
	/* shutdown_timeout: last words (optional); the core then closes the
	 * session with RESULT_SHUTDOWN. */
	void (*kill)(struct session *s);
	/* Once, entering CLOSING: release the upstream and other resources
	 * (optional). */
	void (*closing)(struct session *s);
	/* The result to log, given the one recorded (optional). */
	enum session_result (*result)(struct session *s, enum session_result r);
	/* Optional: own keys for the session line, between the common head
	 * (session= ... peer=) and bytes_in=; the upstream's HOST:PORT, which
	 * the line carries after bytes_out= (NULL or "" for none). */
	void (*log)(struct session *s, struct logkv *kv);
	const char *(*upstream)(const struct session *s);
	void (*free)(struct session *s);	/* optional: what the protocol allocated */
};

struct session {
	uint32_t magic;
	enum session_state state;
	const struct session_ops *ops;
	struct server *srv;
	struct session *next, *prev;	/* the server's list of live sessions */
	char id[16];			/* 12 upper-case hex digits */
	const struct conf_listener *listener;
	struct mg_addr client;		/* after a PROXY header, IPv4-unmapped */
	struct mg_addr local;
	char ip[48];			/* client IP as text, for logs */
	double start;
	struct conn *conn;		/* the client connection */
	enum session_result result;
	int errors;			/* error replies the gateway sent (max_errors) */
	int admission;			/* server_admit's ticket */
	struct mg_timer *deadline;
	/* After every handshake: */
	const struct conf_peer *peer;	/* matched peer section, or NULL */
	const char *peer_reason;	/* why none matched (static) */
	unsigned pin : 1;		/* matched by a pin */
	unsigned out_full : 1;		/* session_output_full() paused reading */
	unsigned handshaking : 1;	/* a handshake started and has not finished */
	unsigned lb_local : 1;		/* opened by the balancer itself (PROXY v2 LOCAL) */
};

/* Takes ownership of fd, a non-blocking socket (accept4 with
 * SOCK_NONBLOCK, as listener.c accepts): admits it (or refuses it, logging result=limit),
 * then starts the implicit handshake or greets. lb_local: the connection
 * came with a PROXY v2 LOCAL header (a balancer's health check); if it
 * ends without the client sending a byte of data (a TLS handshake alone
 * sends none), its lines are logged at debug only - HAProxy's
 * dontlognull - and it is left out of the connection and handshake
 * metrics, so checks flood neither. */
void session_accept(struct server *srv, const struct session_ops *ops, const struct conf_listener *l,
		    int fd, const struct mg_addr *peer, const struct mg_addr *local, bool lb_local);
/* The same for a connection accepted earlier (conn_now() clock), behind a
 * PROXY header: the implicit handshake gets what is left of
 * timeout_handshake, one deadline for the header and the handshake. */
void session_accept_at(struct server *srv, const struct session_ops *ops, const struct conf_listener *l,
		       int fd, const struct mg_addr *peer, const struct mg_addr *local, bool lb_local,
		       double accepted);

/* Ends the session: CLOSING (final), the protocol's closing hook, input
 * discarded, queued output flushed (10 s at most), then freed by the core.
 * r == RESULT_UNCHANGED keeps the result recorded so far. Idempotent. */
void session_close(struct session *s, enum session_result r);
/* Records the result the session will end with, unless it closes with
 * another one. */
void session_set_result(struct session *s, enum session_result r);
/* The protocol queued its "go ahead" to STARTTLS: bytes the client sent
 * after the command are discarded (never executed), the handshake starts
 * once the reply is out; restarted() follows it. */
void session_starttls(struct session *s);
/* Output back-pressure for the command phase (EXAMPLES.md §3, "output
 * cap per session"): a client that pipelines commands and never reads
 * its replies must not make the worker queue them without bound. When
 * more than SESSION_OUT_HIGH_WATER bytes wait for the client, this stops
 * reading and returns true - the protocol's command loop then stops too;
 * once the replies are out, the core starts reading again and calls the
 * input hook (which finds the commands still queued). */
#define SESSION_OUT_HIGH_WATER (64 * 1024)
bool session_output_full(struct session *s);
/* One error reply sent by the gateway: true when it spent the budget
 * (max_errors) - the protocol then says its last words and closes. */
bool session_error(struct session *s);
/* An absolute deadline (not inactivity): ops->deadline runs at most once,
 * seconds from now; 0 cancels. */
void session_set_deadline(struct session *s, double seconds);
/* One line to the client, fmt expanded plus CRLF, built whole or not at
 * all (SESSION_LINE_MAX; ops->internal_error instead, logged). */
#define SESSION_LINE_MAX 4096
void session_line(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void session_vline(struct session *s, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void session_write(struct session *s, const void *p, size_t n);

bool session_tls(const struct session *s);	/* TLS up on the client connection */
/* TLS up, or a loopback listener without TLS (DESIGN.md §4.1, §5.1). */
bool session_secure(const struct session *s);
/* The client's certificate facts (NULL without TLS or certificate). */
const struct tls_peer *session_cert(const struct session *s);
/* The IANA name of the suite in use ("TLS_AES_128_GCM_SHA256"), NULL
 * without TLS. */
const char *session_cipher(const struct session *s);
const struct conf *session_conf(const struct session *s);
/* A protocol's state change, for the debug log. */
void session_trace(const struct session *s, const char *machine, const char *from, const char *to);
/* Aborts on a pointer that is not a live session (callbacks from timers
 * and upstreams check their owner with it). */
void session_assert(const struct session *s);

/* The PROXY header (v1 or v2 with the TLS TLVs) describing this client
 * for an upstream with proxy_protocol; returns its length, 0 if v is off
 * or it does not fit (callers treat that as a failure when v is on). */
size_t session_proxy_header(const struct session *s, enum proxy_out v, unsigned char *out, size_t sz);
/* "auth-failed session=... client=IP user=... mech=..." (fail2ban). */
void session_log_auth_failed(const struct session *s, const char *user, const char *mech);

/* Come back to queued client input now (after an upstream reply the
 * session waited for): the protocol's input hook, if still ACTIVE. */
void session_resume(struct session *s);

/* SIGTERM: srv->shutting_down, and every session's shutdown hook. */
void session_shutdown_all(struct server *srv);
/* shutdown_timeout: every session says its last words and closes. */
void session_kill_all(struct server *srv);

#endif
