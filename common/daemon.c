/* daemon: see daemon.h. Order of start-up (Postfix pre_jail_init style):
 * parse and check the configuration, load credentials (as root), detach,
 * bind every listener, raise RLIMIT_NOFILE, write the pidfile, drop
 * privileges, report readiness to the waiting parent, run the loop. */
#include "daemon.h"
#include "conf.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "process.h"
#include "proxyin.h"
#include "rdns.h"
#include "server.h"
#include "session.h"
#include "strbuf.h"
#include "timer.h"
#include "tls.h"
#include "xmem.h"

#include <ev.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

struct bound {
	int fd;
	const struct conf_listener *l;
	struct listener_watch *w;
};

struct accept_ctx {
	const struct daemon_ops *ops;
	struct server *srv;
	const struct conf_listener *l;
};

static const struct daemon_ops *d_ops;
static struct server *d_srv;
static const struct conf *d_conf;
static struct bound *d_bound;
static size_t d_nbound;
static struct mg_timer *d_poll, *d_deadline;
static int d_stopping;

static void usage(const char *name)
{
	fprintf(stderr, "usage: %s [-c FILE] [-f] [-t] [-d] [-V]\n", name);
}

static void after_proxy(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local,
			bool lb_local)
{
	struct accept_ctx *a = arg;
	session_accept(a->srv, a->ops->session, a->l, fd, peer, local, lb_local);
}

static void on_accept(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local)
{
	struct accept_ctx *a = arg;
	/* Behind a load balancer, the declared source is the client for
	 * every rule, limit and log line: read it before anything else. */
	if (a->l->proxy_protocol) {
		proxyin_start(fd, a->l, d_conf->timeout_handshake, peer, local, after_proxy, a);
		return;
	}
	session_accept(a->srv, a->ops->session, a->l, fd, peer, local, false);
}

static void stop_listening(void)
{
	for (size_t i = 0; i < d_nbound; i++) {
		if (d_bound[i].w)
			listener_watch_free(&d_bound[i].w);
		if (d_bound[i].fd >= 0)
			close(d_bound[i].fd);
		d_bound[i].fd = -1;
	}
}

static void poll_done(void *arg)
{
	if (d_srv->nsessions == 0)
		conn_loop_break();
}

static void deadline(void *arg)
{
	log_notice("shutdown_timeout reached: closing %u remaining session(s)",
		   d_srv->nsessions);
	session_kill_all(d_srv);
}

static void on_signal(enum process_signal sig)
{
	switch (sig) {
	case PSIG_TERM:
		if (d_stopping)
			return;
		d_stopping = 1;
		log_notice("SIGTERM: no new connections; %u session(s) finishing",
			   d_srv->nsessions);
		stop_listening();
		session_shutdown_all(d_srv);
		d_poll = mg_timer_start(0.05, 0.1, poll_done, NULL);
		d_deadline = mg_timer_start(d_conf->shutdown_timeout, 0, deadline, NULL);
		return;
	case PSIG_INT:
		log_notice("SIGINT: exiting now");
		process_remove_pidfile(d_conf->pidfile);
		_exit(1);
	case PSIG_HUP:
		log_notice("SIGHUP: configuration reload is not supported by this version yet; "
			   "restart to apply changes");
		return;
	default:
		return;
	}
}

static void print_diag(const struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "%s\n", d->lines[i]);
}

/* Features whose keys are parsed but whose behaviour is not there yet:
 * refuse them rather than silently ignore a security-relevant setting. */
static void check_unimplemented(const struct conf *c, struct diag *d)
{
	if (c->metrics[0])
		diag_warn(d, c->path, 0, "metrics is not supported by this version yet; ignored");
}

static int bind_all(const struct conf *c, char *err, size_t errsz)
{
	size_t n = 0;
	for (size_t i = 0; i < c->nlisteners; i++)
		n += c->listeners[i].naddrs;
	d_bound = xcalloc(n + 1, sizeof(*d_bound));
	for (size_t i = 0; i < c->nlisteners; i++)
		for (size_t j = 0; j < c->listeners[i].naddrs; j++) {
			const char *why = NULL;
			char as[MG_ADDR_STRLEN];
			int fd = listener_bind(&c->listeners[i].addrs[j], &why);
			addr_str(&c->listeners[i].addrs[j], as, sizeof(as));
			if (fd < 0) {
				snprintf(err, errsz, "listener \"%s\": cannot bind %s: %s",
					 c->listeners[i].name, as, why);
				return -1;
			}
			d_bound[d_nbound].fd = fd;
			d_bound[d_nbound].l = &c->listeners[i];
			d_nbound++;
			log_info("listener \"%s\" on %s (%s)", c->listeners[i].name, as,
				 c->listeners[i].tls_mode == TLS_MODE_IMPLICIT ? "implicit TLS"
				 : c->listeners[i].tls_mode == TLS_MODE_STARTTLS ? "STARTTLS" : "plain");
		}
	return 0;
}

struct options {
	const char *path;
	int foreground, test, debug;
};

/* The command line; returns -1 to go on, or an exit status. */
static int parse_args(const struct daemon_ops *ops, int argc, char **argv, struct options *o)
{
	int opt;
	while ((opt = getopt(argc, argv, "c:ftdVh")) != -1) {
		switch (opt) {
		case 'c': o->path = optarg; break;
		case 'f': o->foreground = 1; break;
		case 't': o->test = 1; break;
		case 'd': o->debug = 1; break;
		case 'V':
			printf("%s %s\nGnuTLS %s\nlibev %d.%d\nlibconfuse %s\nc-ares %s\n", ops->name,
			       PACKAGE_VERSION, tls_lib_version(), ev_version_major(), ev_version_minor(),
			       conf_lib_version(), rdns_lib_version());
			return 0;
		default:
			usage(ops->name);
			return 2;
		}
	}
	if (optind != argc) {
		usage(ops->name);
		return 2;
	}
	return -1;
}

/* Loads and checks the configuration and builds the server (TLS
 * credentials loaded as root); every problem is printed. With -t, or on
 * an error, returns the exit status; otherwise -1 with *cp and *srvp set. */
static int load(const struct daemon_ops *ops, const struct options *o, struct conf **cp,
		struct server **srvp)
{
	struct diag d;
	diag_init(&d);
	struct conf *c = conf_load(o->path, ops->schema, &d);
	struct server *srv = NULL;
	if (c) {
		conf_check_files(c, &d);
		check_unimplemented(c, &d);
		if (d.errors == 0)
			srv = ops->server_new(c, &d);	/* loads TLS credentials */
		else if (o->test)
			tls_check_conf(c, &d);		/* report those problems too */
	}
	print_diag(&d);
	int bad = d.errors || !srv;
	diag_free(&d);
	if (o->test || bad) {
		if (srv)
			ops->server_free(srv);
		conf_free(&c);
		if (o->test && !bad)
			printf("configuration ok\n");
		return bad ? 1 : 0;
	}
	*cp = c;
	*srvp = srv;
	return -1;
}

/* A start-up failure after detaching: logged, and told to the waiting
 * parent (or printed in the foreground). */
static int start_failed(const struct options *o, const char *err)
{
	log_error("%s", err);
	if (!o->foreground)
		process_failed(err);
	else
		fprintf(stderr, "%s\n", err);
	return 1;
}

/* Descriptors: each session may hold two (client, upstream), plus the
 * daemon's own and the closed connections still lingering. When the limit
 * is short of that, lingering still gets an eighth of it: a close without
 * lingering can turn into an RST that destroys the client's last reply. */
static void raise_nofile(const struct conf *c)
{
	unsigned long sessions_fds = 64;
	for (size_t i = 0; i < c->nlisteners; i++)
		sessions_fds += 2UL * (unsigned long)c->listeners[i].max_connections;
	unsigned long nofile = process_raise_nofile(sessions_fds + CONN_LINGER_MAX);
	unsigned long spare = nofile > sessions_fds ? nofile - sessions_fds : 0;
	if (nofile == 0)
		spare = CONN_LINGER_MAX;	/* unknown limit: the default */
	else if (spare < nofile / 8)
		spare = nofile / 8;
	conn_set_linger_budget(spare < CONN_LINGER_MAX ? (unsigned)spare : CONN_LINGER_MAX);
	if (nofile && nofile < sessions_fds)
		log_warn("open-file limit %lu: about %lu sessions fit, not the max_connections "
			 "of every listener; raise the hard limit (LimitNOFILE=, ulimit -Hn) or "
			 "lower max_connections", nofile, nofile > 64 ? (nofile - 64) / 2 : 0);
}

/* Binds, raises limits, writes the pidfile and drops privileges; then
 * makes sure every pkcs11: key still signs as the unprivileged user. */
static int start(const struct options *o, const struct conf *c, struct server *srv)
{
	char err[1024];
	if (bind_all(c, err, sizeof(err)) < 0)
		return start_failed(o, err);
	raise_nofile(c);
	if (process_write_pidfile(c->pidfile, err, sizeof(err)) < 0)
		return start_failed(o, err);
	if (geteuid() == 0 && strcmp(c->user, "root") == 0)
		log_warn("user = root: keeping root privileges in the worker (not recommended)");
	if (process_drop_privileges(c->user, c->group, err, sizeof(err)) < 0)
		return start_failed(o, err);
	if (server_check_keys(srv, err, sizeof(err)) < 0) {
		struct strbuf b;
		char msg[sizeof(err) + 256];
		sb_init(&b, msg, sizeof(msg));
		struct passwd *pw = getpwuid(geteuid());
		sb_addf(&b, "%s (running as user '%s': a token that keeps its objects in files, "
			"like SoftHSM's token directory, must be readable and writable by that user)",
			err, pw ? pw->pw_name : "?");
		return start_failed(o, sb_str(&b));
	}
	return 0;
}

/* Accepts on every bound listener and runs the loop until shutdown. */
static void serve(const struct daemon_ops *ops, const struct options *o, struct server *srv)
{
	process_signals(on_signal);
	struct accept_ctx *ctx = xcalloc(d_nbound + 1, sizeof(*ctx));
	for (size_t i = 0; i < d_nbound; i++) {
		ctx[i].ops = ops;
		ctx[i].srv = srv;
		ctx[i].l = d_bound[i].l;
		d_bound[i].w = listener_watch_new(d_bound[i].fd, on_accept, &ctx[i]);
	}
	if (ops->server_start)
		ops->server_start(srv);
	log_notice("%s %s ready (GnuTLS %s)", ops->name, PACKAGE_VERSION, tls_lib_version());
	if (!o->foreground)
		process_ready();
	conn_loop_run();
	log_notice("%s stopped", ops->name);
	mg_timer_stop(&d_poll);
	mg_timer_stop(&d_deadline);
	stop_listening();
	free(ctx);
}

int daemon_main(const struct daemon_ops *ops, int argc, char **argv)
{
	char default_path[512];
	conf_default_path(ops->schema, default_path, sizeof(default_path));
	struct options o = { .path = default_path };
	int rc = parse_args(ops, argc, argv, &o);
	if (rc >= 0)
		return rc;
	log_init(ops->name);
	log_configure(LOG_TARGET_STDERR, LOG_FORMAT_TEXT, o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	tls_global_init();
	tls_ticket_master_init();
	struct conf *c = NULL;
	struct server *srv = NULL;
	if ((rc = load(ops, &o, &c, &srv)) >= 0)
		return rc;
	d_ops = ops;
	d_srv = srv;
	d_conf = c;
	if (!o.foreground)
		process_detach();
	log_configure(o.foreground ? LOG_TARGET_STDERR : (enum log_target)c->log_target,
		      (enum log_format)c->log_format, o.debug ? LOG_LVL_DEBUG : (enum log_level)c->log_level);
	conn_loop_init();
	if ((rc = start(&o, c, srv)) != 0)
		return rc;
	serve(ops, &o, srv);
	ops->server_free(srv);
	process_remove_pidfile(c->pidfile);
	conf_free(&c);
	free(d_bound);
	return 0;
}
