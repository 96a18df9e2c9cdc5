/* server: the state every gateway daemon's worker keeps beside its
 * protocol: the configuration, one TLS server object per tls section used
 * by a listener and one TLS client per upstream that speaks TLS, and per
 * listener connection counts (max_connections, max_per_ip). The list of
 * live sessions is the session core's (session.c). A daemon's own server
 * state embeds struct server as its first member. */
#ifndef MG_SERVER_H
#define MG_SERVER_H

#include <stdbool.h>

#include "conf.h"
#include "addr.h"
#include "diag.h"

struct tls_server;
struct tls_client;
struct admission;
struct session;

struct server_listener {
	unsigned active;
	int key;			/* the listener's key in the shared admission counts */
};

struct server {
	const struct conf *conf;
	struct tls_server **tls;		/* parallel to conf->tls; NULL if unused */
	struct tls_client **tls_clients;	/* parallel to conf->upstreams */
	struct server_listener *ls;		/* parallel to conf->listeners */
	struct session *sessions;		/* live sessions (session.c) */
	unsigned nsessions;
	bool shutting_down;
	struct admission *admission;		/* counts shared across workers */
	int admission_slot;			/* this process's slot in them */
	bool admission_own;			/* made by server_admit (no master) */
};

/* Loads TLS credentials; problems go to d. Returns 0 or -1. */
int server_init(struct server *srv, const struct conf *c, struct diag *d);
void server_fini(struct server *srv);
/* Signs once with every pkcs11: key the listeners' tls sections hold
 * (tls_server_check_keys): call after dropping privileges. 0, or -1 with
 * the reason in err. */
int server_check_keys(struct server *srv, char *err, size_t errsz);
struct tls_server *server_tls(const struct server *srv, const struct conf_tls *t);
struct tls_client *server_tls_client(const struct server *srv, const struct conf_upstream *u);

/* Sessions the configuration allows at once (all listeners). */
size_t server_sessions_max(const struct conf *c);
/* The admission counts shared by a master's workers (admission.h), and this
 * process's slot in them. Without it, server_admit makes a region of its
 * own (a process with no master: tests, fuzzers). */
void server_set_admission(struct server *srv, struct admission *lm, int slot);
/* Counts a new connection on l against max_connections, max_per_ip and
 * rate_per_ip (across workers), or refuses it: the refusal (a protocol
 * line, CRLF included) is sent unless l uses implicit TLS, fd is closed,
 * and a "result=limit" line is logged. Returns the admission's ticket
 * (>= 0), or -1 when refused. */
int server_admit(struct server *srv, const struct conf_listener *l, int fd,
		 const struct mg_addr *peer, const char *refusal);
/* Gives back what server_admit counted. */
void server_release(struct server *srv, const struct conf_listener *l, int ticket);

#endif
