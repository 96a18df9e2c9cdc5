/* sim_net: common/sysio.h on in-memory sockets (see sim.h). Each socket
 * is one connection: the gateway's end is an fd (>= SIM_FD_BASE, never
 * reused, so a stale fd is always caught); the peer's end is driven by
 * sim_peer_*(). Peer-to-gateway bytes queue without bound; gateway-to-peer
 * bytes may sit unread up to the peer's window, and the peer reads them
 * whenever the loop idles (sim_net_autodrain). A window of 0 is a peer that
 * stopped reading.
 *
 * Kernel behaviour kept: recv returns what is queued, then 0 after the
 * peer's FIN, or ECONNRESET after an RST (which discards queued bytes);
 * the first send to a peer that closed is accepted and answered with an
 * RST; a non-blocking connect is EINPROGRESS until the driver resolves it
 * (SO_ERROR then says how). Contract checks (sim_fail): any call on an fd
 * that is unknown or closed, a send after our shutdown(SHUT_WR), plaintext
 * recv/send on a socket that has a TLS session, an io watcher left on a
 * closed fd. */
#include "sim.h"
#include "sysio.h"

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#define SOCK_MAGIC 0x53534f4bu

struct sim_sock {
	uint32_t magic;
	int fd;
	enum sim_sock_kind kind;
	enum sim_connect conn;
	struct sockaddr_storage dest;
	socklen_t destlen;
	bool gw_closed, gw_shut;
	bool peer_fin, peer_gone, peer_reset, reset_told, eof_told, rst_told;
	unsigned char *rx;	/* peer -> gateway, unread */
	size_t rx_off, rx_len, rx_cap;
	size_t tx_len;		/* gateway -> peer, unread by the peer */
	size_t window;
	uint64_t written, peer_sent;
	struct sim_tls_state *tls;
	bool tls_client, poke;
	void *user;
	struct sim_sock *next;
};

static struct {
	struct sim_sock *first, *last;
	struct sim_sock **byfd;
	size_t nfd, capfd;
	unsigned open;
	uint64_t progress;
	enum sim_dial_policy policy;
	struct sim_net_hooks hooks;
} net;

static struct sim_sock *check(const struct sim_sock *s)
{
	if (!s || s->magic != SOCK_MAGIC)
		sim_fail("bad simulated socket %p", (const void *)s);
	return (struct sim_sock *)s;
}

void sim_net_reset(void)
{
	struct sim_sock *s = net.first, *n;
	for (; s; s = n) {
		n = s->next;
		free(s->rx);
		s->magic = 0;
		free(s);
	}
	free(net.byfd);
	struct sim_net_hooks h = net.hooks;
	memset(&net, 0, sizeof(net));
	net.hooks = h;
}

void sim_net_set_hooks(const struct sim_net_hooks *h)
{
	if (h)
		net.hooks = *h;
	else
		memset(&net.hooks, 0, sizeof(net.hooks));
}

static struct sim_sock *new_sock(enum sim_sock_kind kind)
{
	struct sim_sock *s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->magic = SOCK_MAGIC;
	s->kind = kind;
	s->window = SIM_WINDOW_UNLIMITED;
	s->fd = SIM_FD_BASE + (int)net.nfd;
	if (net.nfd == net.capfd) {
		net.capfd = net.capfd ? net.capfd * 2 : 16;
		net.byfd = realloc(net.byfd, net.capfd * sizeof(*net.byfd));
		if (!net.byfd)
			abort();
	}
	net.byfd[net.nfd++] = s;
	if (net.last)
		net.last->next = s;
	else
		net.first = s;
	net.last = s;
	net.open++;
	net.progress++;
	return s;
}

struct sim_sock *sim_sock_by_fd(int fd)
{
	if (fd < SIM_FD_BASE || (size_t)(fd - SIM_FD_BASE) >= net.nfd)
		return NULL;
	struct sim_sock *s = net.byfd[fd - SIM_FD_BASE];
	return s->gw_closed ? NULL : s;
}

/* The open socket behind fd, or a contract violation. */
static struct sim_sock *open_fd(int fd, const char *call)
{
	if (fd < SIM_FD_BASE || (size_t)(fd - SIM_FD_BASE) >= net.nfd)
		sim_fail("%s(%d): not a simulated socket", call, fd);
	struct sim_sock *s = check(net.byfd[fd - SIM_FD_BASE]);
	if (s->gw_closed)
		sim_fail("%s(%d): the fd was already closed (use after close)", call, fd);
	return s;
}

/* ---- readiness (for sim_ev) ---- */

int sim_net_ready(int fd, int events)
{
	if (fd < SIM_FD_BASE || (size_t)(fd - SIM_FD_BASE) >= net.nfd)
		sim_fail("io watcher on fd %d, which is not a simulated socket", fd);
	struct sim_sock *s = check(net.byfd[fd - SIM_FD_BASE]);
	if (s->gw_closed)
		sim_fail("io watcher still active on fd %d after close", fd);
	int r = 0;
	if (s->conn == SIM_CONN_PENDING)
		return 0;
	if (s->conn == SIM_CONN_REFUSED)
		return events;
	bool gone = s->peer_fin || s->peer_reset;
	if (s->tls && sim_tls_pending(s)) {
		if (s->poke || gone)
			r |= EV_READ;
	} else if (s->rx_len || gone) {
		r |= EV_READ;
	}
	if (s->peer_reset || s->peer_gone || s->window == SIM_WINDOW_UNLIMITED || s->tx_len < s->window)
		r |= EV_WRITE;
	return r & events;
}

bool sim_net_autodrain(void)
{
	bool any = false;
	for (struct sim_sock *s = net.first; s; s = s->next)
		if (s->tx_len && !s->peer_gone && !s->peer_reset) {
			s->tx_len = 0;
			any = true;
		}
	if (any)
		net.progress++;
	return any;
}

uint64_t sim_net_progress(void)
{
	return net.progress;
}

/* ---- raw I/O (also used by sim_tls) ---- */

static ssize_t do_recv(struct sim_sock *s, void *buf, size_t len, bool peek)
{
	if (s->conn == SIM_CONN_PENDING || s->conn == SIM_CONN_REFUSED) {
		errno = s->conn == SIM_CONN_REFUSED ? ECONNREFUSED : EAGAIN;
		return -1;
	}
	if (s->peer_reset) {
		if (!s->rst_told)
			net.progress++;
		s->rst_told = true;
		errno = ECONNRESET;
		return -1;
	}
	if (s->rx_len) {
		size_t n = len < s->rx_len ? len : s->rx_len;
		memcpy(buf, s->rx + s->rx_off, n);
		if (!peek) {
			net.progress++;
			s->rx_off += n;
			s->rx_len -= n;
			if (!s->rx_len)
				s->rx_off = 0;
		}
		return (ssize_t)n;
	}
	if (s->peer_fin) {
		if (!s->eof_told)
			net.progress++;	/* the first EOF read is news; a spin on it is not */
		s->eof_told = true;
		return 0;
	}
	errno = EAGAIN;
	return -1;
}

ssize_t sim_net_raw_recv(struct sim_sock *s, void *buf, size_t len)
{
	check(s);
	if (s->gw_closed)
		sim_fail("TLS read on fd %d after close", s->fd);
	return do_recv(s, buf, len, false);
}

ssize_t sim_net_raw_send(struct sim_sock *s, const void *buf, size_t len)
{
	check(s);
	if (s->gw_closed)
		sim_fail("write on fd %d after close", s->fd);
	if (s->gw_shut)
		sim_fail("write on fd %d after our shutdown(SHUT_WR)", s->fd);
	if (s->conn != SIM_CONN_OK && s->kind == SIM_SOCK_UPSTREAM) {
		errno = s->conn == SIM_CONN_REFUSED ? ECONNREFUSED : ENOTCONN;
		return -1;
	}
	if (s->peer_reset) {
		errno = s->reset_told ? EPIPE : ECONNRESET;
		s->reset_told = true;
		return -1;
	}
	size_t n = len;
	if (!s->peer_gone && s->window != SIM_WINDOW_UNLIMITED) {
		size_t room = s->tx_len < s->window ? s->window - s->tx_len : 0;
		if (n > room)
			n = room;
	}
	if (!n) {
		errno = EAGAIN;
		return -1;
	}
	if (s->peer_gone) {
		s->peer_reset = true;	/* a closed peer answers data with RST */
		s->rx_len = s->rx_off = 0;
	} else {
		s->tx_len += n;
	}
	s->written += n;
	net.progress++;
	if (net.hooks.gw_wrote)
		net.hooks.gw_wrote(net.hooks.arg, s, buf, n);
	return (ssize_t)n;
}

/* ---- common/sysio.h ---- */

ssize_t sysio_recv(int fd, void *buf, size_t len, int flags)
{
	struct sim_sock *s = open_fd(fd, "recv");
	if (s->tls)
		sim_fail("plaintext recv on fd %d, which has a TLS session", fd);
	if (flags & ~MSG_PEEK)
		sim_fail("recv(%d) with unexpected flags %#x", fd, (unsigned)flags);
	return do_recv(s, buf, len, (flags & MSG_PEEK) != 0);
}

ssize_t sysio_send(int fd, const void *buf, size_t len, int flags)
{
	struct sim_sock *s = open_fd(fd, "send");
	if (s->tls)
		sim_fail("plaintext send on fd %d, which has a TLS session", fd);
	if (!(flags & MSG_NOSIGNAL))
		sim_fail("send(%d) without MSG_NOSIGNAL: SIGPIPE would kill the worker", fd);
	return sim_net_raw_send(s, buf, len);
}

int sysio_shutdown(int fd, int how)
{
	struct sim_sock *s = open_fd(fd, "shutdown");
	if (how != SHUT_WR)
		sim_fail("shutdown(%d, %d): only SHUT_WR is expected", fd, how);
	if (s->peer_reset) {
		errno = ENOTCONN;
		return -1;
	}
	s->gw_shut = true;
	return 0;
}

int sysio_close(int fd)
{
	struct sim_sock *s = open_fd(fd, "close");
	s->gw_closed = s->gw_shut = true;
	net.open--;
	net.progress++;
	if (net.hooks.closed)
		net.hooks.closed(net.hooks.arg, s);
	return 0;
}

int sysio_socket(int domain, int type, int protocol)
{
	if (domain != AF_INET && domain != AF_INET6)
		sim_fail("socket(): unexpected family %d", domain);
	if (net.policy == SIM_DIAL_NO_SOCKET) {
		errno = EMFILE;
		return -1;
	}
	return new_sock(SIM_SOCK_UPSTREAM)->fd;
}

int sysio_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct sim_sock *s = open_fd(fd, "connect");
	if (s->kind != SIM_SOCK_UPSTREAM || s->conn != SIM_CONN_NONE)
		sim_fail("connect(%d) on a socket that is not fresh", fd);
	if (len > sizeof(s->dest))
		sim_fail("connect(%d): address length %u", fd, (unsigned)len);
	memcpy(&s->dest, sa, len);
	s->destlen = len;
	if (net.policy == SIM_DIAL_REFUSE_NOW) {
		s->conn = SIM_CONN_REFUSED;
		errno = ECONNREFUSED;
		return -1;
	}
	s->conn = SIM_CONN_PENDING;
	if (net.hooks.dialed)
		net.hooks.dialed(net.hooks.arg, s);
	errno = EINPROGRESS;
	return -1;
}

int sysio_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct sim_sock *s = open_fd(fd, "getsockopt");
	memset(val, 0, *len);
	if (level == SOL_SOCKET && name == SO_ERROR && *len >= sizeof(int)) {
		int e = s->conn == SIM_CONN_REFUSED ? ECONNREFUSED : s->peer_reset ? ECONNRESET : 0;
		memcpy(val, &e, sizeof(e));
	}
	return 0;
}

int sysio_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	open_fd(fd, "setsockopt");
	return 0;
}

int sysio_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	open_fd(fd, "bind");
	errno = EOPNOTSUPP;	/* the simulation has no listeners */
	return -1;
}

int sysio_listen(int fd, int backlog)
{
	open_fd(fd, "listen");
	errno = EOPNOTSUPP;
	return -1;
}

int sysio_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	open_fd(fd, "accept4");
	errno = EAGAIN;
	return -1;
}

int sysio_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	open_fd(fd, "getsockname");
	errno = EOPNOTSUPP;
	return -1;
}

void sysio_set_nonblock(int fd)
{
	open_fd(fd, "fcntl");
}

/* ---- driver API ---- */

struct sim_sock *sim_sock_accepted(int *fd)
{
	struct sim_sock *s = new_sock(SIM_SOCK_CLIENT);
	s->conn = SIM_CONN_OK;
	*fd = s->fd;
	return s;
}

int sim_sock_fd(const struct sim_sock *s)
{
	return check(s)->fd;
}

enum sim_sock_kind sim_sock_kind(const struct sim_sock *s)
{
	return check(s)->kind;
}

enum sim_connect sim_sock_connect_state(const struct sim_sock *s)
{
	return check(s)->conn;
}

const struct sockaddr *sim_sock_dest(const struct sim_sock *s, socklen_t *len)
{
	*len = check(s)->destlen;
	return (const struct sockaddr *)&s->dest;
}

bool sim_sock_open(const struct sim_sock *s)
{
	return !check(s)->gw_closed;
}

bool sim_sock_gw_shut(const struct sim_sock *s)
{
	return check(s)->gw_shut;
}

bool sim_sock_tls_attached(const struct sim_sock *s)
{
	return check(s)->tls != NULL;
}

bool sim_sock_tls_up(const struct sim_sock *s)
{
	return check(s)->tls != NULL && !sim_tls_pending(s);
}

uint64_t sim_sock_written(const struct sim_sock *s)
{
	return check(s)->written;
}

uint64_t sim_sock_peer_sent(const struct sim_sock *s)
{
	return check(s)->peer_sent;
}

size_t sim_sock_unread(const struct sim_sock *s)
{
	return check(s)->rx_len;
}

size_t sim_sock_unflushed(const struct sim_sock *s)
{
	return check(s)->tx_len;
}

void *sim_sock_user(const struct sim_sock *s)
{
	return check(s)->user;
}

void sim_sock_set_user(struct sim_sock *s, void *user)
{
	check(s)->user = user;
}

struct sim_sock *sim_sock_first(void)
{
	return net.first;
}

struct sim_sock *sim_sock_next(const struct sim_sock *s)
{
	return check(s)->next;
}

unsigned sim_open_fds(void)
{
	return net.open;
}

bool sim_peer_send(struct sim_sock *s, const void *p, size_t n)
{
	check(s);
	if (!n || s->gw_closed || s->peer_fin || s->peer_reset || s->conn != SIM_CONN_OK)
		return false;	/* nowhere to go (a real peer would get an error) */
	if (s->rx_off + s->rx_len + n > s->rx_cap) {
		if (s->rx_off) {
			memmove(s->rx, s->rx + s->rx_off, s->rx_len);
			s->rx_off = 0;
		}
		if (s->rx_len + n > s->rx_cap) {
			size_t cap = s->rx_cap ? s->rx_cap : 256;
			while (cap < s->rx_len + n)
				cap *= 2;
			s->rx = realloc(s->rx, cap);
			if (!s->rx)
				abort();
			s->rx_cap = cap;
		}
	}
	memcpy(s->rx + s->rx_off + s->rx_len, p, n);
	s->rx_len += n;
	s->peer_sent += n;
	return true;
}

void sim_peer_shutdown(struct sim_sock *s)
{
	if (check(s)->conn == SIM_CONN_OK)
		s->peer_fin = true;
}

void sim_peer_close(struct sim_sock *s)
{
	if (check(s)->conn == SIM_CONN_OK)
		s->peer_fin = s->peer_gone = true;
}

void sim_peer_reset(struct sim_sock *s)
{
	if (check(s)->conn != SIM_CONN_OK)
		return;
	s->peer_reset = true;
	s->rx_len = s->rx_off = 0;
}

void sim_sock_set_window(struct sim_sock *s, size_t window)
{
	check(s)->window = window;
	if (window != SIM_WINDOW_UNLIMITED && s->tx_len > window)
		s->tx_len = window;	/* the peer read the rest before shrinking */
}

void sim_connect_resolve(struct sim_sock *s, bool ok)
{
	if (check(s)->conn != SIM_CONN_PENDING)
		sim_fail("driver: connect on fd %d is not pending", s->fd);
	s->conn = ok ? SIM_CONN_OK : SIM_CONN_REFUSED;
}

void sim_set_dial_policy(enum sim_dial_policy p)
{
	net.policy = p;
}

/* ---- glue for sim_tls ---- */

void sim_net_attach_tls(struct sim_sock *s, struct sim_tls_state *t, bool client)
{
	check(s);
	if (s->tls)
		sim_fail("a second TLS session on fd %d", s->fd);
	s->tls = t;
	s->tls_client = client;
	s->poke = false;
	if (net.hooks.tls_started)
		net.hooks.tls_started(net.hooks.arg, s, client);
}

void sim_net_detach_tls(struct sim_sock *s)
{
	check(s)->tls = NULL;
	s->poke = false;
}

struct sim_tls_state *sim_net_tls(const struct sim_sock *s)
{
	return check(s)->tls;
}

void sim_net_tls_done(struct sim_sock *s, bool ok)
{
	if (net.hooks.tls_done)
		net.hooks.tls_done(net.hooks.arg, check(s), ok);
}

void sim_net_poke(struct sim_sock *s, bool on)
{
	check(s)->poke = on;
}

bool sim_net_peer_gone(const struct sim_sock *s)
{
	return check(s)->peer_fin || s->peer_reset;
}
