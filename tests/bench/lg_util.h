/* lg_util: the pure parts of loadgen (tests/bench/loadgen.c), kept apart
 * so tests/bench/test_loadgen.c can check them: a fixed-size latency
 * histogram with percentiles, the generated test message, and the reply
 * line classifiers for SMTP and IMAP. No I/O, no allocation but the
 * message buffer. */
#ifndef MG_LG_UTIL_H
#define MG_LG_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Log-linear histogram of nanosecond values: exact below 256 ns, then 128
 * sub-buckets per power of two (relative error < 0.8 %), values capped at
 * 2^40 ns (18 min). Fixed size (no allocation), mergeable by addition. */
#define LG_HIST_SUB_BITS 8
#define LG_HIST_MAX_BITS 40
#define LG_HIST_BUCKETS ((1u << LG_HIST_SUB_BITS) + \
			 (LG_HIST_MAX_BITS - LG_HIST_SUB_BITS) * (1u << (LG_HIST_SUB_BITS - 1)))

struct lg_hist {
	uint64_t n, min, max;
	long double sum;
	uint64_t count[LG_HIST_BUCKETS];
};

void lg_hist_init(struct lg_hist *h);
void lg_hist_add(struct lg_hist *h, uint64_t ns);
void lg_hist_merge(struct lg_hist *into, const struct lg_hist *from);
/* The value at percentile p (0 < p <= 100; "nearest rank"): the midpoint of
 * the bucket holding that rank, clamped to [min, max]; p = 100 gives max
 * exactly. 0 for an empty histogram. */
uint64_t lg_hist_percentile(const struct lg_hist *h, double p);
double lg_hist_mean(const struct lg_hist *h);
/* Bucket index and its lower bound (exposed for the unit test). */
unsigned lg_hist_index(uint64_t ns);
uint64_t lg_hist_lower(unsigned idx);

/* The test message: exactly `size` bytes (at least LG_MSG_MIN: smaller
 * requests get LG_MSG_MIN), headers then body, CRLF lines of at most 78
 * characters, no line starting with '.' (so it needs no dot-stuffing) and
 * no bare CR or LF; ends with CRLF. The SMTP end-of-data ".\r\n" is NOT
 * included. Returns a malloc'd buffer (NULL when out of memory) and the
 * length in *len. */
#define LG_MSG_MIN 256
char *lg_message(size_t size, size_t *len);
/* 0 when buf holds a message that is safe to send as DATA unchanged (the
 * rules above, except the minimum size); otherwise the 1-based line number
 * of the first offending line. */
size_t lg_message_check(const char *buf, size_t len);

/* SMTP: one reply line (without CRLF). Returns the 3-digit code and sets
 * *last to 1 on the final line ("250 ..." or "250") and 0 on a
 * continuation ("250-..."); -1 when the line is not a reply line. */
int lg_smtp_line(const char *line, size_t len, int *last);

/* IMAP: the size of the literal announced at the end of a line ("{123}"
 * or the non-synchronising "{123+}"), or -1 when there is none (or it is
 * malformed or over 2^40). */
long long lg_imap_literal(const char *line, size_t len);

/* IMAP: the status of a tagged response line "TAG OK ...": 'O' (OK), 'N'
 * (NO), 'B' (BAD), or 0 when the line is not tagged with `tag`. */
int lg_imap_tagged(const char *line, size_t len, const char *tag);

#endif
