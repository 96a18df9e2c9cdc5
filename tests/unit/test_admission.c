/* test_admission: common/admission.c - max_connections, max_per_ip and
 * rate_per_ip counted across process slots (one region, real fork()ed
 * processes for the cross-process cases), listeners known by name, a
 * dead process's holdings given back by admission_reap, and a full
 * table refusing rather than overrunning. */
#include "admission.h"
#include "cu_main.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void ip4(uint8_t out[16], unsigned last)
{
	memset(out, 0, 16);
	out[10] = out[11] = 0xff;
	out[12] = 192;
	out[13] = 0;
	out[14] = 2;
	out[15] = (uint8_t)last;
}

static const struct admission_rule loose = { 1000, 1000, 0 };

static void test_max_connections_across_slots(void)
{
	struct admission *a = admission_new(4, 16, 16);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	int l = admission_listener(a, "smtps"), s1 = admission_slot_take(a), s2 = admission_slot_take(a);
	struct admission_rule r = { 3, 100, 0 };
	uint8_t ip[16];
	int t[4];
	ip4(ip, 1);
	CU_ASSERT_EQUAL(admission_admit(a, s1, l, ip, &r, 100, &t[0]), ADMISSION_OK);
	ip4(ip, 2);
	CU_ASSERT_EQUAL(admission_admit(a, s2, l, ip, &r, 100, &t[1]), ADMISSION_OK);
	ip4(ip, 3);
	CU_ASSERT_EQUAL(admission_admit(a, s2, l, ip, &r, 100, &t[2]), ADMISSION_OK);
	ip4(ip, 4);
	CU_ASSERT_EQUAL(admission_admit(a, s1, l, ip, &r, 100, &t[3]), ADMISSION_MAX_CONNECTIONS);
	CU_ASSERT_EQUAL(t[3], -1);
	CU_ASSERT_EQUAL(admission_active(a, l), 3);
	admission_release(a, s2, t[1]);
	CU_ASSERT_EQUAL(admission_admit(a, s1, l, ip, &r, 100, &t[3]), ADMISSION_OK);
	/* Another listener has its own count. */
	int l2 = admission_listener(a, "submission");
	CU_ASSERT_NOT_EQUAL(l, l2);
	CU_ASSERT_EQUAL(admission_listener(a, "smtps"), l);
	CU_ASSERT_EQUAL(admission_admit(a, s1, l2, ip, &r, 100, &t[1]), ADMISSION_OK);
	admission_free(&a);
	CU_ASSERT_PTR_NULL(a);
}

static void test_max_per_ip(void)
{
	struct admission *a = admission_new(2, 16, 16);
	int l = admission_listener(a, "imaps"), s1 = admission_slot_take(a), s2 = admission_slot_take(a);
	struct admission_rule r = { 100, 2, 0 };
	uint8_t ip[16], other[16];
	int t1, t2, t3;
	ip4(ip, 7);
	ip4(other, 8);
	CU_ASSERT_EQUAL(admission_admit(a, s1, l, ip, &r, 5, &t1), ADMISSION_OK);
	CU_ASSERT_EQUAL(admission_admit(a, s2, l, ip, &r, 5, &t2), ADMISSION_OK);
	CU_ASSERT_EQUAL(admission_admit(a, s2, l, ip, &r, 5, &t3), ADMISSION_MAX_PER_IP);
	CU_ASSERT_EQUAL(admission_admit(a, s2, l, other, &r, 5, &t3), ADMISSION_OK);
	admission_release(a, s1, t1);
	CU_ASSERT_EQUAL(admission_admit(a, s1, l, ip, &r, 5, &t1), ADMISSION_OK);
	/* A ticket given back twice counts once. */
	admission_release(a, s1, t1);
	admission_release(a, s1, t1);
	CU_ASSERT_EQUAL(admission_active(a, l), 2);
	admission_free(&a);
}

static void test_rate_per_ip_sliding_minute(void)
{
	struct admission *a = admission_new(1, 64, 64);
	int l = admission_listener(a, "mx"), s = admission_slot_take(a), t;
	struct admission_rule r = { 100, 100, 3 };
	uint8_t ip[16], other[16];
	ip4(ip, 9);
	ip4(other, 10);
	double t0 = 6000.0;	/* a window boundary (minute 100) */
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &r, t0 + i, &t), ADMISSION_OK);
		admission_release(a, s, t);	/* short sessions: only the rate counts */
	}
	CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &r, t0 + 10, &t), ADMISSION_RATE_PER_IP);
	CU_ASSERT_EQUAL(admission_admit(a, s, l, other, &r, t0 + 10, &t), ADMISSION_OK);
	/* 30 s into the next minute, half of the 3 still count: 1.5 + 1 <= 3. */
	CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &r, t0 + 90, &t), ADMISSION_OK);
	admission_release(a, s, t);
	/* 1.5 + 1 (that one) + 1 > 3 */
	CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &r, t0 + 90, &t), ADMISSION_RATE_PER_IP);
	/* Two minutes on, the history is gone. */
	CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &r, t0 + 200, &t), ADMISSION_OK);
	admission_free(&a);
}

/* A worker process that dies holding admissions: the master reaps its
 * slot and the counts come back. */
static void test_reap_dead_process(void)
{
	struct admission *a = admission_new(2, 8, 8);
	int l = admission_listener(a, "smtps"), s = admission_slot_take(a);
	struct admission_rule r = { 4, 2, 0 };
	pid_t pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		uint8_t ip[16];
		int t;
		ip4(ip, 1);
		int ok = admission_admit(a, s, l, ip, &r, 1, &t) == ADMISSION_OK &&
			 admission_admit(a, s, l, ip, &r, 1, &t) == ADMISSION_OK &&
			 admission_admit(a, s, l, ip, &r, 1, &t) == ADMISSION_MAX_PER_IP;
		_exit(ok ? 0 : 1);	/* dies without giving anything back */
	}
	int st;
	CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
	CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CU_ASSERT_EQUAL(admission_active(a, l), 2);	/* the child's admissions are seen here */
	int s2 = admission_slot_take(a), t;
	uint8_t ip[16];
	ip4(ip, 1);
	CU_ASSERT_EQUAL(admission_admit(a, s2, l, ip, &r, 1, &t), ADMISSION_MAX_PER_IP);
	admission_reap(a, s);
	CU_ASSERT_EQUAL(admission_active(a, l), 0);
	CU_ASSERT_EQUAL(admission_admit(a, s2, l, ip, &r, 1, &t), ADMISSION_OK);
	/* The reaped slot is free again, with all its tickets. */
	CU_ASSERT_EQUAL(admission_slot_take(a), s);
	admission_free(&a);
}

/* Two processes admitting at once never exceed max_connections. */
static void test_concurrent_processes(void)
{
	enum { PER_CHILD = 300, LIMIT = 250 };
	struct admission *a = admission_new(3, PER_CHILD, 2 * PER_CHILD);
	int l = admission_listener(a, "smtps");
	struct admission_rule r = { LIMIT, 1000, 0 };
	pid_t pids[2];
	int slots[2];
	for (int k = 0; k < 2; k++) {
		slots[k] = admission_slot_take(a);
		pids[k] = fork();
		CU_ASSERT_FATAL(pids[k] >= 0);
		if (pids[k] == 0) {
			int got = 0, t;
			for (int i = 0; i < PER_CHILD; i++) {
				uint8_t ip[16];
				ip4(ip, (unsigned)(i % 200));
				ip[13] = (uint8_t)k;
				got += admission_admit(a, slots[k], l, ip, &r, 1, &t) == ADMISSION_OK;
			}
			_exit(got > 255 ? 255 : got);
		}
	}
	int total = 0;
	for (int k = 0; k < 2; k++) {
		int st;
		waitpid(pids[k], &st, 0);
		total += WEXITSTATUS(st);
	}
	CU_ASSERT_EQUAL(total, LIMIT);
	CU_ASSERT_EQUAL(admission_active(a, l), LIMIT);
	admission_reap(a, slots[0]);
	admission_reap(a, slots[1]);
	CU_ASSERT_EQUAL(admission_active(a, l), 0);
	admission_free(&a);
}

static void test_slot_and_listener_exhaustion(void)
{
	struct admission *a = admission_new(1, 2, 2);
	int s = admission_slot_take(a), l = admission_listener(a, "x"), t[3];
	CU_ASSERT_EQUAL(admission_slot_take(a), -1);
	uint8_t ip[16];
	ip4(ip, 1);
	CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &loose, 1, &t[0]), ADMISSION_OK);
	CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &loose, 1, &t[1]), ADMISSION_OK);
	/* The slot holds 2: the third is refused, not written past the end. */
	CU_ASSERT_EQUAL(admission_admit(a, s, l, ip, &loose, 1, &t[2]), ADMISSION_FULL);
	CU_ASSERT_EQUAL(admission_admit(a, -1, l, ip, &loose, 1, &t[2]), ADMISSION_FULL);
	CU_ASSERT_EQUAL(admission_admit(a, s, -1, ip, &loose, 1, &t[2]), ADMISSION_FULL);
	char name[16];
	for (int i = 0; i < ADMISSION_LISTENERS_MAX + 4; i++) {
		name[0] = 'n';
		name[1] = (char)('a' + i / 26);
		name[2] = (char)('a' + i % 26);
		name[3] = '\0';
		int k = admission_listener(a, name);
		CU_ASSERT(i < ADMISSION_LISTENERS_MAX - 1 ? k >= 0 : 1);
		if (i >= ADMISSION_LISTENERS_MAX)
			CU_ASSERT_EQUAL(k, -1);
	}
	admission_free(&a);
}

/* Many distinct addresses with rate history: dead entries are reused and
 * the table keeps admitting. */
static void test_rate_history_recycled(void)
{
	struct admission *a = admission_new(1, 4, 4);
	int s = admission_slot_take(a), l = admission_listener(a, "mx"), t;
	struct admission_rule r = { 10, 10, 100 };
	double now = 60.0;
	int refused = 0;
	for (unsigned i = 0; i < 200000; i++) {
		uint8_t ip[16];
		ip4(ip, i & 0xff);
		ip[13] = (uint8_t)(i >> 8);
		ip[12] = (uint8_t)(i >> 16);
		if (i % 10000 == 0) {
			now += 180.0;	/* the earlier history runs out */
			admission_maintain(a);
		}
		if (admission_admit(a, s, l, ip, &r, now, &t) == ADMISSION_OK)
			admission_release(a, s, t);
		else
			refused++;
	}
	CU_ASSERT_EQUAL(refused, 0);
	admission_free(&a);
}

/* IPv6 clients count by /64 (max_per_ip, rate_per_ip); IPv4 by address. */
static void test_ipv6_by_64(void)
{
	struct admission *a = admission_new(1, 8, 8);
	int l = admission_listener(a, "mx"), s = admission_slot_take(a), t1, t2, t3;
	struct admission_rule r = { 100, 2, 0 };
	uint8_t x[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1 };
	CU_ASSERT_EQUAL(admission_admit(a, s, l, x, &r, 1, &t1), ADMISSION_OK);
	x[15] = 2;
	CU_ASSERT_EQUAL(admission_admit(a, s, l, x, &r, 1, &t2), ADMISSION_OK);
	x[9] = 0x77;	/* same /64 */
	CU_ASSERT_EQUAL(admission_admit(a, s, l, x, &r, 1, &t3), ADMISSION_MAX_PER_IP);
	x[7] = 2;	/* another /64 */
	CU_ASSERT_EQUAL(admission_admit(a, s, l, x, &r, 1, &t3), ADMISSION_OK);
	admission_release(a, s, t1);
	x[7] = 1;
	CU_ASSERT_EQUAL(admission_admit(a, s, l, x, &r, 1, &t1), ADMISSION_OK);
	admission_free(&a);
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("admission", NULL, NULL);
	CU_ADD(s, test_max_connections_across_slots);
	CU_ADD(s, test_max_per_ip);
	CU_ADD(s, test_rate_per_ip_sliding_minute);
	CU_ADD(s, test_reap_dead_process);
	CU_ADD(s, test_concurrent_processes);
	CU_ADD(s, test_slot_and_listener_exhaustion);
	CU_ADD(s, test_rate_history_recycled);
	CU_ADD(s, test_ipv6_by_64);
}

CU_MAIN
