/* test_smtp_parse: the SMTP command parser - line hygiene, verbs (any
 * case), MAIL/RCPT paths (quoted local parts, source routes, postmaster,
 * address literals, UTF-8), ESMTP parameters, EHLO arguments, SIZE. */
#include "cu_main.h"
#include "smtp_parse.h"

#include <stdio.h>
#include <string.h>

static void test_line_check(void)
{
	static const struct {
		const char *in;
		enum smtp_line_rc want;
		size_t content;
	} cases[] = {
		{ "NOOP\r\n", SMTP_LINE_OK, 4 },
		{ "\r\n", SMTP_LINE_OK, 0 },
		{ "NOOP\n", SMTP_LINE_BARE_LF, 0 },
		{ "NO\rOP\r\n", SMTP_LINE_BARE_CR, 0 },
		{ "NO\nOP\r\n", SMTP_LINE_BARE_LF, 0 },
		{ "\n", SMTP_LINE_BARE_LF, 0 },
		{ "NOOP\r\r\n", SMTP_LINE_BARE_CR, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t c = 99;
		enum smtp_line_rc rc = smtp_line_check(cases[i].in, strlen(cases[i].in), &c);
		CU_ASSERT_EQUAL(rc, cases[i].want);
		if (rc == SMTP_LINE_OK)
			CU_ASSERT_EQUAL(c, cases[i].content);
	}
	const char nul[] = "NO\0OP\r\n";
	size_t c;
	CU_ASSERT_EQUAL(smtp_line_check(nul, sizeof(nul) - 1, &c), SMTP_LINE_NUL);
}

static void test_verbs(void)
{
	const char *args;
	size_t alen;
	const struct smtp_cmd_def *d = smtp_cmd_lookup("ehlo x.y", 8, &args, &alen);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_EQUAL(d->verb, SMTP_VERB_EHLO);
	CU_ASSERT_EQUAL(alen, 3);
	CU_ASSERT_NSTRING_EQUAL(args, "x.y", 3);
	d = smtp_cmd_lookup("StartTLS", 8, &args, &alen);
	CU_ASSERT_EQUAL(d->verb, SMTP_VERB_STARTTLS);
	CU_ASSERT_EQUAL(alen, 0);
	CU_ASSERT_PTR_NULL(smtp_cmd_lookup("EHLOX a", 7, &args, &alen));
	CU_ASSERT_PTR_NULL(smtp_cmd_lookup("", 0, &args, &alen));
	d = smtp_cmd_lookup("xclient ADDR=1.2.3.4", 20, &args, &alen);
	CU_ASSERT_EQUAL(d->verb, SMTP_VERB_XCLIENT);
	CU_ASSERT(smtp_cmd_lookup("QUIT", 4, &args, &alen)->flags & SMTP_CMD_PRE_TLS);
	CU_ASSERT(!(smtp_cmd_lookup("MAIL FROM:<>", 12, &args, &alen)->flags & SMTP_CMD_PRE_TLS));
}

struct path_case {
	const char *args;
	int rcpt;
	enum smtp_path_rc want;
	const char *mailbox;
	const char *domain;
	size_t nparams;
};

static void test_paths(void)
{
	static const struct path_case cases[] = {
		{ "FROM:<a@example.org>", 0, SMTP_PATH_OK, "a@example.org", "example.org", 0 },
		{ "from:<a@example.org>", 0, SMTP_PATH_OK, "a@example.org", "example.org", 0 },
		{ "FROM: <a@example.org>", 0, SMTP_PATH_OK, "a@example.org", "example.org", 0 },
		{ "FROM:<>", 0, SMTP_PATH_OK, "", NULL, 0 },
		{ "TO:<>", 1, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "FROM:a@example.org", 0, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "FROM<a@example.org>", 0, SMTP_PATH_SYNTAX, NULL, NULL, 0 },
		{ "TO:<Postmaster>", 1, SMTP_PATH_OK, "Postmaster", NULL, 0 },
		{ "TO:<postMASTER>", 1, SMTP_PATH_OK, "postMASTER", NULL, 0 },
		{ "FROM:<postmaster>", 0, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<user>", 1, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<@a.example,@b.example:u@c.example>", 1, SMTP_PATH_OK, "u@c.example", "c.example", 0 },
		{ "TO:<\"u@evil.example\"@example.org>", 1, SMTP_PATH_OK, "\"u@evil.example\"@example.org",
		  "example.org", 0 },
		{ "TO:<\"a\\\"b\"@example.org>", 1, SMTP_PATH_OK, "\"a\\\"b\"@example.org", "example.org", 0 },
		{ "TO:<\"unterminated@example.org>", 1, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<u%evil.example@example.org>", 1, SMTP_PATH_OK, "u%evil.example@example.org",
		  "example.org", 0 },
		{ "TO:<u!x@example.org>", 1, SMTP_PATH_OK, "u!x@example.org", "example.org", 0 },
		{ "TO:<u@[192.0.2.1]>", 1, SMTP_PATH_OK, "u@[192.0.2.1]", "[192.0.2.1]", 0 },
		{ "TO:<u@[IPv6:2001:db8::1]>", 1, SMTP_PATH_OK, "u@[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", 0 },
		{ "TO:<u@[300.1.1.1]>", 1, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<u@exa mple.org>", 1, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<u..v@example.org>", 1, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<.u@example.org>", 1, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<u@-bad.example>", 1, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<u@example.org.>", 1, SMTP_PATH_OK, "u@example.org.", "example.org.", 0 },
		{ "FROM:<a@example.org> SIZE=1000 BODY=8BITMIME", 0, SMTP_PATH_OK, "a@example.org",
		  "example.org", 2 },
		{ "FROM:<a@example.org>  SMTPUTF8", 0, SMTP_PATH_OK, "a@example.org", "example.org", 1 },
		{ "FROM:<a@example.org> SIZE=", 0, SMTP_PATH_BAD_PARAM, NULL, NULL, 0 },
		{ "FROM:<a@example.org> =x", 0, SMTP_PATH_BAD_PARAM, NULL, NULL, 0 },
		{ "FROM:<a@example.org> -X=1", 0, SMTP_PATH_BAD_PARAM, NULL, NULL, 0 },
		{ "FROM:<a@example.org> X=a=b", 0, SMTP_PATH_BAD_PARAM, NULL, NULL, 0 },
		{ "FROM:<a@example.org>SIZE=1", 0, SMTP_PATH_SYNTAX, NULL, NULL, 0 },
		{ "FROM:<a@example.org> BODY=8BITMIME body=7BIT", 0, SMTP_PATH_BAD_PARAM, NULL, NULL, 0 },
		{ "FROM:<a@example.org", 0, SMTP_PATH_BAD_ADDRESS, NULL, NULL, 0 },
		{ "TO:<\xc3\xa9t\xc3\xa9@example.org>", 1, SMTP_PATH_OK, "\xc3\xa9t\xc3\xa9@example.org",
		  "example.org", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct path_case *c = &cases[i];
		struct smtp_path p;
		enum smtp_path_rc rc = smtp_parse_path(c->args, strlen(c->args), c->rcpt ? "TO:" : "FROM:",
						       c->rcpt, &p);
		if (rc != c->want)
			fprintf(stderr, "case %zu '%s': got %d, want %d\n", i, c->args, rc, c->want);
		CU_ASSERT_EQUAL(rc, c->want);
		if (rc != SMTP_PATH_OK)
			continue;
		CU_ASSERT_EQUAL(p.mailboxlen, strlen(c->mailbox));
		CU_ASSERT_NSTRING_EQUAL(p.mailbox, c->mailbox, p.mailboxlen);
		if (c->domain) {
			CU_ASSERT_PTR_NOT_NULL_FATAL(p.domain);
			CU_ASSERT_EQUAL(p.domainlen, strlen(c->domain));
			CU_ASSERT_NSTRING_EQUAL(p.domain, c->domain, p.domainlen);
		} else {
			CU_ASSERT_PTR_NULL(p.domain);
		}
		CU_ASSERT_EQUAL(p.nparams, c->nparams);
	}
}

/* RFC 5321 §4.5.3.1 limits, counted as sent: local part 64 (quotes and
 * backslashes included), domain 255, path 256 with its angle brackets.
 * The quoted form once went unchecked (a pre-auth stack overflow). */
static char *path_args(char *out, const char *prefix, size_t local, int quoted, size_t domain)
{
	char *o = out;
	o += sprintf(o, "%s<", prefix);
	if (quoted)
		*o++ = '"';
	for (size_t i = 0; i < local - (quoted ? 2 : 0); i++)
		*o++ = 'a';
	if (quoted)
		*o++ = '"';
	*o++ = '@';
	/* labels of 9 "b" + "." up to the wanted length, ending in ".org" */
	size_t d = 0;
	while (d + 4 < domain) {
		size_t lab = domain - d - 4 > 9 ? 9 : domain - d - 4;
		if (lab == 0)
			break;
		memset(o, 'b', lab);
		o += lab;
		d += lab;
		if (d + 4 < domain) {
			*o++ = '.';
			d++;
		}
	}
	memcpy(o, ".org>", 6);
	return out;
}

static void test_path_limits(void)
{
	char args[2000];
	struct smtp_path p;
	static const struct {
		size_t local;
		int quoted;
		size_t domain;
		enum smtp_path_rc want;
	} cases[] = {
		{ 64, 0, 20, SMTP_PATH_OK },
		{ 65, 0, 20, SMTP_PATH_TOO_LONG },
		{ 64, 1, 20, SMTP_PATH_OK },
		{ 65, 1, 20, SMTP_PATH_TOO_LONG },
		{ 1252, 1, 11, SMTP_PATH_TOO_LONG },
		{ 60, 0, 193, SMTP_PATH_OK },		/* 1 + 60 + 1 + 193 + 1 = 256 */
		{ 60, 0, 194, SMTP_PATH_TOO_LONG },	/* 257 */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int rcpt = 0; rcpt < 2; rcpt++) {
			path_args(args, rcpt ? "TO:" : "FROM:", cases[i].local, cases[i].quoted, cases[i].domain);
			enum smtp_path_rc rc = smtp_parse_path(args, strlen(args), rcpt ? "TO:" : "FROM:",
							       rcpt, &p);
			if (rc != cases[i].want)
				fprintf(stderr, "limit case %zu: got %d, want %d: %s\n", i, rc,
					cases[i].want, args);
			CU_ASSERT_EQUAL(rc, cases[i].want);
			if (rc == SMTP_PATH_OK)
				CU_ASSERT_EQUAL(p.domainlen, cases[i].domain);
		}
	}
	/* A backslash counts as sent. */
	char q[200] = "TO:<\"";
	for (int i = 0; i < 31; i++)
		strcat(q, "\\a");
	strcat(q, "\"@example.org>");	/* 2 + 62 = 64 octets */
	CU_ASSERT_EQUAL(smtp_parse_path(q, strlen(q), "TO:", 1, &p), SMTP_PATH_OK);
	CU_ASSERT_EQUAL(p.locallen, 64);
	memmove(q + 5, q + 4, strlen(q + 4) + 1);	/* one more '"'... */
	q[4] = '"';
	q[5] = 'x';				/* ... as 'x': 65 octets */
	CU_ASSERT_EQUAL(smtp_parse_path(q, strlen(q), "TO:", 1, &p), SMTP_PATH_TOO_LONG);
	/* The source route counts toward the path. */
	char sr[400] = "TO:<@";
	for (int i = 0; i < 25; i++)
		strcat(sr, "relay0000.");
	strcat(sr, "example:u@example.org>");
	CU_ASSERT_EQUAL(smtp_parse_path(sr, strlen(sr), "TO:", 1, &p), SMTP_PATH_TOO_LONG);
}

static void test_params(void)
{
	struct smtp_path p;
	const char *a = "FROM:<a@b.example> SIZE=12345 body=8BITMIME SMTPUTF8 ENVID=QQ+2B";
	CU_ASSERT_EQUAL_FATAL(smtp_parse_path(a, strlen(a), "FROM:", 0, &p), SMTP_PATH_OK);
	CU_ASSERT_EQUAL_FATAL(p.nparams, 4);
	CU_ASSERT(smtp_param_is(&p.params[0], "size"));
	CU_ASSERT_NSTRING_EQUAL(p.params[0].val, "12345", 5);
	CU_ASSERT(smtp_param_is(&p.params[1], "BODY"));
	CU_ASSERT(smtp_param_is(&p.params[2], "SMTPUTF8"));
	CU_ASSERT_PTR_NULL(p.params[2].val);
	char many[600] = "FROM:<a@b.example>";
	for (int i = 0; i < SMTP_MAX_PARAMS + 1; i++)
		sprintf(many + strlen(many), " X%d=1", i);
	CU_ASSERT_EQUAL(smtp_parse_path(many, strlen(many), "FROM:", 0, &p), SMTP_PATH_TOO_MANY_PARAMS);
	const char *utf = "FROM:<\xc3\xa9@b.example>";
	CU_ASSERT_EQUAL(smtp_parse_path(utf, strlen(utf), "FROM:", 0, &p), SMTP_PATH_OK);
	CU_ASSERT(p.has_8bit);
}

static void test_helo(void)
{
	CU_ASSERT(smtp_helo_valid("mail.example.org", 16));
	CU_ASSERT(smtp_helo_valid("localhost", 9));
	CU_ASSERT(smtp_helo_valid("[192.0.2.1]", 11));
	CU_ASSERT(smtp_helo_valid("[IPv6:2001:db8::1]", 18));
	CU_ASSERT(smtp_helo_valid("\xc3\xa9t\xc3\xa9.example", 13));
	CU_ASSERT(!smtp_helo_valid("", 0));
	CU_ASSERT(!smtp_helo_valid("a b", 3));
	CU_ASSERT(!smtp_helo_valid("x ADDR=1.2.3.4", 14));
	CU_ASSERT(!smtp_helo_valid("a=b", 3));
	CU_ASSERT(!smtp_helo_valid("[1.2.3]", 7));
	CU_ASSERT(!smtp_helo_valid("-a.example", 10));
	CU_ASSERT(!smtp_helo_valid("a..example", 10));
}

static void test_u64(void)
{
	unsigned long long v;
	CU_ASSERT(smtp_parse_u64("0", 1, &v) && v == 0);
	CU_ASSERT(smtp_parse_u64("18446744073709551615", 20, &v) && v == 18446744073709551615ULL);
	CU_ASSERT(!smtp_parse_u64("18446744073709551616", 20, &v));
	CU_ASSERT(!smtp_parse_u64("", 0, &v));
	CU_ASSERT(!smtp_parse_u64("-1", 2, &v));
	CU_ASSERT(!smtp_parse_u64("12a", 3, &v));
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("smtp_parse", NULL, NULL);
	CU_ADD(s, test_line_check);
	CU_ADD(s, test_verbs);
	CU_ADD(s, test_paths);
	CU_ADD(s, test_path_limits);
	CU_ADD(s, test_params);
	CU_ADD(s, test_helo);
	CU_ADD(s, test_u64);
}

CU_MAIN
