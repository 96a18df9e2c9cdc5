/* metrics: the shared region and the hot path (see metrics.h). The series
 * table is open addressing with linear probing over slots that are never
 * freed, so a name is found before the first FREE slot of its probe
 * sequence or not at all; at most half the slots are ever claimed, which
 * keeps every probe short. A claim is one CAS (FREE -> BUSY), the key
 * written, then READY with release order: readers that see READY (acquire)
 * see the key. Two processes claiming the same name at once meet at the
 * same slot - the loser waits for READY and finds it. A claimer that died
 * between its CAS and READY leaves a BUSY slot that others skip after a
 * bounded wait; the name may then get a second slot, and the renderer
 * merges series with equal keys. */
#include "metrics.h"
#include "metrics_int.h"
#include "log.h"

#include <string.h>
#include <sys/mman.h>

struct metrics_region *metrics_region;
uint32_t metrics_capacity, metrics_limit;
static size_t region_size;
static unsigned my_slot;

/* Spins while another process finishes a claim (two stores away). */
#define CLAIM_WAIT_SPINS 100000

static size_t need_series(const struct conf *c)
{
	size_t n = METRICS_SERIES_MARGIN + c->npeers;
	for (size_t i = 0; i < c->nlisteners; i++)
		n += c->listeners[i].tls_mode == TLS_MODE_NONE ? 1 : 2;
	return n;
}

int metrics_init(const struct conf *c)
{
	if (!c->metrics || !c->metrics[0])
		return 0;
	if (metrics_region) {
		metrics_register(c);
		return 0;
	}
	size_t cap = 16;
	while (cap < 2 * need_series(c))
		cap *= 2;
	size_t size = sizeof(struct metrics_region) + cap * sizeof(struct metrics_series);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		log_error("metrics: cannot map %zu bytes of shared memory", size);
		return -1;
	}
	struct metrics_region *r = p;	/* zero-filled by the kernel */
	r->magic = METRICS_MAGIC;
	r->capacity = (uint32_t)cap;
	r->limit = (uint32_t)(cap / 2);
	metrics_capacity = (uint32_t)cap;
	metrics_limit = (uint32_t)(cap / 2);
	metrics_region = r;
	region_size = size;
	metrics_register(c);
	return 0;
}

void metrics_fini(void)
{
	if (metrics_region)
		munmap(metrics_region, region_size);
	metrics_region = NULL;
	metrics_capacity = metrics_limit = 0;
	region_size = 0;
	my_slot = 0;
}

bool metrics_enabled(void)
{
	return metrics_region != NULL;
}

size_t metrics_series_limit(void)
{
	return metrics_region ? metrics_limit : 0;
}

static uint32_t hash(unsigned family, const char *name, size_t len)
{
	uint32_t h = 2166136261u ^ family;	/* FNV-1a */
	h *= 16777619u;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 16777619u;
	}
	return h;
}

static void overflow(struct metrics_region *r, const char *name)
{
	atomic_fetch_add_explicit(&r->overflow, 1, memory_order_relaxed);
	if (atomic_exchange_explicit(&r->overflow_logged, 1, memory_order_relaxed) == 0)
		log_warn("metrics: no series for \"%.64s\" (table of %u full, or a name over %d bytes): "
			 "counted in mailgate_metrics_overflow_total", name, metrics_limit, METRICS_LABEL_MAX - 1);
}

static uint32_t wait_ready(struct metrics_series *s)
{
	uint32_t st = SLOT_BUSY;
	for (unsigned i = 0; i < CLAIM_WAIT_SPINS && st == SLOT_BUSY; i++)
		st = atomic_load_explicit(&s->state, memory_order_acquire);
	return st;
}

/* A FREE slot becomes ours with the key written, or false: lost the race
 * (*st then holds what the slot is now) or the table is at its limit
 * (*st stays FREE). */
static bool claim(struct metrics_region *r, struct metrics_series *s, unsigned family,
		  const char *name, size_t len, uint32_t *st)
{
	if (atomic_fetch_add_explicit(&r->claimed, 1, memory_order_relaxed) >= metrics_limit) {
		atomic_fetch_sub_explicit(&r->claimed, 1, memory_order_relaxed);
		return false;
	}
	uint32_t expect = SLOT_FREE;
	if (!atomic_compare_exchange_strong_explicit(&s->state, &expect, SLOT_BUSY, memory_order_acq_rel,
						     memory_order_acquire)) {
		atomic_fetch_sub_explicit(&r->claimed, 1, memory_order_relaxed);
		*st = expect;
		return false;
	}
	s->family = family;
	memcpy(s->name, name, len);
	s->name[len] = '\0';
	atomic_store_explicit(&s->min, METRICS_UNSET, memory_order_relaxed);
	atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
	return true;
}

/* The series of (family, name), claimed if new; NULL when it cannot be
 * had (counted as overflow). */
static struct metrics_series *series(struct metrics_region *r, unsigned family, const char *name)
{
	size_t len = strlen(name);
	if (len >= METRICS_LABEL_MAX) {
		overflow(r, name);
		return NULL;
	}
	uint32_t mask = metrics_capacity - 1, h = hash(family, name, len);
	for (uint32_t i = 0; i <= mask; i++) {
		struct metrics_series *s = &r->series[(h + i) & mask];
		uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
		if (st == SLOT_FREE) {
			if (claim(r, s, family, name, len, &st))
				return s;
			if (st == SLOT_FREE)
				break;	/* at the limit */
		}
		if (st == SLOT_BUSY)
			st = wait_ready(s);
		if (st == SLOT_READY && s->family == family && !strncmp(s->name, name, METRICS_LABEL_MAX))
			return s;
	}
	overflow(r, name);
	return NULL;
}

void metrics_register(const struct conf *c)
{
	struct metrics_region *r = metrics_region;
	if (!r)
		return;
	for (size_t i = 0; i < c->nlisteners; i++) {
		series(r, MF_CONNECTIONS, c->listeners[i].name);
		if (c->listeners[i].tls_mode != TLS_MODE_NONE)
			series(r, MF_HANDSHAKES, c->listeners[i].name);
	}
	for (size_t i = 0; i < c->npeers; i++)
		series(r, MF_PEER_EXPIRY, c->peers[i].name);
}

void metrics_set_slot(unsigned slot)
{
	my_slot = slot % METRICS_SLOTS_MAX;	/* admission slots are fewer: never wraps */
}

void metrics_slot_reset(unsigned slot)
{
	if (metrics_region)
		atomic_store_explicit(&metrics_region->slots[slot % METRICS_SLOTS_MAX].sessions, 0,
				      memory_order_relaxed);
}

void metrics_set_workers(unsigned n)
{
	if (metrics_region)
		atomic_store_explicit(&metrics_region->workers, n, memory_order_relaxed);
}

static void add(_Atomic uint64_t *v, uint64_t n)
{
	atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

void metrics_session_open(void)
{
	if (metrics_region)
		atomic_fetch_add_explicit(&metrics_region->slots[my_slot].sessions, 1, memory_order_relaxed);
}

void metrics_session_close(void)
{
	if (metrics_region)
		atomic_fetch_sub_explicit(&metrics_region->slots[my_slot].sessions, 1, memory_order_relaxed);
}

void metrics_connection(const char *listener, enum session_result r)
{
	struct metrics_series *s;
	if (!metrics_region || (unsigned)r >= METRICS_TOKENS)
		return;
	if ((s = series(metrics_region, MF_CONNECTIONS, listener)))
		add(&s->v[r], 1);
}

void metrics_handshake(const char *listener, bool ok)
{
	struct metrics_series *s;
	if (metrics_region && (s = series(metrics_region, MF_HANDSHAKES, listener)))
		add(&s->v[ok ? HS_OK : HS_FAILED], 1);
}

void metrics_client_cert(enum cert_status st)
{
	if (metrics_region && (unsigned)st < METRICS_CERT_STATUSES)
		add(&metrics_region->client_certs[st], 1);
}

void metrics_peer_cert(const char *peer, time_t not_after)
{
	struct metrics_series *s;
	if (!metrics_region || !(s = series(metrics_region, MF_PEER_EXPIRY, peer)))
		return;
	int64_t v = (int64_t)not_after;
	int64_t cur = atomic_load_explicit(&s->min, memory_order_relaxed);
	while (v < cur && !atomic_compare_exchange_weak_explicit(&s->min, &cur, v, memory_order_relaxed,
								   memory_order_relaxed))
		;
}

void metrics_relay_denied(void)
{
	if (metrics_region)
		add(&metrics_region->relay_denied, 1);
}

void metrics_auth(bool ok)
{
	if (metrics_region)
		add(ok ? &metrics_region->auth_ok : &metrics_region->auth_failed, 1);
}

void metrics_message(void)
{
	if (metrics_region)
		add(&metrics_region->messages, 1);
}

void metrics_upstream_failure(void)
{
	if (metrics_region)
		add(&metrics_region->upstream_failures, 1);
}

void metrics_bytes(uint64_t in, uint64_t out)
{
	if (!metrics_region)
		return;
	add(&metrics_region->bytes_in, in);
	add(&metrics_region->bytes_out, out);
}
