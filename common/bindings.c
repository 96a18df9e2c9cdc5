/* bindings: see bindings.h. */
#include "bindings.h"
#include "listener.h"
#include "log.h"
#include "strbuf.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool same_addr(const struct mg_addr *a, const struct mg_addr *b)
{
	return a->len == b->len && memcmp(&a->u, &b->u, a->len) == 0;
}

static struct binding *find(const struct bindings *b, const struct mg_addr *a)
{
	for (size_t i = 0; i < b->n; i++)
		if (same_addr(&b->v[i].addr, a))
			return &b->v[i];
	return NULL;
}

int bindings_fd(const struct bindings *b, const struct mg_addr *a)
{
	const struct binding *x = find(b, a);
	return x ? x->fd : -1;
}

static const char *mode_name(enum tls_mode m)
{
	return m == TLS_MODE_IMPLICIT ? "implicit TLS" : m == TLS_MODE_STARTTLS ? "STARTTLS" : "plain";
}

/* Closes what this apply bound (from index first on). */
static void undo(struct bindings *b, size_t first)
{
	for (size_t i = first; i < b->n; i++)
		close(b->v[i].fd);
	b->n = first;
}

int bindings_apply(struct bindings *b, const struct conf *c, bool reuseport, bool quiet, char *err,
		   size_t errsz)
{
	size_t first_new = b->n, want = b->n;
	for (size_t i = 0; i < c->nlisteners; i++)
		want += c->listeners[i].naddrs;
	b->v = xreallocarray(b->v, want + 1, sizeof(*b->v));
	for (size_t i = 0; i < b->n; i++)
		b->v[i].wanted = false;
	for (size_t i = 0; i < c->nlisteners; i++) {
		const struct conf_listener *l = &c->listeners[i];
		for (size_t j = 0; j < l->naddrs; j++) {
			char as[MG_ADDR_STRLEN];
			addr_str(&l->addrs[j], as, sizeof(as));
			struct binding *x = find(b, &l->addrs[j]);
			if (!x) {
				const char *why = NULL;
				int fd = listener_bind(&l->addrs[j], reuseport, &why);
				if (fd < 0) {
					struct strbuf e;
					sb_init(&e, err, errsz);
					sb_addf(&e, "listener \"%s\": cannot bind %s: %s", l->name, as, why);
					undo(b, first_new);
					return -1;
				}
				x = &b->v[b->n++];
				x->addr = l->addrs[j];
				x->fd = fd;
			}
			x->wanted = true;
			if (!quiet)
				log_info("listener \"%s\" on %s (%s)", l->name, as, mode_name(l->tls_mode));
		}
	}
	return 0;
}

void bindings_prune(struct bindings *b)
{
	size_t k = 0;
	for (size_t i = 0; i < b->n; i++) {
		if (b->v[i].wanted) {
			b->v[k++] = b->v[i];
			continue;
		}
		char as[MG_ADDR_STRLEN];
		addr_str(&b->v[i].addr, as, sizeof(as));
		log_info("no listener on %s any more: closed", as);
		close(b->v[i].fd);
	}
	b->n = k;
}

void bindings_close_all(struct bindings *b)
{
	for (size_t i = 0; i < b->n; i++)
		close(b->v[i].fd);
	free(b->v);
	b->v = NULL;
	b->n = 0;
}
