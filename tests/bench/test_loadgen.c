/* test_loadgen: the pure parts of the benchmark's load generator - the
 * latency histogram and its percentiles, the generated message (exact
 * size, CRLF lines, nothing to dot-stuff) and the SMTP / IMAP reply line
 * classifiers. */
#include "../unit/cu_main.h"
#include "lg_util.h"

#include <stdlib.h>
#include <string.h>

static void test_hist_exact_small(void)
{
	struct lg_hist h;
	lg_hist_init(&h);
	for (uint64_t v = 1; v <= 100; v++)
		lg_hist_add(&h, v);
	CU_ASSERT_EQUAL(h.n, 100);
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 50), 50);
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 90), 90);
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 99), 99);
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 99.5), 100);
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 100), 100);
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 1), 1);
	CU_ASSERT_DOUBLE_EQUAL(lg_hist_mean(&h), 50.5, 1e-9);
}

static void test_hist_empty_and_single(void)
{
	struct lg_hist h;
	lg_hist_init(&h);
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 50), 0);
	lg_hist_add(&h, 44000000);	/* 44 ms */
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 50), 44000000);	/* clamped to min/max */
	CU_ASSERT_EQUAL(lg_hist_percentile(&h, 99), 44000000);
}

static void test_hist_relative_error(void)
{
	/* every bucket holds only values within 1/128 of its lower bound */
	for (uint64_t v = 1; v < (UINT64_C(1) << 39); v = v * 3 + 7) {
		unsigned i = lg_hist_index(v);
		CU_ASSERT(i < LG_HIST_BUCKETS);
		uint64_t lo = lg_hist_lower(i);
		CU_ASSERT(lo <= v);
		CU_ASSERT((double)(v - lo) <= (double)lo / 128.0 + 1.0);
		if (i + 1 < LG_HIST_BUCKETS)
			CU_ASSERT(lg_hist_lower(i + 1) > v);
	}
	CU_ASSERT_EQUAL(lg_hist_index(UINT64_MAX), LG_HIST_BUCKETS - 1);	/* capped */
}

static void test_hist_percentiles_large(void)
{
	/* 1..10000 us: p50 = 5 ms, p90 = 9 ms, p99 = 9.9 ms within 1 % */
	struct lg_hist a, b;
	lg_hist_init(&a);
	lg_hist_init(&b);
	for (uint64_t us = 1; us <= 10000; us++)
		lg_hist_add(us % 2 ? &a : &b, us * 1000);
	lg_hist_merge(&a, &b);
	CU_ASSERT_EQUAL(a.n, 10000);
	double want[][2] = { { 50, 5e6 }, { 90, 9e6 }, { 99, 9.9e6 } };
	for (int i = 0; i < 3; i++) {
		double got = (double)lg_hist_percentile(&a, want[i][0]);
		CU_ASSERT(got > want[i][1] * 0.99 && got < want[i][1] * 1.01);
	}
	CU_ASSERT_EQUAL(lg_hist_percentile(&a, 100), 10000000);
	CU_ASSERT_EQUAL(a.min, 1000);
}

static void test_hist_bimodal(void)
{
	/* 89 fast replies and 11 held 40 ms by Nagle: p50 fast, p90 slow */
	struct lg_hist h;
	lg_hist_init(&h);
	for (int i = 0; i < 89; i++)
		lg_hist_add(&h, 100000);
	for (int i = 0; i < 11; i++)
		lg_hist_add(&h, 40000000);
	CU_ASSERT(lg_hist_percentile(&h, 50) < 101000);
	CU_ASSERT(lg_hist_percentile(&h, 89) < 101000);
	CU_ASSERT(lg_hist_percentile(&h, 90) > 39000000);
}

static void test_message_sizes(void)
{
	static const size_t sizes[] = { 0, 1, 255, 256, 257, 300, 333, 334, 335, 1000, 4096, 65535,
					1048576, 1048577, 10485760 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = 0;
		char *m = lg_message(sizes[i], &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_EQUAL(len, sizes[i] < LG_MSG_MIN ? LG_MSG_MIN : sizes[i]);
		CU_ASSERT_EQUAL(lg_message_check(m, len), 0);
		CU_ASSERT(memmem(m, len, "\r\n\r\n", 4) != NULL);	/* headers, then body */
		free(m);
	}
	/* every remainder of the last lines works out */
	for (size_t sz = 256; sz < 256 + 400; sz++) {
		size_t len = 0;
		char *m = lg_message(sz, &len);
		CU_ASSERT_EQUAL(len, sz);
		CU_ASSERT_EQUAL(lg_message_check(m, len), 0);
		free(m);
	}
}

static void test_message_check(void)
{
	CU_ASSERT_EQUAL(lg_message_check("a\r\nb\r\n", 6), 0);
	CU_ASSERT_EQUAL(lg_message_check("a\r\n.b\r\n", 7), 2);	/* would need stuffing */
	CU_ASSERT_EQUAL(lg_message_check("a\nb\r\n", 5), 1);		/* bare LF */
	CU_ASSERT_EQUAL(lg_message_check("a\rb\r\n", 5), 1);		/* bare CR */
	CU_ASSERT_EQUAL(lg_message_check("a\r\nb", 4), 1);		/* no final CRLF */
}

static void test_smtp_line(void)
{
	int last = -1;
	CU_ASSERT_EQUAL(lg_smtp_line("220 mx ESMTP", 12, &last), 220);
	CU_ASSERT_EQUAL(last, 1);
	CU_ASSERT_EQUAL(lg_smtp_line("250-PIPELINING", 14, &last), 250);
	CU_ASSERT_EQUAL(last, 0);
	CU_ASSERT_EQUAL(lg_smtp_line("354", 3, &last), 354);
	CU_ASSERT_EQUAL(last, 1);
	CU_ASSERT_EQUAL(lg_smtp_line("25", 2, &last), -1);
	CU_ASSERT_EQUAL(lg_smtp_line("2x0 no", 6, &last), -1);
	CU_ASSERT_EQUAL(lg_smtp_line("250_x", 5, &last), -1);
	CU_ASSERT_EQUAL(lg_smtp_line("150 x", 5, &last), -1);
	CU_ASSERT_EQUAL(lg_smtp_line("* OK", 4, &last), -1);
}

static void test_imap_literal(void)
{
	CU_ASSERT_EQUAL(lg_imap_literal("* 1 FETCH (BODY[] {10485760}", 28), 10485760);
	CU_ASSERT_EQUAL(lg_imap_literal("{0}", 3), 0);
	CU_ASSERT_EQUAL(lg_imap_literal("a APPEND x {12+}", 16), 12);
	CU_ASSERT_EQUAL(lg_imap_literal("* OK done", 9), -1);
	CU_ASSERT_EQUAL(lg_imap_literal("{}", 2), -1);
	CU_ASSERT_EQUAL(lg_imap_literal("x 12}", 5), -1);
	CU_ASSERT_EQUAL(lg_imap_literal("{99999999999999}", 16), -1);	/* too large */
}

static void test_imap_tagged(void)
{
	const char *l = "F OK Fetch completed.";
	CU_ASSERT_EQUAL(lg_imap_tagged(l, strlen(l), "F"), 'O');
	CU_ASSERT_EQUAL(lg_imap_tagged("L NO [AUTHENTICATIONFAILED] x", 29, "L"), 'N');
	CU_ASSERT_EQUAL(lg_imap_tagged("X BAD what", 10, "X"), 'B');
	CU_ASSERT_EQUAL(lg_imap_tagged("Z ok", 4, "Z"), 'O');
	CU_ASSERT_EQUAL(lg_imap_tagged("* OK greeting", 13, "F"), 0);
	CU_ASSERT_EQUAL(lg_imap_tagged("FF OK", 5, "F"), 0);
	CU_ASSERT_EQUAL(lg_imap_tagged("F OKAY", 6, "F"), 0);
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("loadgen", NULL, NULL);
	CU_ADD(s, test_hist_exact_small);
	CU_ADD(s, test_hist_empty_and_single);
	CU_ADD(s, test_hist_relative_error);
	CU_ADD(s, test_hist_percentiles_large);
	CU_ADD(s, test_hist_bimodal);
	CU_ADD(s, test_message_sizes);
	CU_ADD(s, test_message_check);
	CU_ADD(s, test_smtp_line);
	CU_ADD(s, test_imap_literal);
	CU_ADD(s, test_imap_tagged);
}

CU_MAIN
