/* test_smtp_data: the end-of-data scanner. Every case runs whole, split
 * in two at every offset, and one byte at a time; all three must agree on
 * where the message ends, its unstuffed size, the error flags - and the
 * forwarded (clean) bytes must never hold a bare CR or LF. */
#include "cu_main.h"
#include "../fuzz/smtp_data_ref.h"
#include "smtp_data.h"

#include <stdio.h>
#include <string.h>
#include <sys/types.h>

struct outcome {
	size_t consumed;
	int done;
	int bare;
	int oversize;
	unsigned long long size;
	char fwd[4096];
	size_t fwdlen;
};

/* Feeds in in chunks given by cuts (sorted offsets, terminated by 0). */
static void run(const char *in, size_t len, uint64_t max, const size_t *cuts, struct outcome *o)
{
	struct smtp_data_scan s;
	size_t pos = 0;
	smtp_data_init(&s, max);
	memset(o, 0, sizeof(*o));
	for (size_t k = 0;; k++) {
		size_t end = (cuts && cuts[k] && cuts[k] < len) ? cuts[k] : len;
		while (pos < end && !s.done) {
			struct smtp_data_result r = smtp_data_feed(&s, in + pos, end - pos);
			CU_ASSERT(r.clean <= r.consumed);
			memcpy(o->fwd + o->fwdlen, in + pos, r.clean);
			o->fwdlen += r.clean;
			pos += r.consumed;
			o->consumed += r.consumed;
			if (r.consumed == 0)
				break;
		}
		if (end == len || s.done)
			break;
	}
	o->done = s.done;
	o->bare = s.bare;
	o->oversize = s.oversize;
	o->size = s.size;
}

static void no_bare_in(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n')
			CU_ASSERT(i > 0 && p[i - 1] == '\r');
		if (p[i] == '\r' && i + 1 < n)
			CU_ASSERT(p[i + 1] == '\n');
	}
}

struct dcase {
	const char *in;
	uint64_t max;
	size_t consumed;	/* (size_t)-1: whole input */
	int done, bare, oversize;
	unsigned long long size;
};

static const struct dcase cases[] = {
	{ ".\r\n", 0, 3, 1, 0, 0, 0 },
	{ "a\r\n.\r\n", 0, 6, 1, 0, 0, 3 },
	{ "a\r\n.\r\nMAIL FROM:<x>\r\n", 0, 6, 1, 0, 0, 3 },
	{ "..x\r\n.\r\n", 0, 8, 1, 0, 0, 4 },	/* ".x" CRLF after unstuffing */
	{ "Subject: t\r\n\r\nbody\r\n.\r\n", 0, (size_t)-1, 1, 0, 0, 20 },
	{ "a\r\n.x\r\n.\r\n", 0, (size_t)-1, 1, 0, 0, 6 },
	{ "a\r\n..\r\n.\r\n", 0, (size_t)-1, 1, 0, 0, 6 },
	/* Smuggling: none of these ends the message; all are bare. */
	{ "a\n.\r\nMAIL FROM:<x>\r\n.\r\n", 0, (size_t)-1, 1, 1, 0, 0 },
	{ "a\r\n.\nMAIL FROM:<x>\r\n.\r\n", 0, (size_t)-1, 1, 1, 0, 0 },
	{ "a\n.\nMAIL FROM:<x>\r\n.\r\n", 0, (size_t)-1, 1, 1, 0, 0 },
	{ "a\r.\r\nMAIL FROM:<x>\r\n.\r\n", 0, (size_t)-1, 1, 1, 0, 0 },
	{ "a\r\n.\r.\r\n", 0, (size_t)-1, 0, 1, 0, 0 },
	{ "a\r\r\n.\r\n", 0, (size_t)-1, 1, 1, 0, 0 },
	{ "no end yet\r\n", 0, (size_t)-1, 0, 0, 0, 12 },
	{ "no end\r\n.", 0, (size_t)-1, 0, 0, 0, 8 },
	{ "0123456789\r\n.\r\n", 5, (size_t)-1, 1, 0, 1, 0 },
	{ "0123\r\n.\r\n", 6, (size_t)-1, 1, 0, 0, 6 },
	{ "0123\r\n.\r\n", 5, (size_t)-1, 1, 0, 1, 0 },
};

static void check_case(const struct dcase *c, const struct outcome *o, const char *how)
{
	size_t len = strlen(c->in);
	size_t want = c->consumed == (size_t)-1 ? len : c->consumed;
	if (o->consumed != want || o->done != c->done || o->bare != c->bare ||
	    o->oversize != c->oversize)
		fprintf(stderr, "[%s] '%s': consumed %zu/%zu done %d bare %d over %d\n", how, c->in,
			o->consumed, want, o->done, o->bare, o->oversize);
	CU_ASSERT_EQUAL(o->consumed, want);
	CU_ASSERT_EQUAL(o->done, c->done);
	CU_ASSERT_EQUAL(o->bare, c->bare);
	CU_ASSERT_EQUAL(o->oversize, c->oversize);
	if (!c->bare && !c->oversize) {
		CU_ASSERT_EQUAL(o->size, c->size);
		CU_ASSERT_EQUAL(o->fwdlen, want);	/* everything forwarded */
	}
	if (c->bare || c->oversize) {
		/* The final dot is never forwarded after an error. */
		CU_ASSERT(o->fwdlen < want);
	}
	no_bare_in(o->fwd, o->fwdlen);
}

static void test_whole(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct outcome o;
		run(cases[i].in, strlen(cases[i].in), cases[i].max, NULL, &o);
		check_case(&cases[i], &o, "whole");
	}
}

static void test_split_everywhere(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].in);
		for (size_t cut = 1; cut < len; cut++) {
			size_t cuts[2] = { cut, 0 };
			struct outcome o;
			run(cases[i].in, len, cases[i].max, cuts, &o);
			check_case(&cases[i], &o, "split");
		}
	}
}

static void test_byte_at_a_time(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].in);
		size_t cuts[256];
		size_t n = 0;
		for (size_t k = 1; k < len && n < 255; k++)
			cuts[n++] = k;
		cuts[n] = 0;
		struct outcome o;
		run(cases[i].in, len, cases[i].max, cuts, &o);
		check_case(&cases[i], &o, "bytewise");
	}
}

/* The final "\r\n.\r\n" split across two reads at every offset of a
 * longer message (the classic bug). */
static void test_terminator_split(void)
{
	char msg[64];
	snprintf(msg, sizeof(msg), "Subject: x\r\n\r\nhello world\r\n.\r\n");
	size_t len = strlen(msg);
	for (size_t cut = len - 6; cut < len; cut++) {
		size_t cuts[2] = { cut, 0 };
		struct outcome o;
		run(msg, len, 0, cuts, &o);
		CU_ASSERT(o.done);
		CU_ASSERT_EQUAL(o.consumed, len);
		CU_ASSERT_EQUAL(o.fwdlen, len);
	}
}

/* ---- differential: the scanner against DESIGN.md §4.5 read literally ----
 * Not a state machine: the end is the first CRLF "." CRLF (or "." CRLF at
 * the start); a bare LF is an LF not after a CR, a bare CR a CR followed
 * by anything but LF; the size counts the bytes before the final dot
 * less every dot that starts a line. Inputs are drawn from the bytes that
 * matter (CR, LF, '.', NUL, bytes >= 0x80 - signed in SSE2 compares), in
 * long ordinary runs too (the 16-byte blocks), with terminator look-alikes
 * planted, a size limit near the message size, random chunkings. */

struct naive {
	size_t end;		/* offset of the final dot, or NOWHERE */
	size_t firstbad;	/* first byte not to forward, or NOWHERE */
	int bare, oversize;
	unsigned long long size;
};

#define NOWHERE ((size_t)-1)

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)rng;
}

static void over(struct naive *n, uint64_t max, size_t at)
{
	if (max && n->size > max && !n->oversize) {
		n->oversize = 1;
		if (n->firstbad > at)
			n->firstbad = at;
	}
}

static void naive_scan(const char *b, size_t len, uint64_t max, struct naive *n)
{
	memset(n, 0, sizeof(*n));
	n->end = n->firstbad = NOWHERE;
	if (len >= 3 && memcmp(b, ".\r\n", 3) == 0)
		n->end = 0;
	for (size_t j = 0; n->end == NOWHERE && j + 5 <= len; j++)
		if (memcmp(b + j, "\r\n.\r\n", 5) == 0)
			n->end = j + 2;
	size_t lim = n->end == NOWHERE ? len : n->end;
	for (size_t j = 0; j < lim; j++) {
		int bol = j == 0 || (j >= 2 && b[j - 2] == '\r' && b[j - 1] == '\n');
		if (b[j] == '\r') {
			if (j + 1 < len && b[j + 1] != '\n') {	/* bare, counted as a byte */
				n->bare = 1;
				if (n->firstbad > j)
					n->firstbad = j;
				n->size++;
				over(n, max, j + 1);
			}
		} else if (b[j] == '\n') {
			if (j == 0 || b[j - 1] != '\r') {
				n->bare = 1;
				if (n->firstbad > j)
					n->firstbad = j;
				n->size++;
			} else
				n->size += 2;	/* CRLF */
			over(n, max, j);
		} else if (!(b[j] == '.' && bol)) {	/* a leading dot is unstuffed */
			n->size++;
			over(n, max, j);
		}
	}
}

static void test_differential(void)
{
	static const char alpha[] = { '\r', '\n', '.', 'a', (char)0x80, (char)0xff, 0, (char)0x8d, (char)0x8a };
	static const char *plant[] = { "\r\n.\r\n", "\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r\n..\r\n", "\r\nx" };
	char buf[600], fwd[600];
	unsigned failures = 0;
	for (long it = 0; it < 200000 && failures < 5; it++) {
		size_t len = rnd() % (it % 3 ? 40 : 500) + 1;
		bool sparse = rnd() % 3;
		for (size_t j = 0; j < len; j++) {
			unsigned r = rnd() % 40;
			if (!sparse)
				buf[j] = alpha[rnd() % sizeof(alpha)];
			else
				buf[j] = r < 3 ? "\r\n."[r] : r < 6 ? "\r\n."[rnd() % 3] : "ab\x80\xff"[rnd() % 4];
		}
		if (rnd() % 2) {
			const char *pp = plant[rnd() % (sizeof(plant) / sizeof(plant[0]))];
			for (size_t k = 0, at = rnd() % len; pp[k] && at + k < len; k++)
				buf[at + k] = pp[k];
		}
		uint64_t max = rnd() % 4 ? rnd() % (len + 4) : 0;
		struct naive n;
		naive_scan(buf, len, max, &n);

		struct smtp_data_scan s;
		smtp_data_init(&s, max);
		size_t pos = 0, fl = 0;
		bool stopped = false;
		while (pos < len && !s.done) {
			size_t k = rnd() % (rnd() % 2 ? 4 : 40) + 1;
			if (k > len - pos)
				k = len - pos;
			struct smtp_data_result r = smtp_data_feed(&s, buf + pos, k);
			CU_ASSERT_FATAL(r.clean <= r.consumed && r.consumed <= k);
			CU_ASSERT_FATAL(r.consumed == k || s.done);
			if (!stopped) {
				memcpy(fwd + fl, buf + pos, r.clean);
				fl += r.clean;
			}
			stopped = stopped || r.clean < r.consumed;
			pos += r.consumed;
		}
		bool ok = s.done == (n.end != NOWHERE) && s.bare == (bool)n.bare;
		if (s.done) {
			/* The bad byte's position, or one past it: a CR that ended a
			 * chunk was forwarded before it turned out bare (harmless,
			 * the upstream is closed without a final dot). */
			size_t want = n.firstbad == NOWHERE ? n.end + 3 : n.firstbad;
			ok = ok && pos == n.end + 3 &&
			     (fl == want || (n.firstbad != NOWHERE && fl == want + 1 && buf[want] == '\r'));
			if (!n.bare)
				ok = ok && s.size == n.size && s.oversize == (bool)n.oversize;
		}
		if (!ok) {
			failures++;
			fprintf(stderr, "differential: len=%zu max=%llu end=%zd done=%d bare=%d/%d size=%llu/%llu "
				"over=%d/%d fwd=%zu bad=%zd\n", len, (unsigned long long)max, (ssize_t)n.end, s.done,
				s.bare, n.bare, (unsigned long long)s.size, n.size, s.oversize, n.oversize, fl,
				(ssize_t)n.firstbad);
		}
	}
	CU_ASSERT_EQUAL(failures, 0);
}

/* The scanner against the byte-by-byte reference (tests/fuzz/
 * smtp_data_ref.c): random bodies of long ordinary lines (so the 64-byte
 * block path runs) with CR, LF, '.' and CRLF sprinkled in, fed in two
 * chunks split at every offset; every chunk's consumed/clean and the
 * state after it must be the same. */
static void test_reference_every_split(void)
{
	static const char alpha[] = "\r\n.\r\n\r\nab";
	char buf[700];
	unsigned seed = 12345, failures = 0;
	for (int round = 0; round < 1200; round++) {
		size_t len = 64 + (seed = seed * 1103515245u + 12345u) % 600;
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = (seed >> 16) % 1000;
			/* mostly letters; CRLF often; rarely a lone CR, LF or '.'
			 * (from round % 4: none at all in every fourth body) */
			if (r < 30 && i + 2 < len) {
				/* CRLF, then now and then a line starting with '.',
				 * CR or LF */
				static const char after[] = ".\r\n";
				buf[i++] = '\r';
				buf[i++] = '\n';
				buf[i] = r % 4 == 0 ? after[(seed >> 10) % 3] : 'x';
			} else
				buf[i] = r < 30 + (unsigned)(round % 4) ? alpha[(seed >> 8) % (sizeof(alpha) - 1)] : 'a' + (char)(r % 26);
		}
		/* a size limit anywhere in the body, in two rounds of three */
		uint64_t max = round % 3 ? 1 + (seed >> 4) % len : 0;
		for (size_t k = 0; k <= len; k++) {
			struct smtp_data_scan a, b;
			smtp_data_init(&a, max);
			smtp_data_init(&b, max);
			size_t pos = 0;
			for (int part = 0; part < 2 && pos < len && !a.done; part++) {
				size_t n = part == 0 ? (k > pos ? k - pos : 0) : len - pos;
				struct smtp_data_result x = smtp_data_feed(&a, buf + pos, n);
				struct smtp_data_result y = smtp_data_ref_feed(&b, buf + pos, n);
				if (x.consumed != y.consumed || x.clean != y.clean || a.st != b.st || a.size != b.size ||
				    a.bare != b.bare || a.oversize != b.oversize || a.done != b.done) {
					failures++;
					break;
				}
				pos += x.consumed;
			}
		}
	}
	CU_ASSERT_EQUAL(failures, 0);
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("smtp_data", NULL, NULL);
	CU_ADD(s, test_whole);
	CU_ADD(s, test_split_everywhere);
	CU_ADD(s, test_byte_at_a_time);
	CU_ADD(s, test_terminator_split);
	CU_ADD(s, test_differential);
	CU_ADD(s, test_reference_every_split);
}

CU_MAIN
