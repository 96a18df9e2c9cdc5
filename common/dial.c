/* dial: the dialer. One connect attempt at a time; each gets
 * connect_timeout seconds; an immediate failure moves on to the next
 * address. Completion is reported from a libev callback. */
#include "dial.h"
#include "log.h"
#include "metrics.h"
#include "sysio.h"
#include "xmem.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

struct dial {
	const struct conf_upstream *u;
	dial_cb cb;
	void *arg;
	int index;		/* address being tried / last reported */
	int fd;
	ev_io io;
	ev_timer timer;
	int report_failure;	/* deliver "all failed" from the timer */
	int last;		/* last index to try */
	char err[512];
};

static void try_from(struct dial *d, int index);

static void dial_fail(struct dial *d, const char *why)
{
	snprintf(d->err, sizeof(d->err), "%s: %s", d->u->addrs[d->index].text, why);
	log_debug("upstream %s: %s", d->u->name, d->err);
	metrics_upstream_failure();
	if (d->fd >= 0) {
		sysio_close(d->fd);
		d->fd = -1;
	}
	ev_io_stop(EV_DEFAULT, &d->io);
	ev_timer_stop(EV_DEFAULT, &d->timer);
	try_from(d, d->index + 1);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dial *d = w->data;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (sysio_getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr) {
		dial_fail(d, strerror(soerr));
		return;
	}
	ev_io_stop(loop, &d->io);
	ev_timer_stop(loop, &d->timer);
	int fd = d->fd;
	d->fd = -1;
	d->cb(d->arg, fd, d->index, NULL);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dial *d = w->data;
	if (d->report_failure) {
		d->report_failure = 0;
		d->cb(d->arg, -1, d->index, d->err);
		return;
	}
	dial_fail(d, "connect timeout");
}

static void try_from(struct dial *d, int index)
{
	for (; index <= d->last; index++) {
		const struct mg_addr *a = &d->u->addrs[index].addr;
		d->index = index;
		d->fd = sysio_socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (d->fd < 0) {
			snprintf(d->err, sizeof(d->err), "%s: %s", d->u->addrs[index].text, strerror(errno));
			metrics_upstream_failure();
			continue;
		}
		/* Without it, a message's last few octets (its final dot) wait
		 * behind Nagle for the upstream's delayed ACK: 40 ms a message. */
		int one = 1;
		sysio_setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (sysio_connect(d->fd, &a->u.sa, a->len) < 0 && errno != EINPROGRESS) {
			snprintf(d->err, sizeof(d->err), "%s: %s", d->u->addrs[index].text, strerror(errno));
			metrics_upstream_failure();
			sysio_close(d->fd);
			d->fd = -1;
			continue;
		}
		ev_io_set(&d->io, d->fd, EV_WRITE);
		ev_io_start(EV_DEFAULT, &d->io);
		ev_timer_set(&d->timer, d->u->connect_timeout, 0.);
		ev_timer_start(EV_DEFAULT, &d->timer);
		return;
	}
	/* Every address failed: report from the loop, not from here. */
	d->report_failure = 1;
	ev_timer_set(&d->timer, 0., 0.);
	ev_timer_start(EV_DEFAULT, &d->timer);
}

struct dial *dial_start(const struct conf_upstream *u, dial_cb cb,
					  void *arg)
{
	return dial_start_at(u, -1, cb, arg);
}

struct dial *dial_start_at(const struct conf_upstream *u, int only,
					     dial_cb cb, void *arg)
{
	struct dial *d = xcalloc(1, sizeof(*d));
	d->last = only >= 0 ? only : (int)u->naddrs - 1;
	d->u = u;
	d->cb = cb;
	d->arg = arg;
	d->fd = -1;
	ev_init(&d->io, io_cb);
	ev_init(&d->timer, timer_cb);
	d->io.data = d->timer.data = d;
	snprintf(d->err, sizeof(d->err), "no address");
	try_from(d, only >= 0 ? only : 0);
	return d;
}

void dial_next(struct dial *d, const char *why)
{
	snprintf(d->err, sizeof(d->err), "%s: %s", d->u->addrs[d->index].text, why);
	try_from(d, d->index + 1);
}

void dial_free(struct dial **dp)
{
	struct dial *d = *dp;
	if (!d)
		return;
	ev_io_stop(EV_DEFAULT, &d->io);
	ev_timer_stop(EV_DEFAULT, &d->timer);
	if (d->fd >= 0)
		sysio_close(d->fd);
	free(d);
	*dp = NULL;
}

