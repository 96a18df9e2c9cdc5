/* test_proxyproto: PROXY v1 and v2 parsing (every truncation is "more",
 * never a wrong answer; LOCAL and UNSPEC keep the socket addresses; bad
 * signatures, versions, families and ports are refused) and building (v1
 * text, v2 bytes with the HAProxy TLS TLVs: CN only for verified chains),
 * with a build -> parse round trip. */
#include "cu_main.h"
#include "proxyproto.h"

#include <arpa/inet.h>
#include <string.h>

static void check_ip(const struct mg_addr *a, const char *ip, unsigned port)
{
	char s[64];
	addr_ip_str(a, s, sizeof(s));
	CU_ASSERT_STRING_EQUAL(s, ip);
	CU_ASSERT_EQUAL(addr_port(a), port);
}

static void test_v1(void)
{
	struct pp_info in;
	size_t used;
	const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 465\r\nEHLO";
	CU_ASSERT_EQUAL(pp_parse((const unsigned char *)h, strlen(h), &in, &used), PP_OK);
	CU_ASSERT_EQUAL(used, strlen(h) - 4);
	CU_ASSERT_FALSE(in.local);
	check_ip(&in.src, "192.0.2.7", 51234);
	check_ip(&in.dst, "198.51.100.1", 465);
	for (size_t i = 0; i < used; i++)
		CU_ASSERT_EQUAL(pp_parse((const unsigned char *)h, i, &in, &used), PP_MORE);
	h = "PROXY TCP6 2001:db8::7 2001:db8::1 1 993\r\n";
	CU_ASSERT_EQUAL(pp_parse((const unsigned char *)h, strlen(h), &in, &used), PP_OK);
	check_ip(&in.src, "2001:db8::7", 1);
	h = "PROXY UNKNOWN\r\n";
	CU_ASSERT_EQUAL(pp_parse((const unsigned char *)h, strlen(h), &in, &used), PP_OK);
	CU_ASSERT(in.local);
	static const char *bad[] = {
		"PROXY TCP4 192.0.2.7 198.51.100.1 51234\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 51234 465\n",
		"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 65536 465\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 01 465\r\n",
		"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
		"EHLO x\r\n",
		"PROXYTCP4\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(pp_parse((const unsigned char *)bad[i], strlen(bad[i]), &in, &used), PP_BAD);
	char longline[200];
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "PROXY ", 6);
	CU_ASSERT_EQUAL(pp_parse((unsigned char *)longline, sizeof(longline), &in, &used), PP_BAD);
}

static const unsigned char sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

static void test_v2_parse(void)
{
	unsigned char b[64];
	struct pp_info in;
	size_t used;
	memcpy(b, sig, 12);
	b[12] = 0x21;
	b[13] = 0x11;
	b[14] = 0;
	b[15] = 12 + 5;		/* addresses + one TLV of 2 bytes */
	unsigned char a[12] = { 192, 0, 2, 7, 198, 51, 100, 1, 0xC8, 0x22, 0x01, 0xD1 };
	memcpy(b + 16, a, 12);
	memcpy(b + 28, "\x01\x00\x02h2", 5);
	CU_ASSERT_EQUAL(pp_parse(b, 33, &in, &used), PP_OK);
	CU_ASSERT_EQUAL(used, 33);
	check_ip(&in.src, "192.0.2.7", 51234);
	check_ip(&in.dst, "198.51.100.1", 465);
	for (size_t i = 0; i < 33; i++)
		CU_ASSERT_EQUAL(pp_parse(b, i, &in, &used), PP_MORE);
	b[12] = 0x20;	/* LOCAL */
	CU_ASSERT_EQUAL(pp_parse(b, 33, &in, &used), PP_OK);
	CU_ASSERT(in.local);
	b[12] = 0x21;
	b[13] = 0x00;	/* UNSPEC */
	CU_ASSERT_EQUAL(pp_parse(b, 33, &in, &used), PP_OK);
	CU_ASSERT(in.local);
	b[13] = 0x12;	/* UDP */
	CU_ASSERT_EQUAL(pp_parse(b, 33, &in, &used), PP_BAD);
	b[13] = 0x11;
	b[12] = 0x31;	/* version 3 */
	CU_ASSERT_EQUAL(pp_parse(b, 33, &in, &used), PP_BAD);
	b[12] = 0x21;
	b[15] = 8;	/* too short for IPv4 addresses */
	CU_ASSERT_EQUAL(pp_parse(b, 33, &in, &used), PP_BAD);
	b[14] = 0xff;	/* over our cap */
	CU_ASSERT_EQUAL(pp_parse(b, 33, &in, &used), PP_BAD);
}

static void test_build(void)
{
	struct mg_addr src, dst;
	char v1[120];
	unsigned char v2[600];
	struct pp_info in;
	size_t used;
	addr_from_literal("192.0.2.7", 51234, &src);
	addr_from_literal("198.51.100.1", 465, &dst);
	CU_ASSERT_EQUAL(pp_build_v1(v1, sizeof(v1), &src, &dst), 45);
	CU_ASSERT_STRING_EQUAL(v1, "PROXY TCP4 192.0.2.7 198.51.100.1 51234 465\r\n");
	struct pp_tls t = { .tls = true, .cert = true, .verified = true, .version = "TLSv1.3",
			    .cipher = "TLS_AES_128_GCM_SHA256", .cn = "partner-mx.test",
			    .sig_alg = "ecdsa-with-SHA256", .key_alg = "EC256", .sni = "mx.example.org",
			    .alpn = "smtp" };
	size_t n = pp_build_v2(v2, sizeof(v2), &src, &dst, &t);
	CU_ASSERT(n > 28);
	CU_ASSERT(memcmp(v2, sig, 12) == 0);
	CU_ASSERT_EQUAL(v2[12], 0x21);
	CU_ASSERT_EQUAL(v2[13], 0x11);
	CU_ASSERT_EQUAL((size_t)(v2[14] << 8 | v2[15]), n - 16);
	/* TLVs: ALPN, AUTHORITY, then SSL with client bits and verify = 0. */
	const unsigned char *p = v2 + 28;
	CU_ASSERT(p[0] == 0x01 && p[2] == 4 && !memcmp(p + 3, "smtp", 4));
	p += 3 + 4;
	CU_ASSERT(p[0] == 0x02 && p[2] == 14 && !memcmp(p + 3, "mx.example.org", 14));
	p += 3 + 14;
	CU_ASSERT_EQUAL(p[0], 0x20);
	CU_ASSERT_EQUAL(p[3], 0x07);	/* SSL | CERT_CONN | CERT_SESS */
	CU_ASSERT(!memcmp(p + 4, "\0\0\0\0", 4));
	CU_ASSERT(memmem(v2, n, "\x22\x00\x0fpartner-mx.test", 18) != NULL);
	CU_ASSERT(memmem(v2, n, "\x21\x00\x07TLSv1.3", 10) != NULL);
	CU_ASSERT(memmem(v2, n, "\x25\x00\x05" "EC256", 8) != NULL);
	CU_ASSERT_EQUAL(pp_parse(v2, n, &in, &used), PP_OK);	/* round trip */
	CU_ASSERT_EQUAL(used, n);
	check_ip(&in.src, "192.0.2.7", 51234);
	/* Unverified (e.g. pin-only): verify = 1 and no CN. */
	t.verified = false;
	n = pp_build_v2(v2, sizeof(v2), &src, &dst, &t);
	CU_ASSERT(memmem(v2, n, "partner-mx.test", 15) == NULL);
	CU_ASSERT(memmem(v2, n, "\x20", 1) != NULL);
	CU_ASSERT_STRING_EQUAL(pp_openssl_cipher("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
			       "ECDHE-ECDSA-AES128-GCM-SHA256");
	CU_ASSERT_STRING_EQUAL(pp_openssl_cipher("TLS_AES_256_GCM_SHA384"), "TLS_AES_256_GCM_SHA384");
	CU_ASSERT_STRING_EQUAL(pp_openssl_version("TLS1.2"), "TLSv1.2");
}

/* A header has one family: an IPv6 client on an IPv4 socket (PROXY in from
 * an IPv6 load balancer) is sent as TCP6 with the local address mapped, not
 * as UNSPEC/UNKNOWN, which would lose the client's address. */
static void test_build_mixed(void)
{
	struct mg_addr src, dst;
	char v1[120];
	unsigned char v2[600];
	struct pp_info in;
	size_t used;
	addr_from_literal("2001:db8::7", 51234, &src);
	addr_from_literal("198.51.100.1", 465, &dst);
	size_t n = pp_build_v1(v1, sizeof(v1), &src, &dst);
	CU_ASSERT_STRING_EQUAL(v1, "PROXY TCP6 2001:db8::7 ::ffff:198.51.100.1 51234 465\r\n");
	CU_ASSERT_EQUAL(pp_parse((unsigned char *)v1, n, &in, &used), PP_OK);
	CU_ASSERT(!in.local);
	check_ip(&in.src, "2001:db8::7", 51234);
	check_ip(&in.dst, "198.51.100.1", 465);
	n = pp_build_v2(v2, sizeof(v2), &src, &dst, NULL);
	CU_ASSERT_EQUAL(n, 16 + 36);
	CU_ASSERT_EQUAL(v2[13], 0x21);
	CU_ASSERT_EQUAL(pp_parse(v2, n, &in, &used), PP_OK);
	CU_ASSERT(!in.local);
	check_ip(&in.src, "2001:db8::7", 51234);
	check_ip(&in.dst, "198.51.100.1", 465);
	/* The other way round: IPv4 client, IPv6 local address. */
	n = pp_build_v2(v2, sizeof(v2), &dst, &src, NULL);
	CU_ASSERT_EQUAL(pp_parse(v2, n, &in, &used), PP_OK);
	check_ip(&in.src, "198.51.100.1", 465);
	check_ip(&in.dst, "2001:db8::7", 51234);
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("proxyproto", NULL, NULL);
	CU_ADD(s, test_v1);
	CU_ADD(s, test_v2_parse);
	CU_ADD(s, test_build);
	CU_ADD(s, test_build_mixed);
}

CU_MAIN
