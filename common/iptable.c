/* iptable: entries are removed when their count drops to zero, so the
 * table only holds addresses with live connections. */
#include "iptable.h"
#include "xmem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 4096

struct ipent {
	struct ipent *next;
	unsigned char key[16];
	unsigned count;
};

struct iptable {
	struct ipent *b[NBUCKETS];
};

static void key_of(const struct mg_addr *a, unsigned char k[16])
{
	memset(k, 0, 16);
	if (a->u.sa.sa_family == AF_INET) {
		k[10] = k[11] = 0xff;
		memcpy(k + 12, &a->u.in4.sin_addr, 4);
	} else if (a->u.sa.sa_family == AF_INET6) {
		memcpy(k, a->u.in6.sin6_addr.s6_addr, 16);
	}
}

static unsigned hash(const unsigned char k[16])
{
	uint32_t h = 2166136261u;
	for (int i = 0; i < 16; i++)
		h = (h ^ k[i]) * 16777619u;
	return h % NBUCKETS;
}

struct iptable *iptable_new(void)
{
	return xcalloc(1, sizeof(struct iptable));
}

void iptable_free(struct iptable **tp)
{
	struct iptable *t = *tp;
	if (!t)
		return;
	for (int i = 0; i < NBUCKETS; i++)
		while (t->b[i]) {
			struct ipent *e = t->b[i];
			t->b[i] = e->next;
			free(e);
		}
	free(t);
	*tp = NULL;
}

unsigned iptable_inc(struct iptable *t, const struct mg_addr *a)
{
	unsigned char k[16];
	key_of(a, k);
	unsigned h = hash(k);
	for (struct ipent *e = t->b[h]; e; e = e->next)
		if (memcmp(e->key, k, 16) == 0)
			return ++e->count;
	struct ipent *e = xcalloc(1, sizeof(*e));
	memcpy(e->key, k, 16);
	e->count = 1;
	e->next = t->b[h];
	t->b[h] = e;
	return 1;
}

void iptable_dec(struct iptable *t, const struct mg_addr *a)
{
	unsigned char k[16];
	key_of(a, k);
	unsigned h = hash(k);
	for (struct ipent **pp = &t->b[h]; *pp; pp = &(*pp)->next) {
		struct ipent *e = *pp;
		if (memcmp(e->key, k, 16) != 0)
			continue;
		if (--e->count == 0) {
			*pp = e->next;
			free(e);
		}
		return;
	}
}
