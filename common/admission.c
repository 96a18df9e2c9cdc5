/* admission: see admission.h. Layout of the mapping:
 *
 *	struct admission | slots[nslots] | held[nslots][per_slot]
 *	| free[nslots][per_slot] | entries[cap]
 *
 * A slot's held list and its stack of free held indices are touched only
 * by the process owning the slot (and by the master once it is gone). *
 * The IP table is open addressing with linear probing. An entry whose
 * count is 0 and whose rate windows are over is dead: lookups step over
 * it, inserts reuse it; the master's admission_reap compacts the table when
 * dead entries crowd it. Everything shared is changed under mu. */
#include "admission.h"
#include "strbuf.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define NAME_MAX_LEN 64
#define WINDOW 60.0	/* seconds per rate window */

enum { E_EMPTY = 0, E_USED = 1 };

struct entry {
	uint8_t ip[16];
	int16_t listener;
	uint8_t state;
	uint32_t count;		/* live sessions */
	uint32_t win;		/* the window cur counts (minutes since boot) */
	uint32_t cur, prev;	/* sessions started in windows win and win - 1 */
};

struct held {
	uint8_t ip[16];
	int16_t listener;
	uint8_t used;
};

struct slot {
	uint8_t taken;
	size_t nfree;		/* entries on the slot's free stack */
};

struct admission {
	pthread_mutex_t mu;
	size_t map_size;
	unsigned nslots;
	size_t per_slot;
	size_t cap;		/* entries, a power of two */
	size_t filled;		/* entries not E_EMPTY (live or dead) */
	unsigned nnames;
	char names[ADMISSION_LISTENERS_MAX][NAME_MAX_LEN];
	uint32_t active[ADMISSION_LISTENERS_MAX];
	uint8_t full_logged;
	size_t slots_off, held_off, free_off, entries_off;
};

static struct slot *slots(struct admission *lm)
{
	return (struct slot *)((char *)lm + lm->slots_off);
}

static struct held *held_of(struct admission *lm, int slot)
{
	return (struct held *)((char *)lm + lm->held_off) + (size_t)slot * lm->per_slot;
}

static int32_t *free_of(struct admission *lm, int slot)
{
	return (int32_t *)((char *)lm + lm->free_off) + (size_t)slot * lm->per_slot;
}

static struct entry *entries(struct admission *lm)
{
	return (struct entry *)((char *)lm + lm->entries_off);
}

static void lock(struct admission *lm)
{
	/* A worker that died holding the lock left at most one admission
	 * half done: its slot is reaped, the rest stands. */
	if (pthread_mutex_lock(&lm->mu) == EOWNERDEAD)
		pthread_mutex_consistent(&lm->mu);
}

static void unlock(struct admission *lm)
{
	pthread_mutex_unlock(&lm->mu);
}

double admission_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t align(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

struct admission *admission_new(unsigned nslots, size_t per_slot, size_t sessions)
{
	size_t cap = 1024;
	while (cap < 2 * sessions + ADMISSION_RATE_HEADROOM)
		cap *= 2;
	size_t slots_off = align(sizeof(struct admission));
	size_t held_off = align(slots_off + nslots * sizeof(struct slot));
	size_t free_off = align(held_off + (size_t)nslots * per_slot * sizeof(struct held));
	size_t entries_off = align(free_off + (size_t)nslots * per_slot * sizeof(int32_t));
	size_t size = entries_off + cap * sizeof(struct entry);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	struct admission *lm = p;	/* zero-filled: every slot free, every entry empty */
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&lm->mu, &a);
	pthread_mutexattr_destroy(&a);
	lm->map_size = size;
	lm->nslots = nslots;
	lm->per_slot = per_slot;
	lm->cap = cap;
	lm->slots_off = slots_off;
	lm->held_off = held_off;
	lm->free_off = free_off;
	lm->entries_off = entries_off;
	return lm;
}

void admission_free(struct admission **lmp)
{
	struct admission *lm = *lmp;
	if (!lm)
		return;
	munmap(lm, lm->map_size);
	*lmp = NULL;
}

int admission_listener(struct admission *lm, const char *name)
{
	int key = -1;
	lock(lm);
	for (unsigned i = 0; i < lm->nnames && key < 0; i++)
		if (strncmp(lm->names[i], name, NAME_MAX_LEN) == 0)
			key = (int)i;
	if (key < 0 && lm->nnames < ADMISSION_LISTENERS_MAX) {
		struct strbuf b;
		sb_init(&b, lm->names[lm->nnames], NAME_MAX_LEN);
		sb_add(&b, name, strnlen(name, NAME_MAX_LEN - 1));
		key = (int)lm->nnames++;
	}
	unlock(lm);
	return key;
}

int admission_slot_take(struct admission *lm)
{
	int slot = -1;
	lock(lm);
	for (unsigned i = 0; i < lm->nslots && slot < 0; i++)
		if (!slots(lm)[i].taken) {
			struct slot *sl = &slots(lm)[i];
			int32_t *fr = free_of(lm, (int)i);
			sl->taken = 1;
			sl->nfree = 0;
			for (size_t h = lm->per_slot; h-- > 0;)
				fr[sl->nfree++] = (int32_t)h;
			slot = (int)i;
		}
	unlock(lm);
	return slot;
}

static size_t hash(int listener, const uint8_t ip[16])
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint16_t)listener;
	for (int i = 0; i < 16; i++)
		h = (h ^ ip[i]) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

static bool dead(const struct entry *e, uint32_t minute)
{
	return e->count == 0 && e->win + 1 < minute;
}

static bool same(const struct entry *e, int listener, const uint8_t ip[16])
{
	return e->state == E_USED && e->listener == listener && memcmp(e->ip, ip, 16) == 0;
}

/* The entry of (listener, ip), or NULL. */
static struct entry *find(struct admission *lm, int listener, const uint8_t ip[16])
{
	struct entry *t = entries(lm);
	size_t mask = lm->cap - 1, i = hash(listener, ip) & mask;
	for (size_t n = 0; n < lm->cap && t[i].state != E_EMPTY; n++, i = (i + 1) & mask)
		if (same(&t[i], listener, ip))
			return &t[i];
	return NULL;
}

/* The entry of (listener, ip), made if needed (reusing a dead one on the
 * way); NULL when the table is full. */
static struct entry *find_or_add(struct admission *lm, int listener, const uint8_t ip[16], uint32_t minute)
{
	struct entry *t = entries(lm), *reuse = NULL;
	size_t mask = lm->cap - 1, i = hash(listener, ip) & mask, n;
	for (n = 0; n < lm->cap && t[i].state != E_EMPTY; n++, i = (i + 1) & mask) {
		if (same(&t[i], listener, ip))
			return &t[i];
		if (!reuse && dead(&t[i], minute))
			reuse = &t[i];
	}
	if (!reuse) {
		if (n == lm->cap)
			return NULL;
		reuse = &t[i];
		lm->filled++;
	}
	memset(reuse, 0, sizeof(*reuse));
	memcpy(reuse->ip, ip, 16);
	reuse->listener = (int16_t)listener;
	reuse->state = E_USED;
	reuse->win = minute;
	return reuse;
}

/* Moves the entry's windows to the current minute. */
static void roll(struct entry *e, uint32_t minute)
{
	if (e->win == minute)
		return;
	e->prev = e->win + 1 == minute ? e->cur : 0;
	e->cur = 0;
	e->win = minute;
}

/* Sessions started in the last 60 s, estimated. */
static double rate(const struct entry *e, double now)
{
	double into = now - (double)e->win * WINDOW;	/* 0 .. 60 */
	return (double)e->prev * (WINDOW - into) / WINDOW + (double)e->cur;
}

static enum admission_verdict check(struct admission *lm, int listener, const struct admission_rule *r,
				 struct entry *e, double now)
{
	if (lm->active[listener] >= r->max_connections)
		return ADMISSION_MAX_CONNECTIONS;
	if (!e)
		return ADMISSION_FULL;
	if (e->count >= r->max_per_ip)
		return ADMISSION_MAX_PER_IP;
	if (r->rate_per_ip && rate(e, now) + 1.0 > (double)r->rate_per_ip)
		return ADMISSION_RATE_PER_IP;
	return ADMISSION_OK;
}

static bool slot_ok(const struct admission *lm, int slot)
{
	return slot >= 0 && (unsigned)slot < lm->nslots;
}

enum admission_verdict admission_admit(struct admission *lm, int slot, int listener, const uint8_t ip[16],
				 const struct admission_rule *rule, double now, int *ticket)
{
	*ticket = -1;
	if (listener < 0 || listener >= ADMISSION_LISTENERS_MAX || !slot_ok(lm, slot) ||
	    !slots(lm)[slot].nfree)
		return ADMISSION_FULL;
	uint32_t minute = (uint32_t)(now / WINDOW);
	lock(lm);
	struct entry *e = find_or_add(lm, listener, ip, minute);
	if (e)
		roll(e, minute);
	enum admission_verdict v = check(lm, listener, rule, e, now);
	if (v == ADMISSION_OK) {
		/* Counted first, then recorded: dying in between leaves one
		 * count too many (stricter), never one too few. */
		e->count++;
		e->cur++;
		lm->active[listener]++;
		int32_t h = free_of(lm, slot)[--slots(lm)[slot].nfree];
		struct held *hd = &held_of(lm, slot)[h];
		memcpy(hd->ip, ip, 16);
		hd->listener = (int16_t)listener;
		hd->used = 1;
		*ticket = h;
	} else if (v == ADMISSION_FULL && !lm->full_logged) {
		lm->full_logged = 1;
		log_error("admission: the shared table of %zu client addresses is full: new sessions "
			  "are refused until some end", lm->cap);
	}
	unlock(lm);
	return v;
}

/* Gives back one admission (under the lock). */
static void give_back(struct admission *lm, struct held *hd)
{
	struct entry *e = find(lm, hd->listener, hd->ip);
	if (e && e->count)
		e->count--;
	if (lm->active[hd->listener])
		lm->active[hd->listener]--;
	hd->used = 0;
}

void admission_release(struct admission *lm, int slot, int ticket)
{
	if (!lm || !slot_ok(lm, slot) || ticket < 0 || (size_t)ticket >= lm->per_slot)
		return;
	struct held *hd = &held_of(lm, slot)[ticket];
	lock(lm);
	if (hd->used) {
		give_back(lm, hd);
		free_of(lm, slot)[slots(lm)[slot].nfree++] = ticket;
	}
	unlock(lm);
}

/* Rebuilds the IP table without its dead entries (the master, under the
 * lock) once they fill more than a quarter of it. */
static void compact(struct admission *lm, uint32_t minute)
{
	struct entry *t = entries(lm);
	size_t live = 0;
	for (size_t i = 0; i < lm->cap; i++)
		live += t[i].state == E_USED && !dead(&t[i], minute);
	if (lm->filled - live < lm->cap / 4)
		return;
	struct entry *keep = malloc((live ? live : 1) * sizeof(*keep));
	if (!keep)
		return;
	size_t n = 0;
	for (size_t i = 0; i < lm->cap; i++)
		if (t[i].state == E_USED && !dead(&t[i], minute))
			keep[n++] = t[i];
	memset(t, 0, lm->cap * sizeof(*t));
	lm->filled = 0;
	for (size_t k = 0; k < n; k++) {
		size_t mask = lm->cap - 1, i = hash(keep[k].listener, keep[k].ip) & mask;
		while (t[i].state != E_EMPTY)
			i = (i + 1) & mask;
		t[i] = keep[k];
		lm->filled++;
	}
	free(keep);
}

void admission_reap(struct admission *lm, int slot)
{
	if (!slot_ok(lm, slot))
		return;
	lock(lm);
	struct held *h = held_of(lm, slot);
	for (size_t i = 0; i < lm->per_slot; i++)
		if (h[i].used)
			give_back(lm, &h[i]);
	slots(lm)[slot].taken = 0;
	slots(lm)[slot].nfree = 0;
	compact(lm, (uint32_t)(admission_now() / WINDOW));
	unlock(lm);
}

void admission_maintain(struct admission *lm)
{
	lock(lm);
	compact(lm, (uint32_t)(admission_now() / WINDOW));
	unlock(lm);
}

unsigned admission_active(struct admission *lm, int listener)
{
	if (listener < 0 || listener >= ADMISSION_LISTENERS_MAX)
		return 0;
	lock(lm);
	unsigned n = lm->active[listener];
	unlock(lm);
	return n;
}
