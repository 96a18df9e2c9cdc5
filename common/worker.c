/* worker: see worker.h. */
#include "worker.h"
#include "admission.h"
#include "bindings.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "process.h"
#include "proxyin.h"
#include "server.h"
#include "session.h"
#include "strbuf.h"
#include "timer.h"
#include "xmem.h"

#include <errno.h>
#include <ev.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

/* After a replaced worker's shutdown_timeout, what its sessions get to end
 * after being told (421 / BYE) before they are closed. */
#define WORKER_DRAIN_GRACE 5.0
/* How often a stopping worker looks whether its last session ended. */
#define WORKER_POLL_INTERVAL 0.1

struct accept_ctx {
	const struct daemon_ops *ops;
	struct server *srv;
	const struct conf_listener *l;
	struct listener_watch *w;
	int fd;
};

static struct {
	const struct worker_params *p;
	struct accept_ctx *acc;
	size_t nacc;
	ev_io ctl;
	struct mg_timer *poll, *deadline;
	bool stopping;
	bool shut;	/* session_shutdown_all() done: 421 / BYE said */
} w;

static void after_proxy(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local,
			bool lb_local, double accepted)
{
	struct accept_ctx *a = arg;
	session_accept_at(a->srv, a->ops->session, a->l, fd, peer, local, lb_local, accepted);
}

static void on_accept(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local)
{
	struct accept_ctx *a = arg;
	/* Behind a load balancer, the declared source is the client for
	 * every rule, limit and log line: read it before anything else. */
	if (a->l->proxy_protocol) {
		proxyin_start(fd, a->l, w.p->conf->timeout_handshake, peer, local, after_proxy, a);
		return;
	}
	session_accept(a->srv, a->ops->session, a->l, fd, peer, local, false);
}

static void ctl_send(char type, const char *msg)
{
	char line[512];
	struct strbuf b;
	sb_init(&b, line, sizeof(line));
	sb_addc(&b, type);
	if (msg && sb_room(&b) > 0)
		sb_add(&b, msg, strnlen(msg, sb_room(&b)));
	if (write(w.p->ctl_fd, sb_str(&b), sb_len(&b)) < 0) {
		/* the master is gone: the control watcher sees it */
	}
}

/* Start-up failure: told to the master, then exit. */
static void fatal(const char *msg)
{
	log_error("worker %u: %s", w.p->number, msg);
	ctl_send(WORKER_MSG_FATAL, msg);
	_exit(WORKER_EXIT_FATAL);
}

/* Stops accepting and closes this process's copies of the listening
 * sockets: once every worker and the master have, the address refuses
 * connections. */
static void stop_accepting(bool take_queued)
{
	for (size_t i = 0; i < w.nacc; i++) {
		if (take_queued)
			listener_accept_pending(w.acc[i].w);
		listener_watch_free(&w.acc[i].w);
		close(w.acc[i].fd);
	}
	w.nacc = 0;
}

static void poll_done(void *arg)
{
	if (w.p->srv->nsessions == 0)
		conn_loop_break();
}

static void deadline(void *arg)
{
	log_notice("shutdown_timeout reached: closing %u remaining session(s)", w.p->srv->nsessions);
	session_kill_all(w.p->srv);
}

static void shut_sessions(void)
{
	if (w.shut)
		return;
	w.shut = true;
	session_shutdown_all(w.p->srv);
}

/* A replaced worker's shutdown_timeout: its sessions are told to end as
 * on SIGTERM (421 between transactions, BYE before login), and what is
 * left a little later is closed. */
static void drain_deadline(void *arg)
{
	log_notice("shutdown_timeout reached: %u session(s) of the replaced configuration told to end",
		   w.p->srv->nsessions);
	shut_sessions();
	mg_timer_stop(&w.deadline);
	w.deadline = mg_timer_start(WORKER_DRAIN_GRACE, 0, deadline, NULL);
}

/* No new connections; the sessions finish (DESIGN.md §7). SIGTERM tells
 * them at once (421 between SMTP transactions, BYE before an IMAP login;
 * transactions and relays go on) and closes the rest after
 * shutdown_timeout. A worker replaced by a reload lets its sessions go on
 * as they are - one accepted just before the drain is served whole - for
 * shutdown_timeout; a SIGTERM meanwhile tells them at once. It first
 * takes the connections queued on a socket of its own (reuseport):
 * closing it would reset them. */
static void stop(const char *why, bool replaced)
{
	if (w.stopping) {
		if (!replaced)
			shut_sessions();	/* SIGTERM during a drain */
		return;
	}
	w.stopping = true;
	stop_accepting(replaced && w.p->conf->reuseport);
	log_notice("%s: no new connections; %u session(s) finishing", why, w.p->srv->nsessions);
	w.poll = mg_timer_start(0, WORKER_POLL_INTERVAL, poll_done, NULL);
	if (replaced) {
		w.deadline = mg_timer_start(w.p->conf->shutdown_timeout, 0, drain_deadline, NULL);
		return;
	}
	shut_sessions();
	w.deadline = mg_timer_start(w.p->conf->shutdown_timeout, 0, deadline, NULL);
}

static void on_signal(enum process_signal sig)
{
	switch (sig) {
	case PSIG_TERM:
		stop("SIGTERM", false);
		return;
	case PSIG_INT:
		_exit(1);
	case PSIG_USR1:
		log_reopen();	/* the master forwards it (logrotate) */
		return;
	default:
		return;	/* SIGHUP is the master's */
	}
}

static void ctl_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	char buf[16];
	ssize_t n = read(io->fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		if (memchr(buf, WORKER_MSG_DRAIN, (size_t)n)) {
			stop("reload", true);
			ctl_send(WORKER_MSG_STOPPED, NULL);
		}
		return;
	}
	ev_ref(loop);	/* it was unreferenced when started */
	ev_io_stop(loop, io);
	stop("the master process is gone", false);
}

static void accept_everywhere(void)
{
	const struct conf *c = w.p->conf;
	size_t n = 0;
	for (size_t i = 0; i < c->nlisteners; i++)
		n += c->listeners[i].naddrs;
	w.acc = xcalloc(n + 1, sizeof(*w.acc));
	for (size_t i = 0; i < c->nlisteners; i++)
		for (size_t j = 0; j < c->listeners[i].naddrs; j++) {
			int fd = bindings_fd(w.p->bindings, &c->listeners[i].addrs[j]);
			if (fd < 0)
				fatal("a listening socket is missing");
			struct accept_ctx *a = &w.acc[w.nacc++];
			a->ops = w.p->ops;
			a->srv = w.p->srv;
			a->l = &c->listeners[i];
			a->fd = fd;
			a->w = listener_watch_new(fd, on_accept, a);
		}
	/* The sockets a reload keeps for older workers are not ours. */
	const struct bindings *b = w.p->bindings;
	for (size_t i = 0; i < b->n; i++) {
		bool mine = false;
		for (size_t k = 0; k < w.nacc; k++)
			mine |= w.acc[k].fd == b->v[i].fd;
		if (!mine)
			close(b->v[i].fd);
	}
}

/* Every pkcs11: key signs once more as the unprivileged user: a token
 * that keeps its objects in files (SoftHSM re-reads them at every use)
 * may be unusable now, and would fail every handshake. */
static void check_keys_unprivileged(struct server *srv)
{
	char err[512], msg[1024];
	if (server_check_keys(srv, err, sizeof(err)) == 0)
		return;
	struct strbuf b;
	sb_init(&b, msg, sizeof(msg));
	struct passwd *pw = getpwuid(geteuid());
	sb_addf(&b, "%s (running as user '%s': a token that keeps its objects in files, "
		"like SoftHSM's token directory, must be readable and writable by that user)",
		err, pw ? pw->pw_name : "?");
	fatal(sb_str(&b));
}

void worker_run(const struct worker_params *p)
{
	char err[512];
	w.p = p;
	xmem_keep_heap();
	process_signals(on_signal);
	server_set_admission(p->srv, p->admission, p->slot);
	if (process_drop_privileges(p->conf->user, p->conf->group, err, sizeof(err)) < 0)
		fatal(err);
	check_keys_unprivileged(p->srv);
	accept_everywhere();
	ev_io_init(&w.ctl, ctl_cb, p->ctl_fd, EV_READ);
	ev_io_start(EV_DEFAULT, &w.ctl);
	ev_unref(EV_DEFAULT);	/* the control socket alone does not keep the loop alive */
	if (p->ops->server_start)
		p->ops->server_start(p->srv);
	log_info("worker %u (generation %u) ready", p->number, p->generation);
	ctl_send(WORKER_MSG_READY, NULL);
	conn_loop_run();
	mg_timer_stop(&w.poll);
	mg_timer_stop(&w.deadline);
	stop_accepting(false);
	free(w.acc);
	exit(0);
}
