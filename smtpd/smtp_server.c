/* smtp_server: see smtp_server.h. */
#include "smtp_server.h"
#include "smtp_conf.h"
#include "log.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>

struct smtp_server *smtp_server_new(const struct conf *c, struct diag *d)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	if (server_init(&srv->base, c, d) < 0) {
		free(srv);
		return NULL;
	}
	srv->ups = xcalloc(c->nupstreams + 1, sizeof(*srv->ups));
	for (size_t i = 0; i < c->nupstreams; i++) {
		srv->ups[i].cu = &c->upstreams[i];
		srv->ups[i].addr = xcalloc(c->upstreams[i].naddrs, sizeof(*srv->ups[i].addr));
	}
	return srv;
}

void smtp_server_free(struct smtp_server **sp)
{
	struct smtp_server *srv = *sp;
	if (!srv)
		return;
	for (size_t i = 0; i < srv->base.conf->nupstreams; i++)
		free(srv->ups[i].addr);
	free(srv->ups);
	server_fini(&srv->base);
	free(srv);
	*sp = NULL;
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
	uint64_t size = smtpd_conf(srv->base.conf)->max_message_size;
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
