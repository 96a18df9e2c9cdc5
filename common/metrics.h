/* metrics: the counters and gauges of DESIGN.md §7 ("Metrics"), shared by
 * every process of a daemon, and their Prometheus text rendering.
 *
 * Storage: ONE shared memory region (mmap MAP_SHARED|MAP_ANONYMOUS),
 * created by metrics_init() in the process that will later be the
 * master, before any fork, so that every worker inherits it. Workers
 * write with relaxed C11 atomics - no lock anywhere on the hot path - and
 * the reader (the endpoint, later in the master) sums. Counters live in
 * the master's mapping: they are cumulative and survive worker restarts
 * and reloads. Gauges that belong to a live process (sessions_active)
 * are kept per worker slot, so the master can zero a dead worker's slot.
 *
 * Labels are bounded: listener, peer and certificate names come from the
 * configuration; result and status tokens from result.h and tls.h; auth
 * results are ok/failed and directions in/out. Series labelled by a name
 * (connections and handshakes per listener, certificate expiry per peer)
 * sit in a fixed-capacity table keyed by (family, name), sized from the
 * configuration plus METRICS_SERIES_MARGIN; a new name claims a slot
 * lock-free (CAS on the slot's state). When the table is full, or a name
 * is longer than METRICS_LABEL_MAX - 1 bytes, the count goes to
 * mailgate_metrics_overflow_total instead (logged once), never silently
 * nowhere.
 *
 * Every worker can write the region, so no process trusts it: the table's
 * capacity and limit are kept in private memory (set by metrics_init,
 * inherited by fork), and a name read from the region is copied with a
 * bounded length before use.
 *
 * With metrics = "" nothing is mapped and every call below is a no-op.
 * Protocol code calls these functions only; it never sees the region. */
#ifndef MG_METRICS_H
#define MG_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "admission.h"
#include "conf.h"
#include "result.h"
#include "strbuf.h"
#include "tls.h"

/* Worker slots: one gauge per admission slot (the master numbers its
 * workers by admission slot), so two live workers never share one. */
#define METRICS_SLOTS_MAX ADMISSION_SLOTS_MAX
/* Longest name label kept (NUL included). */
#define METRICS_LABEL_MAX 256
/* Series slots beyond what the configuration needs (names added by a
 * reload). */
#define METRICS_SERIES_MARGIN 64
/* Hard cap on one rendered exposition (the body of a scrape). */
#define METRICS_BODY_MAX (4u << 20)

/* Maps and fills the region for c (no-op returning 0 when c->metrics is
 * ""). Returns -1 if the region cannot be mapped (logged). Call once,
 * before forking workers. */
int metrics_init(const struct conf *c);
/* Claims the series of c's listeners and peers (idempotent): metrics_init
 * does it; a reload calls it with the new configuration so that new names
 * show up at zero. */
void metrics_register(const struct conf *c);
/* Unmaps the region (tests; the end of the process). */
void metrics_fini(void);
bool metrics_enabled(void);

/* This process's worker slot (0 in a single process; taken modulo
 * METRICS_SLOTS_MAX, which admission slots never reach). */
void metrics_set_slot(unsigned slot);
/* The master, after worker `slot` died: its live-process gauges go to 0. */
void metrics_slot_reset(unsigned slot);
/* mailgate_workers (set by the master). */
void metrics_set_workers(unsigned n);

/* ---- the hot path (any process; relaxed atomics) ---- */

/* A client session was admitted / has ended (sessions_active). */
void metrics_session_open(void);
void metrics_session_close(void);
/* A client connection ended with result r on listener (connections_total). */
void metrics_connection(const char *listener, enum session_result r);
/* A TLS handshake with a client ended (tls_handshakes_total). */
void metrics_handshake(const char *listener, bool ok);
/* A client presented a certificate; st is the status reported
 * (client_certs_total). CERT_NONE is not counted. */
void metrics_client_cert(enum cert_status st);
/* A client certificate matched peer: the least notAfter is kept
 * (peer_cert_expiry_seconds). */
void metrics_peer_cert(const char *peer, time_t not_after);
void metrics_relay_denied(void);
void metrics_auth(bool ok);
void metrics_message(void);		/* accepted by the upstream */
void metrics_upstream_failure(void);
/* Bytes read from and written to one client connection. */
void metrics_bytes(uint64_t in, uint64_t out);

/* ---- rendering (the endpoint) ---- */

/* A certificate the gateway presents: its name (the file as configured)
 * and notAfter, for mailgate_cert_expiry_seconds. */
struct metrics_cert {
	const char *name;
	time_t not_after;
};

/* The Prometheus text exposition (format 0.0.4) of the region's current
 * state, with the given certificates, at time now, into b (check
 * sb_ok()). Families in DESIGN.md §7 order, each with HELP and TYPE;
 * series sorted by label. */
void metrics_render(struct strbuf *b, const struct metrics_cert *certs, size_t ncerts, time_t now);
/* The same into a heap buffer that grows up to METRICS_BODY_MAX (*len
 * set); NULL if it would not fit (logged). The caller frees. */
char *metrics_render_alloc(const struct metrics_cert *certs, size_t ncerts, time_t now, size_t *len);

/* How many name series the table holds at most (tests). */
size_t metrics_series_limit(void);

#endif
