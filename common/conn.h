/* conn: one socket, optionally wrapped in TLS, with a bounded input queue,
 * an output queue, an inactivity timer and libev watchers. Protocol code
 * reads and writes through it and cannot tell whether bytes are encrypted
 * (OpenSMTPD ioev.c style). Exposes no libev or GnuTLS types.
 *
 * Events reach the owner through one callback, and ONLY from the event
 * loop: no conn_* call ever invokes the callback synchronously, so a
 * callback may free the owner (and the conn) and must then return at once.
 * Back-pressure: reading stops while the input queue is full or the owner
 * paused it; owners watch conn_out_len() of the other side. */
#ifndef MG_CONN_H
#define MG_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_session;
struct conn;

enum conn_event {
	CONN_EV_READ,		/* new input queued */
	CONN_EV_DRAINED,	/* output queue empty (after conn_notify_drained) */
	CONN_EV_HANDSHAKE,	/* TLS handshake finished */
	CONN_EV_EOF,		/* peer closed its side; queued input was delivered before */
	CONN_EV_ERROR,		/* I/O or TLS error; conn_error() says why */
	CONN_EV_TIMEOUT,	/* no progress either way for the set timeout */
};

typedef void (*conn_cb)(struct conn *c, enum conn_event ev, void *arg);

void conn_loop_init(void);		/* default libev loop; call once per process */
void conn_loop_fork(void);		/* in a child after fork(); the parent's lingering closes are left to it */
void conn_loop_run(void);
void conn_loop_break(void);
double conn_now(void);

/* How many closed connections may linger at once (see conn_free), at
 * most CONN_LINGER_MAX (the default); the daemon sets it from the
 * descriptors left over after its sessions. */
#define CONN_LINGER_MAX 1024u
void conn_set_linger_budget(unsigned n);

/* Takes ownership of fd (made non-blocking). Reading starts paused. */
struct conn *conn_new(int fd, size_t in_max, conn_cb cb, void *arg);
/* The same for an fd already non-blocking (accept4 or socket with
 * SOCK_NONBLOCK): no fcntl() calls (two syscalls per session). */
struct conn *conn_new_nonblocking(int fd, size_t in_max, conn_cb cb, void *arg);
/* Stops every watcher, sends close_notify once if TLS is up, closes fd. */
void conn_free(struct conn **c);
/* For a connection inherited across fork(), the parent's: stops the
 * watchers and closes this process's fd - no close_notify, no shutdown,
 * no lingering read. */
void conn_abandon(struct conn **c);
void conn_set_cb(struct conn *c, conn_cb cb, void *arg);
int conn_fd(const struct conn *c);

void conn_set_timeout(struct conn *c, double seconds);	/* 0 = none */
/* Off (the default): any byte read or written is activity. On: input is
 * activity only when it completes a line (holds an LF), so bytes trickled
 * into a line that never ends do not move the timeout (slowloris);
 * output still is. For line protocols between commands. */
void conn_set_line_activity(struct conn *c, bool on);
/* A minimum input rate in bytes per second (0, the default: off; Postfix's
 * smtpd_min_data_rate). On, the timeout becomes a deadline that input
 * moves on by n / rate seconds per n bytes read (plaintext, after TLS),
 * never to more than the timeout ahead of now (datarate.h); output does
 * not move it. conn_set_timeout() starts it at one timeout from now. A
 * peer trickling below the rate gets CONN_EV_TIMEOUT however often it
 * sends; line_activity does not apply while it is on. */
void conn_set_min_rate(struct conn *c, double bytes_per_second);
void conn_read_start(struct conn *c);
void conn_read_stop(struct conn *c);

size_t conn_in_len(const struct conn *c);
const char *conn_in_data(const struct conn *c);
void conn_in_consume(struct conn *c, size_t n);
void conn_in_clear(struct conn *c);	/* discard everything queued */
bool conn_in_full(const struct conn *c);
/* Offset just past the first LF in the input, or 0 if there is none. */
size_t conn_in_line_end(const struct conn *c);

/* Ask for a CONN_EV_READ from the loop although no new bytes arrived
 * (the owner left complete input queued and wants to come back to it). */
void conn_kick(struct conn *c);

/* Queues (or sends at once) n bytes. Lines are built by the protocol with
 * the bounded builder (strbuf.h); conn only moves bytes. */
void conn_write(struct conn *c, const void *p, size_t n);
size_t conn_out_len(const struct conn *c);
/* While corked, conn_write only queues; uncorking sends the batch (one
 * write / TLS record for a burst of pipelined replies). */
void conn_cork(struct conn *c);
void conn_uncork(struct conn *c);
/* Ask for one CONN_EV_DRAINED once the output queue is empty (possibly
 * right away, but always from the loop). During a TLS handshake with
 * nothing queued it comes at once and the handshake goes no further: an
 * owner that closes mid-handshake is told it may free the conn. */
void conn_notify_drained(struct conn *c);

/* Sensitive: credentials may pass through (a login); both queues are
 * wiped whenever their storage is freed or moved, turning it off wipes
 * everything but the bytes still queued, and TLS wipes each received
 * record's plaintext (tls_set_wipe). Off by default (the relay of a
 * logged-in session is not worth the cycles). */
void conn_set_sensitive(struct conn *c, bool on);

/* Half-close: ends our sending direction once everything queued has
 * gone - TLS close_notify when TLS is up, then shutdown(SHUT_WR) - as a
 * TCP proxy passes on its client's FIN. Reading goes on: the peer's
 * remaining output still arrives, then its EOF. Later conn_write()s are
 * dropped. No event of its own; the usual ones keep coming. */
void conn_shutdown_write(struct conn *c);

/* Starts a TLS handshake on the conn, taking ownership of s. The input
 * queue must be empty (STARTTLS discards pipelined bytes first). */
void conn_start_tls(struct conn *c, struct tls_session *s);
struct tls_session *conn_tls(const struct conn *c);	/* NULL before TLS */
bool conn_tls_ready(const struct conn *c);

const char *conn_error(const struct conn *c);
uint64_t conn_bytes_in(const struct conn *c);
uint64_t conn_bytes_out(const struct conn *c);

#endif
