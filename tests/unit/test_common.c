/* test_common: pure helpers of common/ - log value escaping (text and
 * JSON, DESIGN.md §7), addresses and CIDRs, domain normalisation, strict
 * base64, the lazily allocated buffer, the per-IP table, the bounded
 * line builder, the minimum data rate's deadline arithmetic. */
#include "addr.h"
#include "b64.h"
#include "buf.h"
#include "cu_main.h"
#include "datarate.h"
#include "domain.h"
#include "log.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_escape_text(void)
{
	char out[2048];
	static const struct { const char *in; const char *want; } cases[] = {
		{ "abc", "abc" },
		{ "mx.example.org", "mx.example.org" },
		{ "", "\"\"" },
		{ "a b", "\"a b\"" },
		{ "a=b", "\"a=b\"" },
		{ "say \"hi\"", "\"say \\\"hi\\\"\"" },
		{ "back\\slash", "\"back\\\\slash\"" },
		{ "cr\r\nlf", "\"cr\\x0d\\x0alf\"" },
		{ "\xc3\xa9", "\"\\xc3\\xa9\"" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		log_escape_value(out, sizeof(out), cases[i].in, strlen(cases[i].in));
		CU_ASSERT_STRING_EQUAL(out, cases[i].want);
	}
	char nul[] = { 'a', 0, 'b' };
	log_escape_value(out, sizeof(out), nul, 3);
	CU_ASSERT_STRING_EQUAL(out, "\"a\\x00b\"");
	/* Values are capped at 256 input bytes. */
	char big[1000];
	memset(big, 'x', sizeof(big));
	CU_ASSERT_EQUAL(log_escape_value(out, sizeof(out), big, sizeof(big)), LOG_VALUE_MAX);
}

static void test_escape_json(void)
{
	char out[2048];
	log_escape_json(out, sizeof(out), "a\"b\\c\n", 6);
	CU_ASSERT_STRING_EQUAL(out, "a\\\"b\\\\c\\n");
	log_escape_json(out, sizeof(out), "\xc3\xa9t\xc3\xa9", 5);	/* valid UTF-8 kept */
	CU_ASSERT_STRING_EQUAL(out, "\xc3\xa9t\xc3\xa9");
	log_escape_json(out, sizeof(out), "\xff\xc3(", 3);	/* invalid bytes */
	CU_ASSERT_STRING_EQUAL(out, "\\u00ff\\u00c3(");
	log_escape_json(out, sizeof(out), "\x01", 1);
	CU_ASSERT_STRING_EQUAL(out, "\\u0001");
	log_escape_json(out, sizeof(out), "\xed\xa0\x80", 3);	/* surrogate: invalid */
	CU_ASSERT_STRING_EQUAL(out, "\\u00ed\\u00a0\\u0080");
}

static void test_addr(void)
{
	char host[64], s[80];
	uint16_t port;
	const char *err;
	struct mg_addr a;
	CU_ASSERT_EQUAL(addr_split_hostport("127.0.0.1:25", host, sizeof(host), &port, &err), 0);
	CU_ASSERT_STRING_EQUAL(host, "127.0.0.1");
	CU_ASSERT_EQUAL(port, 25);
	CU_ASSERT_EQUAL(addr_split_hostport("[::1]:465", host, sizeof(host), &port, &err), 0);
	CU_ASSERT_STRING_EQUAL(host, "::1");
	CU_ASSERT_EQUAL(addr_split_hostport("::1:465", host, sizeof(host), &port, &err), -1);
	CU_ASSERT_EQUAL(addr_split_hostport("x:0", host, sizeof(host), &port, &err), -1);
	CU_ASSERT_EQUAL(addr_split_hostport("x:65536", host, sizeof(host), &port, &err), -1);
	CU_ASSERT_EQUAL(addr_split_hostport("x", host, sizeof(host), &port, &err), -1);
	CU_ASSERT_EQUAL(addr_split_hostport(":25", host, sizeof(host), &port, &err), -1);
	CU_ASSERT_EQUAL(addr_from_literal("::ffff:192.0.2.7", 25, &a), 0);
	addr_unmap_v4(&a);
	CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET);
	addr_str(&a, s, sizeof(s));
	CU_ASSERT_STRING_EQUAL(s, "192.0.2.7:25");
	addr_map_v6(&a);	/* and back */
	CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET6);
	CU_ASSERT_EQUAL(a.len, sizeof(struct sockaddr_in6));
	addr_str(&a, s, sizeof(s));
	CU_ASSERT_STRING_EQUAL(s, "[::ffff:192.0.2.7]:25");
	CU_ASSERT_EQUAL(addr_from_literal("2001:db8::1", 587, &a), 0);
	addr_map_v6(&a);	/* IPv6 stays as it is */
	addr_str(&a, s, sizeof(s));
	CU_ASSERT_STRING_EQUAL(s, "[2001:db8::1]:587");
	CU_ASSERT_EQUAL(addr_from_literal("mx.example.org", 25, &a), -1);
	CU_ASSERT_EQUAL(addr_from_literal("127.0.0.5", 1, &a), 0);
	CU_ASSERT(addr_is_loopback(&a));
}

static void test_cidr(void)
{
	struct mg_cidr c;
	struct mg_addr a;
	const char *err;
	CU_ASSERT_EQUAL(addr_parse_cidr("10.1.0.0/16", &c, &err), 0);
	addr_from_literal("10.1.200.3", 1, &a);
	CU_ASSERT(addr_cidr_match(&c, &a));
	addr_from_literal("10.2.0.1", 1, &a);
	CU_ASSERT(!addr_cidr_match(&c, &a));
	addr_from_literal("::ffff:10.1.0.1", 1, &a);
	CU_ASSERT(!addr_cidr_match(&c, &a));	/* callers unmap first */
	addr_unmap_v4(&a);
	CU_ASSERT(addr_cidr_match(&c, &a));
	CU_ASSERT_EQUAL(addr_parse_cidr("10.1.2.3/12", &c, &err), 0);	/* host bits cleared */
	addr_from_literal("10.15.255.255", 1, &a);
	CU_ASSERT(addr_cidr_match(&c, &a));
	CU_ASSERT_EQUAL(addr_parse_cidr("2001:db8::/32", &c, &err), 0);
	addr_from_literal("2001:db8:ffff::1", 1, &a);
	CU_ASSERT(addr_cidr_match(&c, &a));
	CU_ASSERT_EQUAL(addr_parse_cidr("127.0.0.1", &c, &err), 0);
	CU_ASSERT_EQUAL(c.bits, 32);
	CU_ASSERT(addr_cidr_is_loopback(&c));
	CU_ASSERT_EQUAL(addr_parse_cidr("0.0.0.0/0", &c, &err), 0);
	CU_ASSERT(!addr_cidr_is_loopback(&c));
	CU_ASSERT_EQUAL(addr_parse_cidr("10.0.0.0/33", &c, &err), -1);
	CU_ASSERT_EQUAL(addr_parse_cidr("10.0.0.0/", &c, &err), -1);
	CU_ASSERT_EQUAL(addr_parse_cidr("10.0.0.0/x", &c, &err), -1);
	CU_ASSERT_EQUAL(addr_parse_cidr("host.example/8", &c, &err), -1);
}

static void test_domain(void)
{
	char out[256];
	CU_ASSERT_EQUAL(domain_normalize("Mail.Example.ORG.", 17, out, sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "mail.example.org");
	CU_ASSERT_EQUAL(domain_normalize("b\xc3\xbc" "cher.example", 15, out, sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "xn--bcher-kva.example");
	CU_ASSERT_EQUAL(domain_normalize("a..b", 4, out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(domain_normalize("a_b.example", 11, out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(domain_normalize(".", 1, out, sizeof(out)), -1);
	CU_ASSERT(domain_has_dot("a.b"));
	CU_ASSERT(!domain_has_dot("localhost"));
	char lab[80];
	memset(lab, 'a', 64);
	memcpy(lab + 64, ".example", 9);
	CU_ASSERT(!domain_valid(lab, strlen(lab)));	/* label of 64 */
}

static void test_b64(void)
{
	unsigned char *out;
	size_t n;
	CU_ASSERT(b64_valid("AGFsaWNlAHNlY3JldA==", 20));
	CU_ASSERT_EQUAL(b64_decode("AGFsaWNlAHNlY3JldA==", 20, &out, &n), 0);
	CU_ASSERT_EQUAL(n, 13);
	CU_ASSERT(memcmp(out, "\0alice\0secret", 13) == 0);
	free(out);
	CU_ASSERT(!b64_valid("AGFsaWNl AHNl", 13));
	CU_ASSERT(!b64_valid("abc", 3));
	CU_ASSERT(!b64_valid("", 0));
	CU_ASSERT(!b64_valid("ab=c", 4));
	CU_ASSERT_EQUAL(b64_decode("####", 4, &out, &n), -1);
	char *e = b64_encode("\0bob\0pw", 7);
	CU_ASSERT_STRING_EQUAL(e, "AGJvYgBwdw==");
	free(e);
	/* RFC 4648 §10, and every byte value through a round trip. */
	static const char *vec[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	for (size_t i = 0; i < 7; i++) {
		e = b64_encode("foobar", i);
		CU_ASSERT_STRING_EQUAL(e, vec[i]);
		free(e);
	}
	unsigned char all[256];
	for (size_t i = 0; i < 256; i++)
		all[i] = (unsigned char)(255 - i);
	for (size_t len = 1; len <= 256; len += 17) {
		e = b64_encode(all, len);
		CU_ASSERT_EQUAL(strlen(e), (len + 2) / 3 * 4);
		CU_ASSERT_EQUAL_FATAL(b64_decode(e, strlen(e), &out, &n), 0);
		CU_ASSERT(n == len && memcmp(out, all, len) == 0);
		free(out);
		free(e);
	}
}

static void test_buf(void)
{
	struct buf b = { 0 };
	CU_ASSERT_PTR_NULL(b.data);
	buf_append(&b, "hello\r\nworld", 12);
	CU_ASSERT_EQUAL(buf_len(&b), 12);
	CU_ASSERT_EQUAL(buf_find_lf(&b, 0), 6);
	buf_consume(&b, 7);
	CU_ASSERT_EQUAL(buf_find_lf(&b, 0), -1);
	CU_ASSERT_NSTRING_EQUAL(buf_head(&b), "world", 5);
	for (int i = 0; i < 1000; i++)
		buf_append(&b, "0123456789", 10);
	CU_ASSERT_EQUAL(buf_len(&b), 10005);
	buf_consume(&b, 10005);
	CU_ASSERT_PTR_NULL(b.data);	/* idle buffers hold no memory */
	CU_ASSERT_EQUAL(b.cap, 0);
}


/* The bounded builder: all-or-nothing appends, overflow latched, never a
 * byte past the storage (a guard byte after it stays intact). */
static void test_strbuf(void)
{
	char mem[9];
	struct strbuf b;
	mem[8] = '#';
	sb_init(&b, mem, 8);
	sb_adds(&b, "MAIL");
	sb_addc(&b, ' ');
	CU_ASSERT(sb_ok(&b));
	CU_ASSERT_STRING_EQUAL(sb_str(&b), "MAIL ");
	CU_ASSERT_EQUAL(sb_room(&b), 2);
	sb_adds(&b, "FROM");		/* does not fit: dropped whole */
	CU_ASSERT(!sb_ok(&b));
	CU_ASSERT_STRING_EQUAL(sb_str(&b), "MAIL ");
	sb_adds(&b, "x");		/* would fit, but the overflow is latched */
	CU_ASSERT_STRING_EQUAL(sb_str(&b), "MAIL ");
	CU_ASSERT_EQUAL(sb_room(&b), 0);
	CU_ASSERT_EQUAL(mem[8], '#');
	sb_truncate(&b, 4);
	CU_ASSERT(sb_ok(&b));
	sb_addf(&b, "%s", " ab");
	CU_ASSERT_STRING_EQUAL(sb_str(&b), "MAIL ab");
	sb_addf(&b, "%d", 12);		/* partial output is taken back */
	CU_ASSERT(!sb_ok(&b));
	CU_ASSERT_STRING_EQUAL(sb_str(&b), "MAIL ab");
	CU_ASSERT_EQUAL(sb_len(&b), 7);
	CU_ASSERT_EQUAL(mem[8], '#');
	sb_init(&b, mem, 8);
	sb_addu(&b, 0);
	sb_addc(&b, ' ');
	sb_addu(&b, 65535);
	CU_ASSERT_STRING_EQUAL(sb_str(&b), "0 65535");
	sb_addu(&b, 10);
	CU_ASSERT(!sb_ok(&b));
	/* Exactly full is fine. */
	sb_init(&b, mem, 8);
	sb_add(&b, "1234567", 7);
	CU_ASSERT(sb_ok(&b));
	CU_ASSERT_STRING_EQUAL(sb_str(&b), "1234567");
	sb_add(&b, "", 0);
	CU_ASSERT(sb_ok(&b));
	CU_ASSERT_EQUAL(mem[8], '#');
}

/* Review of the fix: a JSON line that overflows must still be one JSON
 * object. logkv keeps KV_RESERVE (16) bytes for the ending, but the JSON
 * ending is ',"truncated":"yes"' plus '}' (19): when the line stops
 * 16..18 bytes short of the end, the marker does not fit, the builder
 * latches, and the closing brace is dropped too. */
static void test_logkv_json_truncated_is_json(void)
{
	char path[] = "/tmp/mg-logkv-XXXXXX";
	int fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	log_configure(LOG_TARGET_STDERR, LOG_FORMAT_JSON, LOG_LVL_INFO);
	static char val[LOG_LINE_MAX];
	memset(val, 'a', sizeof(val));
	int bad = 0, tried = 0;
	for (size_t l = 2900; l < 3060; l++) {
		struct logkv kv;
		logkv_begin(&kv, "session", 0);
		/* values of at most LOG_VALUE_MAX bytes each, like real ones */
		size_t left = l;
		for (int k = 0; left; k++) {
			size_t n = left > LOG_VALUE_MAX ? LOG_VALUE_MAX : left;
			char key[8] = { 'k', (char)('a' + k), 0 };
			logkv_mem(&kv, key, val, n);
			left -= n;
		}
		/* Lines that end just above the reserve, where a pair no
		 * longer fits and the truncation marker must. */
		size_t room = sb_room(&kv.b);
		if (room < 19 || room > 32)
			continue;
		tried++;
		logkv_raw(&kv, "result", "ok");	/* does not fit: dropped */
		fflush(stderr);
		off_t before = lseek(fd, 0, SEEK_END);
		logkv_end(&kv, LOG_LVL_INFO);
		fflush(stderr);
		off_t after = lseek(fd, 0, SEEK_END);
		char tail[32] = "";
		ssize_t n = pread(fd, tail, after - before < 31 ? after - before : 31,
				  after - (after - before < 31 ? after - before : 31));
		if (n < 2 || tail[n - 2] != '}' || !strstr(tail, "truncated"))
			bad++;
	}
	dup2(saved, 2);
	close(saved);
	close(fd);
	unlink(path);
	log_configure(LOG_TARGET_STDERR, LOG_FORMAT_TEXT, LOG_LVL_INFO);
	CU_ASSERT(tried > 0);
	CU_ASSERT_EQUAL(bad, 0);
}

/* datarate_last: the deadline (last + T) moves on by n / rate, never to
 * more than T ahead of now; rate 0 is plain inactivity. */
static void test_datarate_last(void)
{
	/* Off: every read is activity. */
	CU_ASSERT_DOUBLE_EQUAL(datarate_last(10.0, 50.0, 1, 0), 50.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(datarate_last(10.0, 50.0, 0, -5), 50.0, 1e-9);
	/* Slow: 10 bytes at 100/s buy 0.1 s, whatever the time spent. */
	CU_ASSERT_DOUBLE_EQUAL(datarate_last(100.0, 101.0, 10, 100), 100.1, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(datarate_last(100.0, 101.9, 10, 100), 100.1, 1e-9);
	/* No bytes, no time bought. */
	CU_ASSERT_DOUBLE_EQUAL(datarate_last(100.0, 101.0, 0, 100), 100.0, 1e-9);
	/* Fast: capped at now (the deadline one timeout ahead, no more). */
	CU_ASSERT_DOUBLE_EQUAL(datarate_last(100.0, 101.0, 1000, 100), 101.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(datarate_last(100.0, 101.0, 100, 100), 101.0, 1e-9);
	/* Huge counts do not overflow into nonsense. */
	CU_ASSERT_DOUBLE_EQUAL(datarate_last(100.0, 101.0, UINT64_MAX, 1), 101.0, 1e-9);
	/* A trickle at a tenth of the rate: T = 2, 10 bytes/s at 100/s. The
	 * deadline moves 0.1 s per second: reached at t = 2 / 0.9 s. */
	double last = 0, t = 0, T = 2;
	while (t < 100 && t < last + T) {
		t += 0.1;
		last = datarate_last(last, t, 1, 100);
	}
	CU_ASSERT(t > 2.1 && t < 2.4);
	/* At the rate exactly: never behind. */
	last = 0;
	for (t = 0.1; t < 100; t += 0.1)
		last = datarate_last(last, t, 10, 100);
	CU_ASSERT(t < last + T);
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("common", NULL, NULL);
	CU_ADD(s, test_escape_text);
	CU_ADD(s, test_datarate_last);
	CU_ADD(s, test_escape_json);
	CU_ADD(s, test_addr);
	CU_ADD(s, test_cidr);
	CU_ADD(s, test_domain);
	CU_ADD(s, test_b64);
	CU_ADD(s, test_buf);
	CU_ADD(s, test_strbuf);
	CU_ADD(s, test_logkv_json_truncated_is_json);
}

CU_MAIN
