/* test_imap_parser: the pre-auth IMAP parser - tags, atoms, quoted strings
 * with escapes, synchronising and non-synchronising literals split across
 * reads at every offset (a "+" is asked for exactly once per synchronising
 * literal, never for {n+}), lists, overlong lines, oversize and
 * unterminated literals, bad tags (never echoed) - SASL PLAIN, and the
 * COMPRESS watcher of the relay (imap_watch), fed whole, byte by byte and
 * split at every point - and the lines of an upstream response
 * (imap_resp_line: bare LF or CRLF, literal data kept whole). */
#include "cu_main.h"
#include "imap_parser.h"
#include "imap_resp.h"
#include "sasl.h"
#include "imap_watch.h"
#include "imap_bol.h"

#include <stdio.h>
#include <string.h>

static struct imap_cmd cmd;

static enum imap_parse_rc parse(const char *s, size_t len, struct imap_parse_info *info)
{
	return imap_parse(s, len, 100, &cmd, info);
}

static void test_simple(void)
{
	struct imap_parse_info info;
	const char *s = "a1 capability\r\n";
	CU_ASSERT_EQUAL(parse(s, strlen(s), &info), IMAP_PARSE_OK);
	CU_ASSERT_STRING_EQUAL(cmd.tag, "a1");
	CU_ASSERT_STRING_EQUAL(cmd.name, "CAPABILITY");
	CU_ASSERT_EQUAL(cmd.nargs, 0);
	CU_ASSERT_EQUAL(info.consumed, strlen(s));
	s = "A0001 LOGIN alice \"p\\\"a\\\\ss\"\r\nNEXT";
	CU_ASSERT_EQUAL(parse(s, strlen(s), &info), IMAP_PARSE_OK);
	CU_ASSERT_EQUAL(info.consumed, strlen(s) - 4);
	CU_ASSERT_EQUAL_FATAL(cmd.nargs, 2);
	CU_ASSERT_EQUAL(cmd.args[0].type, IMAP_ARG_ATOM);
	CU_ASSERT_NSTRING_EQUAL(cmd.args[0].p, "alice", 5);
	CU_ASSERT_EQUAL(cmd.args[1].type, IMAP_ARG_STRING);
	CU_ASSERT_EQUAL(cmd.args[1].len, 6);
	CU_ASSERT_NSTRING_EQUAL(cmd.args[1].p, "p\"a\\ss", 6);
	s = "x ID (\"name\" \"mutt\" \"version\" NIL)\r\n";
	CU_ASSERT_EQUAL(parse(s, strlen(s), &info), IMAP_PARSE_OK);
	CU_ASSERT_EQUAL(cmd.nargs, 1);
	CU_ASSERT_EQUAL(cmd.args[0].type, IMAP_ARG_LIST);
	s = "x ID NIL\r\n";
	CU_ASSERT_EQUAL(parse(s, strlen(s), &info), IMAP_PARSE_OK);
	CU_ASSERT_EQUAL(cmd.args[0].type, IMAP_ARG_ATOM);
	s = "t AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n";
	CU_ASSERT_EQUAL(parse(s, strlen(s), &info), IMAP_PARSE_OK);
	CU_ASSERT_EQUAL(cmd.nargs, 2);
	CU_ASSERT_NSTRING_EQUAL(cmd.args[1].p, "AGFsaWNlAHNlY3JldA==", cmd.args[1].len);
}

/* Feeds every prefix; returns how many CONTINUEs were asked for distinct
 * literal positions, checks the full input parses to want. */
static int feed_prefixes(const char *s, size_t len, enum imap_parse_rc want)
{
	struct imap_parse_info info;
	size_t last_lit = (size_t)-1;
	int conts = 0;
	for (size_t i = 0; i < len; i++) {
		enum imap_parse_rc rc = parse(s, i, &info);
		CU_ASSERT(rc == IMAP_PARSE_MORE || rc == IMAP_PARSE_CONTINUE);
		if (rc == IMAP_PARSE_CONTINUE && info.literal_at != last_lit) {
			last_lit = info.literal_at;
			conts++;
			CU_ASSERT_EQUAL(info.literal_at, i);	/* right after the CRLF */
		}
	}
	CU_ASSERT_EQUAL(parse(s, len, &info), want);
	return conts;
}

static void test_literals_split(void)
{
	static const char s[] = "a LOGIN {5}\r\nalice {6}\r\nse\0ret\r\n";
	size_t len = sizeof(s) - 1;
	CU_ASSERT_EQUAL(feed_prefixes(s, len, IMAP_PARSE_OK), 2);
	CU_ASSERT_EQUAL_FATAL(cmd.nargs, 2);
	CU_ASSERT(cmd.args[0].literal);
	CU_ASSERT_EQUAL(cmd.args[1].len, 6);
	CU_ASSERT(memcmp(cmd.args[1].p, "se\0ret", 6) == 0);	/* literals may hold NUL */
	/* LITERAL+: no continuation is ever asked for. */
	const char *np = "a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n";
	CU_ASSERT_EQUAL(feed_prefixes(np, strlen(np), IMAP_PARSE_OK), 0);
	CU_ASSERT_NSTRING_EQUAL(cmd.args[1].p, "secret", 6);
	/* Mixed, and a zero-length literal. */
	const char *mx = "a LOGIN {0}\r\n {3+}\r\nabc\r\n";
	CU_ASSERT_EQUAL(feed_prefixes(mx, strlen(mx), IMAP_PARSE_OK), 1);
	CU_ASSERT_EQUAL(cmd.args[0].len, 0);
}

static void test_limits(void)
{
	struct imap_parse_info info;
	static char big[IMAP_LINE_MAX + 100];
	memset(big, 'a', sizeof(big));
	memcpy(big, "t NOOP ", 7);
	CU_ASSERT_EQUAL(parse(big, sizeof(big), &info), IMAP_PARSE_TOO_LONG);
	/* A literal over max_literal (100 here) is refused without "+". */
	const char *s = "t LOGIN {101}\r\n";
	CU_ASSERT_EQUAL(parse(s, strlen(s), &info), IMAP_PARSE_LITERAL_TOO_BIG);
	CU_ASSERT_EQUAL(info.literal_len, 101);
	CU_ASSERT_STRING_EQUAL(cmd.tag, "t");
	CU_ASSERT_EQUAL(parse(s, 12, &info), IMAP_PARSE_LITERAL_TOO_BIG);	/* before its CRLF */
	s = "t LOGIN {99999999999999999999}\r\n";	/* refused as the digits arrive */
	CU_ASSERT_EQUAL(parse(s, strlen(s), &info), IMAP_PARSE_LITERAL_TOO_BIG);
	/* Unterminated literal: just more to come. */
	s = "t LOGIN {10}\r\nabc";
	CU_ASSERT_EQUAL(parse(s, strlen(s), &info), IMAP_PARSE_MORE);
}

static void test_bad(void)
{
	struct imap_parse_info info;
	static const struct { const char *in; const char *tag; } cases[] = {
		{ "+ LOGIN a b\r\n", "" },
		{ "a*b NOOP\r\n", "" },
		{ " NOOP\r\n", "" },
		{ "a1\r\n", "" },
		{ "a1 LOGIN \"unterminated\r\n", "a1" },
		{ "a1 LOGIN \"bad\\escape\"\r\n", "a1" },
		{ "a1 LOGIN a  b\r\n", "a1" },
		{ "a1 LOGIN {3x}\r\n", "a1" },
		{ "a1 LOGIN {3}x\r\n", "a1" },
		{ "a1 NOOP\n", "a1" },
		{ "a1 ID ((((((x))))))\r\n", "a1" },
		{ "a1 X a b c d e f g h i\r\n", "a1" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum imap_parse_rc rc = parse(cases[i].in, strlen(cases[i].in), &info);
		if (rc != IMAP_PARSE_BAD)
			fprintf(stderr, "case %zu '%s': rc %d\n", i, cases[i].in, rc);
		CU_ASSERT_EQUAL(rc, IMAP_PARSE_BAD);
		CU_ASSERT_STRING_EQUAL(cmd.tag, cases[i].tag);
		if (info.consumed != strlen(cases[i].in))
			fprintf(stderr, "case %zu: consumed %zu\n", i, info.consumed);
		CU_ASSERT_EQUAL(info.consumed, strlen(cases[i].in));	/* resync after the LF */
	}
	/* A bad line is reported only once its LF is here. */
	CU_ASSERT_EQUAL(parse("a1 LOGIN \"x", 11, &info), IMAP_PARSE_MORE);
	CU_ASSERT_EQUAL(parse("+bad", 4, &info), IMAP_PARSE_MORE);
}

static void test_sasl_plain(void)
{
	struct sasl_plain sp;
	CU_ASSERT_EQUAL(sasl_plain_decode("AGFsaWNlAHNlY3JldA==", 20, &sp), 0);
	CU_ASSERT_STRING_EQUAL(sp.authzid, "");
	CU_ASSERT_STRING_EQUAL(sp.authcid, "alice");
	CU_ASSERT_STRING_EQUAL(sp.passwd, "secret");
	/* "bob\0alice\0pw" */
	CU_ASSERT_EQUAL(sasl_plain_decode("Ym9iAGFsaWNlAHB3", 16, &sp), 0);
	CU_ASSERT_STRING_EQUAL(sp.authzid, "bob");
	CU_ASSERT_STRING_EQUAL(sp.authcid, "alice");
	CU_ASSERT_EQUAL(sasl_plain_decode("not base64!", 11, &sp), -1);
	CU_ASSERT_EQUAL(sasl_plain_parse((const unsigned char *)"a\0b", 3, &sp), -1);	/* one NUL */
	CU_ASSERT_EQUAL(sasl_plain_parse((const unsigned char *)"\0b\0c\0d", 6, &sp), -1);	/* three */
	CU_ASSERT_EQUAL(sasl_plain_parse((const unsigned char *)"\0\0pw", 4, &sp), -1);	/* no authcid */
	CU_ASSERT_EQUAL(sasl_plain_parse((const unsigned char *)"\0u\0", 3, &sp), -1);	/* no passwd */
	CU_ASSERT_EQUAL(sasl_plain_parse((const unsigned char *)"\0u\0p", 4, &sp), 0);
}

/* The relay's COMPRESS watcher: what it must see (every command whose
 * name is COMPRESS, in any case, after any tag and line ending) and what
 * it may ignore. */
static const struct {
	const char *label, *in;
	bool want;
} watch_cases[] = {
	{ "plain", "a COMPRESS DEFLATE\r\n", true },
	{ "lower case", "a1 compress deflate\r\n", true },
	{ "mixed case, no argument yet", "x CoMpReSs", true },
	{ "after other commands", "a NOOP\r\nb SELECT INBOX\r\nc COMPRESS DEFLATE\r\n", true },
	{ "LF-only line ends", "a NOOP\nb COMPRESS DEFLATE\n", true },
	{ "after an empty line", "\r\n\r\nt COMPRESS DEFLATE\r\n", true },
	{ "odd tag", "*]x! COMPRESS DEFLATE\r\n", true },
	{ "two spaces (superset)", "a  COMPRESS DEFLATE\r\n", true },
	{ "literal data that looks like one (false positive)",
	  "a APPEND INBOX {24}\r\nb COMPRESS DEFLATE\r\n\r\n", true },
	{ "name only as an argument", "a NOOP COMPRESS\r\n", false },
	{ "no tag", "COMPRESS DEFLATE\r\n", false },
	{ "another command", "a COMPRESSED\r\n", true },	/* a prefix: false positive, fine */
	{ "name cut by a line end", "a COMPRES\r\nS DEFLATE\r\n", false },
	{ "CR inside the tag", "a\rb COMPRESS\r\n", false },
	{ "in a search string", "a SEARCH TEXT \"x COMPRESS\"\r\n", false },
	{ "IDLE DONE", "a IDLE\r\nDONE\r\n", false },
	{ "empty", "", false },
};

static bool watch_split(const char *in, size_t len, size_t cut1, size_t cut2)
{
	struct imap_watch w;
	imap_watch_init(&w);
	imap_watch_feed(&w, in, cut1);
	imap_watch_feed(&w, in + cut1, cut2 - cut1);
	return imap_watch_feed(&w, in + cut2, len - cut2);
}

static void test_watch_compress(void)
{
	for (size_t i = 0; i < sizeof(watch_cases) / sizeof(watch_cases[0]); i++) {
		const char *in = watch_cases[i].in;
		size_t len = strlen(in);
		struct imap_watch w;
		bool got;
		imap_watch_init(&w);
		got = imap_watch_feed(&w, in, len);
		if (got != watch_cases[i].want)
			fprintf(stderr, "%s: whole: got %d, want %d\n", watch_cases[i].label, got,
				watch_cases[i].want);
		CU_ASSERT_EQUAL(got, watch_cases[i].want);
		imap_watch_init(&w);
		for (size_t j = 0; j < len; j++)
			imap_watch_feed(&w, in + j, 1);
		CU_ASSERT_EQUAL(imap_watch_feed(&w, "", 0), watch_cases[i].want);
		for (size_t a = 0; a <= len; a++)
			for (size_t b = a; b <= len; b++) {
				got = watch_split(in, len, a, b);
				if (got != watch_cases[i].want)
					fprintf(stderr, "%s: split at %zu, %zu: got %d\n", watch_cases[i].label,
						a, b, got);
				CU_ASSERT_EQUAL(got, watch_cases[i].want);
			}
	}
}

/* Latched: once seen, later bytes change nothing (they are compressed). */
static void test_watch_latch(void)
{
	struct imap_watch w;
	imap_watch_init(&w);
	static const char a[] = "a LOGIN x y\r\nb COMP", b[] = "RESS DEFLATE\r\n", z[] = "\x78\x9c\n\n";
	CU_ASSERT_FALSE(imap_watch_feed(&w, a, sizeof(a) - 1));
	CU_ASSERT_TRUE(imap_watch_feed(&w, b, sizeof(b) - 1));
	CU_ASSERT_TRUE(imap_watch_feed(&w, z, sizeof(z)));	/* with its NUL */
	CU_ASSERT_TRUE(w.compress);
}

/* An upstream response line by line: texts without CR/LF, literals
 * whole whatever bytes they hold, a missing final LF tolerated. */
static void test_resp_lines(void)
{
	static const char r[] = "* 1 FETCH (BODY[] {4}\na\nb\r)\r\nM2 OK done\n";
	size_t len = sizeof(r) - 1, text, lit;
	CU_ASSERT_EQUAL(imap_resp_length(r, len), 29);
	size_t pos = imap_resp_line(r, len, 0, &text, &lit);
	CU_ASSERT_EQUAL(text, 21);
	CU_ASSERT_EQUAL(lit, 4);
	CU_ASSERT_EQUAL(pos, 26);
	pos = imap_resp_line(r, len, pos, &text, &lit);
	CU_ASSERT_EQUAL(text, 1);	/* ")" */
	CU_ASSERT_EQUAL(lit, 0);
	CU_ASSERT_EQUAL(pos, 29);
	pos = imap_resp_line(r, len, pos, &text, &lit);
	CU_ASSERT_EQUAL(text, 10);	/* "M2 OK done" */
	CU_ASSERT_EQUAL(pos, len);
	/* A literal cut short by the end, and a line without LF. */
	CU_ASSERT_EQUAL(imap_resp_line("x {9}\r\nab", 9, 0, &text, &lit), 9);
	CU_ASSERT_EQUAL(text, 5);
	CU_ASSERT_EQUAL(lit, 2);
	CU_ASSERT_EQUAL(imap_resp_line("M1 NO", 5, 0, &text, &lit), 5);
	CU_ASSERT_EQUAL(text, 5);
	CU_ASSERT_EQUAL(lit, 0);
}

/* Where the autologout BYE may go: after an LF, outside literals. */
static bool bol_after(const char *s, size_t cut)
{
	struct imap_bol whole, split, bytes;
	size_t n = strlen(s);
	imap_bol_init(&whole);
	imap_bol_init(&split);
	imap_bol_init(&bytes);
	imap_bol_feed(&whole, s, n);
	imap_bol_feed(&split, s, cut);
	imap_bol_feed(&split, s + cut, n - cut);
	for (size_t i = 0; i < n; i++)
		imap_bol_feed(&bytes, s + i, 1);
	CU_ASSERT_EQUAL(whole.at_bol, split.at_bol);
	CU_ASSERT_EQUAL(whole.at_bol, bytes.at_bol);
	CU_ASSERT_EQUAL(whole.literal, bytes.literal);
	return whole.at_bol;
}

static void test_bol(void)
{
	CU_ASSERT_TRUE(bol_after("", 0));
	CU_ASSERT_TRUE(bol_after("* 1 EXISTS\r\n", 3));
	CU_ASSERT_FALSE(bol_after("* 1 EXISTS\r\n* 2", 12));
	/* Inside a literal whose data has an LF of its own: no boundary. */
	CU_ASSERT_FALSE(bol_after("* 1 FETCH (BODY[] {100}\r\nSubject: x\r\n", 20));
	CU_ASSERT_FALSE(bol_after("* 1 FETCH (BODY[] {5}\r\nab\r\nc", 22));
	/* The data over, the line goes on; its LF is the boundary. */
	CU_ASSERT_FALSE(bol_after("* 1 FETCH (BODY[] {4}\r\nab\r\n", 5));
	CU_ASSERT_TRUE(bol_after("* 1 FETCH (BODY[] {4}\r\nab\r\n)\r\n", 26));
	CU_ASSERT_TRUE(bol_after("* 1 FETCH (BODY[1] {2}\r\nab BODY[2] {3}\r\n\n\n\n)\r\nM1 OK\r\n", 30));
	CU_ASSERT_FALSE(bol_after("* 1 FETCH (BODY[1] {2}\r\nab BODY[2] {3}\r\n\n\n", 30));
	/* {n+}, ~{n} and {0}; not a literal: "{}", "{x}", "}" alone, "{3} x". */
	CU_ASSERT_FALSE(bol_after("* X {3+}\r\n", 2));
	CU_ASSERT_FALSE(bol_after("* X ~{3}\r\n", 2));
	CU_ASSERT_FALSE(bol_after("* X {0}\r\n", 7));	/* the response goes on */
	CU_ASSERT_TRUE(bol_after("* X {0}\r\n)\r\n", 7));
	CU_ASSERT_TRUE(bol_after("* X {}\r\n", 1));
	CU_ASSERT_TRUE(bol_after("* X {x}\r\n", 1));
	CU_ASSERT_TRUE(bol_after("* X }\r\n", 1));
	CU_ASSERT_TRUE(bol_after("* X {3} x\r\n", 4));
	/* An announcement longer than the tail kept still counts. */
	CU_ASSERT_FALSE(bol_after("* X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa {7}\r\nabc", 40));
	/* Leading zeros longer than the tail kept: still a literal. */
	CU_ASSERT_FALSE(bol_after("* 1 FETCH (BODY[] {0000000000000000000005}\r\nab\r\nc", 30));
	CU_ASSERT_FALSE(bol_after("* 1 FETCH (BODY[] {00000000000000000005+}\r\nab\r\nc", 30));
	/* A count too big for 64 bits never ends: the BYE is never written. */
	uint64_t n;
	CU_ASSERT_EQUAL(imap_bol_announced("{99999999999999999999}", 22, false, &n), 0);
	CU_ASSERT_EQUAL(n, UINT64_MAX);
	CU_ASSERT_EQUAL(imap_bol_announced("{18446744073709551615}\r", 23, false, &n), 0);
	CU_ASSERT_EQUAL(n, UINT64_MAX);
	CU_ASSERT_EQUAL(imap_bol_announced("{1234567890123456789}", 21, false, &n), 0);
	CU_ASSERT_EQUAL(n, 1234567890123456789ULL);
	CU_ASSERT_EQUAL(imap_bol_announced("0000000000000000000005}\r", 24, true, &n), 0);
	CU_ASSERT_EQUAL(n, UINT64_MAX);
	CU_ASSERT_EQUAL(imap_bol_announced("0000000000000000000005}\r", 24, false, &n), -1);
	CU_ASSERT_EQUAL(imap_bol_announced("1}", 2, false, &n), -1);
	CU_ASSERT_EQUAL(imap_bol_announced("{+}", 3, false, &n), -1);
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("imap_parser", NULL, NULL);
	CU_ADD(s, test_simple);
	CU_ADD(s, test_literals_split);
	CU_ADD(s, test_limits);
	CU_ADD(s, test_bad);
	CU_ADD(s, test_sasl_plain);
	CU_ADD(s, test_watch_compress);
	CU_ADD(s, test_watch_latch);
	CU_ADD(s, test_resp_lines);
	CU_ADD(s, test_bol);
}

CU_MAIN
