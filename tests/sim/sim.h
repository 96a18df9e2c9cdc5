/* sim: a deterministic, in-memory world for tests and fuzzers (never
 * linked into the daemons). It replaces, at link time, exactly four
 * modules of the product:
 *
 *   libev          sim_ev.c    the subset the project uses, on a virtual
 *                              clock: timers fire only when the driver
 *                              advances time; io watchers on simulated fds
 *                              are ready when the buffers below say so
 *   common/sysio   sim_net.c   sockets as in-memory pipe pairs: bounded
 *                              output windows (back-pressure), EOF,
 *                              half-close, reset, connect outcomes
 *   common/tls*    sim_tls.c   the whole tls.h API as a pass-through whose
 *                              handshake outcome and certificate facts the
 *                              driver chooses
 *   common/rdns    sim_rdns.c  lookups answered when the driver says
 *
 * Everything else - conn.c, upstream.c, the sessions - is the real code.
 * If a product object needs a symbol the sim lacks, the linker pulls the
 * real object too and fails on duplicate symbols: never a silent mix.
 *
 * "Gateway" below is the code under test; "peer" is the driver's side of
 * a simulated connection (the mail client, or the upstream server). The
 * sim also checks the API contracts it can see (use of a closed fd, a
 * write after our FIN, plaintext on a TLS socket, a changed tls_send
 * retry, a busy loop) and abort()s with a message on violation. */
#ifndef MG_SIM_H
#define MG_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tls.h"

#define SIM_FD_BASE 1000	/* simulated fds are >= this, never reused */
#define SIM_WINDOW_UNLIMITED ((size_t)-1)

/* abort() with a message: the harness's way of reporting a violation. */
void sim_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- the world ---- */

/* A fresh world: virtual clock at its start, no fds, no watchers. Objects
 * of the previous world are forgotten, not freed (check them first). */
void sim_reset(void);

/* ---- loop and clock (sim_ev.c) ---- */

double sim_now(void);
/* Runs the loop without advancing time until nothing is ready, letting
 * peers read what the gateway wrote (within their windows) whenever the
 * loop is idle. Aborts after too many rounds without idling (busy loop).
 * Returns the number of watcher callbacks run. */
unsigned sim_run_until_idle(void);
/* Advances the clock to the earliest active timer and runs until idle.
 * false (and no change) when no timer is active. */
bool sim_advance(void);
/* Advances the clock by secs (firing every timer on the way), then idles. */
void sim_advance_by(double secs);
unsigned sim_active_watchers(void);	/* io + timer + signal watchers started */
unsigned sim_pending_events(void);
/* Called when callbacks keep running without any I/O (a busy loop); it may
 * abort. Without a handler a busy loop is fatal (sim_fail). */
void sim_set_busy_handler(void (*fn)(void));
/* Called after every watcher callback (invariant checks). */
void sim_set_after_callback(void (*fn)(void *arg), void *arg);
/* Feeds a signal to started ev_signal watchers. */
void sim_raise_signal(int signum);

/* ---- sockets (sim_net.c) ---- */

enum sim_sock_kind { SIM_SOCK_CLIENT, SIM_SOCK_UPSTREAM };
enum sim_connect { SIM_CONN_NONE, SIM_CONN_PENDING, SIM_CONN_OK, SIM_CONN_REFUSED };
/* What the next sysio_socket()/sysio_connect() pair does. */
enum sim_dial_policy { SIM_DIAL_PENDING, SIM_DIAL_REFUSE_NOW, SIM_DIAL_NO_SOCKET };

struct sim_sock;
struct sim_tls_state;

/* Callbacks to the driver (any may be NULL). */
struct sim_net_hooks {
	void *arg;
	/* The gateway wrote n bytes (plaintext; TLS is a pass-through). */
	void (*gw_wrote)(void *arg, struct sim_sock *s, const unsigned char *p, size_t n);
	/* The gateway started a connect (s is new, SIM_CONN_PENDING). */
	void (*dialed)(void *arg, struct sim_sock *s);
	/* A TLS session was attached to s (client: we are the TLS client). */
	void (*tls_started)(void *arg, struct sim_sock *s, bool client);
	/* The handshake on s completed (ok) or failed. */
	void (*tls_done)(void *arg, struct sim_sock *s, bool ok);
	void (*closed)(void *arg, struct sim_sock *s);	/* gateway closed its fd */
};
void sim_net_set_hooks(const struct sim_net_hooks *h);

/* A connected socket whose gateway end is the returned fd (client side
 * of an accept). */
struct sim_sock *sim_sock_accepted(int *fd);
int sim_sock_fd(const struct sim_sock *s);
enum sim_sock_kind sim_sock_kind(const struct sim_sock *s);
enum sim_connect sim_sock_connect_state(const struct sim_sock *s);
const struct sockaddr *sim_sock_dest(const struct sim_sock *s, socklen_t *len);
bool sim_sock_open(const struct sim_sock *s);		/* gateway has not closed it */
bool sim_sock_gw_shut(const struct sim_sock *s);	/* gateway sent FIN (or closed) */
bool sim_sock_tls_up(const struct sim_sock *s);		/* a TLS session is attached and ready */
bool sim_sock_tls_attached(const struct sim_sock *s);
uint64_t sim_sock_written(const struct sim_sock *s);	/* total bytes the gateway wrote */
uint64_t sim_sock_peer_sent(const struct sim_sock *s);	/* total bytes the peer sent */
size_t sim_sock_unread(const struct sim_sock *s);	/* sent by the peer, not yet read */
size_t sim_sock_unflushed(const struct sim_sock *s);	/* gateway bytes the peer has not read */
bool sim_sock_watched(const struct sim_sock *s, int events);	/* an active ev_io for it */
void *sim_sock_user(const struct sim_sock *s);
void sim_sock_set_user(struct sim_sock *s, void *user);
/* Iteration in creation order (closed ones included). */
struct sim_sock *sim_sock_first(void);
struct sim_sock *sim_sock_next(const struct sim_sock *s);
struct sim_sock *sim_sock_by_fd(int fd);	/* NULL if unknown */
unsigned sim_open_fds(void);

/* Peer actions. */
/* false when the bytes cannot go anywhere (closed, FIN sent, not connected). */
bool sim_peer_send(struct sim_sock *s, const void *p, size_t n);
void sim_peer_shutdown(struct sim_sock *s);	/* FIN; keeps reading */
void sim_peer_close(struct sim_sock *s);	/* FIN and stops reading */
void sim_peer_reset(struct sim_sock *s);	/* RST */
/* How many gateway bytes may sit unread (0: the peer reads nothing). */
void sim_sock_set_window(struct sim_sock *s, size_t window);
/* Resolves a pending connect. */
void sim_connect_resolve(struct sim_sock *s, bool ok);
void sim_set_dial_policy(enum sim_dial_policy p);	/* for the next dials; default PENDING */

/* ---- internal between sim_net.c, sim_ev.c and sim_tls.c ---- */
int sim_net_ready(int fd, int events);		/* EV_READ | EV_WRITE subset ready now */
bool sim_net_autodrain(void);			/* peers read; true if a window opened */
uint64_t sim_net_progress(void);		/* grows with every byte moved, fd opened or closed */
ssize_t sim_net_raw_recv(struct sim_sock *s, void *buf, size_t len);
ssize_t sim_net_raw_send(struct sim_sock *s, const void *buf, size_t len);
void sim_net_attach_tls(struct sim_sock *s, struct sim_tls_state *t, bool client);
void sim_net_detach_tls(struct sim_sock *s);
struct sim_tls_state *sim_net_tls(const struct sim_sock *s);
void sim_net_tls_done(struct sim_sock *s, bool ok);
void sim_net_poke(struct sim_sock *s, bool on);	/* readable for the handshake */
bool sim_net_peer_gone(const struct sim_sock *s);	/* EOF or reset from the peer */
void sim_ev_reset(void);
void sim_net_reset(void);
void sim_tls_reset(void);
void sim_rdns_reset(void);

/* ---- TLS (sim_tls.c) ---- */

struct sim_tls_facts {
	bool ok;		/* false: the handshake fails */
	bool fail_on_cert;	/* failure counts as a refused client certificate */
	bool tls12;		/* TLS 1.2 instead of 1.3 */
	/* The client certificate (server sessions only); NULL: none. Its
	 * strings are copied. Mode none ignores it, as GnuTLS never asks. */
	const struct tls_peer *peer;
	const char *sni, *alpn;
};
/* Completes the pending handshake on s (from the loop, as the peer's last
 * flight arriving would). Returns false when s has no pending handshake. */
bool sim_tls_resolve(struct sim_sock *s, const struct sim_tls_facts *f);
bool sim_tls_pending(const struct sim_sock *s);
/* Largest "record" tls_recv takes from the socket at once; what the
 * caller's buffer cannot hold stays pending inside the session (the
 * tls_pending() trap). Default 16384. */
void sim_tls_set_record(size_t n);
/* Bytes of an interrupted tls_send record already on the wire: the caller
 * still holds them queued (it retries with the same bytes), so "written
 * plus queued" counts them twice. */
size_t sim_tls_unsent_written(const struct sim_sock *s);
/* Bytes taken from the socket into the TLS session, not yet returned by
 * tls_recv (what tls_pending() reports). */
size_t sim_tls_held(const struct sim_sock *s);
unsigned sim_tls_live_sessions(void);
unsigned sim_tls_live_servers(void);	/* tls_server + tls_client objects */

/* ---- reverse DNS (sim_rdns.c) ---- */

unsigned sim_rdns_live(void);		/* queries not yet delivered or cancelled */
unsigned sim_rdns_unanswered(void);
/* Answers the oldest unanswered query; delivered from the loop. false if none. */
bool sim_rdns_answer(int status, const char *name);	/* enum rdns_status */
void sim_rdns_init_fails(bool fail);

#endif
