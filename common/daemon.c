/* daemon: see daemon.h. Order of start-up (Postfix pre_jail_init style):
 * parse and check the configuration and load credentials (as root),
 * detach, then the master binds, writes the pidfile and forks workers,
 * which drop privileges. */
#include "daemon.h"
#include "conf.h"
#include "conn.h"
#include "loader.h"
#include "log.h"
#include "logsetup.h"
#include "master.h"
#include "process.h"
#include "rdns.h"
#include "tls.h"

#include <ev.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

static void usage(const char *name)
{
	fprintf(stderr, "usage: %s [-c FILE] [-f] [-t] [-d] [-V]\n", name);
}

/* The command line; returns -1 to go on, or an exit status. */
static int parse_args(const struct daemon_ops *ops, int argc, char **argv, struct daemon_options *o)
{
	int opt;
	while ((opt = getopt(argc, argv, "c:ftdVh")) != -1) {
		switch (opt) {
		case 'c': o->path = optarg; break;
		case 'f': o->foreground = true; break;
		case 't': o->test = true; break;
		case 'd': o->debug = true; break;
		case 'V':
			printf("%s %s\nGnuTLS %s\nlibev %d.%d\nlibconfuse %s\nc-ares %s\n", ops->name,
			       PACKAGE_VERSION, tls_lib_version(), ev_version_major(),
			       ev_version_minor(), conf_lib_version(), rdns_lib_version());
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

/* Loads and checks everything, printing each problem. With -t, or on an
 * error, returns the exit status; otherwise -1 with *cp and *srvp set. */
static int load(const struct daemon_ops *ops, const struct daemon_options *o, struct conf **cp,
		struct server **srvp)
{
	struct diag d;
	diag_init(&d);
	loader_load(ops, o, &d, cp, srvp);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "%s\n", d.lines[i]);
	int bad = d.errors > 0;
	diag_free(&d);
	if (o->test || bad) {
		loader_free(ops, cp, srvp);
		if (o->test && !bad)
			printf("configuration ok\n");
		return bad ? 1 : 0;
	}
	return -1;
}

int daemon_main(const struct daemon_ops *ops, int argc, char **argv)
{
	static char default_path[512];
	conf_default_path(ops->schema, default_path, sizeof(default_path));
	static struct daemon_options o;	/* the master keeps it for reloads */
	o.path = default_path;
	int rc = parse_args(ops, argc, argv, &o);
	if (rc >= 0)
		return rc;
	log_init(ops->name);
	log_configure(LOG_TARGET_STDERR, LOG_FORMAT_TEXT, o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	tls_global_init();
	tls_ticket_master_init();	/* one secret for every worker and reload */
	struct conf *c = NULL;
	struct server *srv = NULL;
	if ((rc = load(ops, &o, &c, &srv)) >= 0)
		return rc;
	char err[1024];
	if (logsetup_open(c, ops->name, o.foreground, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		loader_free(ops, &c, &srv);
		return 1;
	}
	if (!o.foreground)
		process_detach(logsetup_keep_stderr(c, o.foreground));
	log_configure((enum log_target)logsetup_target(c, o.foreground), (enum log_format)c->log_format,
		      o.debug ? LOG_LVL_DEBUG : (enum log_level)c->log_level);
	conn_loop_init();
	return master_run(ops, &o, c, srv);
}
