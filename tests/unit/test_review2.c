/* test_review2: reproducers from the hostile review of the process model,
 * the shared admission counts and the shared metrics (7a624b6..1092741).
 * Each test fails on the reviewed code; each comment says what should
 * happen instead.
 *
 *   test_transient_addresses_lock_everyone_out: every connection from a
 *   new client address takes an entry of the one shared IP table for up
 *   to two minutes - even one that was refused by max_connections, and
 *   even with rate_per_ip = 0, where that history is never used. An
 *   attacker with many addresses (any IPv6 /64) fills the table within a
 *   minute, after which every listener refuses every client (reason
 *   table-full) although no session is open.
 *
 *   test_metrics_slot_alias: the master numbers workers by their
 *   admission slot, of which there are ADMISSION_GENERATIONS (4) per
 *   worker - up to 1024 with workers = 256 - but the metrics region
 *   has METRICS_SLOTS_MAX (512) gauges, taken modulo. When a draining
 *   worker in slot k dies, the master zeroes gauge k % 512, which is
 *   also the live worker in slot k + 512's: mailgate_sessions_active
 *   loses its sessions (and goes negative when they end). */
#include "admission.h"
#include "cu_main.h"
#include "metrics.h"

#include <string.h>

static void ip6(uint8_t out[16], unsigned n)
{
	/* 2001:db8:0:0::n - one attacker's /64 */
	memset(out, 0, 16);
	out[0] = 0x20;
	out[1] = 0x01;
	out[2] = 0x0d;
	out[3] = 0xb8;
	out[12] = (uint8_t)(n >> 24);
	out[13] = (uint8_t)(n >> 16);
	out[14] = (uint8_t)(n >> 8);
	out[15] = (uint8_t)n;
}

static void test_transient_addresses_lock_everyone_out(void)
{
	/* As the master makes it for one worker and one listener with
	 * max_connections = 1000 (the IP table: 32768 entries). */
	struct admission *a = admission_new(4, 1000, 1000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	int s = admission_slot_take(a), l = admission_listener(a, "mx"), t;
	struct admission_rule r = { 1000, 50, 0 };	/* rate_per_ip off */
	double t0 = admission_now(), now = t0;	/* the clock the master's maintenance uses */
	unsigned refused_by_table = 0;
	/* 40000 short connections from distinct addresses within one
	 * minute (about 670 per second), each closed at once: never more
	 * than one session open. */
	for (unsigned i = 1; i <= 40000; i++) {
		uint8_t ip[16];
		ip6(ip, i);
		now = t0 + (double)i * 50.0 / 40000.0;
		enum admission_verdict v = admission_admit(a, s, l, ip, &r, now, &t);
		if (v == ADMISSION_OK)
			admission_release(a, s, t);
		else if (v == ADMISSION_FULL)
			refused_by_table++;
		if (i % 10000 == 0)
			admission_maintain(a);	/* the master's 30 s timer */
	}
	/* An innocent client, a few seconds later: nothing is open. */
	uint8_t innocent[16];
	memset(innocent, 0, 16);
	innocent[10] = innocent[11] = 0xff;
	innocent[12] = 198;
	innocent[13] = 51;
	innocent[14] = 100;
	innocent[15] = 7;
	CU_ASSERT_EQUAL(admission_active(a, l), 0);
	CU_ASSERT_EQUAL(admission_admit(a, s, l, innocent, &r, now + 5.0, &t), ADMISSION_OK);
	CU_ASSERT_EQUAL(refused_by_table, 0);
	admission_free(&a);
}

static void test_max_connections_refusals_take_entries(void)
{
	/* A listener's max_connections reached: every further client is
	 * refused - and still takes a table entry; once the session ends,
	 * the listener refuses everyone as table-full. (Region as for two
	 * listeners of max_connections 999 and 1.) */
	struct admission *a = admission_new(4, 1000, 1000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	int s = admission_slot_take(a), l = admission_listener(a, "mx"), held, t;
	struct admission_rule r = { 1, 50, 0 };
	uint8_t ip[16];
	double t0 = admission_now();
	ip6(ip, 0);
	CU_ASSERT_EQUAL_FATAL(admission_admit(a, s, l, ip, &r, t0, &held), ADMISSION_OK);
	for (unsigned i = 1; i <= 40000; i++) {
		ip6(ip, i);
		admission_admit(a, s, l, ip, &r, t0 + (double)i / 1000.0, &t);
		if (i % 10000 == 0)
			admission_maintain(a);
	}
	admission_release(a, s, held);
	ip6(ip, 99999999);
	CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &r, t0 + 45.0, &t), ADMISSION_OK);
	admission_free(&a);
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static void test_metrics_slot_alias(void)
{
	static struct conf_listener ls[] = { { .name = "mx", .tls_mode = TLS_MODE_NONE } };
	struct conf c;
	memset(&c, 0, sizeof(c));
	c.metrics = "127.0.0.1:9465";
	c.listeners = ls;
	c.nlisteners = 1;
	metrics_fini();
	CU_ASSERT_EQUAL_FATAL(metrics_init(&c), 0);
	/* workers = 256: the master's admission has 4 * 256 slots. */
	struct admission *a = admission_new(ADMISSION_GENERATIONS * 256, 4, 4);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	int slot[3 * 256];
	for (int i = 0; i < 3 * 256; i++)	/* generations 1 and 2 draining, 3 serving */
		slot[i] = admission_slot_take(a);
	/* A worker of generation 3 (as forked by the master: metrics_set_slot
	 * with its admission slot) opens two sessions. */
	metrics_set_slot((unsigned)slot[2 * 256 + 3]);
	metrics_session_open();
	metrics_session_open();
	/* Worker 4 of generation 1 finishes draining and exits: the master
	 * resets its gauge. */
	metrics_slot_reset((unsigned)slot[3]);
	static char out[1 << 18];
	struct strbuf b;
	sb_init(&b, out, sizeof(out));
	metrics_render(&b, NULL, 0, 0);
	CU_ASSERT_FATAL(sb_ok(&b));
	CU_ASSERT(has_line(out, "mailgate_sessions_active 2"));
	admission_free(&a);
	metrics_fini();
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("review2", NULL, NULL);
	CU_ADD(s, test_transient_addresses_lock_everyone_out);
	CU_ADD(s, test_max_connections_refusals_take_entries);
	CU_ADD(s, test_metrics_slot_alias);
}

CU_MAIN
