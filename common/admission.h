/* admission: the connection counts shared by every worker of one master -
 * max_connections per listener, max_per_ip (concurrent) and rate_per_ip
 * (new sessions per IP per minute) - so that the limits hold across
 * workers and across a reload's old and new generation (DESIGN.md §3).
 *
 * One shared mapping (MAP_SHARED | MAP_ANONYMOUS) made by the master
 * before it forks: a table of listener names, a hash table of (listener,
 * client IP) entries and, per process slot, the list of admissions that
 * process holds. Every change is made under one robust process-shared
 * mutex (a worker that dies holding it does not wedge the others), so
 * the counts are exact. When a worker dies, the master gives back what
 * its slot held (admission_reap): a crash costs no capacity.
 *
 * Listeners are known by name, so that a reload which keeps a listener
 * keeps its count. Time is CLOCK_MONOTONIC seconds, the same in every
 * process. The rate is a sliding minute estimated from two fixed
 * one-minute windows (the previous window's count weighted by the part
 * of it still inside the last 60 s), as nginx's and Postfix's anvil do
 * in spirit; it errs by at most one window's rounding. */
#ifndef MG_ADMISSION_H
#define MG_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Listener names the region can tell apart (over a master's lifetime). */
#define ADMISSION_LISTENERS_MAX 64
/* Process slots per configured worker: the running generation plus the
 * ones a reload leaves draining. */
#define ADMISSION_GENERATIONS 4
/* Entries kept beyond the live sessions for rate_per_ip history. */
#define ADMISSION_RATE_HEADROOM 16384

struct admission;

enum admission_verdict {
	ADMISSION_OK,
	ADMISSION_MAX_CONNECTIONS,
	ADMISSION_MAX_PER_IP,
	ADMISSION_RATE_PER_IP,
	ADMISSION_FULL,		/* the region's tables are full (logged once) */
};

struct admission_rule {
	unsigned max_connections;
	unsigned max_per_ip;
	unsigned rate_per_ip;	/* per minute; 0 = off */
};

/* The master, before forking: nslots process slots, each holding up to
 * per_slot admissions; the IP table sized for sessions live sessions
 * plus the rate history. NULL (errno) when the mapping fails. */
struct admission *admission_new(unsigned nslots, size_t per_slot, size_t sessions);
/* Unmaps (the master at exit; a worker's copy goes with the process). */
void admission_free(struct admission **lm);

/* The key of a listener name (added if new); -1 when the table is full.
 * The master calls it for every listener before forking; workers then
 * only look names up. */
int admission_listener(struct admission *lm, const char *name);

/* The master: a free slot for a process it is about to fork (-1: none),
 * and the slot back once that process is gone (what it held is given
 * back first). A process uses only its own slot. */
int admission_slot_take(struct admission *lm);
void admission_reap(struct admission *lm, int slot);
/* The master, now and then: drops the rate history that has run out. */
void admission_maintain(struct admission *lm);

/* Admits one session (ip: 16 bytes, IPv4 as ::ffff:a.b.c.d) or says
 * which limit refuses it. On ADMISSION_OK, *ticket is what to give back. */
enum admission_verdict admission_admit(struct admission *lm, int slot, int listener, const uint8_t ip[16],
				 const struct admission_rule *rule, double now, int *ticket);
void admission_release(struct admission *lm, int slot, int ticket);

/* Live sessions on a listener, across workers. */
unsigned admission_active(struct admission *lm, int listener);
/* Monotonic seconds, the clock admission_admit expects. */
double admission_now(void);

#endif
