/* test_smtp_misc: upstream reply parsing and EHLO keywords, relay policy
 * (accept_domains rules, %-hack, quoted local parts, postmaster, address
 * literals), the Received header (contents, folding at 78 columns, CN
 * escaping) and XCLIENT lines (xtext, splitting, offered attributes). */
#include "cu_main.h"
#include "smtp_parse.h"
#include "smtp_policy.h"
#include "smtp_received.h"
#include "smtp_reply.h"
#include "smtp_xclient.h"

#include <stdio.h>
#include <string.h>

static void test_reply(void)
{
	struct smtp_reply r;
	const char *one = "250 2.0.0 Ok\r\n";
	CU_ASSERT_EQUAL(smtp_reply_parse(one, strlen(one), &r), 1);
	CU_ASSERT_EQUAL(r.code, 250);
	CU_ASSERT_EQUAL(r.nlines, 1);
	CU_ASSERT_EQUAL(r.total, strlen(one));
	CU_ASSERT_NSTRING_EQUAL(r.lines[0].text, "2.0.0 Ok", r.lines[0].len);
	const char *multi = "250-mx\r\n250-PIPELINING\r\n250 \r\nNEXT";
	CU_ASSERT_EQUAL(smtp_reply_parse(multi, strlen(multi), &r), 1);
	CU_ASSERT_EQUAL(r.nlines, 3);
	CU_ASSERT_EQUAL(r.lines[2].len, 0);
	CU_ASSERT_EQUAL(r.total, strlen(multi) - 4);
	/* Incomplete at every split point. */
	for (size_t i = 0; i < strlen(multi) - 4; i++)
		CU_ASSERT_EQUAL(smtp_reply_parse(multi, i, &r), 0);
	CU_ASSERT_EQUAL(smtp_reply_parse("250\r\n", 5, &r), 1);
	CU_ASSERT_EQUAL(smtp_reply_parse("250-a\r\n251 b\r\n", 14, &r), -1);	/* code changes */
	CU_ASSERT_EQUAL(smtp_reply_parse("25x ok\r\n", 8, &r), -1);
	CU_ASSERT_EQUAL(smtp_reply_parse("250_ok\r\n", 8, &r), -1);
	CU_ASSERT_EQUAL(smtp_reply_parse("100 ok\r\n", 8, &r), -1);
	CU_ASSERT_EQUAL(smtp_reply_parse("250 a\rb\r\n", 9, &r), -1);
	CU_ASSERT_EQUAL(smtp_reply_parse("220 lf only\n", 12, &r), 1);
	char big[5000];
	memset(big, 'a', sizeof(big));
	memcpy(big, "250 ", 4);
	CU_ASSERT_EQUAL(smtp_reply_parse(big, sizeof(big), &r), -1);	/* over-long line */
	/* A longest line waiting for its LF after the CR is incomplete. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "250 ", 4);
	big[SMTP_REPLY_MAX_LINE] = '\r';
	CU_ASSERT_EQUAL(smtp_reply_parse(big, SMTP_REPLY_MAX_LINE + 1, &r), 0);
	big[SMTP_REPLY_MAX_LINE + 1] = '\n';
	CU_ASSERT_EQUAL(smtp_reply_parse(big, SMTP_REPLY_MAX_LINE + 2, &r), 1);

	/* Any number of lines: the first 63 and the last are kept. */
	static char many[100 * 16];
	size_t n = 0;
	for (int i = 0; i < 99; i++)
		n += (size_t)sprintf(many + n, "250-l%02d\r\n", i);
	n += (size_t)sprintf(many + n, "250 end\r\n");
	CU_ASSERT_EQUAL(smtp_reply_parse(many, n, &r), 1);
	CU_ASSERT_EQUAL(r.code, 250);
	CU_ASSERT_EQUAL(r.nlines, SMTP_REPLY_MAX_LINES);
	CU_ASSERT_EQUAL(r.dropped, 100 - SMTP_REPLY_MAX_LINES);
	CU_ASSERT_EQUAL(r.total, n);
	CU_ASSERT_NSTRING_EQUAL(r.lines[62].text, "l62", 3);
	CU_ASSERT_NSTRING_EQUAL(r.lines[63].text, "end", 3);
	for (size_t i = 0; i < n; i++)	/* incomplete at every split */
		CU_ASSERT_EQUAL(smtp_reply_parse(many, i, &r), 0);
	/* No end within SMTP_REPLY_MAX_BYTES: decided, not waited for. */
	static char endless[SMTP_REPLY_MAX_BYTES + 16];
	n = 0;
	while (n + 8 <= SMTP_REPLY_MAX_BYTES)
		n += (size_t)sprintf(endless + n, "250-xx\r\n");
	while (n < SMTP_REPLY_MAX_BYTES)
		endless[n++] = 'x';
	CU_ASSERT_EQUAL(smtp_reply_parse(endless, n, &r), -1);
	CU_ASSERT_EQUAL(smtp_reply_parse(endless, n - 1, &r), 0);
}

/* The parser decides (1 or -1) before its input reaches
 * SMTP_REPLY_MAX_BYTES, whatever the shape: a buffer of that size can
 * never fill up with a reply still "incomplete" (which once stalled a
 * session for timeout_reply). */
static void test_reply_bounded(void)
{
	static char buf[SMTP_REPLY_MAX_BYTES + 1];
	struct smtp_reply r;
	static const size_t widths[] = { 3, 4, 80, 1000, SMTP_REPLY_MAX_LINE };
	for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
		/* Continuation lines of this width, as many as fit. */
		size_t o = 0, lw = widths[w];
		while (o + lw + 2 <= sizeof(buf)) {
			memset(buf + o, 'x', lw);
			memcpy(buf + o, lw > 3 ? "250-" : "250", lw > 3 ? 4 : 3);
			memcpy(buf + o + lw, "\r\n", 2);
			o += lw + 2;
		}
		int rc = smtp_reply_parse(buf, SMTP_REPLY_MAX_BYTES, &r);
		CU_ASSERT_NOT_EQUAL(rc, 0);
		if (rc == 0)
			fprintf(stderr, "width %zu: still incomplete at %d bytes\n", lw,
				SMTP_REPLY_MAX_BYTES);
	}
	/* No LF at all. */
	memset(buf, '2', SMTP_REPLY_MAX_BYTES);
	CU_ASSERT_EQUAL(smtp_reply_parse(buf, SMTP_REPLY_MAX_BYTES, &r), -1);
}

static void test_ehlo(void)
{
	struct smtp_reply r;
	struct smtp_ehlo_ext e;
	const char *t = "250-up.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
			"250-AUTH PLAIN login\r\n250-XCLIENT NAME ADDR PROTO HELO LOGIN\r\n"
			"250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n";
	CU_ASSERT_EQUAL_FATAL(smtp_reply_parse(t, strlen(t), &r), 1);
	smtp_ehlo_parse(&r, &e);
	CU_ASSERT(e.flags & EXT_PIPELINING);
	CU_ASSERT(e.flags & EXT_STARTTLS);
	CU_ASSERT(e.flags & EXT_8BITMIME && e.flags & EXT_DSN && e.flags & EXT_SMTPUTF8);
	CU_ASSERT_EQUAL(e.size, 10240000);
	CU_ASSERT(smtp_ehlo_has_auth(&e, "PLAIN"));
	CU_ASSERT(smtp_ehlo_has_auth(&e, "LOGIN"));
	CU_ASSERT(!smtp_ehlo_has_auth(&e, "PLAI"));
	CU_ASSERT(!smtp_ehlo_has_auth(&e, "CRAM-MD5"));
	CU_ASSERT_EQUAL(e.xclient, XC_NAME | XC_ADDR | XC_PROTO | XC_HELO | XC_LOGIN);
	const char *sink = "250-smtp-sink\r\n250-XCLIENT NAME HELO\r\n250 \r\n";
	CU_ASSERT_EQUAL_FATAL(smtp_reply_parse(sink, strlen(sink), &r), 1);
	smtp_ehlo_parse(&r, &e);
	CU_ASSERT(e.flags & EXT_XCLIENT);
	CU_ASSERT(!(e.xclient & XC_ADDR));
}

static enum rcpt_policy pol(const char *rcpt)
{
	static char *doms[] = { "example.org", ".example.net", "xn--bcher-kva.example" };
	struct strlist accept = { doms, 3 };
	struct smtp_path p;
	char args[300];
	snprintf(args, sizeof(args), "TO:<%s>", rcpt);
	CU_ASSERT_EQUAL_FATAL(smtp_parse_path(args, strlen(args), "TO:", true, &p), SMTP_PATH_OK);
	return smtp_rcpt_policy(&accept, &p);
}

static void test_policy(void)
{
	CU_ASSERT_EQUAL(pol("u@example.org"), RCPT_LOCAL);
	CU_ASSERT_EQUAL(pol("u@EXAMPLE.Org"), RCPT_LOCAL);
	CU_ASSERT_EQUAL(pol("u@example.org."), RCPT_LOCAL);
	CU_ASSERT_EQUAL(pol("u@sub.example.org"), RCPT_RELAY);	/* exact only */
	CU_ASSERT_EQUAL(pol("u@example.net"), RCPT_RELAY);	/* ".x" = subdomains only */
	CU_ASSERT_EQUAL(pol("u@a.example.net"), RCPT_LOCAL);
	CU_ASSERT_EQUAL(pol("u@a.b.example.net"), RCPT_LOCAL);
	CU_ASSERT_EQUAL(pol("u@badexample.net"), RCPT_RELAY);
	CU_ASSERT_EQUAL(pol("u@b\xc3\xbc" "cher.example"), RCPT_LOCAL);	/* U-label */
	CU_ASSERT_EQUAL(pol("u@[192.0.2.1]"), RCPT_RELAY);	/* literals never match */
	CU_ASSERT_EQUAL(pol("Postmaster"), RCPT_LOCAL);
	CU_ASSERT_EQUAL(pol("u%evil.example@example.org"), RCPT_ROUTED);
	CU_ASSERT_EQUAL(pol("u!evil.example@example.org"), RCPT_ROUTED);
	CU_ASSERT_EQUAL(pol("\"u@evil.example\"@example.org"), RCPT_ROUTED);
	CU_ASSERT_EQUAL(pol("\"u%evil\"@example.org"), RCPT_ROUTED);
	CU_ASSERT_EQUAL(pol("@relay.example:u@example.org"), RCPT_LOCAL);	/* route ignored */
	CU_ASSERT_EQUAL(pol("u@evil.example"), RCPT_RELAY);
}

static void test_received(void)
{
	char out[2048];
	struct smtp_received_info in = {
		.helo = "client.example.net", .rdns = NULL, .ip = "192.0.2.7", .ipv6 = 0,
		.hostname = "mx.example.org", .proto = smtp_received_proto(1, 1, 1, 0),
		.suite = "TLS_AES_128_GCM_SHA256", .cert_status = "verified",
		.cn = "peer (one)\\\x01", .cn_len = 12, .peer = "partner", .id = "0123456789AB",
		.msgno = 2, .when = 0,
	};
	size_t n = smtp_received_build(&in, out, sizeof(out));
	CU_ASSERT(n > 0);
	CU_ASSERT(strncmp(out, "Received: from client.example.net (unknown [192.0.2.7]) by", 58) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "ESMTPSA"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "TLS_AES_128_GCM_SHA256"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "CN=peer \\x28one\\x29\\x5C\\x01"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "peer=partner)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "0123456789AB.2;"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
	/* Folded: no line longer than 78, continuation lines start with TAB. */
	const char *line = out;
	while (*line) {
		const char *end = strstr(line, "\r\n");
		CU_ASSERT_PTR_NOT_NULL_FATAL(end);
		CU_ASSERT((size_t)(end - line) <= 78);
		line = end + 2;
		if (*line)
			CU_ASSERT_EQUAL(*line, '\t');
	}
	CU_ASSERT_STRING_EQUAL(smtp_received_proto(0, 0, 0, 0), "SMTP");
	CU_ASSERT_STRING_EQUAL(smtp_received_proto(1, 0, 0, 0), "ESMTP");
	CU_ASSERT_STRING_EQUAL(smtp_received_proto(1, 1, 0, 0), "ESMTPS");
	CU_ASSERT_STRING_EQUAL(smtp_received_proto(1, 1, 0, 1), "UTF8SMTPS");
	CU_ASSERT_STRING_EQUAL(smtp_received_proto(1, 1, 1, 1), "UTF8SMTPSA");
	/* Without TLS there is no tls clause and no certificate comment. */
	in.suite = NULL;
	in.ipv6 = 1;
	in.ip = "2001:db8::7";
	smtp_received_build(&in, out, sizeof(out));
	CU_ASSERT_PTR_NULL(strstr(out, "tls "));
	CU_ASSERT_PTR_NULL(strstr(out, "certificate"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "[IPv6:2001:db8::7]"));
}

static void test_xclient(void)
{
	char out[64];
	CU_ASSERT_EQUAL(smtp_xtext("a+b=c d", out, sizeof(out)), 13);
	CU_ASSERT_STRING_EQUAL(out, "a+2Bb+3Dc+20d");
	char lines[SMTP_XCLIENT_MAX_LINES][SMTP_XCLIENT_LINE_MAX + 1];
	struct smtp_xclient_attrs a = { "[UNAVAILABLE]", "IPV6:2001:db8::1", 4242, "ESMTP",
					"client.example", "partner" };
	int n = smtp_xclient_lines(&a, XC_NAME | XC_ADDR | XC_PORT | XC_PROTO | XC_HELO | XC_LOGIN, lines);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	CU_ASSERT_STRING_EQUAL(lines[0],
			       "XCLIENT NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::1 PORT=4242 PROTO=ESMTP\r\n");
	CU_ASSERT_STRING_EQUAL(lines[1], "XCLIENT HELO=client.example\r\n");
	CU_ASSERT_STRING_EQUAL(lines[2], "XCLIENT LOGIN=partner\r\n");
	/* Only offered attributes; no LOGIN value -> no third line. */
	a.login = NULL;
	n = smtp_xclient_lines(&a, XC_ADDR | XC_HELO, lines);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(lines[0], "XCLIENT ADDR=IPV6:2001:db8::1\r\n");
	/* A value that tries to inject attributes is xtext-encoded. */
	a.helo = "x ADDR=6.6.6.6";
	n = smtp_xclient_lines(&a, XC_HELO, lines);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(lines[0], "XCLIENT HELO=x+20ADDR+3D6.6.6.6\r\n");
	char huge[600];
	memset(huge, 'h', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	a.helo = huge;
	CU_ASSERT_EQUAL(smtp_xclient_lines(&a, XC_HELO, lines), -1);
	/* "XCLIENT HELO=" + 497 + CRLF is exactly 512 octets; one more is not. */
	huge[497] = '\0';
	CU_ASSERT_EQUAL_FATAL(smtp_xclient_lines(&a, XC_HELO, lines), 1);
	CU_ASSERT_EQUAL(strlen(lines[0]), 512);
	huge[497] = 'h';
	huge[498] = '\0';
	CU_ASSERT_EQUAL(smtp_xclient_lines(&a, XC_HELO, lines), -1);
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("smtp_misc", NULL, NULL);
	CU_ADD(s, test_reply);
	CU_ADD(s, test_reply_bounded);
	CU_ADD(s, test_ehlo);
	CU_ADD(s, test_policy);
	CU_ADD(s, test_received);
	CU_ADD(s, test_xclient);
}

CU_MAIN
