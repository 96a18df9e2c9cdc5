/* server: see server.h. */
#include "server.h"
#include "admission.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "result.h"
#include "session_id.h"
#include "sysio.h"
#include "tls.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int server_init(struct server *srv, const struct conf *c, struct diag *d)
{
	int errors = d->errors;
	srv->conf = c;
	srv->tls = xcalloc(c->ntls + 1, sizeof(*srv->tls));
	for (size_t i = 0; i < c->ntls; i++)
		for (size_t j = 0; j < c->nlisteners; j++)
			if (c->listeners[j].tls == &c->tls[i] && !srv->tls[i]) {
				srv->tls[i] = tls_server_new(&c->tls[i], d);
				/* A pinned peer may present a self-signed certificate
				 * even where certificates are required. */
				if (srv->tls[i])
					tls_server_set_pin_accept(srv->tls[i], peer_pinned, (void *)c);
			}
	srv->tls_clients = xcalloc(c->nupstreams + 1, sizeof(*srv->tls_clients));
	for (size_t i = 0; i < c->nupstreams; i++)
		if (c->upstreams[i].tls != TLS_MODE_NONE)
			srv->tls_clients[i] = tls_client_new(c->upstreams[i].tls_client, d);
	srv->ls = xcalloc(c->nlisteners + 1, sizeof(*srv->ls));
	srv->admission_slot = -1;
	if (d->errors > errors) {
		server_fini(srv);
		return -1;
	}
	return 0;
}

void server_fini(struct server *srv)
{
	const struct conf *c = srv->conf;
	for (size_t i = 0; srv->tls && i < c->ntls; i++)
		tls_server_free(&srv->tls[i]);
	XFREE(srv->tls);
	for (size_t i = 0; srv->tls_clients && i < c->nupstreams; i++)
		tls_client_free(&srv->tls_clients[i]);
	XFREE(srv->tls_clients);
	XFREE(srv->ls);
	if (srv->admission_own)
		admission_free(&srv->admission);
}

int server_check_keys(struct server *srv, char *err, size_t errsz)
{
	for (size_t i = 0; srv->tls && i < srv->conf->ntls; i++)
		if (tls_server_check_keys(srv->tls[i], err, errsz) < 0)
			return -1;
	return 0;
}

struct tls_server *server_tls(const struct server *srv, const struct conf_tls *t)
{
	return srv->tls[t - srv->conf->tls];
}

struct tls_client *server_tls_client(const struct server *srv, const struct conf_upstream *u)
{
	return srv->tls_clients[u->index];
}

/* A refused connection is logged as a session that ended at once: the
 * session line's keys, with reason= the limit's name before result=limit. */
static void refuse(const struct conf_listener *l, int fd, const struct mg_addr *peer,
		   const char *refusal, const char *why)
{
	char id[16], client[80];
	struct logkv kv;
	size_t sent = 0;
	/* Implicit TLS: close right after accept, before any handshake work. */
	if (l->tls_mode != TLS_MODE_IMPLICIT) {
		ssize_t n = sysio_send(fd, refusal, strlen(refusal), MSG_NOSIGNAL);
		if (n > 0)	/* the refusal is best effort */
			sent = (size_t)n;
	}
	sysio_close(fd);
	session_new_id(id);
	addr_str(peer, client, sizeof(client));
	logkv_begin(&kv, "session", 0);
	logkv_raw(&kv, "session", id);
	logkv_str(&kv, "listener", l->name);
	logkv_raw(&kv, "client", client);
	logkv_u64(&kv, "bytes_in", 0);
	logkv_u64(&kv, "bytes_out", sent);
	logkv_raw(&kv, "duration", "0.000");
	logkv_raw(&kv, "reason", why);
	logkv_raw(&kv, "result", session_result_name(RESULT_LIMIT));
	logkv_end(&kv, LOG_LVL_NOTICE);
	metrics_connection(l->name, RESULT_LIMIT);
}

size_t server_sessions_max(const struct conf *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->nlisteners; i++)
		n += (size_t)c->listeners[i].max_connections;
	return n;
}

void server_set_admission(struct server *srv, struct admission *lm, int slot)
{
	srv->admission = lm;
	srv->admission_slot = slot;
	for (size_t i = 0; i < srv->conf->nlisteners; i++)
		srv->ls[i].key = admission_listener(lm, srv->conf->listeners[i].name);
}

/* A process with no master (tests, fuzzers): limits of its own. */
static bool own_admission(struct server *srv)
{
	size_t n = server_sessions_max(srv->conf);
	struct admission *lm = admission_new(1, n, n);
	if (!lm)
		return false;
	srv->admission_own = true;
	server_set_admission(srv, lm, admission_slot_take(lm));
	return true;
}

static const char *verdict_reason(enum admission_verdict v)
{
	switch (v) {
	case ADMISSION_MAX_CONNECTIONS: return "max_connections";
	case ADMISSION_MAX_PER_IP: return "max_per_ip";
	case ADMISSION_RATE_PER_IP: return "rate_per_ip";
	default: return "table-full";
	}
}

int server_admit(struct server *srv, const struct conf_listener *l, int fd,
		 const struct mg_addr *peer, const char *refusal)
{
	if (!srv->admission && !own_admission(srv)) {
		refuse(l, fd, peer, refusal, "no-memory");
		return -1;
	}
	struct admission_rule rule = {
		.max_connections = (unsigned)l->max_connections,
		.max_per_ip = (unsigned)l->max_per_ip,
		.rate_per_ip = (unsigned)l->rate_per_ip,
	};
	uint8_t ip[16];
	int ticket;
	addr_key(peer, ip);
	enum admission_verdict v = admission_admit(srv->admission, srv->admission_slot, srv->ls[l->index].key, ip,
					     &rule, admission_now(), &ticket);
	if (v != ADMISSION_OK) {
		refuse(l, fd, peer, refusal, verdict_reason(v));
		return -1;
	}
	srv->ls[l->index].active++;
	return ticket;
}

void server_release(struct server *srv, const struct conf_listener *l, int ticket)
{
	srv->ls[l->index].active--;
	admission_release(srv->admission, srv->admission_slot, ticket);
}
