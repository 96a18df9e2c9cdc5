/* master: see master.h. Workers are kept in one list; each belongs to a
 * generation (1 at start, +1 per successful reload). Only the current
 * generation's workers are restarted; a new generation's worker that
 * fails before it is ready aborts the reload. */
#include "master.h"
#include "admission.h"
#include "bindings.h"
#include "conn.h"
#include "daemon_metrics.h"
#include "fdlimit.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "process.h"
#include "strbuf.h"
#include "tls.h"
#include "worker.h"
#include "xmem.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

/* A worker that dies younger than this counts as a crash loop. */
#define MASTER_YOUNG 10.0
/* Back-off before restarting a crash-looping worker: first, at most. */
#define MASTER_BACKOFF_FIRST 0.5
#define MASTER_BACKOFF_MAX 30.0
/* How often the admission counts are looked after: slots a worker's
 * lock kept from being given back, then (every 30 s) stale history. */
#define MASTER_MAINTAIN 1.0
/* After shutdown_timeout, how long workers get to exit before SIGKILL. */
#define MASTER_KILL_GRACE 5.0
/* Descriptors beyond the sessions' own (logs, listeners, DNS, ...). */

struct gen {
	unsigned id;
	struct conf *conf;
	struct server *srv;
	unsigned nworkers;
	unsigned nready;
};

struct wk {
	struct wk *next;
	pid_t pid;
	unsigned number;
	unsigned gen;		/* its generation's id (old ones are freed) */
	int slot;		/* admission slot */
	int ctl;		/* the master's end of the control socket */
	ev_io ctl_w;
	ev_child child_w;	/* libev reaps children on the default loop */
	double started;
	bool ready;
	bool stop_due;		/* told to drain, has not said it stopped accepting */
	char fatal[256];	/* what it said before exiting WORKER_EXIT_FATAL */
};

/* A current-generation worker waiting to be started again. */
struct restart {
	ev_timer t;
	unsigned number;
	unsigned failures;
};

/* Sessions the per-address table is sized for at least (see size_counts). */
#define MASTER_COUNTS_SESSIONS 32768

static struct {
	const struct daemon_ops *ops;
	const struct daemon_options *o;
	struct gen *cur, *next;		/* next: a reload's generation, until ready */
	struct wk *workers;
	struct restart *restarts;	/* per worker number of cur */
	size_t nrestarts;
	struct bindings b;
	struct admission *adm;
	/* What adm was sized for at start (the master's own copy): a
	 * reload asking more is refused. */
	unsigned adm_workers;
	size_t adm_per_worker, adm_sessions;
	ev_timer maintain, kill_timer;
	bool started, stopping;
	bool hup_pending;	/* SIGHUP during start-up: reload once ready */
	unsigned stops_due;	/* replaced workers still accepting (see switch_generation) */
	unsigned done_gen, drained_gen;	/* for the "reload done" line */
	int status;
	unsigned gen_ids;
} m;

static unsigned cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static unsigned nworkers_of(const struct conf *c)
{
	return c->workers > 0 ? (unsigned)c->workers : cpu_count();
}

static double now(void)
{
	return ev_now(EV_DEFAULT);
}

static unsigned count_workers(const struct gen *g)
{
	unsigned n = 0;
	for (struct wk *w = m.workers; w; w = w->next)
		n += !g || w->gen == g->id;
	return n;
}

static void gen_free(struct gen **gp)
{
	struct gen *g = *gp;
	if (!g)
		return;
	loader_free(m.ops, &g->conf, &g->srv);
	free(g);
	*gp = NULL;
}

/* ---- workers ---- */

/* The worker's generation while it is the current or the starting one. */
static struct gen *gen_of(const struct wk *w)
{
	if (m.cur && w->gen == m.cur->id)
		return m.cur;
	if (m.next && w->gen == m.next->id)
		return m.next;
	return NULL;
}

static void worker_gone(struct wk *w, int status);
static void restarts_for(const struct gen *g);
static void schedule_restart_number(unsigned number);
static void child_cb(struct ev_loop *loop, ev_child *c, int revents);
static void reload(void);

/* "reload done" once no worker of the replaced configuration accepts any
 * more: a connection made after that line meets the new one. */
static void stopped_accepting(struct wk *w)
{
	if (!w->stop_due)
		return;
	w->stop_due = false;
	if (m.stops_due && --m.stops_due == 0)
		log_notice("reload done: generation %u serves with %u worker(s); generation %u drains",
			   m.done_gen, m.cur->nworkers, m.drained_gen);
}

/* The reload's workers all accept: the old ones are told to drain. */
static void switch_generation(void)
{
	struct gen *old = m.cur;
	m.cur = m.next;
	m.next = NULL;
	m.done_gen = m.cur->id;
	m.drained_gen = old->id;
	m.stops_due++;		/* held until every old worker is told */
	for (struct wk *o = m.workers; o; o = o->next) {
		if (o->gen != old->id)
			continue;
		if (write(o->ctl, (char[]){ WORKER_MSG_DRAIN }, 1) < 0) {
			process_kill(o->pid, SIGTERM);
		} else if (!o->stop_due) {
			o->stop_due = true;
			m.stops_due++;
		}
	}
	daemon_metrics_server(m.cur->srv);
	restarts_for(m.cur);
	bindings_prune(&m.b);
	gen_free(&old);
	struct wk none = { .stop_due = true };
	stopped_accepting(&none);	/* the hold above */
}

static void ctl_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct wk *w = io->data;
	char buf[sizeof(w->fatal)];
	ssize_t n = read(w->ctl, buf, sizeof(buf) - 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {	/* it is exiting: SIGCHLD tells the rest */
		ev_io_stop(loop, io);
		return;
	}
	buf[n] = '\0';
	if (w->stop_due && memchr(buf, WORKER_MSG_STOPPED, (size_t)n)) {
		stopped_accepting(w);
		return;
	}
	if (buf[0] == WORKER_MSG_FATAL) {
		/* A worker's words are escaped like a client's: it runs
		 * unprivileged and may be compromised. */
		log_escape_value(w->fatal, sizeof(w->fatal), buf + 1, strnlen(buf + 1, (size_t)n - 1));
		return;
	}
	struct gen *g = gen_of(w);
	if (buf[0] != WORKER_MSG_READY || w->ready || !g)
		return;
	w->ready = true;
	g->nready++;
	if (g == m.next && m.next->nready == m.next->nworkers) {
		switch_generation();
		return;
	}
	if (!m.started && g == m.cur && m.cur->nready == m.cur->nworkers) {
		m.started = true;
		log_notice("%s %s ready (GnuTLS %s), %u worker(s)", m.ops->name, PACKAGE_VERSION,
			   tls_lib_version(), m.cur->nworkers);
		if (!m.o->foreground)
			process_ready();
		if (m.hup_pending) {
			m.hup_pending = false;
			reload();
		}
	}
}

/* Closes, in a new worker, what belongs to the master and the others. */
static void forget_in_child(void)
{
	for (struct wk *w = m.workers; w; w = w->next) {
		ev_io_stop(EV_DEFAULT, &w->ctl_w);
		ev_child_stop(EV_DEFAULT, &w->child_w);
		close(w->ctl);
	}
	process_forget_parent();
	daemon_metrics_forget();
	for (size_t i = 0; i < m.nrestarts; i++)
		ev_timer_stop(EV_DEFAULT, &m.restarts[i].t);
	ev_timer_stop(EV_DEFAULT, &m.maintain);
	ev_timer_stop(EV_DEFAULT, &m.kill_timer);
}

/* Forks worker number of generation g. false (logged) when it could not
 * be started; a bind error also goes to err. */
static bool spawn(struct gen *g, unsigned number, char *err, size_t errsz)
{
	int sv[2];
	struct bindings own = { NULL, 0 };
	const struct bindings *b = &m.b;
	if (g->conf->reuseport) {
		if (bindings_apply(&own, g->conf, true, number > 1, err, errsz) < 0) {
			log_error("worker %u: %s", number, err);
			return false;
		}
		b = &own;
	}
	int slot = admission_slot_take(m.adm);
	if (slot < 0) {
		log_error("worker %u: no free slot in the admission counts (too many generations "
			  "draining); not started", number);
		bindings_close_all(&own);
		return false;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("worker %u: socketpair: %s", number, strerror(errno));
		admission_reap(m.adm, slot);
		bindings_close_all(&own);
		return false;
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_error("worker %u: fork: %s", number, strerror(errno));
		close(sv[0]);
		close(sv[1]);
		admission_reap(m.adm, slot);
		bindings_close_all(&own);
		return false;
	}
	if (pid == 0) {
		close(sv[0]);
		conn_loop_fork();
		forget_in_child();
		metrics_set_slot((unsigned)slot);
		struct worker_params p = {
			.ops = m.ops, .conf = g->conf, .srv = g->srv, .bindings = b,
			.admission = m.adm, .slot = slot, .ctl_fd = sv[1], .number = number,
			.generation = g->id,
		};
		worker_run(&p);
	}
	close(sv[1]);
	bindings_close_all(&own);	/* the worker's own sockets are its alone */
	struct wk *w = xcalloc(1, sizeof(*w));
	w->pid = pid;
	w->number = number;
	w->gen = g->id;
	w->slot = slot;
	w->ctl = sv[0];
	w->started = now();
	ev_io_init(&w->ctl_w, ctl_cb, w->ctl, EV_READ);
	w->ctl_w.data = w;
	ev_io_start(EV_DEFAULT, &w->ctl_w);
	ev_child_init(&w->child_w, child_cb, pid, 0);
	w->child_w.data = w;
	ev_child_start(EV_DEFAULT, &w->child_w);
	w->next = m.workers;
	m.workers = w;
	metrics_set_workers(count_workers(NULL));
	log_info("worker %u (generation %u) started: pid %ld", number, g->id, (long)pid);
	return true;
}

static void restart_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct restart *r = t->data;
	char err[512];
	if (!m.stopping && r->number <= m.cur->nworkers && !spawn(m.cur, r->number, err, sizeof(err)))
		schedule_restart_number(r->number);
}

static void restarts_for(const struct gen *g)
{
	for (size_t i = 0; i < m.nrestarts; i++)
		ev_timer_stop(EV_DEFAULT, &m.restarts[i].t);
	free(m.restarts);
	m.nrestarts = g->nworkers + 1;
	m.restarts = xcalloc(m.nrestarts, sizeof(*m.restarts));
	for (size_t i = 0; i < m.nrestarts; i++) {
		ev_init(&m.restarts[i].t, restart_cb);
		m.restarts[i].t.data = &m.restarts[i];
		m.restarts[i].number = (unsigned)i;
	}
}

/* Starts worker number again after a back-off that grows while it keeps
 * failing (young: it died soon after it started). */
static void restart_later(unsigned number, bool young)
{
	if (number >= m.nrestarts)
		return;
	struct restart *r = &m.restarts[number];
	double delay = 0;
	if (young) {
		delay = MASTER_BACKOFF_FIRST;
		for (unsigned i = 0; i < r->failures && delay < MASTER_BACKOFF_MAX; i++)
			delay *= 2;
		if (delay > MASTER_BACKOFF_MAX)
			delay = MASTER_BACKOFF_MAX;
		r->failures++;
	} else {
		r->failures = 0;
	}
	if (delay > 0)
		log_warn("worker %u keeps dying young: next start in %.1f s", number, delay);
	ev_timer_stop(EV_DEFAULT, &r->t);
	ev_timer_set(&r->t, delay, 0.);
	ev_timer_start(EV_DEFAULT, &r->t);
}

/* A current worker died: start it again, soon or after a back-off. */
static void schedule_restart(struct wk *w)
{
	restart_later(w->number, now() - w->started < MASTER_YOUNG);
}

static void schedule_restart_number(unsigned number)
{
	restart_later(number, true);
}

static void describe_exit(const struct wk *w, int status, char *out, size_t sz)
{
	struct strbuf b;
	sb_init(&b, out, sz);
	if (WIFSIGNALED(status))
		sb_addf(&b, "killed by signal %d", WTERMSIG(status));
	else
		sb_addf(&b, "exited with status %d", WEXITSTATUS(status));
	if (w->fatal[0])
		sb_addf(&b, ": %s", w->fatal);
}

static void exit_when_done(void);
static void reload_failed_worker(struct wk *w, const char *what);

static void worker_gone(struct wk *w, int status)
{
	char what[384];
	describe_exit(w, status, what, sizeof(what));
	stopped_accepting(w);
	admission_reap(m.adm, w->slot);
	metrics_slot_reset((unsigned)w->slot);
	struct gen *g = gen_of(w);
	if (w->ready && g && g->nready)
		g->nready--;
	bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (m.stopping || !g) {
		log_info("worker %u (generation %u, pid %ld) %s", w->number, w->gen, (long)w->pid, what);
	} else if (g == m.next) {
		reload_failed_worker(w, what);
	} else if (!m.started) {
		log_error("worker %u (pid %ld) %s before it was ready", w->number, (long)w->pid, what);
		if (!m.o->foreground)
			process_failed(w->fatal[0] ? w->fatal : what);
		m.status = 1;
		m.stopping = true;
		for (struct wk *o = m.workers; o; o = o->next)
			if (o != w)
				process_kill(o->pid, SIGTERM);
	} else {
		if (clean)
			log_warn("worker %u (pid %ld) exited on its own; starting it again", w->number,
				 (long)w->pid);
		else
			log_error("worker %u (pid %ld) %s; starting it again", w->number, (long)w->pid, what);
		if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_FATAL)
			m.restarts[w->number < m.nrestarts ? w->number : 0].failures += 3;
		schedule_restart(w);
	}
	ev_io_stop(EV_DEFAULT, &w->ctl_w);
	close(w->ctl);
	for (struct wk **pp = &m.workers; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	free(w);
	metrics_set_workers(count_workers(NULL));
	exit_when_done();
}

static void child_cb(struct ev_loop *loop, ev_child *c, int revents)
{
	ev_child_stop(loop, c);
	worker_gone(c->data, c->rstatus);
}

/* ---- reload ---- */

static void log_diag(const struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		log_msg(d->errors ? LOG_LVL_ERROR : LOG_LVL_WARNING, "reload: %s", d->lines[i]);
}

/* A new worker died before it was ready: the reload is undone. */
static void reload_failed_worker(struct wk *w, const char *what)
{
	char err[512];
	log_error("reload: worker %u of generation %u %s before it was ready; keeping generation %u",
		  w->number, w->gen, what, m.cur->id);
	struct gen *g = m.next;
	m.next = NULL;
	for (struct wk *o = m.workers; o; o = o->next)
		if (o->gen == g->id && o != w)
			process_kill(o->pid, SIGTERM);
	/* Back to what the running configuration binds. */
	if (bindings_apply(&m.b, m.cur->conf, false, true, err, sizeof(err)) == 0)
		bindings_prune(&m.b);
	gen_free(&g);
}

/* The shared counts were sized at start (size_counts): a reload asking
 * for more workers than they hold needs a restart; more sessions than a
 * worker's share are refused as they come (table full, logged). */
static bool fits_admission(const struct conf *c)
{
	size_t per_worker = fdlimit_apply(c);
	if (nworkers_of(c) > m.adm_workers) {
		log_error("reload failed: workers = %u is more than the %u this master sized its shared "
			  "counts for at start; restart to apply it - the running configuration stays",
			  nworkers_of(c), m.adm_workers);
		return false;
	}
	if (per_worker > m.adm_per_worker || server_sessions_max(c) > m.adm_sessions)
		log_warn("reload: max_connections over all listeners (%zu) is more than the shared "
			 "counts hold (%zu per worker, %zu in all, sized at start); sessions beyond "
			 "are refused until a restart", server_sessions_max(c), m.adm_per_worker,
			 m.adm_sessions);
	return true;
}

/* Admission keys for the running and the reloaded listener names (keys
 * no generation uses are recycled); false (logged) when they do not fit. */
static bool admission_names(const struct conf *c)
{
	const struct conf *both[2] = { m.cur->conf, c };
	admission_listeners_reset(m.adm);
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < both[k]->nlisteners; i++)
			if (admission_listener(m.adm, both[k]->listeners[i].name) < 0) {
				log_error("reload failed: listener \"%s\": the admission counts cannot tell apart "
					  "more than %d listener names in use; the running configuration stays "
					  "(a restart is needed)", both[k]->listeners[i].name,
					  ADMISSION_LISTENERS_MAX);
				return false;
			}
	return true;
}

static void reload(void)
{
	struct diag d;
	char err[512];
	struct conf *c;
	struct server *srv;
	if (m.next) {
		log_warn("SIGHUP: a reload is still starting its workers; ignored");
		return;
	}
	log_notice("SIGHUP: reloading %s", m.o->path);
	diag_init(&d);
	loader_load(m.ops, m.o, &d, &c, &srv);
	log_diag(&d);
	diag_free(&d);
	if (!c) {
		log_error("reload failed: the running configuration stays");
		return;
	}
	if (strcmp(c->metrics, m.cur->conf->metrics) != 0)
		log_warn("reload: metrics changed from \"%s\" to \"%s\": the endpoint moves at the "
			 "next restart", m.cur->conf->metrics, c->metrics);
	if (c->reuseport != m.cur->conf->reuseport) {
		log_error("reload failed: changing reuseport needs a restart; the running configuration stays");
		loader_free(m.ops, &c, &srv);
		return;
	}
	if (!fits_admission(c) || !admission_names(c)) {
		loader_free(m.ops, &c, &srv);
		return;
	}
	if (!c->reuseport && bindings_apply(&m.b, c, false, false, err, sizeof(err)) < 0) {
		log_error("reload failed: %s; the running configuration stays", err);
		loader_free(m.ops, &c, &srv);
		bindings_apply(&m.b, m.cur->conf, false, true, err, sizeof(err));	/* wanted again */
		return;
	}
	struct gen *g = xcalloc(1, sizeof(*g));
	g->id = ++m.gen_ids;
	g->conf = c;
	g->srv = srv;
	g->nworkers = nworkers_of(c);
	m.next = g;
	unsigned started = 0;
	while (started < g->nworkers && spawn(g, started + 1, err, sizeof(err)))
		started++;
	g->nworkers = started;	/* fewer when slots ran out: logged by spawn */
	if (started == 0) {
		m.next = NULL;
		gen_free(&g);
		/* Back to what the running configuration binds, before saying so. */
		if (bindings_apply(&m.b, m.cur->conf, false, true, err, sizeof(err)) == 0)
			bindings_prune(&m.b);
		log_error("reload failed: no worker could be started; the running configuration stays");
	}
}

/* ---- shutdown ---- */

static void exit_when_done(void)
{
	if (m.stopping && !m.workers)
		conn_loop_break();
}

static void kill_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	for (struct wk *w = m.workers; w; w = w->next) {
		log_warn("worker %u (pid %ld) still running after shutdown_timeout: killed", w->number,
			 (long)w->pid);
		process_kill(w->pid, SIGKILL);
	}
}

static void shutdown_all(void)
{
	if (m.stopping)
		return;
	m.stopping = true;
	log_notice("SIGTERM: listeners closed; stopping %u worker(s)", count_workers(NULL));
	bindings_close_all(&m.b);
	daemon_metrics_stop();
	for (size_t i = 0; i < m.nrestarts; i++)
		ev_timer_stop(EV_DEFAULT, &m.restarts[i].t);
	for (struct wk *w = m.workers; w; w = w->next)
		process_kill(w->pid, SIGTERM);
	ev_timer_set(&m.kill_timer, m.cur->conf->shutdown_timeout + MASTER_KILL_GRACE, 0.);
	ev_timer_start(EV_DEFAULT, &m.kill_timer);
	exit_when_done();
}

static void on_signal(enum process_signal sig)
{
	switch (sig) {
	case PSIG_TERM:
		shutdown_all();
		return;
	case PSIG_INT:
		log_notice("SIGINT: exiting now");
		for (struct wk *w = m.workers; w; w = w->next)
			process_kill(w->pid, SIGINT);
		process_remove_pidfile(m.cur->conf->pidfile);
		_exit(1);
	case PSIG_HUP:
		if (m.stopping)
			return;
		if (!m.started) {
			log_notice("SIGHUP during start-up: reloading once the workers are ready");
			m.hup_pending = true;
			return;
		}
		reload();
		return;
	case PSIG_USR1:
		log_reopen();
		for (struct wk *w = m.workers; w; w = w->next)
			process_kill(w->pid, SIGUSR1);
		return;
	default:
		return;
	}
}

static void maintain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	admission_maintain(m.adm);
}

/* ---- start-up ---- */

static int start_failed(const char *err)
{
	log_error("%s", err);
	if (!m.o->foreground)
		process_failed(err);
	else
		fprintf(stderr, "%s\n", err);
	return 1;
}

/* Room for what a reload may ask without a restart: as many workers as
 * CPUs (or the configured number if more), as many sessions per worker as
 * its descriptors allow, and per-address entries for at least
 * MASTER_COUNTS_SESSIONS sessions. Untouched pages of the shared mapping
 * cost no memory. */
static void size_counts(const struct conf *c, size_t per_worker)
{
	unsigned cpus = cpu_count();
	size_t fit = fdlimit_capacity();
	m.adm_workers = m.cur->nworkers > cpus ? m.cur->nworkers : cpus;
	m.adm_per_worker = fit > per_worker ? fit : per_worker;
	size_t all = m.adm_per_worker * m.adm_workers;
	m.adm_sessions = server_sessions_max(c);
	if (m.adm_sessions < MASTER_COUNTS_SESSIONS)
		m.adm_sessions = all < MASTER_COUNTS_SESSIONS ? all : MASTER_COUNTS_SESSIONS;
}

int master_run(const struct daemon_ops *ops, const struct daemon_options *o, struct conf *c,
	       struct server *srv)
{
	char err[1024];
	m.ops = ops;
	m.o = o;
	m.cur = xcalloc(1, sizeof(*m.cur));
	m.cur->id = m.gen_ids = 1;
	m.cur->conf = c;
	m.cur->srv = srv;
	m.cur->nworkers = nworkers_of(c);
	size_t per_worker = fdlimit_apply(c);
	if (!c->reuseport && bindings_apply(&m.b, c, false, false, err, sizeof(err)) < 0)
		return start_failed(err);
	size_counts(c, per_worker);
	m.adm = admission_new(ADMISSION_GENERATIONS * m.adm_workers, m.adm_per_worker, m.adm_sessions);
	if (!m.adm) {
		struct strbuf b;
		sb_init(&b, err, sizeof(err));
		sb_addf(&b, "cannot map the shared admission counts: %s", strerror(errno));
		return start_failed(err);
	}
	for (size_t i = 0; i < c->nlisteners; i++)
		admission_listener(m.adm, c->listeners[i].name);
	if (daemon_metrics_start(c, err, sizeof(err)) < 0)
		return start_failed(err);
	if (process_write_pidfile(c->pidfile, err, sizeof(err)) < 0)
		return start_failed(err);
	if (geteuid() == 0 && strcmp(c->user, "root") == 0)
		log_warn("user = root: keeping root privileges in the workers (not recommended)");
	daemon_metrics_serve(srv, 0);	/* the master serves scrapes */
	process_signals(on_signal);
	ev_timer_init(&m.maintain, maintain_cb, MASTER_MAINTAIN, MASTER_MAINTAIN);
	ev_timer_start(EV_DEFAULT, &m.maintain);	/* also keeps the master's loop alive */
	ev_init(&m.kill_timer, kill_cb);
	restarts_for(m.cur);
	err[0] = '\0';
	for (unsigned i = 1; i <= m.cur->nworkers; i++)
		if (!spawn(m.cur, i, err, sizeof(err))) {
			for (struct wk *w = m.workers; w; w = w->next)
				process_kill(w->pid, SIGKILL);
			return start_failed(err[0] ? err : "cannot start the workers");
		}
	conn_loop_run();
	ev_timer_stop(EV_DEFAULT, &m.maintain);
	ev_timer_stop(EV_DEFAULT, &m.kill_timer);
	daemon_metrics_free();
	log_notice("%s stopped", ops->name);
	process_remove_pidfile(m.cur->conf->pidfile);
	bindings_close_all(&m.b);
	for (size_t i = 0; i < m.nrestarts; i++)
		ev_timer_stop(EV_DEFAULT, &m.restarts[i].t);
	free(m.restarts);
	gen_free(&m.next);
	gen_free(&m.cur);
	admission_free(&m.adm);
	return m.status;
}
