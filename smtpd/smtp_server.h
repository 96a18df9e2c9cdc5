/* smtp_server: the smtpd worker's shared state - the configuration, one
 * TLS server object per tls section and one TLS client per upstream, what
 * each upstream address advertised at its last EHLO (start-up probe, then
 * every connection), the list of live sessions, per-listener connection
 * limits, and graceful shutdown. */
#ifndef MG_SMTP_SERVER_H
#define MG_SMTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "smtp_reply.h"

struct smtp_session;
struct tls_server;
struct tls_client;
struct iptable;

struct up_addr_state {
	bool seen;
	unsigned flags;
	uint64_t size;
};

struct smtp_up_state {
	const struct conf_upstream *cu;
	struct tls_client *tls;
	struct up_addr_state *addr;
	bool ehlo_seen;		/* some address answered EHLO */
	bool auth_seen;		/* ... and listed AUTH */
	char auth[160];
};

struct smtp_listener_state {
	unsigned active;
	struct iptable *per_ip;
};

struct smtp_server {
	const struct conf *conf;
	struct tls_server **tls;		/* parallel to conf->tls */
	struct smtp_up_state *ups;		/* parallel to conf->upstreams */
	struct smtp_listener_state *ls;		/* parallel to conf->listeners */
	struct smtp_session *sessions;
	unsigned nsessions;
	bool shutting_down;
};

/* Builds TLS objects; errors go to d. Returns NULL on error. */
struct smtp_server *smtp_server_new(const struct conf *c, struct diag *d);
void smtp_server_free(struct smtp_server **srv);
/* Probes every upstream address once (non-blocking). */
void smtp_server_probe(struct smtp_server *srv);

struct tls_server *smtp_server_tls(struct smtp_server *srv, const struct conf_tls *t);
struct tls_client *smtp_server_tls_client(struct smtp_server *srv, const struct conf_upstream *u);

void smtp_server_note_ehlo(struct smtp_server *srv, const struct conf_upstream *u, int index,
			   const struct smtp_ehlo_ext *e);
/* 8BITMIME / SMTPUTF8 / DSN flags every address of u advertised. */
unsigned smtp_server_passthrough(const struct smtp_server *srv, const struct conf_upstream *u);
/* min(max_message_size, the smallest non-zero SIZE of u's addresses). */
uint64_t smtp_server_size(const struct smtp_server *srv, const struct conf_upstream *u);
/* auth_mechanisms ∩ the upstream's last AUTH list (auth_mechanisms until
 * an EHLO was seen). */
bool smtp_server_auth_offered(const struct smtp_server *srv, const struct conf_upstream *u,
			      const char *mech);

void smtp_server_link(struct smtp_server *srv, struct smtp_session *ss);
void smtp_server_unlink(struct smtp_server *srv, struct smtp_session *ss);
/* SIGTERM: stop accepting (done by main) and tell idle sessions. */
void smtp_server_shutdown(struct smtp_server *srv);
/* shutdown_timeout reached: close everything left. */
void smtp_server_close_all(struct smtp_server *srv);

#endif
