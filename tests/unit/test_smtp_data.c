/* test_smtp_data: the end-of-data scanner. Every case runs whole, split
 * in two at every offset, and one byte at a time; all three must agree on
 * where the message ends, its unstuffed size, the error flags - and the
 * forwarded (clean) bytes must never hold a bare CR or LF. */
#include "cu_main.h"
#include "smtp_data.h"

#include <stdio.h>
#include <string.h>

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

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("smtp_data", NULL, NULL);
	CU_ADD(s, test_whole);
	CU_ADD(s, test_split_everywhere);
	CU_ADD(s, test_byte_at_a_time);
	CU_ADD(s, test_terminator_split);
}

CU_MAIN
