/* server: see server.h. */
#include "server.h"
#include "iptable.h"
#include "log.h"
#include "peer.h"
#include "result.h"
#include "tls.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
	for (size_t i = 0; i < c->nlisteners; i++)
		srv->ls[i].per_ip = iptable_new();
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
	for (size_t i = 0; srv->ls && i < c->nlisteners; i++)
		iptable_free(&srv->ls[i].per_ip);
	XFREE(srv->ls);
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

static void refuse(const struct conf_listener *l, int fd, const struct mg_addr *peer,
		   const char *refusal, const char *why)
{
	char ip[64];
	struct logkv kv;
	/* Implicit TLS: close right after accept, before any handshake work. */
	if (l->tls_mode != TLS_MODE_IMPLICIT && send(fd, refusal, strlen(refusal), MSG_NOSIGNAL) < 0) {
		/* the refusal is best effort */
	}
	close(fd);
	addr_ip_str(peer, ip, sizeof(ip));
	logkv_begin(&kv, "session", 0);
	logkv_str(&kv, "listener", l->name);
	logkv_raw(&kv, "client", ip);
	logkv_raw(&kv, "reason", why);
	logkv_raw(&kv, "result", session_result_name(RESULT_LIMIT));
	logkv_end(&kv, LOG_LVL_NOTICE);
}

bool server_admit(struct server *srv, const struct conf_listener *l, int fd,
		  const struct mg_addr *peer, const char *refusal)
{
	struct server_listener *ls = &srv->ls[l->index];
	if (ls->active >= (unsigned)l->max_connections) {
		refuse(l, fd, peer, refusal, "max_connections");
		return false;
	}
	if (iptable_inc(ls->per_ip, peer) > (unsigned)l->max_per_ip) {
		iptable_dec(ls->per_ip, peer);
		refuse(l, fd, peer, refusal, "max_per_ip");
		return false;
	}
	ls->active++;
	return true;
}

void server_release(struct server *srv, const struct conf_listener *l, const struct mg_addr *peer)
{
	struct server_listener *ls = &srv->ls[l->index];
	ls->active--;
	iptable_dec(ls->per_ip, peer);
}
