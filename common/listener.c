/* listener: bind/listen and the accept loop. Out of descriptors (EMFILE,
 * ENFILE) the watcher pauses for a second instead of spinning (OpenSMTPD
 * smtp_accept); EINTR, EAGAIN and ECONNABORTED are ignored. */
#include "listener.h"
#include "log.h"
#include "sysio.h"
#include "xmem.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The accept queue (as nginx and Postfix size it; the kernel caps it at
 * net.core.somaxconn). */
#define LISTEN_BACKLOG 511

#define ACCEPT_BATCH 64

struct listener_watch {
	ev_io io;
	ev_timer retry;
	int fd;
	listener_accept_cb cb;
	void *arg;
	/* Bound to one address (not 0.0.0.0 or ::): every accepted socket has
	 * it as its local address, so no getsockname() per accept. */
	bool local_fixed;
	struct mg_addr local;
};

int listener_bind(const struct mg_addr *a, bool reuseport, const char **err)
{
	int one = 1;
	int fd = sysio_socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = strerror(errno);
		return -1;
	}
	sysio_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && sysio_setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		*err = strerror(errno);
		sysio_close(fd);
		return -1;
	}
	if (a->u.sa.sa_family == AF_INET6)
		sysio_setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* Inherited by every accepted socket (Linux copies the listener's
	 * options): no reply waits for Nagle (see README "Performance"). */
	sysio_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (sysio_bind(fd, &a->u.sa, a->len) < 0 || sysio_listen(fd, LISTEN_BACKLOG) < 0) {
		*err = strerror(errno);
		sysio_close(fd);
		return -1;
	}
	return fd;
}

/* Accepts up to max connections; false once the queue is empty. */
static bool accept_some(struct ev_loop *loop, struct listener_watch *w, int max)
{
	for (int i = 0; i < max; i++) {
		struct sockaddr_storage ss, ls;
		socklen_t sl = sizeof(ss), ll = sizeof(ls);
		int fd = sysio_accept4(w->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				log_warn("accept: %s; pausing the listener for 1 s", strerror(errno));
				ev_io_stop(loop, &w->io);
				ev_timer_set(&w->retry, 1.0, 0.);
				ev_timer_start(loop, &w->retry);
			}
			return false;	/* EAGAIN, EINTR, ECONNABORTED, ... */
		}
		struct mg_addr peer, local;
		addr_from_sockaddr(&peer, (struct sockaddr *)&ss, sl);
		if (w->local_fixed)
			local = w->local;
		else if (sysio_getsockname(fd, (struct sockaddr *)&ls, &ll) == 0)
			addr_from_sockaddr(&local, (struct sockaddr *)&ls, ll);
		else
			memset(&local, 0, sizeof(local));
		w->cb(w->arg, fd, &peer, &local);
	}
	return true;
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	accept_some(loop, io->data, ACCEPT_BATCH);
}

void listener_accept_pending(struct listener_watch *w)
{
	while (accept_some(EV_DEFAULT, w, ACCEPT_BATCH))
		;
}

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct listener_watch *w = t->data;
	ev_io_start(loop, &w->io);
}

static bool is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return true;	/* unknown: ask for every connection */
}

struct listener_watch *listener_watch_new(int fd, listener_accept_cb cb, void *arg)
{
	struct listener_watch *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->cb = cb;
	w->arg = arg;
	struct sockaddr_storage ls;
	socklen_t ll = sizeof(ls);
	if (sysio_getsockname(fd, (struct sockaddr *)&ls, &ll) == 0 && !is_wildcard(&ls)) {
		addr_from_sockaddr(&w->local, (struct sockaddr *)&ls, ll);
		w->local_fixed = true;
	}
	ev_io_init(&w->io, accept_cb, fd, EV_READ);
	ev_init(&w->retry, retry_cb);
	w->io.data = w->retry.data = w;
	ev_io_start(EV_DEFAULT, &w->io);
	return w;
}



void listener_watch_free(struct listener_watch **wp)
{
	struct listener_watch *w = *wp;
	if (!w)
		return;
	ev_io_stop(EV_DEFAULT, &w->io);
	ev_timer_stop(EV_DEFAULT, &w->retry);
	free(w);
	*wp = NULL;
}
