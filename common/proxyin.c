/* proxyin: see proxyin.h. The socket stays level-triggered readable while
 * an incomplete header sits unread in it, so an incomplete header is
 * polled every 20 ms instead of watched (until the deadline). */
#include "proxyin.h"
#include "log.h"
#include "metrics.h"
#include "proxyproto.h"
#include "sysio.h"
#include "xmem.h"

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <sys/socket.h>

#define POLL_INTERVAL 0.02	/* seconds between looks at an incomplete header */

struct proxyin {
	ev_io io;
	ev_timer poll, deadline;
	int fd;
	struct mg_addr peer, local;
	const struct conf_listener *l;
	proxyin_cb cb;
	void *arg;
	bool lb_local;		/* the header was v2 LOCAL */
	double accepted;
};

/* r: RESULT_OK hands the connection on; anything else refuses it (and
 * counts it in connections_total with that result: no session line is
 * logged for it). */
static void finish(struct proxyin *p, enum session_result r, const char *why)
{
	ev_io_stop(EV_DEFAULT, &p->io);
	ev_timer_stop(EV_DEFAULT, &p->poll);
	ev_timer_stop(EV_DEFAULT, &p->deadline);
	if (r != RESULT_OK) {
		char ip[64];
		metrics_connection(p->l->name, r);
		addr_ip_str(&p->peer, ip, sizeof(ip));
		log_info("listener \"%s\": PROXY header from %s refused: %s", p->l->name, ip, why);
		sysio_close(p->fd);
		free(p);
		return;
	}
	struct mg_addr peer = p->peer, local = p->local;
	int fd = p->fd;
	proxyin_cb cb = p->cb;
	void *arg = p->arg;
	bool lb_local = p->lb_local;
	double accepted = p->accepted;
	free(p);
	cb(arg, fd, &peer, &local, lb_local, accepted);
}

static void try_read(struct proxyin *p)
{
	unsigned char buf[PP_V2_MAX];
	ssize_t n = sysio_recv(p->fd, buf, sizeof(buf), MSG_PEEK);
	if (n == 0) {
		finish(p, RESULT_ERROR, "closed before the header");
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		finish(p, RESULT_ERROR, "read error");
		return;
	}
	struct pp_info info;
	size_t used = 0;
	switch (pp_parse(buf, (size_t)n, &info, &used)) {
	case PP_MORE:
		ev_io_stop(EV_DEFAULT, &p->io);	/* poll, do not spin */
		/* Set again each time: a fired timer restarted as it is keeps
		 * its remaining time, ~0, and the poll would spin. */
		ev_timer_set(&p->poll, POLL_INTERVAL, 0.);
		ev_timer_start(EV_DEFAULT, &p->poll);
		return;
	case PP_BAD:
		finish(p, RESULT_ERROR, "malformed header");
		return;
	case PP_OK:
		break;
	}
	size_t got = 0;
	while (got < used) {	/* the peeked bytes are there: consume exactly them */
		ssize_t r = sysio_recv(p->fd, buf, used - got, 0);
		if (r <= 0) {
			finish(p, RESULT_ERROR, "read error");
			return;
		}
		got += (size_t)r;
	}
	if (!info.local) {
		p->peer = info.src;
		p->local = info.dst;
	}
	p->lb_local = info.local;
	finish(p, RESULT_OK, NULL);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	try_read(w->data);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proxyin *p = w->data;
	ev_io_start(EV_DEFAULT, &p->io);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	finish(w->data, RESULT_TIMEOUT, "no header within timeout_handshake");
}

void proxyin_start(int fd, const struct conf_listener *l, double timeout, const struct mg_addr *peer,
		   const struct mg_addr *local, proxyin_cb cb, void *arg)
{
	bool trusted = false;
	for (size_t i = 0; i < l->trusted_proxies.n; i++)
		if (addr_cidr_match(&l->trusted_proxies.v[i], peer))
			trusted = true;
	struct proxyin *p = xcalloc(1, sizeof(*p));
	p->fd = fd;
	p->peer = *peer;
	p->local = *local;
	p->l = l;
	p->cb = cb;
	p->arg = arg;
	p->accepted = ev_now(EV_DEFAULT);
	ev_io_init(&p->io, io_cb, fd, EV_READ);
	ev_timer_init(&p->poll, poll_cb, POLL_INTERVAL, 0.);
	ev_timer_init(&p->deadline, deadline_cb, timeout, 0.);
	p->io.data = p->poll.data = p->deadline.data = p;
	if (!trusted) {
		finish(p, RESULT_ERROR, "sender not in trusted_proxies");
		return;
	}
	ev_io_start(EV_DEFAULT, &p->io);
	ev_timer_start(EV_DEFAULT, &p->deadline);
}
