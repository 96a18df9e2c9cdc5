/* rdns: c-ares tells us which sockets to watch (ARES_OPT_SOCK_STATE_CB);
 * each gets an ev_io; one ev_timer follows ares_timeout(). A query object
 * lives until both its deadline fired or its answer came AND c-ares is done
 * with it (c-ares may still call back after we gave up). */
#include "rdns.h"
#include "domain.h"
#include "log.h"
#include "xmem.h"

#include <ares.h>
#include <arpa/inet.h>
#include <ev.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SOCKS 16

/* Each DNS query is tried twice, RDNS_TRY_MS apart; the caller's deadline
 * bounds the whole lookup. */
#define RDNS_TRY_MS 2000
#define RDNS_TRIES 2

struct rdns_query {
	rdns_cb cb;		/* NULL once delivered or cancelled */
	void *arg;
	struct mg_addr addr;
	int outstanding;	/* c-ares operations in flight */
	int have_result;	/* result stored, delivery pending */
	enum rdns_status st;
	char name[DOMAIN_BUFSZ];
	ev_timer deadline;	/* the overall limit, then the delivery tick */
};

static ares_channel channel;
static int ready;
static ev_timer ares_tick;
static struct {
	int fd;
	ev_io io;
} socks[MAX_SOCKS];

static void rearm_tick(void)
{
	struct timeval tv, *tvp;
	ev_timer_stop(EV_DEFAULT, &ares_tick);
	tvp = ares_timeout(channel, NULL, &tv);
	if (!tvp)
		return;
	ev_timer_set(&ares_tick, (double)tvp->tv_sec + (double)tvp->tv_usec / 1e6 + 0.001, 0.);
	ev_timer_start(EV_DEFAULT, &ares_tick);
}

static void sock_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	int fd = w->fd;
	ares_process_fd(channel, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
			(revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	rearm_tick();
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	rearm_tick();
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	int i, slot = -1;
	for (i = 0; i < MAX_SOCKS; i++)
		if (socks[i].fd == fd && ev_is_active(&socks[i].io))
			slot = i;
	if (slot >= 0)
		ev_io_stop(EV_DEFAULT, &socks[slot].io);
	if (!readable && !writable)
		return;
	if (slot < 0)
		for (i = 0; i < MAX_SOCKS && slot < 0; i++)
			if (!ev_is_active(&socks[i].io))
				slot = i;
	if (slot < 0) {
		log_warn("rdns: too many resolver sockets");
		return;
	}
	socks[slot].fd = fd;
	ev_io_init(&socks[slot].io, sock_cb, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	ev_io_start(EV_DEFAULT, &socks[slot].io);
}

int rdns_init(void)
{
	struct ares_options o;
	if (ready)
		return 0;
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		return -1;
	memset(&o, 0, sizeof(o));
	o.sock_state_cb = sock_state;
	o.timeout = RDNS_TRY_MS;
	o.tries = RDNS_TRIES;
	if (ares_init_options(&channel, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) !=
	    ARES_SUCCESS)
		return -1;
	ev_init(&ares_tick, tick_cb);
	ready = 1;
	return 0;
}

void rdns_shutdown(void)
{
	if (!ready)
		return;
	ev_timer_stop(EV_DEFAULT, &ares_tick);
	ares_destroy(channel);	/* calls back every pending query with ARES_EDESTRUCTION */
	for (int i = 0; i < MAX_SOCKS; i++)
		ev_io_stop(EV_DEFAULT, &socks[i].io);
	ares_library_cleanup();
	ready = 0;
}

static void maybe_free(struct rdns_query *q)
{
	if (!q->cb && q->outstanding == 0) {
		ev_timer_stop(EV_DEFAULT, &q->deadline);
		free(q);
	}
}

/* Stores the result; it is delivered from the loop (c-ares may answer
 * from the hosts file synchronously, inside rdns_lookup itself). */
static void report(struct rdns_query *q, enum rdns_status st, const char *name)
{
	if (q->have_result)
		return;
	q->have_result = 1;
	q->st = st;
	snprintf(q->name, sizeof(q->name), "%s", name ? name : "");
	ev_timer_stop(EV_DEFAULT, &q->deadline);
	ev_timer_set(&q->deadline, 0., 0.);
	ev_timer_start(EV_DEFAULT, &q->deadline);
}

static enum rdns_status status_of(int st)
{
	return (st == ARES_ENOTFOUND || st == ARES_ENODATA || st == ARES_EBADNAME) ? RDNS_NONE : RDNS_TEMP;
}

static void fwd_cb(void *arg, int status, int timeouts, struct hostent *h)
{
	struct rdns_query *q = arg;
	if (q->cb) {
		int match = 0;
		const struct mg_addr *a = &q->addr;
		const void *want = a->u.sa.sa_family == AF_INET ? (const void *)&a->u.in4.sin_addr
								: (const void *)&a->u.in6.sin6_addr;
		size_t wl = a->u.sa.sa_family == AF_INET ? 4 : 16;
		if (status == ARES_SUCCESS && h && h->h_addrtype == a->u.sa.sa_family)
			for (char **p = h->h_addr_list; *p && !match; p++)
				match = (size_t)h->h_length == wl && memcmp(*p, want, wl) == 0;
		if (status == ARES_SUCCESS)
			report(q, match ? RDNS_OK : RDNS_NONE, match ? h->h_name : NULL);
		else
			report(q, status_of(status), NULL);
	}
	q->outstanding--;
	maybe_free(q);
}

static void ptr_cb(void *arg, int status, int timeouts, struct hostent *h)
{
	struct rdns_query *q = arg;
	if (q->cb) {
		char name[DOMAIN_BUFSZ];
		if (status != ARES_SUCCESS || !h || !h->h_name) {
			report(q, status_of(status), NULL);
		} else if (domain_normalize(h->h_name, strlen(h->h_name), name, sizeof(name)) < 0) {
			report(q, RDNS_NONE, NULL);	/* garbage in the PTR */
		} else {
			q->outstanding++;
			ares_gethostbyname(channel, name, q->addr.u.sa.sa_family, fwd_cb, q);
			rearm_tick();
		}
	}
	q->outstanding--;	/* last: a nested fwd_cb must not free q under us */
	maybe_free(q);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rdns_query *q = w->data;
	rdns_cb cb = q->cb;
	void *arg = q->arg;
	enum rdns_status st = q->have_result ? q->st : RDNS_TEMP;	/* else: the limit */
	char name[DOMAIN_BUFSZ];
	snprintf(name, sizeof(name), "%s", q->name);
	q->cb = NULL;
	q->have_result = 1;
	maybe_free(q);
	if (cb)
		cb(arg, st, st == RDNS_OK ? name : NULL);
}

struct rdns_query *rdns_lookup(const struct mg_addr *a, double timeout, rdns_cb cb, void *arg)
{
	struct rdns_query *q = xcalloc(1, sizeof(*q));
	q->cb = cb;
	q->arg = arg;
	q->addr = *a;
	ev_timer_init(&q->deadline, deadline_cb, timeout, 0.);
	q->deadline.data = q;
	ev_timer_start(EV_DEFAULT, &q->deadline);
	if (!ready) {
		ev_timer_stop(EV_DEFAULT, &q->deadline);	/* report TEMP from the loop */
		ev_timer_set(&q->deadline, 0., 0.);
		ev_timer_start(EV_DEFAULT, &q->deadline);
		return q;
	}
	const void *bytes = a->u.sa.sa_family == AF_INET ? (const void *)&a->u.in4.sin_addr
							 : (const void *)&a->u.in6.sin6_addr;
	q->outstanding++;
	ares_gethostbyaddr(channel, bytes, a->u.sa.sa_family == AF_INET ? 4 : 16, a->u.sa.sa_family,
			   ptr_cb, q);
	rearm_tick();
	return q;
}

void rdns_cancel(struct rdns_query **qp)
{
	struct rdns_query *q = *qp;
	*qp = NULL;
	if (!q)
		return;
	q->cb = NULL;
	ev_timer_stop(EV_DEFAULT, &q->deadline);
	maybe_free(q);
}

const char *rdns_lib_version(void)
{
	return ares_version(NULL);
}
