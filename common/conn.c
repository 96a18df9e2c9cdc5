/* conn: non-blocking socket I/O with optional TLS, driven by libev.
 *
 * One function, conn_io(), runs after every wake-up: it advances a TLS
 * handshake, flushes output, reads input while there is room, re-arms the
 * watchers from the resulting state (conn_arm(), tlsproxy's "strategy"),
 * and delivers at most one event to the owner as its last statement.
 * Conditions that must still be reported (EOF after data, an error, a
 * drain notification, bytes buffered inside GnuTLS) are re-queued with
 * ev_feed_event(); ev_io_stop() in conn_free() drops such queued events, so
 * a freed conn is never called back. */
#include "conn.h"
#include "buf.h"
#include "datarate.h"
#include "sysio.h"
#include "tls.h"
#include "xmem.h"

#include <errno.h>
#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CONN_MAGIC 0x434f4e4eu
#define READ_CHUNK 16384
#define READ_BUDGET (256 * 1024)	/* per wake-up, for fairness */
#define LINGER_SECONDS 2.0

struct conn {
	uint32_t magic;
	int fd;
	ev_io rio, wio;
	ev_timer timer;
	double timeout, last;
	double min_rate;	/* bytes/s; > 0: input buys time (datarate.h) */
	struct buf in, out;
	/* Zero-copy input (read_view): the unread plaintext of one TLS
	 * record, still in the TLS layer's record buffer. Only while in is
	 * empty; what the owner leaves of it moves into in at the next read. */
	const char *view;
	size_t view_len;
	size_t in_max;
	struct tls_session *tls;
	conn_cb cb;
	void *arg;
	uint64_t bytes_in, bytes_out;
	const char *err;
	unsigned reading : 1, eof : 1, eof_delivered : 1, failed : 1, fail_delivered : 1,
	    handshaking : 1, hs_want_write : 1, read_wants_write : 1, write_wants_read : 1,
	    want_drained : 1, tls_ready : 1, kicked : 1, corked : 1,
	    shut_wr : 1 /* conn_shutdown_write() asked */, wr_closed : 1 /* and done */,
	    sensitive : 1, line_activity : 1 /* only input completing a line counts */;
};

static struct ev_loop *loop;

static size_t in_len(const struct conn *c)
{
	return c->in.len + c->view_len;
}

/* Decrypted bytes the TLS layer holds beyond the view handed out. */
static bool tls_more(struct conn *c)
{
	return tls_pending(c->tls) > c->view_len;
}

void conn_loop_init(void)
{
	loop = ev_default_loop(EVFLAG_AUTO);
}

static void lingerers_forget(void);

void conn_loop_fork(void)
{
	ev_loop_fork(loop);
	lingerers_forget();
}

void conn_loop_run(void)
{
	ev_run(loop, 0);
}

void conn_loop_break(void)
{
	ev_break(loop, EVBREAK_ALL);
}


double conn_now(void)
{
	return ev_now(loop);
}

static void conn_io(struct conn *c);

static void io_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct conn *c = w->data;
	if (c->magic != CONN_MAGIC)
		abort();
	conn_io(c);
}

static void arm_timer(struct conn *c)
{
	if (c->timeout <= 0) {
		ev_timer_stop(loop, &c->timer);
		return;
	}
	double left = c->last + c->timeout - ev_now(loop);
	ev_timer_stop(loop, &c->timer);
	ev_timer_set(&c->timer, left > 0 ? left : 0.001, 0.);
	ev_timer_start(loop, &c->timer);
}

static void timer_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	if (c->magic != CONN_MAGIC)
		abort();
	if (c->timeout > 0 && ev_now(loop) - c->last >= c->timeout) {
		c->cb(c, CONN_EV_TIMEOUT, c->arg);
		return;
	}
	arm_timer(c);	/* activity moved the deadline (libev "method 3") */
}

static void touch(struct conn *c)
{
	c->last = ev_now(loop);
}

/* Output is activity, except under a minimum input rate: there only the
 * peer's bytes buy time. */
static void touch_out(struct conn *c)
{
	if (c->min_rate <= 0)
		touch(c);
}

static void set_watcher(ev_io *w, bool on)
{
	if (on && !ev_is_active(w))
		ev_io_start(loop, w);
	else if (!on && ev_is_active(w))
		ev_io_stop(loop, w);
}

static void conn_arm(struct conn *c)
{
	bool r = false, w = false;
	if (c->failed) {
		set_watcher(&c->rio, false);
		set_watcher(&c->wio, false);
		if (!c->fail_delivered)
			ev_feed_event(loop, &c->rio, EV_READ);
		return;
	}
	if (c->handshaking) {
		r = !c->hs_want_write;
		w = c->hs_want_write;
	} else {
		r = (c->reading && !c->eof && in_len(c) < c->in_max && !c->read_wants_write) ||
		    c->write_wants_read;
		w = (c->out.len && !c->write_wants_read) || c->read_wants_write ||
		    (c->want_drained && !c->out.len) ||
		    (c->shut_wr && !c->wr_closed && !c->write_wants_read);
	}
	set_watcher(&c->rio, r);
	set_watcher(&c->wio, w);
}

struct conn *conn_new(int fd, size_t in_max, conn_cb cb, void *arg)
{
	sysio_set_nonblock(fd);
	return conn_new_nonblocking(fd, in_max, cb, arg);
}

struct conn *conn_new_nonblocking(int fd, size_t in_max, conn_cb cb, void *arg)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->magic = CONN_MAGIC;
	c->fd = fd;
	c->in_max = in_max;
	c->cb = cb;
	c->arg = arg;
	ev_io_init(&c->rio, io_cb, fd, EV_READ);
	ev_io_init(&c->wio, io_cb, fd, EV_WRITE);
	ev_init(&c->timer, timer_cb);
	c->rio.data = c->wio.data = c->timer.data = c;
	touch(c);
	return c;
}

/* Lingering close (nginx lingering_close): closing a socket that still
 * has unread input makes the kernel send RST, and an RST can destroy data
 * the peer has not read yet - our last reply. So after our FIN the fd is
 * kept a little while, and whatever arrives is discarded until EOF. */
struct lingerer {
	ev_io io;
	ev_timer t;
	int fd;
	struct lingerer *prev, *next;
};

static struct lingerer *lingerers;

/* Lingering fds belong to no session, so no session limit counts them: a
 * client cycling short sessions could otherwise run the worker out of
 * descriptors. Beyond the budget, a close is a plain close. */
static unsigned linger_budget = CONN_LINGER_MAX, lingering;

void conn_set_linger_budget(unsigned n)
{
	linger_budget = n;
}

static void linger_end(struct lingerer *l)
{
	ev_io_stop(loop, &l->io);
	ev_timer_stop(loop, &l->t);
	sysio_close(l->fd);
	if (l->prev)
		l->prev->next = l->next;
	else
		lingerers = l->next;
	if (l->next)
		l->next->prev = l->prev;
	free(l);
	lingering--;
}

/* In a forked child, the lingering closes are the parent's: closed here
 * without a read, so the parent's go on undisturbed. */
static void lingerers_forget(void)
{
	while (lingerers)
		linger_end(lingerers);
}

static void linger_read(struct ev_loop *lp, ev_io *w, int revents)
{
	struct lingerer *l = w->data;
	char sink[4096];
	ssize_t n;
	while ((n = sysio_recv(l->fd, sink, sizeof(sink), 0)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		linger_end(l);
}

static void linger_timeout(struct ev_loop *lp, ev_timer *w, int revents)
{
	linger_end(w->data);
}

static void close_lingering(int fd)
{
	char sink[4096];
	if (lingering >= linger_budget || sysio_shutdown(fd, SHUT_WR) < 0) {
		sysio_close(fd);
		return;
	}
	ssize_t n;
	while ((n = sysio_recv(fd, sink, sizeof(sink), 0)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
		sysio_close(fd);	/* EOF already seen, or the peer is gone */
		return;
	}
	struct lingerer *l = xcalloc(1, sizeof(*l));
	lingering++;
	l->fd = fd;
	l->next = lingerers;
	if (lingerers)
		lingerers->prev = l;
	lingerers = l;
	ev_io_init(&l->io, linger_read, fd, EV_READ);
	ev_timer_init(&l->t, linger_timeout, LINGER_SECONDS, 0.);
	l->io.data = l->t.data = l;
	ev_io_start(loop, &l->io);
	ev_timer_start(loop, &l->t);
}

void conn_free(struct conn **cp)
{
	struct conn *c = *cp;
	if (!c)
		return;
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	ev_timer_stop(loop, &c->timer);
	if (c->tls) {
		if (c->tls_ready && !c->failed)
			tls_bye(c->tls);
		tls_session_free(&c->tls);
	}
	if (c->fd >= 0) {
		if (c->failed)
			sysio_close(c->fd);
		else
			close_lingering(c->fd);
	}
	buf_clear(&c->in);
	buf_clear(&c->out);
	c->magic = 0;
	free(c);
	*cp = NULL;
}

void conn_abandon(struct conn **cp)
{
	struct conn *c = *cp;
	if (!c)
		return;
	c->failed = 1;		/* no close_notify, no lingering close */
	if (c->tls)
		c->tls_ready = 0;
	conn_free(cp);
}

void conn_set_cb(struct conn *c, conn_cb cb, void *arg)
{
	c->cb = cb;
	c->arg = arg;
}

int conn_fd(const struct conn *c)
{
	return c->fd;
}

void conn_set_line_activity(struct conn *c, bool on)
{
	c->line_activity = on;
}

void conn_set_min_rate(struct conn *c, double bytes_per_second)
{
	c->min_rate = bytes_per_second > 0 ? bytes_per_second : 0;
}

void conn_set_timeout(struct conn *c, double seconds)
{
	c->timeout = seconds;
	touch(c);
	arm_timer(c);
}

static void feed_if_tls_pending(struct conn *c)
{
	if (c->tls_ready && c->reading && in_len(c) < c->in_max && tls_more(c))
		ev_feed_event(loop, &c->rio, EV_READ);
}

void conn_read_start(struct conn *c)
{
	c->reading = 1;
	conn_arm(c);
	if (c->eof && !c->eof_delivered)
		ev_feed_event(loop, &c->rio, EV_READ);
	feed_if_tls_pending(c);
}

void conn_read_stop(struct conn *c)
{
	c->reading = 0;
	conn_arm(c);
}

size_t conn_in_len(const struct conn *c)
{
	return in_len(c);
}

const char *conn_in_data(const struct conn *c)
{
	return c->view ? c->view : buf_head(&c->in);
}

static void view_consume(struct conn *c, size_t n)
{
	if (n > c->view_len)
		n = c->view_len;
	tls_view_consume(c->tls, n);
	c->view += n;
	c->view_len -= n;
	if (!c->view_len)
		c->view = NULL;
}

void conn_in_consume(struct conn *c, size_t n)
{
	bool was_full = in_len(c) >= c->in_max;
	if (c->view)
		view_consume(c, n);
	else
		buf_consume(&c->in, n);
	if (was_full && !c->failed)
		conn_arm(c);
	feed_if_tls_pending(c);
}

void conn_in_clear(struct conn *c)
{
	if (c->view)
		view_consume(c, c->view_len);
	buf_clear(&c->in);
	if (!c->failed)
		conn_arm(c);
}

bool conn_in_full(const struct conn *c)
{
	return in_len(c) >= c->in_max;
}

size_t conn_in_line_end(const struct conn *c)
{
	if (c->view) {
		const char *lf = memchr(c->view, '\n', c->view_len);
		return lf ? (size_t)(lf - c->view) + 1 : 0;
	}
	long i = buf_find_lf(&c->in, 0);
	return i < 0 ? 0 : (size_t)i + 1;
}

static void fail(struct conn *c, const char *why)
{
	if (!c->failed) {
		c->failed = 1;
		c->err = why;
	}
}

/* The half-close, once the output queue is empty (conn_shutdown_write). */
static void shut_write_step(struct conn *c)
{
	if (!c->shut_wr || c->wr_closed || c->out.len || c->failed || c->handshaking)
		return;
	if (c->tls && c->tls_ready && tls_bye(c->tls) == TLS_WANT_WRITE)
		return;	/* the write watcher brings us back */
	c->wr_closed = 1;
	if (sysio_shutdown(c->fd, SHUT_WR) < 0 && errno != ENOTCONN)
		fail(c, strerror(errno));
}

/* Writes queued output until the socket would block. No callbacks. */
static void flush(struct conn *c)
{
	while (c->out.len && !c->failed) {
		size_t n = c->out.len;
		ssize_t r;
		if (c->tls) {
			r = tls_send(c->tls, buf_head(&c->out), n > TLS_RECORD_MAX ? TLS_RECORD_MAX : n);
			if (r == TLS_WANT_READ) {
				c->write_wants_read = 1;
				return;
			}
			if (r == TLS_WANT_WRITE)
				return;
			if (r < 0) {
				fail(c, tls_reason(c->tls));
				return;
			}
		} else {
			r = sysio_send(c->fd, buf_head(&c->out), n, MSG_NOSIGNAL);
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return;
				fail(c, strerror(errno));
				return;
			}
		}
		c->write_wants_read = 0;
		buf_consume(&c->out, (size_t)r);
		c->bytes_out += (uint64_t)r;
		touch_out(c);
	}
	shut_write_step(c);
}

/* One TLS record's plaintext as the input, without copying it out of
 * the TLS layer: for an empty input queue on a conn that is not
 * sensitive (a relay, a DATA body: bytes the owner takes whole and
 * passes on). Returns the bytes, 0 when none came (eof/failed set). */
static size_t read_view(struct conn *c)
{
	const char *p;
	ssize_t r = tls_recv_view(c->tls, &p);
	if (r == TLS_WANT_READ)
		return 0;
	if (r == TLS_WANT_WRITE) {
		c->read_wants_write = 1;
		return 0;
	}
	if (r == TLS_CLOSED) {
		c->eof = 1;
		return 0;
	}
	if (r < 0) {
		fail(c, tls_reason(c->tls));
		return 0;
	}
	c->read_wants_write = 0;
	c->view = p;
	c->view_len = (size_t)r;
	return (size_t)r;
}

static void note_input(struct conn *c, size_t total)
{
	c->bytes_in += total;
	/* A slowloris trickling a line that never ends must not keep its
	 * session alive: with line_activity, input counts as activity only
	 * when it completes a line. */
	if (c->min_rate > 0)
		c->last = datarate_last(c->last, ev_now(loop), total, c->min_rate);
	else if (!c->line_activity || memchr(conn_in_data(c) + in_len(c) - total, '\n', total))
		touch(c);
}

/* Reads while there is room. Returns the number of bytes queued. */
static size_t read_some(struct conn *c)
{
	size_t total = 0;
	if (c->view) {	/* the owner left part of a record: queue it, read on */
		buf_append(&c->in, c->view, c->view_len);
		view_consume(c, c->view_len);
	}
	if (c->tls && !c->sensitive && !c->in.len && c->in_max && !c->eof && !c->failed) {
		total = read_view(c);
		if (total)
			note_input(c, total);
		return total;
	}
	while (c->in.len < c->in_max && total < READ_BUDGET && !c->eof && !c->failed) {
		size_t room = c->in_max - c->in.len, avail;
		if (room > READ_CHUNK)
			room = READ_CHUNK;
		char *dst = buf_reserve(&c->in, room, &avail);
		ssize_t r;
		if (c->tls) {
			r = tls_recv(c->tls, dst, room);
			if (r == TLS_WANT_READ)
				break;
			if (r == TLS_WANT_WRITE) {
				c->read_wants_write = 1;
				break;
			}
			if (r == TLS_CLOSED) {
				c->eof = 1;
				break;
			}
			if (r < 0) {
				fail(c, tls_reason(c->tls));
				break;
			}
		} else {
			r = sysio_recv(c->fd, dst, room, 0);
			if (r == 0) {
				c->eof = 1;
				break;
			}
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					break;
				fail(c, strerror(errno));
				break;
			}
		}
		c->read_wants_write = 0;
		buf_commit(&c->in, (size_t)r);
		total += (size_t)r;
		if (!c->tls && (size_t)r < room)
			break;	/* the socket is drained */
	}
	if (c->in.len == 0)
		buf_clear(&c->in);	/* release a buffer reserved in vain */
	if (total)
		note_input(c, total);
	return total;
}

static void handshake_step(struct conn *c)
{
	int r = tls_handshake(c->tls);
	if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
		c->hs_want_write = r == TLS_WANT_WRITE;
		conn_arm(c);
		return;
	}
	if (r != TLS_OK) {
		fail(c, tls_reason(c->tls));
		c->fail_delivered = 1;
		conn_arm(c);
		c->cb(c, CONN_EV_ERROR, c->arg);
		return;
	}
	c->handshaking = 0;
	c->hs_want_write = 0;
	c->tls_ready = 1;
	touch(c);
	flush(c);	/* output queued during the handshake */
	conn_arm(c);
	c->cb(c, CONN_EV_HANDSHAKE, c->arg);
}

static void conn_io(struct conn *c)
{
	size_t got = 0;
	bool kicked = c->kicked;
	c->kicked = 0;
	if (c->handshaking && !c->failed) {
		/* An owner closing during the handshake has nothing left to
		 * say: it learns at once, the handshake is abandoned. */
		if (c->want_drained && !c->out.len) {
			c->want_drained = 0;
			c->cb(c, CONN_EV_DRAINED, c->arg);
			return;
		}
		handshake_step(c);
		return;
	}
	if (!c->failed) {
		flush(c);
		if (c->reading && !c->failed)
			got = read_some(c);
	}
	conn_arm(c);
	if (got || (kicked && in_len(c) && !c->failed)) {
		if (c->eof || c->failed || (c->tls_ready && tls_more(c) && c->reading))
			ev_feed_event(loop, &c->rio, EV_READ);
		c->cb(c, CONN_EV_READ, c->arg);
		return;
	}
	if (c->failed && !c->fail_delivered) {
		c->fail_delivered = 1;
		c->cb(c, CONN_EV_ERROR, c->arg);
		return;
	}
	if (c->eof && !c->eof_delivered && c->reading && !c->failed) {
		c->eof_delivered = 1;
		c->cb(c, CONN_EV_EOF, c->arg);
		return;
	}
	if (c->want_drained && (c->failed ? c->fail_delivered : !c->out.len)) {
		c->want_drained = 0;
		conn_arm(c);
		c->cb(c, CONN_EV_DRAINED, c->arg);
		return;
	}
}

void conn_kick(struct conn *c)
{
	c->kicked = 1;
	ev_feed_event(loop, &c->rio, EV_READ);
}

/* Sends straight from the caller's bytes while nothing is queued (no copy
 * for the common case of a socket with room); returns how many went. */
static size_t write_direct(struct conn *c, const char *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		size_t chunk = n - done;
		ssize_t r;
		if (c->tls) {
			r = tls_send(c->tls, p + done, chunk > TLS_RECORD_MAX ? TLS_RECORD_MAX : chunk);
			if (r < 0) {
				if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
					/* GnuTLS holds this record: it must be completed
					 * from the same bytes, so queue from here on. */
					if (r == TLS_WANT_READ)
						c->write_wants_read = 1;
					break;
				}
				fail(c, tls_reason(c->tls));
				break;
			}
		} else {
			r = sysio_send(c->fd, p + done, chunk, MSG_NOSIGNAL);
			if (r < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
					fail(c, strerror(errno));
				break;
			}
		}
		done += (size_t)r;
		c->bytes_out += (uint64_t)r;
	}
	if (done)
		touch_out(c);
	return done;
}

void conn_write(struct conn *c, const void *p, size_t n)
{
	if (c->failed || c->shut_wr || !n)
		return;
	if (!c->out.len && !c->corked && !c->handshaking && !c->write_wants_read &&
	    !ev_is_active(&c->wio)) {
		size_t sent = write_direct(c, p, n);
		p = (const char *)p + sent;
		n -= sent;
		if (!n || c->failed) {
			conn_arm(c);
			return;
		}
	}
	buf_append(&c->out, p, n);
	if (c->corked)
		return;
	if (!c->handshaking && !ev_is_active(&c->wio) && !c->write_wants_read)
		flush(c);
	conn_arm(c);
}

void conn_cork(struct conn *c)
{
	c->corked = 1;
}

void conn_uncork(struct conn *c)
{
	c->corked = 0;
	if (c->failed)
		return;
	if (c->out.len && !c->handshaking && !ev_is_active(&c->wio) && !c->write_wants_read)
		flush(c);
	conn_arm(c);
}

size_t conn_out_len(const struct conn *c)
{
	/* A failed conn sends nothing more: what it still holds is no
	 * backlog to wait for (an owner that outlives the failure, see
	 * session ops->lost, must never wait for it to drain). */
	return c->failed ? 0 : c->out.len;
}

void conn_notify_drained(struct conn *c)
{
	c->want_drained = 1;
	if (c->failed && c->fail_delivered) {
		/* Nothing can drain any more: told at once (next round). */
		ev_feed_event(loop, &c->rio, EV_READ);
		return;
	}
	conn_arm(c);
	if (c->handshaking && !c->out.len)
		ev_feed_event(loop, &c->wio, EV_WRITE);	/* see conn_io */
}

void conn_set_sensitive(struct conn *c, bool on)
{
	c->sensitive = on;
	buf_set_wipe(&c->in, on);
	buf_set_wipe(&c->out, on);
	if (c->tls)
		tls_set_wipe(c->tls, on);
}

void conn_shutdown_write(struct conn *c)
{
	c->shut_wr = 1;
	if (!c->corked && !ev_is_active(&c->wio) && !c->write_wants_read)
		flush(c);	/* nothing queued: at once */
	conn_arm(c);
}

void conn_start_tls(struct conn *c, struct tls_session *s)
{
	c->tls = s;
	tls_set_wipe(s, c->sensitive);
	c->handshaking = 1;
	c->hs_want_write = 0;
	buf_clear(&c->in);
	conn_arm(c);
	ev_feed_event(loop, &c->rio, EV_READ);	/* a client speaks first */
}

struct tls_session *conn_tls(const struct conn *c)
{
	return c->tls;
}

bool conn_tls_ready(const struct conn *c)
{
	return c->tls_ready;
}

const char *conn_error(const struct conn *c)
{
	return c->err ? c->err : "connection error";
}

uint64_t conn_bytes_in(const struct conn *c)
{
	return c->bytes_in;
}

uint64_t conn_bytes_out(const struct conn *c)
{
	return c->bytes_out;
}
