/* admission: the connection counts shared by every worker of one master -
 * max_connections per listener, max_per_ip (concurrent) and rate_per_ip
 * (new sessions per IP per minute) - so that the limits hold across
 * workers and across a reload's old and new generation (DESIGN.md §3).
 *
 * One shared mapping (MAP_SHARED | MAP_ANONYMOUS) made by the master
 * before it forks: the live count per listener key, a hash table of
 * (listener, client IP) entries and, per process slot, the list of
 * admissions that process holds. Every change is made under one robust
 * process-shared mutex (a worker that dies holding it does not wedge the
 * others), so the counts are exact. When a worker dies, the master gives
 * back what its slot held (admission_reap): a crash costs no capacity.
 *
 * Every worker can write the mapping, so no process trusts it: the
 * layout (sizes, offsets, masks), the listener names and which slots are
 * taken live in each process's PRIVATE struct admission (set by
 * admission_new, inherited by fork); every index read from the mapping
 * is bounds-checked and a corrupt one is ignored (logged once). The
 * master never blocks on the mutex: it only try-locks, and what it could
 * not do (give back a dead worker's slot) admission_maintain retries.
 * Nothing is logged while the mutex is held.
 *
 * An entry lives while it has sessions, or while its listener counts
 * rate_per_ip and its last minute of history is still needed; any other
 * entry is removed at once. When the table is full of live entries, only
 * a NEW address is refused (logged at most once a minute); addresses
 * already in the table keep their limits.
 *
 * Listeners are known by name (a key per name, kept privately), so that
 * a reload which keeps a listener keeps its count; a reload's names
 * reuse the keys of names no generation uses any more. Time is CLOCK_MONOTONIC seconds, the same in every
 * process. The rate is a sliding minute estimated from two fixed
 * one-minute windows (the previous window's count weighted by the part
 * of it still inside the last 60 s), as nginx's and Postfix's anvil do
 * in spirit; it errs by at most one window's rounding. */
#ifndef MG_ADMISSION_H
#define MG_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Listener keys the region counts at once (names no longer used by any
 * generation are recycled); a configuration may have half of them, so
 * that a reload renaming every listener still fits. */
#define ADMISSION_LISTENERS_MAX 256
#define ADMISSION_CONF_LISTENERS_MAX (ADMISSION_LISTENERS_MAX / 2)
/* Process slots per configured worker: the running generation plus the
 * ones a reload leaves draining. */
#define ADMISSION_GENERATIONS 4
/* workers is at most this (conf.c), so slots are fewer than
 * ADMISSION_SLOTS_MAX - also the number of per-worker metrics gauges. */
#define ADMISSION_WORKERS_MAX 256
#define ADMISSION_SLOTS_MAX (ADMISSION_GENERATIONS * ADMISSION_WORKERS_MAX)
/* Entries kept beyond the live sessions for rate_per_ip history. */
#define ADMISSION_RATE_HEADROOM 16384

struct admission;

enum admission_verdict {
	ADMISSION_OK,
	ADMISSION_MAX_CONNECTIONS,
	ADMISSION_MAX_PER_IP,
	ADMISSION_RATE_PER_IP,
	ADMISSION_FULL,		/* the IP table (logged) or the slot is full */
};

struct admission_rule {
	unsigned max_connections;
	unsigned max_per_ip;
	unsigned rate_per_ip;	/* per minute; 0 = off */
};

/* The master, before forking: nslots (at most ADMISSION_SLOTS_MAX)
 * process slots, each holding up to
 * per_slot admissions; the IP table sized for sessions live sessions
 * plus the rate history. NULL (errno) when the mapping fails. */
struct admission *admission_new(unsigned nslots, size_t per_slot, size_t sessions);
/* Unmaps (the master at exit; a worker's copy goes with the process). */
void admission_free(struct admission **lm);

/* The key of a listener name (added if new, on a recycled key if need
 * be); -1 when every key is in use. The master calls it for every
 * listener before forking; workers then only look names up (in their
 * inherited copy). */
int admission_listener(struct admission *lm, const char *name);
/* The master, before a reload registers the running and the new
 * configuration's names: keys not registered again after this, and with
 * no live session, may be given to new names. */
void admission_listeners_reset(struct admission *lm);

/* The master: a free slot for a process it is about to fork (-1: none),
 * and the slot back once that process is gone (what it held is given
 * back first). A process uses only its own slot. admission_reap never
 * blocks: when a worker holds the lock, the slot stays taken until
 * admission_maintain manages it. */
int admission_slot_take(struct admission *lm);
void admission_reap(struct admission *lm, int slot);
/* The master, every second or so: gives back the slots admission_reap
 * could not (logs a lock held too long), recounts after a process died
 * holding the lock, and now and then drops rate history that ran out. */
void admission_maintain(struct admission *lm);

/* Admits one session (ip: 16 bytes, IPv4 as ::ffff:a.b.c.d; an IPv6
 * client is counted by its /64 for max_per_ip and rate_per_ip) or says
 * which limit refuses it. On ADMISSION_OK, *ticket is what to give back. */
enum admission_verdict admission_admit(struct admission *lm, int slot, int listener, const uint8_t ip[16],
				 const struct admission_rule *rule, double now, int *ticket);
void admission_release(struct admission *lm, int slot, int ticket);

/* Live sessions on a listener, across workers. */
unsigned admission_active(struct admission *lm, int listener);
/* Monotonic seconds, the clock admission_admit expects. */
double admission_now(void);

#endif
