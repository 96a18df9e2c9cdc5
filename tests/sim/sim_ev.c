/* sim_ev: the subset of libev the project uses, on a virtual clock, for
 * tests and fuzzers only (see sim.h). Watcher structs and macros come from
 * the real <ev.h>, so ev_is_active(), ev_init() and friends keep their
 * meaning; only the functions are ours, and there is one loop.
 *
 * One iteration ("poll"): every started io watcher whose simulated fd is
 * ready is queued, then every expired timer (earliest first, ties in start
 * order), then the queue is run in FIFO order - including events fed while
 * it runs, as libev does. Like libev, stopping a watcher drops an event
 * queued for it even if it was never started (conn.c relies on that for
 * ev_feed_event on idle watchers), and an expired one-shot timer is
 * stopped before its callback runs. Time moves only in sim_advance*(). */
#include "sim.h"

#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOOP_MAGIC 0x53494d4cu
#define SIM_T0 1700000000.0
#define MAX_IDLE_ROUNDS 10000	/* rounds moving no byte: a busy loop */
#define MAX_BUSY_REPORTS 200	/* tolerated (reported) busy loops per run */

struct pend {
	ev_watcher *w;		/* NULL: dropped */
	int revents;
};

struct tslot {
	ev_timer *w;
	uint64_t seq;
};

struct ev_loop {
	uint32_t magic;
	double now;
	ev_io **ios;
	size_t nios, capios;
	struct tslot *timers;
	size_t ntimers, captimers;
	ev_signal **sigs;
	size_t nsigs, capsigs;
	struct pend *pend;
	size_t npend, cappend;
	uint64_t seq;
	int refs;
	int broken;
	unsigned callbacks;
	void (*after_cb)(void *);
	void *after_arg;
};

static struct ev_loop the_loop = { .magic = LOOP_MAGIC, .now = SIM_T0 };
struct ev_loop *ev_default_loop_ptr = &the_loop;

void sim_fail(const char *fmt, ...)
{
	va_list ap;
	/* Straight to fd 2: a fuzzer may point stdio's stderr at /dev/null. */
	fflush(stdout);
	dprintf(2, "\n*** SIM INVARIANT VIOLATED (t=+%.3f): ", the_loop.now - SIM_T0);
	va_start(ap, fmt);
	vdprintf(2, fmt, ap);
	va_end(ap);
	dprintf(2, "\n");
	abort();
}

static struct ev_loop *L(struct ev_loop *loop)
{
	if (!loop || loop->magic != LOOP_MAGIC)
		sim_fail("libev call on an unknown loop %p", (void *)loop);
	return loop;
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap * 2 : 16;
	while (n < need)
		n *= 2;
	p = realloc(p, n * elem);
	if (!p)
		abort();
	*cap = n;
	return p;
}

void sim_ev_reset(void)
{
	free(the_loop.ios);
	free(the_loop.timers);
	free(the_loop.sigs);
	free(the_loop.pend);
	memset(&the_loop, 0, sizeof(the_loop));
	the_loop.magic = LOOP_MAGIC;
	the_loop.now = SIM_T0;
}

/* ---- the libev API ---- */

struct ev_loop *ev_default_loop(unsigned int flags)
{
	return &the_loop;
}

int ev_version_major(void)
{
	return EV_VERSION_MAJOR;
}

int ev_version_minor(void)
{
	return EV_VERSION_MINOR;
}

ev_tstamp ev_now(struct ev_loop *loop)
{
	return L(loop)->now;
}

ev_tstamp ev_time(void)
{
	return the_loop.now;
}

void ev_now_update(struct ev_loop *loop)
{
	L(loop);
}

void ev_loop_fork(struct ev_loop *loop)
{
	L(loop);
}

void ev_ref(struct ev_loop *loop)
{
	L(loop)->refs++;
}

void ev_unref(struct ev_loop *loop)
{
	L(loop)->refs--;
}

void ev_break(struct ev_loop *loop, int how)
{
	L(loop)->broken = how ? how : EVBREAK_ONE;
}

void ev_feed_event(struct ev_loop *loop, void *wp, int revents)
{
	ev_watcher *w = wp;
	L(loop);
	if (w->pending) {
		loop->pend[w->pending - 1].revents |= revents;
		return;
	}
	loop->pend = grow(loop->pend, &loop->cappend, loop->npend + 1, sizeof(*loop->pend));
	loop->pend[loop->npend].w = w;
	loop->pend[loop->npend].revents = revents;
	w->pending = (int)++loop->npend;
}

int ev_clear_pending(struct ev_loop *loop, void *wp)
{
	ev_watcher *w = wp;
	int rev = 0;
	L(loop);
	if (w->pending) {
		if ((size_t)w->pending > loop->npend || loop->pend[w->pending - 1].w != w)
			sim_fail("corrupt pending index on watcher %p", wp);
		rev = loop->pend[w->pending - 1].revents;
		loop->pend[w->pending - 1].w = NULL;
		w->pending = 0;
	}
	return rev;
}

void ev_io_start(struct ev_loop *loop, ev_io *w)
{
	L(loop);
	if (ev_is_active(w))
		return;
	if (w->fd < 0)
		sim_fail("ev_io_start with fd %d", w->fd);
	if (!sim_sock_by_fd(w->fd))
		sim_fail("ev_io_start on fd %d, which is not an open simulated socket", w->fd);
	if (!(w->events & (EV_READ | EV_WRITE)))
		sim_fail("ev_io_start with no events (fd %d)", w->fd);
	loop->ios = grow(loop->ios, &loop->capios, loop->nios + 1, sizeof(*loop->ios));
	loop->ios[loop->nios] = w;
	w->active = (int)++loop->nios;
}

void ev_io_stop(struct ev_loop *loop, ev_io *w)
{
	ev_clear_pending(L(loop), w);
	if (!ev_is_active(w))
		return;
	size_t i = (size_t)w->active - 1;
	if (i >= loop->nios || loop->ios[i] != w)
		sim_fail("corrupt active index on ev_io %p", (void *)w);
	/* Keep start order (determinism, fairness): shift the tail. */
	memmove(&loop->ios[i], &loop->ios[i + 1], (loop->nios - i - 1) * sizeof(*loop->ios));
	loop->nios--;
	for (size_t j = i; j < loop->nios; j++)
		loop->ios[j]->active = (int)j + 1;
	w->active = 0;
}

static void timer_insert(struct ev_loop *loop, ev_timer *w)
{
	loop->timers = grow(loop->timers, &loop->captimers, loop->ntimers + 1, sizeof(*loop->timers));
	loop->timers[loop->ntimers].w = w;
	loop->timers[loop->ntimers].seq = ++loop->seq;
	w->active = (int)++loop->ntimers;
}

static void timer_remove(struct ev_loop *loop, ev_timer *w)
{
	size_t i = (size_t)w->active - 1;
	if (i >= loop->ntimers || loop->timers[i].w != w)
		sim_fail("corrupt active index on ev_timer %p", (void *)w);
	loop->timers[i] = loop->timers[--loop->ntimers];
	if (i < loop->ntimers)
		loop->timers[i].w->active = (int)i + 1;
	w->active = 0;
}

/* As in libev: while started, w->at holds the absolute expiry time; the
 * relative value is restored on stop. */
void ev_timer_start(struct ev_loop *loop, ev_timer *w)
{
	L(loop);
	if (ev_is_active(w))
		return;
	if (w->at < 0 || w->repeat < 0)
		sim_fail("ev_timer_start with a negative time (%g, %g)", w->at, w->repeat);
	w->at += loop->now;
	timer_insert(loop, w);
}

void ev_timer_stop(struct ev_loop *loop, ev_timer *w)
{
	ev_clear_pending(L(loop), w);
	if (!ev_is_active(w))
		return;
	timer_remove(loop, w);
	w->at -= loop->now;
}

void ev_timer_again(struct ev_loop *loop, ev_timer *w)
{
	ev_clear_pending(L(loop), w);
	if (ev_is_active(w)) {
		if (w->repeat > 0)
			w->at = loop->now + w->repeat;
		else
			ev_timer_stop(loop, w);
	} else if (w->repeat > 0) {
		w->at = w->repeat;
		ev_timer_start(loop, w);
	}
}

ev_tstamp ev_timer_remaining(struct ev_loop *loop, ev_timer *w)
{
	L(loop);
	return ev_is_active(w) ? w->at - loop->now : w->at;
}

void ev_signal_start(struct ev_loop *loop, ev_signal *w)
{
	L(loop);
	if (ev_is_active(w))
		return;
	loop->sigs = grow(loop->sigs, &loop->capsigs, loop->nsigs + 1, sizeof(*loop->sigs));
	loop->sigs[loop->nsigs] = w;
	w->active = (int)++loop->nsigs;
}

void ev_signal_stop(struct ev_loop *loop, ev_signal *w)
{
	ev_clear_pending(L(loop), w);
	if (!ev_is_active(w))
		return;
	size_t i = (size_t)w->active - 1;
	loop->sigs[i] = loop->sigs[--loop->nsigs];
	if (i < loop->nsigs)
		loop->sigs[i]->active = (int)i + 1;
	w->active = 0;
}

/* ---- the loop ---- */

static void invoke_pending(struct ev_loop *loop)
{
	for (size_t i = 0; i < loop->npend; i++) {
		ev_watcher *w = loop->pend[i].w;
		if (!w)
			continue;
		int rev = loop->pend[i].revents;
		loop->pend[i].w = NULL;
		w->pending = 0;
		loop->callbacks++;
		w->cb(loop, w, rev);	/* may free w: not touched again */
		if (loop->after_cb)
			loop->after_cb(loop->after_arg);
	}
	loop->npend = 0;
}

static ev_timer *earliest_expired(struct ev_loop *loop)
{
	struct tslot *best = NULL;
	for (size_t i = 0; i < loop->ntimers; i++) {
		struct tslot *t = &loop->timers[i];
		if (t->w->at > loop->now)
			continue;
		if (!best || t->w->at < best->w->at || (t->w->at == best->w->at && t->seq < best->seq))
			best = t;
	}
	return best ? best->w : NULL;
}

/* One poll: queue ready io and expired timers, run the queue. Returns
 * the number of callbacks run. */
static unsigned iterate(struct ev_loop *loop)
{
	unsigned before = loop->callbacks;
	size_t n = loop->nios;
	ev_io **snap = n ? malloc(n * sizeof(*snap)) : NULL;
	if (n && !snap)
		abort();
	if (n)
		memcpy(snap, loop->ios, n * sizeof(*snap));
	for (size_t i = 0; i < n; i++) {
		ev_io *w = snap[i];
		int ready = sim_net_ready(w->fd, w->events & (EV_READ | EV_WRITE));
		if (ready)
			ev_feed_event(loop, w, ready);
	}
	free(snap);
	ev_timer *t;
	/* A timer started by an earlier expiry's bookkeeping cannot expire in
	 * this pass (at > now), so this ends. */
	while ((t = earliest_expired(loop))) {
		if (t->repeat > 0) {
			t->at += t->repeat;
			if (t->at <= loop->now)
				t->at = loop->now + t->repeat;
		} else {
			timer_remove(loop, t);
			t->at = 0;
		}
		ev_feed_event(loop, t, EV_TIMER);
	}
	invoke_pending(loop);
	return loop->callbacks - before;
}

static bool next_timer(struct ev_loop *loop, double *at)
{
	bool any = false;
	for (size_t i = 0; i < loop->ntimers; i++)
		if (!any || loop->timers[i].w->at < *at) {
			*at = loop->timers[i].w->at;
			any = true;
		}
	return any;
}

/* A busy loop: callbacks keep running but no byte moves, no fd opens or
 * closes (a real worker would spin at 100% CPU). Reported through the
 * handler if one is set (which may abort, or let time jump 0.5 s so
 * a timer-driven spin reaches its end), else fatal. */
static void (*busy_handler)(void);

void sim_set_busy_handler(void (*fn)(void))
{
	busy_handler = fn;
}

unsigned sim_run_until_idle(void)
{
	struct ev_loop *loop = &the_loop;
	unsigned total = 0, idle_rounds = 0, reports = 0;
	uint64_t progress = sim_net_progress();
	for (;;) {
		unsigned n = iterate(loop);
		total += n;
		if (!n && !sim_net_autodrain())
			return total;
		if (sim_net_progress() != progress) {
			progress = sim_net_progress();
			idle_rounds = 0;
			continue;
		}
		if (++idle_rounds <= MAX_IDLE_ROUNDS)
			continue;
		if (!busy_handler || ++reports > MAX_BUSY_REPORTS)
			sim_fail("busy loop: %u rounds of callbacks without any I/O", idle_rounds);
		busy_handler();
		idle_rounds = 0;
		loop->now += 0.5;
	}
}

bool sim_advance(void)
{
	double at;
	if (!next_timer(&the_loop, &at))
		return false;
	if (at > the_loop.now)
		the_loop.now = at;
	sim_run_until_idle();
	return true;
}

void sim_advance_by(double secs)
{
	double end = the_loop.now + secs, at;
	while (next_timer(&the_loop, &at) && at <= end) {
		if (at > the_loop.now)
			the_loop.now = at;
		sim_run_until_idle();
	}
	if (end > the_loop.now)
		the_loop.now = end;
	sim_run_until_idle();
}

int ev_run(struct ev_loop *loop, int flags)
{
	L(loop)->broken = 0;
	for (;;) {
		unsigned n = iterate(loop);
		if (!n && sim_net_autodrain())
			continue;
		if (loop->broken || (flags & EVRUN_NOWAIT))
			break;
		if (n && (flags & EVRUN_ONCE))
			break;
		if (!n) {
			double at;
			/* libev's activecnt: started watchers, minus ev_unref()s. */
			if ((int)(loop->nios + loop->ntimers + loop->nsigs) + loop->refs <= 0)
				break;
			if (!next_timer(loop, &at))
				break;	/* only io, and no peer will act: idle for good */
			if (at > loop->now)
				loop->now = at;
		}
	}
	if (loop->broken == EVBREAK_ONE)
		loop->broken = 0;
	return (int)(loop->nios + loop->ntimers);
}

/* ---- driver API ---- */

double sim_now(void)
{
	return the_loop.now;
}

unsigned sim_active_watchers(void)
{
	return (unsigned)(the_loop.nios + the_loop.ntimers + the_loop.nsigs);
}

unsigned sim_pending_events(void)
{
	unsigned n = 0;
	for (size_t i = 0; i < the_loop.npend; i++)
		n += the_loop.pend[i].w != NULL;
	return n;
}

void sim_set_after_callback(void (*fn)(void *arg), void *arg)
{
	the_loop.after_cb = fn;
	the_loop.after_arg = arg;
}

void sim_raise_signal(int signum)
{
	for (size_t i = 0; i < the_loop.nsigs; i++)
		if (the_loop.sigs[i]->signum == signum)
			ev_feed_event(&the_loop, the_loop.sigs[i], EV_SIGNAL);
}

bool sim_sock_watched(const struct sim_sock *s, int events)
{
	int fd = sim_sock_fd(s);
	for (size_t i = 0; i < the_loop.nios; i++)
		if (the_loop.ios[i]->fd == fd && (the_loop.ios[i]->events & events))
			return true;
	return false;
}

void sim_reset(void)
{
	sim_rdns_reset();
	sim_tls_reset();
	sim_net_reset();
	void (*fn)(void *) = the_loop.after_cb;
	void *arg = the_loop.after_arg;
	sim_ev_reset();
	the_loop.after_cb = fn;
	the_loop.after_arg = arg;
}
