/* smtp_server: see smtp_server.h. */
#include "smtp_server.h"
#include "iptable.h"
#include "log.h"
#include "smtp_session.h"
#include "smtp_session_int.h"
#include "smtp_upstream.h"
#include "tls.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>

struct smtp_server *smtp_server_new(const struct conf *c, struct diag *d)
{
	int errors = d->errors;
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	srv->conf = c;
	srv->tls = xcalloc(c->ntls + 1, sizeof(*srv->tls));
	for (size_t i = 0; i < c->ntls; i++) {
		bool used = false;
		for (size_t j = 0; j < c->nlisteners; j++)
			if (c->listeners[j].tls == &c->tls[i])
				used = true;
		if (used)
			srv->tls[i] = tls_server_new(&c->tls[i], d);
	}
	srv->ups = xcalloc(c->nupstreams + 1, sizeof(*srv->ups));
	for (size_t i = 0; i < c->nupstreams; i++) {
		const struct conf_upstream *u = &c->upstreams[i];
		srv->ups[i].cu = u;
		srv->ups[i].addr = xcalloc(u->naddrs, sizeof(*srv->ups[i].addr));
		if (u->tls != TLS_MODE_NONE)
			srv->ups[i].tls = tls_client_new(u->tls_client, d);
	}
	srv->ls = xcalloc(c->nlisteners + 1, sizeof(*srv->ls));
	for (size_t i = 0; i < c->nlisteners; i++)
		srv->ls[i].per_ip = iptable_new();
	if (d->errors > errors) {
		smtp_server_free(&srv);
		return NULL;
	}
	return srv;
}

void smtp_server_free(struct smtp_server **sp)
{
	struct smtp_server *srv = *sp;
	if (!srv)
		return;
	for (size_t i = 0; i < srv->conf->ntls; i++)
		tls_server_free(&srv->tls[i]);
	free(srv->tls);
	for (size_t i = 0; i < srv->conf->nupstreams; i++) {
		tls_client_free(&srv->ups[i].tls);
		free(srv->ups[i].addr);
	}
	free(srv->ups);
	for (size_t i = 0; i < srv->conf->nlisteners; i++)
		iptable_free(&srv->ls[i].per_ip);
	free(srv->ls);
	free(srv);
	*sp = NULL;
}

struct tls_server *smtp_server_tls(struct smtp_server *srv, const struct conf_tls *t)
{
	return srv->tls[t - srv->conf->tls];
}

struct tls_client *smtp_server_tls_client(struct smtp_server *srv, const struct conf_upstream *u)
{
	return srv->ups[u->index].tls;
}

void smtp_server_note_ehlo(struct smtp_server *srv, const struct conf_upstream *u, int index,
			   const struct smtp_ehlo_ext *e)
{
	struct smtp_up_state *st = &srv->ups[u->index];
	st->addr[index].seen = true;
	st->addr[index].flags = e->flags;
	st->addr[index].size = (e->flags & EXT_SIZE) ? e->size : 0;
	st->ehlo_seen = true;
	st->auth_seen = (e->flags & EXT_AUTH) != 0;
	memcpy(st->auth, e->auth, sizeof(st->auth));
}

unsigned smtp_server_passthrough(const struct smtp_server *srv, const struct conf_upstream *u)
{
	const struct smtp_up_state *st = &srv->ups[u->index];
	unsigned flags = EXT_8BITMIME | EXT_SMTPUTF8 | EXT_DSN;
	for (size_t i = 0; i < u->naddrs; i++) {
		if (!st->addr[i].seen)
			return 0;
		flags &= st->addr[i].flags;
	}
	return flags;
}

uint64_t smtp_server_size(const struct smtp_server *srv, const struct conf_upstream *u)
{
	const struct smtp_up_state *st = &srv->ups[u->index];
	uint64_t size = srv->conf->max_message_size;
	for (size_t i = 0; i < u->naddrs; i++)
		if (st->addr[i].seen && st->addr[i].size && st->addr[i].size < size)
			size = st->addr[i].size;
	return size;
}

bool smtp_server_auth_offered(const struct smtp_server *srv, const struct conf_upstream *u,
			      const char *mech)
{
	const struct smtp_up_state *st = &srv->ups[u->index];
	struct smtp_ehlo_ext e;
	if (!st->ehlo_seen)
		return true;
	if (!st->auth_seen)
		return false;
	e.flags = EXT_AUTH;
	memcpy(e.auth, st->auth, sizeof(e.auth));
	return smtp_ehlo_has_auth(&e, mech);
}

static void probe_cb(void *owner, enum up_event ev, const struct smtp_reply *r, int detail,
		     const char *why)
{
	/* The probe upstream frees itself after QUIT (UP_READY) and is
	 * freed here when it failed. */
	struct smtp_upstream *up = owner;
	if (ev != UP_READY)
		smtp_up_free(&up);
}

void smtp_server_probe(struct smtp_server *srv)
{
	const struct conf *c = srv->conf;
	for (size_t i = 0; i < c->nupstreams; i++) {
		const struct conf_upstream *u = &c->upstreams[i];
		for (size_t j = 0; j < u->naddrs; j++) {
			struct smtp_up_params p;
			memset(&p, 0, sizeof(p));
			p.srv = srv;
			p.cu = u;
			p.hostname = c->hostname;
			p.probe = true;
			p.only_index = (int)j;
			/* The owner pointer must be the upstream itself: start
			 * with a placeholder and patch it right after. */
			struct smtp_upstream *up = smtp_up_start(&p, probe_cb, NULL);
			smtp_up_set_owner(up, up);
		}
	}
}

void smtp_server_link(struct smtp_server *srv, struct smtp_session *ss)
{
	ss->prev = NULL;
	ss->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = ss;
	srv->sessions = ss;
	srv->nsessions++;
}

void smtp_server_unlink(struct smtp_server *srv, struct smtp_session *ss)
{
	if (ss->prev)
		ss->prev->next = ss->next;
	else
		srv->sessions = ss->next;
	if (ss->next)
		ss->next->prev = ss->prev;
	srv->nsessions--;
}

void smtp_server_shutdown(struct smtp_server *srv)
{
	srv->shutting_down = true;
	for (struct smtp_session *ss = srv->sessions; ss; ss = ss->next)
		smtp_session_shutdown_notice(ss);
}

void smtp_server_close_all(struct smtp_server *srv)
{
	for (struct smtp_session *ss = srv->sessions; ss; ss = ss->next)
		smtp_session_kill(ss);
}
