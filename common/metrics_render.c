/* metrics_render: the region as Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): one
 * HELP and one TYPE line per family, then its samples. Label values are
 * escaped as the format asks (backslash, double quote and line feed as
 * \\, \" and \n) and kept valid UTF-8 (an invalid byte becomes U+FFFD:
 * Prometheus refuses a scrape with invalid UTF-8, and a name in the
 * configuration may hold any byte). Everything goes through the bounded
 * builder; metrics_render_alloc() grows the buffer up to a hard cap.
 * The region is read as untrusted: walked with the private capacity,
 * names copied with a bounded length. */
#include "metrics.h"
#include "metrics_int.h"
#include "log.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>

#define RENDER_FIRST_SIZE (16u << 10)

/* The length of the valid UTF-8 sequence at p (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t min, c;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2, min = 0x80, c = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3, min = 0x800, c = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4, min = 0x10000, c = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;	/* overlong, beyond Unicode, or a surrogate */
	return len;
}

/* A label value (label = true) or HELP text, escaped. */
static void put_escaped(struct strbuf *b, const char *s, bool label)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	while (n) {
		size_t len = utf8_len(p, n);
		if (!len) {
			sb_adds(b, "\xef\xbf\xbd");	/* U+FFFD */
			len = 1;
		} else if (*p == '\\') {
			sb_adds(b, "\\\\");
		} else if (*p == '\n') {
			sb_adds(b, "\\n");
		} else if (*p == '"' && label) {
			sb_adds(b, "\\\"");
		} else {
			sb_add(b, p, len);
		}
		p += len;
		n -= len;
	}
}

static void family(struct strbuf *b, const char *name, const char *type, const char *help)
{
	sb_adds(b, "# HELP ");
	sb_adds(b, name);
	sb_addc(b, ' ');
	put_escaped(b, help, false);
	sb_adds(b, "\n# TYPE ");
	sb_adds(b, name);
	sb_addc(b, ' ');
	sb_adds(b, type);
	sb_addc(b, '\n');
}

/* name{k1="v1",k2="v2"} with k2 optional (NULL), no labels when k1 is NULL. */
static void sample_name(struct strbuf *b, const char *name, const char *k1, const char *v1,
			const char *k2, const char *v2)
{
	sb_adds(b, name);
	if (!k1)
		return;
	sb_addc(b, '{');
	sb_adds(b, k1);
	sb_adds(b, "=\"");
	put_escaped(b, v1, true);
	sb_addc(b, '"');
	if (k2) {
		sb_addc(b, ',');
		sb_adds(b, k2);
		sb_adds(b, "=\"");
		put_escaped(b, v2, true);
		sb_addc(b, '"');
	}
	sb_addc(b, '}');
}

static void value_u(struct strbuf *b, uint64_t v)
{
	sb_addc(b, ' ');
	sb_addu(b, v);
	sb_addc(b, '\n');
}

static void value_i(struct strbuf *b, int64_t v)
{
	sb_addc(b, ' ');
	if (v < 0) {
		sb_addc(b, '-');
		sb_addu(b, (uint64_t)0 - (uint64_t)v);
	} else {
		sb_addu(b, (uint64_t)v);
	}
	sb_addc(b, '\n');
}

static uint64_t get(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* A series seen by the renderer: its name copied out of the region
 * (bounded, NUL-terminated: the region is any worker's to write). */
struct seen {
	char name[METRICS_LABEL_MAX];
	struct metrics_series *s;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct seen *)a)->name, ((const struct seen *)b)->name);
}

/* The READY series of family f sorted by name (the caller frees). The
 * table is walked with the private capacity, never the region's. */
static struct seen *collect(struct metrics_region *r, unsigned f, size_t *n)
{
	size_t cnt = 0;
	for (uint32_t i = 0; i < metrics_capacity; i++)
		cnt += atomic_load_explicit(&r->series[i].state, memory_order_acquire) == SLOT_READY;
	struct seen *v = xcalloc(cnt + 1, sizeof(*v));
	*n = 0;
	for (uint32_t i = 0; i < metrics_capacity && *n < cnt; i++) {
		struct metrics_series *s = &r->series[i];
		if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY || s->family != f)
			continue;
		memcpy(v[*n].name, s->name, METRICS_LABEL_MAX - 1);
		v[*n].name[METRICS_LABEL_MAX - 1] = '\0';
		v[(*n)++].s = s;
	}
	qsort(v, *n, sizeof(*v), by_name);
	return v;
}

/* A name family: for each name, values[t] summed over series with that
 * name (a name has two only after a claimer died mid-claim). */
static void name_family(struct strbuf *b, struct metrics_region *r, unsigned f, const char *metric,
			const char *key, const char *tkey, unsigned ntokens,
			const char *(*token)(unsigned))
{
	size_t n;
	struct seen *v = collect(r, f, &n);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		uint64_t sum[METRICS_TOKENS] = { 0 };
		for (; j < n && !strcmp(v[j].name, v[i].name); j++)
			for (unsigned t = 0; t < ntokens && t < METRICS_TOKENS; t++)
				sum[t] += get(&v[j].s->v[t]);
		for (unsigned t = 0; t < ntokens && t < METRICS_TOKENS; t++) {
			sample_name(b, metric, key, v[i].name, tkey, token(t));
			value_u(b, sum[t]);
		}
		i = j;
	}
	free(v);
}

static const char *result_token(unsigned t)
{
	return session_result_name((enum session_result)t);
}

static const char *hs_token(unsigned t)
{
	return t == HS_OK ? "ok" : "failed";
}

static void peer_family(struct strbuf *b, struct metrics_region *r, time_t now)
{
	size_t n;
	struct seen *v = collect(r, MF_PEER_EXPIRY, &n);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		int64_t least = METRICS_UNSET;
		for (; j < n && !strcmp(v[j].name, v[i].name); j++) {
			int64_t m = atomic_load_explicit(&v[j].s->min, memory_order_relaxed);
			least = m < least ? m : least;
		}
		if (least != METRICS_UNSET) {	/* no certificate seen yet: no sample */
			sample_name(b, "mailgate_peer_cert_expiry_seconds", "peer", v[i].name, NULL, NULL);
			value_i(b, (int64_t)((uint64_t)least - (uint64_t)now));	/* any value: no overflow */
		}
		i = j;
	}
	free(v);
}

static int cert_by_name(const void *a, const void *b)
{
	return strcmp(((const struct metrics_cert *)a)->name, ((const struct metrics_cert *)b)->name);
}

/* One sample per certificate name (the same file in two sections is one
 * certificate: the earliest notAfter is shown). */
static void cert_family(struct strbuf *b, const struct metrics_cert *certs, size_t n, time_t now)
{
	struct metrics_cert *v = xcalloc(n + 1, sizeof(*v));
	if (n)
		memcpy(v, certs, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cert_by_name);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		time_t least = v[i].not_after;
		for (; j < n && !strcmp(v[j].name, v[i].name); j++)
			least = v[j].not_after < least ? v[j].not_after : least;
		sample_name(b, "mailgate_cert_expiry_seconds", "cert", v[i].name, NULL, NULL);
		value_i(b, (int64_t)least - (int64_t)now);
		i = j;
	}
	free(v);
}

static void counter(struct strbuf *b, const char *name, const char *help, uint64_t v)
{
	family(b, name, "counter", help);
	sb_adds(b, name);
	value_u(b, v);
}

static void pair(struct strbuf *b, const char *name, const char *key, const char *k1, uint64_t v1,
		 const char *k2, uint64_t v2)
{
	sample_name(b, name, key, k1, NULL, NULL);
	value_u(b, v1);
	sample_name(b, name, key, k2, NULL, NULL);
	value_u(b, v2);
}

static void render_counters(struct strbuf *b, struct metrics_region *r)
{
	family(b, "mailgate_connections_total", "counter",
	       "Client connections by listener and how they ended (result= of the session log line).");
	name_family(b, r, MF_CONNECTIONS, "mailgate_connections_total", "listener", "result",
		    METRICS_TOKENS, result_token);
	family(b, "mailgate_tls_handshakes_total", "counter",
	       "TLS handshakes with clients by listener and result (ok or failed).");
	name_family(b, r, MF_HANDSHAKES, "mailgate_tls_handshakes_total", "listener", "result", 2,
		    hs_token);
	family(b, "mailgate_client_certs_total", "counter",
	       "Client certificates in TLS handshakes, by status (as logged in cert=; none: a handshake without one).");
	for (unsigned st = CERT_NONE; st < METRICS_CERT_STATUSES; st++) {
		sample_name(b, "mailgate_client_certs_total", "status",
			    tls_cert_status_name((enum cert_status)st), NULL, NULL);
		value_u(b, get(&r->client_certs[st]));
	}
	counter(b, "mailgate_relay_denied_total", "Recipients refused with 554 5.7.1 (relay access denied).",
		get(&r->relay_denied));
	family(b, "mailgate_auth_total", "counter", "Logins (SMTP AUTH, IMAP LOGIN and AUTHENTICATE) by result; failed counts the auth-failed log lines.");
	pair(b, "mailgate_auth_total", "result", "ok", get(&r->auth_ok), "failed", get(&r->auth_failed));
	counter(b, "mailgate_messages_total", "Messages the upstream accepted (2xx after the final dot).", get(&r->messages));
	family(b, "mailgate_bytes_total", "counter",
	       "Bytes read from clients (in) and written to them (out), counted when a session ends.");
	pair(b, "mailgate_bytes_total", "direction", "in", get(&r->bytes_in), "out", get(&r->bytes_out));
	counter(b, "mailgate_upstream_failures_total",
		"Upstream addresses that failed during set-up, and upstream connections lost or timed out.",
		get(&r->upstream_failures));
}

void metrics_render(struct strbuf *b, const struct metrics_cert *certs, size_t ncerts, time_t now)
{
	struct metrics_region *r = metrics_region;
	if (!r)
		return;
	render_counters(b, r);
	int64_t active = 0;
	for (unsigned i = 0; i < METRICS_SLOTS_MAX; i++)
		active += atomic_load_explicit(&r->slots[i].sessions, memory_order_relaxed);
	family(b, "mailgate_sessions_active", "gauge", "Client sessions open now, over all workers.");
	sb_adds(b, "mailgate_sessions_active");
	value_i(b, active);
	family(b, "mailgate_cert_expiry_seconds", "gauge",
	       "Seconds until notAfter of each certificate the gateway presents (negative once expired).");
	cert_family(b, certs, ncerts, now);
	family(b, "mailgate_peer_cert_expiry_seconds", "gauge",
	       "Seconds until the earliest notAfter among the client certificates each peer presented "
	       "since start (negative once expired).");
	peer_family(b, r, now);
	family(b, "mailgate_workers", "gauge", "Worker processes running.");
	sb_adds(b, "mailgate_workers");
	value_u(b, get(&r->workers));
	counter(b, "mailgate_metrics_overflow_total",
		"Counts that found no series slot (table full or name too long; logged once).",
		get(&r->overflow));
}

char *metrics_render_alloc(const struct metrics_cert *certs, size_t ncerts, time_t now, size_t *len)
{
	for (size_t cap = RENDER_FIRST_SIZE; cap <= METRICS_BODY_MAX; cap *= 2) {
		char *p = xmalloc(cap);
		struct strbuf b;
		sb_init(&b, p, cap);
		metrics_render(&b, certs, ncerts, now);
		if (sb_ok(&b)) {
			*len = sb_len(&b);
			return p;
		}
		free(p);
	}
	log_error("metrics: the exposition does not fit in %u bytes", METRICS_BODY_MAX);
	return NULL;
}
