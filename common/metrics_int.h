/* metrics_int: the layout of the shared region, for the two files of the
 * metrics module (metrics.c writes it, metrics_render.c reads it). Not
 * for anyone else: everything outside goes through metrics.h. */
#ifndef MG_METRICS_INT_H
#define MG_METRICS_INT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "metrics.h"

/* Shared between processes, lock-free atomics only (an address-free
 * lock-free atomic works across processes on a MAP_SHARED mapping; a
 * lock-based emulation would not). */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

#define METRICS_MAGIC 0x4d47544du

/* Families whose series carry a name label (the series table). */
enum metrics_family { MF_CONNECTIONS, MF_HANDSHAKES, MF_PEER_EXPIRY, MF_COUNT };

/* Values per name series: connections by result token (result.h),
 * handshakes ok/failed. */
#define METRICS_TOKENS ((unsigned)RESULT_UNCHANGED)
enum { HS_OK, HS_FAILED };
/* Client certificate statuses counted (CERT_NONE .. CERT_INVALID, the
 * last of enum cert_status; CERT_NONE stays 0). */
#define METRICS_CERT_STATUSES ((unsigned)CERT_INVALID + 1)
/* A peer's least notAfter before any certificate was seen. */
#define METRICS_UNSET INT64_MAX

/* A slot's life: FREE -> BUSY (one claimer writes the key) -> READY
 * (the key never changes again; slots are never freed). */
enum { SLOT_FREE, SLOT_BUSY, SLOT_READY };

struct metrics_series {
	_Atomic uint32_t state;
	uint32_t family;		/* enum metrics_family */
	_Atomic uint64_t v[METRICS_TOKENS];
	_Atomic int64_t min;		/* MF_PEER_EXPIRY: least notAfter */
	char name[METRICS_LABEL_MAX];
};

/* A per-process gauge on its own cache line (no false sharing between
 * workers). */
struct metrics_slot {
	alignas(64) _Atomic int64_t sessions;
};

struct metrics_region {
	uint32_t magic;
	/* Copies for debuggers, never read: see metrics_capacity. */
	uint32_t capacity;
	uint32_t limit;
	_Atomic uint32_t claimed;
	_Atomic uint32_t overflow_logged;
	_Atomic uint64_t overflow;
	_Atomic uint64_t client_certs[METRICS_CERT_STATUSES];
	_Atomic uint64_t relay_denied, messages, upstream_failures;
	_Atomic uint64_t auth_ok, auth_failed;
	_Atomic uint64_t bytes_in, bytes_out;
	_Atomic uint64_t workers;
	struct metrics_slot slots[METRICS_SLOTS_MAX];
	struct metrics_series series[];	/* capacity of them */
};

/* The region of this process (NULL: metrics off). */
extern struct metrics_region *metrics_region;
/* Private (never read from the region, which workers can write): series
 * slots, a power of two, and how many may be claimed (half of them). */
extern uint32_t metrics_capacity, metrics_limit;

#endif
