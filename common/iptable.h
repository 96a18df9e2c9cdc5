/* iptable: concurrent-connection counts per client IP (max_per_ip), a
 * small chained hash keyed by the 16-byte address. */
#ifndef MG_IPTABLE_H
#define MG_IPTABLE_H

#include "addr.h"

struct iptable;

struct iptable *iptable_new(void);
void iptable_free(struct iptable **t);
/* Increments and returns the new count. */
unsigned iptable_inc(struct iptable *t, const struct mg_addr *a);
void iptable_dec(struct iptable *t, const struct mg_addr *a);

#endif
