/* admission: see admission.h. This file owns the shared admission
 * mapping and each process's private view of it. Layout of the mapping:
 *
 *	struct shared | slots[nslots] | held[nslots][per_slot]
 *	| free[nslots][per_slot] | entries[cap]
 *
 * The layout is computed once by admission_new into the PRIVATE struct
 * admission (heap, inherited by fork); struct shared's copies of it are
 * for debugging tools only and never read. A slot's held list and its
 * stack of free held indices are touched only by the process owning the
 * slot (and by the master once it is gone); which slots are taken is the
 * master's private knowledge.
 *
 * The IP table is open addressing with linear probing and backward-shift
 * deletion: an entry whose count is 0 and whose rate history is not
 * needed (dead) is removed on release, or when a probe passes it; the
 * master's admission_maintain also compacts the table now and then.
 * Every loop over the mapping is bounded by the private sizes, every
 * index read from it checked. Everything shared is changed under mu;
 * nothing is logged while holding it (report() logs afterwards). */
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
#define WINDOW 60.0		/* seconds per rate window */
#define COMPACT_EVERY 30.0	/* seconds between the master's compactions */
#define BUSY_WARN 5.0		/* the lock held this long by a worker is logged */
#define LOG_EVERY 60.0		/* at most one "table full"/"lock held" line per minute */

enum { E_EMPTY = 0, E_USED = 1 };

struct entry {
	uint8_t ip[16];
	int16_t listener;
	uint8_t state;
	uint8_t rated;		/* its listener counts rate_per_ip: keep history */
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
	size_t nfree;		/* entries on the slot's free stack */
};

/* The start of the mapping. */
struct shared {
	pthread_mutex_t mu;
	/* Copies of the layout for debuggers: written once, never read. */
	size_t map_size;
	unsigned nslots;
	size_t per_slot;
	size_t cap;
	uint32_t dirty;		/* a process died holding mu: the master recounts */
	uint32_t active[ADMISSION_LISTENERS_MAX];
};

struct name {
	char s[NAME_MAX_LEN];
	bool used;		/* the key belongs to this name */
	bool wanted;		/* registered since the last reset */
};

/* Private to each process. */
struct admission {
	struct shared *sh;
	size_t map_size, per_slot, cap;
	unsigned nslots;
	struct slot *slots;
	struct held *held;
	int32_t *free;
	struct entry *entries;
	uint8_t *taken, *pending;	/* the master's: per slot */
	struct name names[ADMISSION_LISTENERS_MAX];
	unsigned nnames;		/* keys ever handed out */
	double busy_since, busy_logged, full_logged, last_compact;
	unsigned full_refused;		/* new addresses refused since the last log line */
	const char *corrupt;		/* what was found corrupt, to log once */
	bool corrupt_logged;
};

static void lock(struct admission *lm)
{
	/* A process that died holding the lock may have left one admission
	 * half done: the master recounts from the held lists. */
	if (pthread_mutex_lock(&lm->sh->mu) == EOWNERDEAD) {
		pthread_mutex_consistent(&lm->sh->mu);
		lm->sh->dirty = 1;
	}
}

/* The master's lock: never waits for a worker. */
static bool trylock(struct admission *lm)
{
	int r = pthread_mutex_trylock(&lm->sh->mu);
	if (r == EOWNERDEAD) {
		pthread_mutex_consistent(&lm->sh->mu);
		lm->sh->dirty = 1;
		r = 0;
	}
	return r == 0;
}

static void unlock(struct admission *lm)
{
	pthread_mutex_unlock(&lm->sh->mu);
}

double admission_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t minute_of(double now)
{
	return (uint32_t)(now / WINDOW);
}

static size_t align(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

/* Where each part of the mapping starts, and the mapping's size. */
struct parts {
	size_t slots, held, free, entries, size;
};

static struct parts parts_of(const struct admission *lm)
{
	struct parts o;
	o.slots = align(sizeof(struct shared));
	o.held = align(o.slots + lm->nslots * sizeof(struct slot));
	o.free = align(o.held + (size_t)lm->nslots * lm->per_slot * sizeof(struct held));
	o.entries = align(o.free + (size_t)lm->nslots * lm->per_slot * sizeof(int32_t));
	o.size = o.entries + lm->cap * sizeof(struct entry);
	return o;
}

/* Points the private view at the mapping p (never NULL: offsets from a
 * null pointer are undefined behaviour, so sizes come from parts_of). */
static void layout(struct admission *lm, void *p, size_t size)
{
	struct parts o = parts_of(lm);
	char *base = p;
	lm->sh = p;
	lm->slots = (struct slot *)(base + o.slots);
	lm->held = (struct held *)(base + o.held);
	lm->free = (int32_t *)(base + o.free);
	lm->entries = (struct entry *)(base + o.entries);
	lm->map_size = size ? size : o.size;
}

static void init_shared(struct admission *lm)
{
	struct shared *sh = lm->sh;	/* zero-filled: every entry empty */
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&sh->mu, &a);
	pthread_mutexattr_destroy(&a);
	sh->map_size = lm->map_size;
	sh->nslots = lm->nslots;
	sh->per_slot = lm->per_slot;
	sh->cap = lm->cap;
}

struct admission *admission_new(unsigned nslots, size_t per_slot, size_t sessions)
{
	struct admission *lm = calloc(1, sizeof(*lm));
	if (!lm)
		return NULL;
	lm->nslots = nslots < ADMISSION_SLOTS_MAX ? nslots : ADMISSION_SLOTS_MAX;
	lm->per_slot = per_slot;
	lm->cap = 1024;
	while (lm->cap < 2 * sessions + ADMISSION_RATE_HEADROOM)
		lm->cap *= 2;
	lm->map_size = parts_of(lm).size;
	void *p = mmap(NULL, lm->map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	lm->taken = calloc(lm->nslots + 1, 1);
	lm->pending = calloc(lm->nslots + 1, 1);
	if (p == MAP_FAILED || !lm->taken || !lm->pending) {
		int e = p == MAP_FAILED ? errno : ENOMEM;
		if (p != MAP_FAILED)
			munmap(p, lm->map_size);
		free(lm->taken);
		free(lm->pending);
		free(lm);
		errno = e;
		return NULL;
	}
	layout(lm, p, lm->map_size);
	init_shared(lm);
	return lm;
}

void admission_free(struct admission **lmp)
{
	struct admission *lm = *lmp;
	if (!lm)
		return;
	munmap(lm->sh, lm->map_size);
	free(lm->taken);
	free(lm->pending);
	free(lm);
	*lmp = NULL;
}

/* Logs what was noted under the lock (call without it). */
static void report(struct admission *lm, double now)
{
	if (lm->corrupt && !lm->corrupt_logged) {
		lm->corrupt_logged = true;
		log_error("admission: ignored a corrupt %s in the shared counts (written by a worker?)",
			  lm->corrupt);
	}
	if (lm->full_refused && (lm->full_logged == 0 || now - lm->full_logged >= LOG_EVERY)) {
		log_error("admission: the shared table of %zu client addresses is full of live sessions: "
			  "%u new address(es) refused (addresses already counted are not)",
			  lm->cap, lm->full_refused);
		lm->full_logged = now;
		lm->full_refused = 0;
	}
}

static void corrupt(struct admission *lm, const char *what)
{
	if (!lm->corrupt)
		lm->corrupt = what;
}

/* ---- listener names (private) ---- */

static int name_find(const struct admission *lm, const char *name)
{
	for (unsigned i = 0; i < lm->nnames; i++)
		if (lm->names[i].used && strncmp(lm->names[i].s, name, NAME_MAX_LEN - 1) == 0)
			return (int)i;
	return -1;
}

static void entries_forget(struct admission *lm, int key);

/* A key no generation uses (not registered since the reset, no live
 * session), its history dropped; -1 if none or the lock is busy. */
static int name_recycle(struct admission *lm)
{
	int key = -1;
	if (!trylock(lm))
		return -1;
	for (unsigned i = 0; i < lm->nnames && key < 0; i++)
		if (!lm->names[i].wanted && lm->sh->active[i] == 0)
			key = (int)i;
	if (key >= 0)
		entries_forget(lm, key);
	unlock(lm);
	return key;
}

int admission_listener(struct admission *lm, const char *name)
{
	int key = name_find(lm, name);
	if (key >= 0) {
		lm->names[key].wanted = true;
		return key;
	}
	key = lm->nnames < ADMISSION_LISTENERS_MAX ? (int)lm->nnames++ : name_recycle(lm);
	if (key < 0)
		return -1;
	struct name *n = &lm->names[key];
	struct strbuf b;
	sb_init(&b, n->s, NAME_MAX_LEN);
	sb_add(&b, name, strnlen(name, NAME_MAX_LEN - 1));
	n->used = n->wanted = true;
	return key;
}

void admission_listeners_reset(struct admission *lm)
{
	for (unsigned i = 0; i < lm->nnames; i++)
		lm->names[i].wanted = false;
}

/* ---- slots ---- */

static bool slot_ok(const struct admission *lm, int slot)
{
	return slot >= 0 && (unsigned)slot < lm->nslots;
}

static struct held *held_of(struct admission *lm, int slot)
{
	return lm->held + (size_t)slot * lm->per_slot;
}

static int32_t *free_of(struct admission *lm, int slot)
{
	return lm->free + (size_t)slot * lm->per_slot;
}

int admission_slot_take(struct admission *lm)
{
	/* A free slot is nobody's: set up without the lock. */
	for (unsigned i = 0; i < lm->nslots; i++)
		if (!lm->taken[i]) {
			int32_t *fr = free_of(lm, (int)i);
			memset(held_of(lm, (int)i), 0, lm->per_slot * sizeof(struct held));
			for (size_t h = 0; h < lm->per_slot; h++)
				fr[h] = (int32_t)(lm->per_slot - 1 - h);
			lm->slots[i].nfree = lm->per_slot;
			lm->taken[i] = 1;
			return (int)i;
		}
	return -1;
}

/* ---- the IP table ---- */

static size_t hash(int listener, const uint8_t ip[16])
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint16_t)listener;
	for (int i = 0; i < 16; i++)
		h = (h ^ ip[i]) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

static bool dead(const struct entry *e, uint32_t minute)
{
	return e->count == 0 && (!e->rated || e->win + 1 < minute);
}

static bool same(const struct entry *e, int listener, const uint8_t ip[16])
{
	return e->state == E_USED && e->listener == listener && memcmp(e->ip, ip, 16) == 0;
}

/* Empties slot i and moves up the entries after it that probed past it
 * (backward-shift deletion: no tombstones). */
static void erase(struct admission *lm, size_t i)
{
	struct entry *t = lm->entries;
	size_t mask = lm->cap - 1, j = i;
	memset(&t[i], 0, sizeof(t[i]));
	for (size_t n = 1; n < lm->cap; n++) {
		j = (j + 1) & mask;
		if (t[j].state == E_EMPTY)
			return;
		size_t home = hash(t[j].listener, t[j].ip) & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {	/* i lies on its probe path */
			t[i] = t[j];
			memset(&t[j], 0, sizeof(t[j]));
			i = j;
		}
	}
}

/* The entry of (listener, ip), or NULL. */
static struct entry *find(struct admission *lm, int listener, const uint8_t ip[16])
{
	struct entry *t = lm->entries;
	size_t mask = lm->cap - 1, i = hash(listener, ip) & mask;
	for (size_t n = 0; n < lm->cap && t[i].state != E_EMPTY; n++, i = (i + 1) & mask)
		if (same(&t[i], listener, ip))
			return &t[i];
	return NULL;
}

/* The entry of (listener, ip), made if needed (dead entries on the way
 * are removed); NULL when the table is full of live entries. */
static struct entry *find_or_add(struct admission *lm, int listener, const uint8_t ip[16], uint32_t minute)
{
	struct entry *t = lm->entries;
	size_t mask = lm->cap - 1, i = hash(listener, ip) & mask;
	for (size_t n = 0; n < 2 * lm->cap; n++) {
		if (t[i].state == E_EMPTY) {
			memcpy(t[i].ip, ip, 16);
			t[i].listener = (int16_t)listener;
			t[i].state = E_USED;
			t[i].win = minute;
			return &t[i];
		}
		if (same(&t[i], listener, ip))
			return &t[i];
		if (dead(&t[i], minute))
			erase(lm, i);	/* look at i again: the next entry may have moved in */
		else
			i = (i + 1) & mask;
	}
	return NULL;
}

/* Drops the entries of a key about to name another listener. */
static void entries_forget(struct admission *lm, int key)
{
	for (size_t i = 0; i < lm->cap; i++)
		if (lm->entries[i].state == E_USED && lm->entries[i].listener == key) {
			lm->entries[i].count = 0;
			lm->entries[i].rated = 0;	/* dead: removed when passed */
		}
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

static enum admission_verdict per_ip(const struct admission_rule *r, const struct entry *e, double now)
{
	if (e->count >= r->max_per_ip)
		return ADMISSION_MAX_PER_IP;
	if (r->rate_per_ip && rate(e, now) + 1.0 > (double)r->rate_per_ip)
		return ADMISSION_RATE_PER_IP;
	return ADMISSION_OK;
}

/* ---- admitting and giving back ---- */

/* The next free ticket of the slot, or -1 (none, or a corrupt stack). */
static int32_t ticket_peek(struct admission *lm, int slot)
{
	size_t nfree = lm->slots[slot].nfree;
	if (nfree == 0)
		return -1;
	int32_t h = nfree <= lm->per_slot ? free_of(lm, slot)[nfree - 1] : -1;
	if (h < 0 || (size_t)h >= lm->per_slot) {
		corrupt(lm, "free-ticket stack");
		return -1;
	}
	return h;
}

static enum admission_verdict admit_locked(struct admission *lm, int slot, int listener, const uint8_t ip[16],
					   const struct admission_rule *rule, double now, int *ticket)
{
	uint32_t minute = minute_of(now);
	int32_t h = ticket_peek(lm, slot);
	if (h < 0)
		return ADMISSION_FULL;
	if (lm->sh->active[listener] >= rule->max_connections)
		return ADMISSION_MAX_CONNECTIONS;	/* before any entry is made */
	struct entry *e = find_or_add(lm, listener, ip, minute);
	if (!e) {
		lm->full_refused++;
		return ADMISSION_FULL;
	}
	roll(e, minute);
	if (rule->rate_per_ip)
		e->rated = 1;
	enum admission_verdict v = per_ip(rule, e, now);
	if (v != ADMISSION_OK) {
		if (dead(e, minute))
			erase(lm, (size_t)(e - lm->entries));
		return v;
	}
	/* Recorded, then counted; a process dying in between leaves mu
	 * EOWNERDEAD, and the master recounts from the held lists. */
	struct held *hd = &held_of(lm, slot)[h];
	memcpy(hd->ip, ip, 16);
	hd->listener = (int16_t)listener;
	hd->used = 1;
	lm->slots[slot].nfree--;
	e->count++;
	e->cur++;
	lm->sh->active[listener]++;
	*ticket = h;
	return ADMISSION_OK;
}

/* The address counted: IPv4 (::ffff:a.b.c.d) as it is, IPv6 by its /64
 * (one subscriber or host has a whole /64: counting each address would
 * let it open max_per_ip sessions per address, and fill the table). */
static void client_key(const uint8_t ip[16], uint8_t key[16])
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	memcpy(key, ip, 16);
	if (memcmp(ip, v4mapped, sizeof(v4mapped)) != 0)
		memset(key + 8, 0, 8);
}

enum admission_verdict admission_admit(struct admission *lm, int slot, int listener, const uint8_t ip[16],
				 const struct admission_rule *rule, double now, int *ticket)
{
	uint8_t key[16];
	*ticket = -1;
	if (listener < 0 || listener >= ADMISSION_LISTENERS_MAX || !slot_ok(lm, slot))
		return ADMISSION_FULL;
	client_key(ip, key);
	lock(lm);
	enum admission_verdict v = admit_locked(lm, slot, listener, key, rule, now, ticket);
	unlock(lm);
	report(lm, now);
	return v;
}

/* Gives back one admission (under the lock). */
static void give_back(struct admission *lm, struct held *hd)
{
	int k = hd->listener;
	hd->used = 0;
	if (k < 0 || k >= ADMISSION_LISTENERS_MAX) {
		corrupt(lm, "listener index");
		return;
	}
	struct entry *e = find(lm, k, hd->ip);
	if (e && e->count)
		e->count--;
	if (e && e->count == 0 && !e->rated)	/* no history to keep: gone at once */
		erase(lm, (size_t)(e - lm->entries));
	if (lm->sh->active[k])
		lm->sh->active[k]--;
}

void admission_release(struct admission *lm, int slot, int ticket)
{
	if (!lm || !slot_ok(lm, slot) || ticket < 0 || (size_t)ticket >= lm->per_slot)
		return;
	double now = admission_now();
	struct held *hd = &held_of(lm, slot)[ticket];
	lock(lm);
	if (hd->used) {
		give_back(lm, hd);
		size_t nfree = lm->slots[slot].nfree;
		if (nfree < lm->per_slot) {
			free_of(lm, slot)[nfree] = ticket;
			lm->slots[slot].nfree = nfree + 1;
		} else {
			corrupt(lm, "free-ticket count");
		}
	}
	unlock(lm);
	report(lm, now);
}

/* ---- the master's upkeep (under the lock it try-locked) ---- */

/* Rebuilds the IP table without its dead entries once they fill more
 * than a quarter of it. */
static void compact(struct admission *lm, uint32_t minute)
{
	struct entry *t = lm->entries;
	size_t live = 0, filled = 0;
	for (size_t i = 0; i < lm->cap; i++) {
		filled += t[i].state != E_EMPTY;
		live += t[i].state == E_USED && !dead(&t[i], minute);
	}
	if (filled - live < lm->cap / 4)
		return;
	struct entry *keep = malloc((live ? live : 1) * sizeof(*keep));
	if (!keep)
		return;
	size_t n = 0;
	for (size_t i = 0; i < lm->cap && n < live; i++)
		if (t[i].state == E_USED && !dead(&t[i], minute))
			keep[n++] = t[i];
	memset(t, 0, lm->cap * sizeof(*t));
	size_t mask = lm->cap - 1;
	for (size_t k = 0; k < n; k++) {
		size_t i = hash(keep[k].listener, keep[k].ip) & mask, steps = 0;
		while (t[i].state != E_EMPTY && ++steps < lm->cap)
			i = (i + 1) & mask;
		if (t[i].state == E_EMPTY)
			t[i] = keep[k];
	}
	free(keep);
}

/* Counts again from every slot's held list, after a process died
 * holding the lock (it may have recorded without counting). */
static void recount(struct admission *lm, uint32_t minute)
{
	memset(lm->sh->active, 0, sizeof(lm->sh->active));
	for (size_t i = 0; i < lm->cap; i++)
		lm->entries[i].count = 0;
	for (unsigned s = 0; s < lm->nslots; s++)
		for (size_t h = 0; h < lm->per_slot; h++) {
			struct held *hd = &held_of(lm, (int)s)[h];
			if (!hd->used)
				continue;
			if (hd->listener < 0 || hd->listener >= ADMISSION_LISTENERS_MAX) {
				corrupt(lm, "listener index");
				hd->used = 0;
				continue;
			}
			struct entry *e = find_or_add(lm, hd->listener, hd->ip, minute);
			if (e)
				e->count++;
			lm->sh->active[hd->listener]++;
		}
	lm->sh->dirty = 0;
}

static void reap_locked(struct admission *lm, int slot)
{
	struct held *h = held_of(lm, slot);
	for (size_t i = 0; i < lm->per_slot; i++)
		if (h[i].used)
			give_back(lm, &h[i]);
	lm->slots[slot].nfree = 0;
	lm->taken[slot] = 0;
	lm->pending[slot] = 0;
}

/* Notes that a worker holds the lock; logs when it has for too long. */
static void busy(struct admission *lm, double now, unsigned waiting)
{
	if (lm->busy_since == 0)
		lm->busy_since = now;
	if (now - lm->busy_since < BUSY_WARN || (lm->busy_logged && now - lm->busy_logged < LOG_EVERY))
		return;
	lm->busy_logged = now;
	log_error("admission: a worker has held the shared lock for %.0f s (stopped, stuck or compromised); "
		  "%u exited worker slot(s) wait to be given back", now - lm->busy_since, waiting);
}

/* Gives back the slots waiting; false when the lock was busy. */
static bool run_pending(struct admission *lm, double now)
{
	unsigned waiting = 0;
	for (unsigned i = 0; i < lm->nslots; i++)
		waiting += lm->pending[i];
	if (!waiting && !lm->sh->dirty)
		return true;
	if (!trylock(lm)) {
		busy(lm, now, waiting);
		return false;
	}
	for (unsigned i = 0; i < lm->nslots; i++)
		if (lm->pending[i])
			reap_locked(lm, (int)i);
	if (lm->sh->dirty)
		recount(lm, minute_of(now));
	unlock(lm);
	lm->busy_since = 0;
	report(lm, now);
	return true;
}

void admission_reap(struct admission *lm, int slot)
{
	if (!slot_ok(lm, slot) || !lm->taken[slot])
		return;
	lm->pending[slot] = 1;
	run_pending(lm, admission_now());
}

void admission_maintain(struct admission *lm)
{
	double now = admission_now();
	if (!run_pending(lm, now) || now - lm->last_compact < COMPACT_EVERY)
		return;
	if (!trylock(lm)) {
		busy(lm, now, 0);
		return;
	}
	compact(lm, minute_of(now));
	unlock(lm);
	lm->busy_since = 0;
	lm->last_compact = now;
}

unsigned admission_active(struct admission *lm, int listener)
{
	if (listener < 0 || listener >= ADMISSION_LISTENERS_MAX)
		return 0;
	lock(lm);
	unsigned n = lm->sh->active[listener];
	unlock(lm);
	return n;
}
