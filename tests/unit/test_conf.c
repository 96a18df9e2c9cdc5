/* test_conf: configuration parsing and validation - good files give typed
 * values and defaults; bad files give FILE:LINE: message for each problem
 * (unknown keys, bad values, cross-field rules of DESIGN.md §3, include()
 * relative to the config's folder, secret-file permissions), each problem
 * once even when the file checks and the TLS loader both meet it; pins
 * parse in every accepted format. Comments: the stripper blanks exactly
 * what libconfuse's lexer takes as comments (table), and FILE:LINE stays
 * right after every comment form, in the main file and in include()d
 * files, with comments inside lists. */
#include "imap_conf.h"
#include "smtp_conf.h"
#include "conf.h"
#include "conf_strip.h"
#include "conf_value.h"
#include "admission.h"
#include "cu_main.h"
#include "diag.h"
#include "strbuf.h"
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void write_file(const char *name, const char *text, int mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
	chmod(path, (mode_t)mode);
}

#define BASE                                                                        \
	"hostname = \"mx.example.org\"\n"                                           \
	"tls \"default\" {\n"                                                       \
	"  cert = \"cert.pem\"\n"                                                   \
	"  key = \"key.pem\"\n"                                                     \
	"}\n"                                                                       \
	"upstream \"postfix\" {\n"                                                  \
	"  address = { \"127.0.0.1:10025\", \"[::1]:10025\" }\n"                    \
	"}\n"

/* Loads text as <tmpdir>/NAME for the daemon kind; returns the conf (or
 * NULL) and fills d. */
static struct conf *load(const char *name, const char *text, const struct conf_schema *kind, struct diag *d)
{
	char path[512];
	write_file(name, text, 0644);
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	diag_init(d);
	return conf_load(path, kind, d);
}

static int has(const struct diag *d, const char *file, int line, const char *text)
{
	char needle[600];
	snprintf(needle, sizeof(needle), "%s/%s:%d: %s", tmpdir, file, line, text);
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->lines[i], needle))
			return 1;
	fprintf(stderr, "\nmissing diagnostic '%s'; got:\n", needle);
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "  %s\n", d->lines[i]);
	return 0;
}

static void test_good(void)
{
	struct diag d;
	struct conf *c = load("good.conf", BASE
			      "listener \"smtps\" {\n"
			      "  address = { \"0.0.0.0:465\", \"[::]:465\" }\n"
			      "  tls_mode = \"implicit\"\n"
			      "}\n"
			      "listener \"local\" {\n"
			      "  address = \"127.0.0.1:10026\"\n"
			      "  tls_mode = \"none\"\n"
			      "  relay_networks = \"127.0.0.1/32\"\n"
			      "}\n"
			      "accept_domains = { \"Example.ORG.\", \".example.org\" }\n",
			      &smtpd_schema, &d);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(d.errors, 0);
	CU_ASSERT_STRING_EQUAL(c->hostname, "mx.example.org");
	CU_ASSERT_EQUAL(c->nlisteners, 2);
	CU_ASSERT_EQUAL(c->listeners[0].naddrs, 2);
	CU_ASSERT_PTR_EQUAL(c->listeners[0].tls, &c->tls[0]);
	CU_ASSERT_PTR_EQUAL(c->listeners[0].upstream, &c->upstreams[0]);
	CU_ASSERT_EQUAL(c->listeners[0].client_cert, CLIENT_CERT_NONE);
	CU_ASSERT_EQUAL(c->listeners[1].relay_networks.n, 1);
	CU_ASSERT_EQUAL(smtpd_conf(c)->max_line, 2048);
	CU_ASSERT_EQUAL(smtpd_conf(c)->max_recipients, 1000);
	CU_ASSERT_EQUAL(smtpd_conf(c)->max_message_size, 52428800);
	CU_ASSERT_EQUAL(smtpd_conf(c)->timeout_data, 600);
	CU_ASSERT_EQUAL(smtpd_conf(c)->min_data_rate, 0);	/* off: timeout_data is inactivity */
	CU_ASSERT_EQUAL(smtpd_conf(c)->auth_mechanisms.n, 2);
	CU_ASSERT_EQUAL(c->upstreams[0].naddrs, 2);
	CU_ASSERT_EQUAL(c->upstreams[0].connect_timeout, 10);
	CU_ASSERT(c->upstreams[0].xclient);
	/* accept_domains are normalised: lower case, no trailing dot. */
	CU_ASSERT_STRING_EQUAL(smtpd_conf(c)->accept_domains.v[0], "example.org");
	CU_ASSERT_STRING_EQUAL(smtpd_conf(c)->accept_domains.v[1], ".example.org");
	/* Relative paths resolve against the config's folder. */
	char want[600];
	snprintf(want, sizeof(want), "%s/cert.pem", tmpdir);
	CU_ASSERT_STRING_EQUAL(c->tls[0].cert.v[0], want);
	CU_ASSERT_STRING_EQUAL(c->tls[0].alpn_ids.v[0], "smtp");
	conf_free(&c);
	diag_free(&d);
}

static void test_unknown_key(void)
{
	struct diag d;
	struct conf *c = load("bad1.conf", "hostname = \"mx.example.org\"\n\nbogus = 1\n", &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(has(&d, "bad1.conf", 3, "no such option 'bogus'"));
	diag_free(&d);
	/* An imapd key is unknown to smtpd and vice versa. */
	c = load("bad2.conf", "max_literal = 100\n", &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(has(&d, "bad2.conf", 1, "no such option 'max_literal'"));
	diag_free(&d);
	c = load("bad3.conf", "max_recipients = 100\n", &imapd_schema, &d);
	CU_ASSERT(has(&d, "bad3.conf", 1, "no such option 'max_recipients'"));
	conf_free(&c);
	diag_free(&d);
}

static void test_rules(void)
{
	struct diag d;
	struct conf *c = load("rules.conf", BASE		/* lines 1-8 */
			      "listener \"a\" {\n"		/* 9 */
			      "  address = \"192.0.2.1:26\"\n"	/* 10 */
			      "  tls_mode = \"none\"\n"		/* 11 */
			      "}\n"				/* 12 */
			      "listener \"b\" {\n"		/* 13 */
			      "  address = \"127.0.0.1:587\"\n"	/* 14 */
			      "  tls_mode = \"starttls\"\n"	/* 15 */
			      "  client_cert = \"require\"\n"	/* 16 */
			      "  require_tls = false\n"		/* 17 */
			      "}\n"				/* 18 */
			      "listener \"c\" {\n"		/* 19 */
			      "  address = \"127.0.0.1:465\"\n"	/* 20 */
			      "  peers_only = true\n"		/* 21 */
			      "  tls_mode = \"sometimes\"\n"	/* 22 */
			      "}\n"				/* 23 */
			      "max_recipients = 50\n"		/* 24 */
			      "peer \"p\" {\n"			/* 25 */
			      "  fingerprint = \"sha256:zz\"\n"	/* 26 */
			      "}\n"				/* 27 */
			      "listener \"d\" {\n"		/* 28 */
			      "  address = \"127.0.0.1:2525\"\n"	/* 29 */
			      "  tls = \"nope\"\n"		/* 30 */
			      "  upstream = \"missing\"\n"	/* 31 */
			      "}\n"				/* 32 */
			      "min_data_rate = -1\n",		/* 33 */
			      &smtpd_schema, &d);
	CU_ASSERT(d.errors > 0);
	conf_free(&c);
	CU_ASSERT(has(&d, "rules.conf", 11, "listener \"a\": tls_mode = none is only allowed on loopback"));
	CU_ASSERT(has(&d, "rules.conf", 17, "listener \"b\": require_tls = false conflicts with client_cert = require"));
	CU_ASSERT(has(&d, "rules.conf", 21, "listener \"c\": peers_only needs client_cert"));
	CU_ASSERT(has(&d, "rules.conf", 22, "tls_mode: bad value 'sometimes'"));
	CU_ASSERT(has(&d, "rules.conf", 24, "max_recipients: 50 is below 100"));
	CU_ASSERT(has(&d, "rules.conf", 26, "fingerprint: malformed SHA-256 fingerprint"));
	CU_ASSERT(has(&d, "rules.conf", 30, "listener \"d\": no tls section \"nope\""));
	CU_ASSERT(has(&d, "rules.conf", 31, "listener \"d\": no upstream section \"missing\""));
	CU_ASSERT(has(&d, "rules.conf", 33, "min_data_rate: -1 out of range (0-1073741824)"));
	diag_free(&d);
}

/* More listener sections than the shared admission counts tell apart:
 * refused at the first one too many (-t and the start say so). */
static void test_too_many_listeners(void)
{
	enum { N = ADMISSION_CONF_LISTENERS_MAX + 1 };
	static char text[N * 80 + 512];
	struct strbuf b;
	struct diag d;
	sb_init(&b, text, sizeof(text));
	sb_adds(&b, BASE);			/* lines 1-8 */
	for (unsigned i = 0; i < N; i++) {	/* 4 lines each */
		sb_addf(&b, "listener \"l%u\" {\n  address = \"127.0.0.1:%u\"\n", i, 20000 + i);
		sb_adds(&b, "  tls_mode = \"none\"\n}\n");
	}
	CU_ASSERT_FATAL(sb_ok(&b));
	struct conf *c = load("many.conf", text, &smtpd_schema, &d);
	CU_ASSERT(d.errors > 0);
	conf_free(&c);
	char want[160];
	struct strbuf w;
	sb_init(&w, want, sizeof(want));
	sb_addf(&w, "listener \"l%u\": more than %u listener sections", N - 1, N - 1);
	CU_ASSERT(has(&d, "many.conf", 10 + 4 * (N - 1), want));	/* the section as conf.c places it */
	diag_free(&d);
}

static void test_hostname_and_tls_literal(void)
{
	struct diag d;
	struct conf *c = load("host.conf", "hostname = \"localhost\"\n"
			      "upstream \"u\" {\n"
			      "  address = \"127.0.0.1:25\"\n"
			      "  tls = \"starttls\"\n"
			      "}\n"
			      "listener \"l\" {\n"
			      "  address = \"127.0.0.1:26\"\n"
			      "  tls_mode = \"none\"\n"
			      "}\n",
			      &smtpd_schema, &d);
	CU_ASSERT_EQUAL(d.errors, 2);
	conf_free(&c);
	CU_ASSERT(has(&d, "host.conf", 1, "hostname: 'localhost' has no dot"));
	CU_ASSERT(has(&d, "host.conf", 4, "upstream \"u\": TLS to the IP literal 127.0.0.1 needs verify_name"));
	diag_free(&d);
}

static void test_warnings(void)
{
	struct diag d;
	struct conf *c = load("warn.conf", BASE
			      "listener \"mx\" {\n"			/* 9 */
			      "  address = \"0.0.0.0:25\"\n"		/* 10 */
			      "  tls_mode = \"starttls\"\n"		/* 11 */
			      "  relay_networks = \"127.0.0.0/8\"\n"	/* 12 */
			      "}\n",
			      &smtpd_schema, &d);
	CU_ASSERT_PTR_NOT_NULL(c);
	CU_ASSERT_EQUAL(d.errors, 0);
	CU_ASSERT(has(&d, "warn.conf", 9, "warning: listener \"mx\": require_tls = true on port 25"));
	CU_ASSERT(has(&d, "warn.conf", 12, "warning: listener \"mx\": relay_networks holds a loopback prefix"));
	conf_free(&c);
	diag_free(&d);
}

static void test_include(void)
{
	struct diag d;
	write_file("inc-ok.conf", "listener \"l\" {\n  address = \"127.0.0.1:26\"\n  tls_mode = \"none\"\n}\n",
		   0644);
	struct conf *c = load("main-inc.conf", BASE "include(\"inc-ok.conf\")\n", &smtpd_schema, &d);
	CU_ASSERT_PTR_NOT_NULL(c);
	CU_ASSERT_EQUAL(d.errors, 0);
	if (c)
		CU_ASSERT_EQUAL(c->nlisteners, 1);
	conf_free(&c);
	diag_free(&d);

	/* An error inside an included file names that file as written. */
	write_file("inc-bad.conf", "\n\nnonsense = 2\n", 0644);
	char path[512];
	snprintf(path, sizeof(path), "%s/main-bad.conf", tmpdir);
	write_file("main-bad.conf", BASE "include(\"inc-bad.conf\")\n", 0644);
	diag_init(&d);
	c = conf_load(path, &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	int found = 0;
	for (size_t i = 0; i < d.n; i++)
		if (!strncmp(d.lines[i], "inc-bad.conf:3: no such option 'nonsense'", 41))
			found = 1;
	if (!found)
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "  got: %s\n", d.lines[i]);
	CU_ASSERT(found);
	diag_free(&d);
}

static void test_files(void)
{
	struct diag d;
	write_file("cert.pem", "x", 0644);
	write_file("key.pem", "x", 0604);	/* readable by others: error */
	write_file("key2.pem", "x", 0640);	/* by the group: warning */
	struct conf *c = load("files.conf",
			      "hostname = \"mx.example.org\"\n"
			      "tls \"default\" {\n"
			      "  cert = { \"cert.pem\", \"cert.pem\", \"missing.pem\" }\n"
			      "  key = { \"key.pem\", \"key2.pem\", \"key2.pem\" }\n"
			      "}\n"
			      "upstream \"u\" { address = \"127.0.0.1:25\" }\n"
			      "listener \"l\" { address = \"127.0.0.1:465\" }\n",
			      &smtpd_schema, &d);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	conf_check_files(c, &d);
	CU_ASSERT(has(&d, "files.conf", 4, "key: secret file"));
	CU_ASSERT(has(&d, "files.conf", 4, "warning: key: secret file"));
	CU_ASSERT(has(&d, "files.conf", 3, "cert: cannot read"));
	CU_ASSERT_EQUAL(d.errors, 2);
	conf_free(&c);
	diag_free(&d);
}

/* Lines of d that contain needle. */
static int count_lines(const struct diag *d, const char *needle)
{
	int n = 0;
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->lines[i], needle))
			n++;
	return n;
}

static void test_diag_once(void)
{
	struct diag d;
	diag_init(&d);
	diag_error(&d, "a.conf", 3, "crl: cannot read '%s'", "x");
	diag_error(&d, "a.conf", 3, "crl: cannot read '%s'", "x");
	diag_error(&d, "a.conf", 4, "crl: cannot read '%s'", "x");	/* another line */
	diag_warn(&d, "a.conf", 3, "crl: cannot read '%s'", "x");	/* a warning is not the error */
	diag_warn(&d, "a.conf", 3, "crl: cannot read '%s'", "x");
	CU_ASSERT_EQUAL(d.n, 3);
	CU_ASSERT_STRING_EQUAL(d.lines[0], "a.conf:3: crl: cannot read 'x'");
	CU_ASSERT_STRING_EQUAL(d.lines[1], "a.conf:4: crl: cannot read 'x'");
	CU_ASSERT_STRING_EQUAL(d.lines[2], "a.conf:3: warning: crl: cannot read 'x'");
	/* Reports are counted, repeats included: a step sees its own failure. */
	CU_ASSERT_EQUAL(d.errors, 3);
	CU_ASSERT_EQUAL(d.warnings, 2);
	diag_free(&d);
}

/* -t runs conf_check_files() and then the TLS loader over the same files:
 * a missing or unusable file is still reported once, at its FILE:LINE. */
static void test_file_problems_once(void)
{
	struct diag d;
	char want[600];
	write_file("short.key", "0123456789", 0600);		/* ticket_key of 10 bytes */
	write_file("open.key", "x", 0644);			/* readable by others */
	write_file("bad-crl.pem", "not a CRL\n", 0644);
	struct conf *c = load("once.conf",
			      "hostname = \"mx.example.org\"\n"			/* 1 */
			      "tls \"default\" {\n"					/* 2 */
			      "  cert = { \"missing-cert.pem\", \"missing-cert.pem\" }\n"	/* 3 */
			      "  key = { \"missing.key\", \"open.key\" }\n"		/* 4 */
			      "  crl = { \"missing-crl.pem\", \"bad-crl.pem\" }\n"	/* 5 */
			      "  client_ca = \"missing-ca.pem\"\n"			/* 6 */
			      "  ocsp_staple = \"missing.ocsp\"\n"			/* 7 */
			      "  ticket_key = \"short.key\"\n"				/* 8 */
			      "}\n"							/* 9 */
			      "tls_client \"out\" {\n"					/* 10 */
			      "  cert = \"missing-client.pem\"\n"			/* 11 */
			      "  key = \"missing-client.key\"\n"			/* 12 */
			      "  ca = \"missing-client-ca.pem\"\n"			/* 13 */
			      "  verify_name = \"mx.partner.example\"\n"		/* 14 */
			      "}\n"
			      "upstream \"u\" { address = \"127.0.0.1:25\" }\n"
			      "listener \"l\" { address = \"127.0.0.1:465\" }\n",
			      &smtpd_schema, &d);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	conf_check_files(c, &d);
	tls_check_conf(c, &d);
	static const struct {
		const char *file;
		int line;
		const char *text;
	} want_once[] = {
		{ "missing-cert.pem", 3, "cert: cannot read" },
		{ "missing.key", 4, "key: cannot read" },
		{ "open.key", 4, "key: secret file" },
		{ "missing-crl.pem", 5, "crl: cannot read" },
		{ "bad-crl.pem", 5, "crl: '" },
		{ "missing-ca.pem", 6, "client_ca: cannot read" },
		{ "missing.ocsp", 7, "ocsp_staple: cannot read" },
		{ "short.key", 8, "ticket_key: '" },
		{ "missing-client.pem", 11, "cert: cannot read" },
		{ "missing-client.key", 12, "key: cannot read" },
		{ "missing-client-ca.pem", 13, "ca: cannot read" },
	};
	for (size_t i = 0; i < sizeof(want_once) / sizeof(want_once[0]); i++) {
		snprintf(want, sizeof(want), "%s/%s'", tmpdir, want_once[i].file);
		int n = count_lines(&d, want);
		if (n != 1) {
			fprintf(stderr, "\n'%s' reported %d times; got:\n", want_once[i].file, n);
			for (size_t j = 0; j < d.n; j++)
				fprintf(stderr, "  %s\n", d.lines[j]);
		}
		CU_ASSERT_EQUAL(n, 1);
		CU_ASSERT(has(&d, "once.conf", want_once[i].line, want_once[i].text));
	}
	/* Every line is about one of those files: nothing else, nothing twice. */
	CU_ASSERT_EQUAL(d.n, sizeof(want_once) / sizeof(want_once[0]));
	conf_free(&c);
	diag_free(&d);
}

/* ---- comments ---- */

#define STRIP_OUT_MAX 256

static const struct {
	const char *in, *out;	/* same length: comments become spaces */
	int open_comment;	/* line of an unterminated block comment */
	int open_string;	/* line of an unterminated string */
} strip_cases[] = {
	{ "", "", 0, 0 },
	{ "x = 1\n", "x = 1\n", 0, 0 },
	/* every comment form, newlines kept */
	{ "# c\nx = 1\n", "   \nx = 1\n", 0, 0 },
	{ "### c\n#\n", "     \n \n", 0, 0 },
	{ "x = 1 # c\ny = 2", "x = 1    \ny = 2", 0, 0 },
	{ "x = 1# c", "x = 1   ", 0, 0 },
	{ "// c\nx\n", "    \nx\n", 0, 0 },
	{ "x = 1 //c", "x = 1    ", 0, 0 },
	{ "///c", "    ", 0, 0 },
	{ "/* a */ x = 1", "        x = 1", 0, 0 },
	{ "/* a\n b\n*/x", "    \n  \n  x", 0, 0 },
	{ "/**/x /***/y /* * / */z", "    x      y          z", 0, 0 },
	{ "/*/ still */x", "            x", 0, 0 },
	{ "/* # // */x # /* y\nz */", "          x       \nz */", 0, 0 },
	/* '#', '//' and block openers inside quoted strings are data */
	{ "a = \"x#y\" # c", "a = \"x#y\"    ", 0, 0 },
	{ "a = \"http://h/*p*/\"//c", "a = \"http://h/*p*/\"   ", 0, 0 },
	{ "a = '#'#c", "a = '#'  ", 0, 0 },
	{ "a = '//' '/*'", "a = '//' '/*'", 0, 0 },
	/* escaped quotes do not end a string; an escaped backslash does not
	 * escape the quote after it */
	{ "a = \"x\\\"#y\" #c", "a = \"x\\\"#y\"   ", 0, 0 },
	{ "a = \"x\\\\\" #c", "a = \"x\\\\\"   ", 0, 0 },
	{ "a = 'it\\'s #1' #c", "a = 'it\\'s #1'   ", 0, 0 },
	{ "a = \"l1\\\n#l2\" #c", "a = \"l1\\\n#l2\"   ", 0, 0 },
	{ "a = \"two\nlines # in\" #c\nb", "a = \"two\nlines # in\"   \nb", 0, 0 },
	/* ${VAR} runs to the next '}', quotes and '#' included */
	{ "a = ${X#y} #c", "a = ${X#y}   ", 0, 0 },
	{ "a = \"${A#\"b} #\" #c", "a = \"${A#\"b} #\"   ", 0, 0 },
	{ "a = ${ #c", "a = ${   ", 0, 0 },
	{ "a = x${y} #c", "a = x${y}   ", 0, 0 },
	/* inside an unquoted word '//' and '/' '*' are not comments ... */
	{ "path = /usr//lib #c", "path = /usr//lib   ", 0, 0 },
	{ "a = b/*c*/ d", "a = b/*c*/ d", 0, 0 },
	{ "a = b*/c", "a = b*/c", 0, 0 },
	/* ... but '#' always is */
	{ "a = b#c", "a = b  ", 0, 0 },
	/* a comment inside a list (libconfuse issue #150) */
	{ "d = {\n  \"a.example\",  # primary\n  \"b.example\" // backup\n}\n",
	  "d = {\n  \"a.example\",           \n  \"b.example\"          \n}\n", 0, 0 },
	{ "d = { \"a\", /* b, */ \"c\" }", "d = { \"a\",          \"c\" }", 0, 0 },
	/* CRLF files: a '\r' inside a comment is blanked, the '\n' stays */
	{ "# c\r\nx = 1\r\n", "    \nx = 1\r\n", 0, 0 },
	{ "x = 1 /* c\r\n */\r\n", "x = 1      \n   \r\n", 0, 0 },
	/* unterminated: a string is left alone, a block comment is blanked to
	 * the end; the first line of either is reported */
	{ "a = \"x # y\n# z\n", "a = \"x # y\n# z\n", 0, 1 },
	{ "a = 'x # y", "a = 'x # y", 0, 1 },
	{ "a = \"x\\", "a = \"x\\", 0, 1 },
	{ "a\n\nb /* c\nd", "a\n\nb     \n ", 3, 0 },
	{ "/*", "  ", 1, 0 },
	{ "/*/", "   ", 1, 0 },
	{ "a /* b */ /* c", "a             ", 1, 0 },
	{ "a = 1\nb = \"x\n\n", "a = 1\nb = \"x\n\n", 0, 2 },
	{ "# \"\nb = 'x", "   \nb = 'x", 0, 2 },
};

/* Properties every output has, whatever the input: same length, every
 * newline kept, every other byte kept or blanked, and nothing left to
 * strip (a second pass changes nothing). */
static int strip_invariants(const char *in, size_t len, const char *out,
			    const struct conf_strip_result *first)
{
	char again[STRIP_OUT_MAX];
	struct conf_strip_result r;
	for (size_t i = 0; i < len; i++) {
		if ((in[i] == '\n') != (out[i] == '\n'))
			return 0;
		if (out[i] != in[i] && out[i] != ' ')
			return 0;
	}
	conf_strip_comments(out, len, again, &r);
	return memcmp(again, out, len) == 0 && r.open_comment_line == 0 &&
	       r.open_string_line == first->open_string_line;
}

static void test_strip_table(void)
{
	for (size_t i = 0; i < sizeof(strip_cases) / sizeof(strip_cases[0]); i++) {
		const char *in = strip_cases[i].in;
		size_t len = strlen(in);
		char out[STRIP_OUT_MAX], inplace[STRIP_OUT_MAX];
		struct conf_strip_result r;
		if (len >= sizeof(out) || strlen(strip_cases[i].out) != len)
			fprintf(stderr, "\ncase %zu: expected output of another length\n", i);
		CU_ASSERT_FATAL(len < sizeof(out) && strlen(strip_cases[i].out) == len);
		/* whole, into another buffer */
		memset(out, '?', sizeof(out));
		conf_strip_comments(in, len, out, &r);
		out[len] = '\0';
		if (strcmp(out, strip_cases[i].out) != 0 || r.open_comment_line != strip_cases[i].open_comment ||
		    r.open_string_line != strip_cases[i].open_string)
			fprintf(stderr, "\ncase %zu: got \"%s\" (open comment %d, string %d)\n", i, out,
				r.open_comment_line, r.open_string_line);
		CU_ASSERT_STRING_EQUAL(out, strip_cases[i].out);
		CU_ASSERT_EQUAL(r.open_comment_line, strip_cases[i].open_comment);
		CU_ASSERT_EQUAL(r.open_string_line, strip_cases[i].open_string);
		CU_ASSERT(strip_invariants(in, len, out, &r));
		/* whole, in place */
		memcpy(inplace, in, len + 1);
		conf_strip_comments(inplace, len, inplace, &r);
		CU_ASSERT_STRING_EQUAL(inplace, strip_cases[i].out);
		/* cut after every byte: exactly len bytes written, the same
		 * invariants (ASan checks that no byte past the cut is read) */
		for (size_t k = 0; k < len; k++) {
			char *cut = malloc(k + 1), *cout = malloc(k + 2);
			memcpy(cut, in, k);
			cout[k] = '!';
			conf_strip_comments(cut, k, cout, &r);
			CU_ASSERT_EQUAL(cout[k], '!');
			CU_ASSERT(strip_invariants(cut, k, cout, &r));
			free(cut);
			free(cout);
		}
	}
}

/* NUL is an ordinary byte to the stripper (conf.c refuses it itself). */
static void test_strip_nul(void)
{
	const char in[] = { 'a', '\0', '#', 'b', '\n', '"', '\0', '#', '"' };
	char out[sizeof(in)];
	struct conf_strip_result r;
	conf_strip_comments(in, sizeof(in), out, &r);
	CU_ASSERT(memcmp(out, (const char[]){ 'a', '\0', ' ', ' ', '\n', '"', '\0', '#', '"' }, sizeof(in)) == 0);
}

/* A bad key right after each comment form is reported at its own line. */
static void test_lines_after_comments(void)
{
	static const struct {
		const char *text;
		int line;
	} cases[] = {
		{ "# one\n# two\nmax_mesage_size = 1\n", 3 },
		{ "hostname = \"mx.example.org\" # trailing\n\nmax_mesage_size = 1\n", 3 },
		{ "// one\n//two\n\n\nmax_mesage_size = 1\n", 5 },
		{ "/* one */\n/* two\n three */\nmax_mesage_size = 1\n", 4 },
		{ "/* a */ /* b */ # c\nmax_mesage_size = 1\n", 2 },
		{ "# c\r\n# d\r\nmax_mesage_size = 1\r\n", 3 },
		{ "accept_domains = {\n  \"a.example\",  # primary\n  \"b.example\"\n}\n"
		  "# more\nmax_mesage_size = 1\n", 6 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct diag d;
		struct conf *c = load("lines.conf", cases[i].text, &smtpd_schema, &d);
		CU_ASSERT_PTR_NULL(c);
		CU_ASSERT(has(&d, "lines.conf", cases[i].line, "no such option 'max_mesage_size'"));
		CU_ASSERT_EQUAL(d.n, 1);
		conf_free(&c);
		diag_free(&d);
	}
}

/* Value errors found after parsing (where_of) name the right line too. */
static void test_value_lines_after_comments(void)
{
	struct diag d;
	struct conf *c = load("vlines.conf", "# head\n"			/* 1 */
			      "# head\n"					/* 2 */
			      BASE						/* 3-10 */
			      "/* a listener\n"				/* 11 */
			      "   on loopback */\n"				/* 12 */
			      "listener \"l\" {  # the local one\n"		/* 13 */
			      "  address = \"127.0.0.1:26\" // here\n"		/* 14 */
			      "  tls_mode = \"sometimes\" # bad\n"		/* 15 */
			      "}\n"						/* 16 */
			      "max_line = 10  # too small\n",			/* 17 */
			      &smtpd_schema, &d);
	CU_ASSERT(has(&d, "vlines.conf", 15, "tls_mode: bad value 'sometimes'"));
	CU_ASSERT(has(&d, "vlines.conf", 17, "max_line: 10 out of range"));
	CU_ASSERT_EQUAL(d.errors, 2);
	conf_free(&c);
	diag_free(&d);
}

/* Comments inside lists parse, and the values are the list's. */
static void test_comment_in_list(void)
{
	struct diag d;
	struct conf *c = load("list.conf", BASE
			      "accept_domains = {\n"
			      "  \"a.example\",  # primary\n"
			      "  // nothing here\n"
			      "  \"b.example\"   /* backup */\n"
			      "}\n"
			      "auth_mechanisms = { \"PLAIN\", # \"LOGIN\",\n \"XOAUTH2\" }\n"
			      "listener \"l\" {\n  address = \"127.0.0.1:26\"\n  tls_mode = \"none\"\n}\n",
			      &smtpd_schema, &d);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(d.errors, 0);
	CU_ASSERT_EQUAL_FATAL(smtpd_conf(c)->accept_domains.n, 2);
	CU_ASSERT_STRING_EQUAL(smtpd_conf(c)->accept_domains.v[0], "a.example");
	CU_ASSERT_STRING_EQUAL(smtpd_conf(c)->accept_domains.v[1], "b.example");
	CU_ASSERT_EQUAL_FATAL(smtpd_conf(c)->auth_mechanisms.n, 2);
	CU_ASSERT_STRING_EQUAL(smtpd_conf(c)->auth_mechanisms.v[1], "XOAUTH2");
	conf_free(&c);
	diag_free(&d);
}

/* include(): the included file is cleaned too; its errors name it as
 * written in include() with its own lines, and the including file's
 * lines are still right after the include. */
static void test_include_comments(void)
{
	struct diag d;
	char path[512];
	write_file("inc-c.conf", "# included\n"				/* 1 */
		   "/* a block\n   comment */\n"				/* 2-3 */
		   "accept_domains = { \"a.example\", # first\n"		/* 4 */
		   "                   \"b.example\" }\n"			/* 5 */
		   "max_recipients = 50  # too few\n"				/* 6 */
		   "listener \"inc\" {  // in the include\n"			/* 7 */
		   "  address = \"127.0.0.1:27\"\n"				/* 8 */
		   "  tls_mode = \"none\"\n"					/* 9 */
		   "  max_per_ip = 0 # bad\n"					/* 10 */
		   "}\n", 0644);
	struct conf *c = load("main-c.conf", "# main\n"			/* 1 */
			      "# main\n"					/* 2 */
			      "include(\"inc-c.conf\")  # the include\n"	/* 3 */
			      "# after\n"					/* 4 */
			      BASE						/* 5-12 */
			      "max_line = 10 # bad\n",				/* 13 */
			      &smtpd_schema, &d);
	CU_ASSERT_PTR_NOT_NULL(c);
	snprintf(path, sizeof(path), "inc-c.conf:6: max_recipients: 50 is below 100");
	CU_ASSERT(count_lines(&d, path) == 1);
	CU_ASSERT(count_lines(&d, "inc-c.conf:10: max_per_ip: 0 out of range") == 1);
	CU_ASSERT(has(&d, "main-c.conf", 13, "max_line: 10 out of range"));
	CU_ASSERT_EQUAL(d.errors, 3);
	if (c) {
		CU_ASSERT_EQUAL(smtpd_conf(c)->accept_domains.n, 2);
		CU_ASSERT_EQUAL(c->nlisteners, 1);
	}
	if (d.errors != 3)
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "  got: %s\n", d.lines[i]);
	conf_free(&c);
	diag_free(&d);

	/* A parse error after comments in a nested include. */
	write_file("inc-n2.conf", "# deep\n\n/* x */\nbogus = 1\n", 0644);
	write_file("inc-n1.conf", "# n1\ninclude(\"inc-n2.conf\")\n", 0644);
	c = load("main-n.conf", "# m\ninclude(\"inc-n1.conf\")\n", &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(count_lines(&d, "inc-n2.conf:4: no such option 'bogus'") == 1);
	CU_ASSERT_EQUAL(d.n, 1);
	diag_free(&d);

	/* A file that includes itself stops at the nesting limit. */
	write_file("inc-loop.conf", "# again\ninclude(\"inc-loop.conf\")\n", 0644);
	c = load("main-loop.conf", "include(\"inc-loop.conf\")\n", &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(count_lines(&d, "inc-loop.conf:2: include(\"inc-loop.conf\"): nested more than") == 1);
	CU_ASSERT_EQUAL(d.n, 1);
	diag_free(&d);

	/* A missing include is reported at the include() line. */
	c = load("main-m.conf", "# m\n# m\ninclude(\"nowhere.conf\")\n", &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(has(&d, "main-m.conf", 3, "include(\"nowhere.conf\"): cannot read"));
	diag_free(&d);
}

/* What libconfuse would have dropped silently is an error now. */
static void test_unterminated_and_nul(void)
{
	struct diag d;
	struct conf *c = load("open.conf", BASE "listener \"l\" {\n  address = \"127.0.0.1:26\"\n"
			      "  tls_mode = \"none\"\n}\n/* disabled:\nmax_line = 10\n", &smtpd_schema, &d);
	CU_ASSERT(has(&d, "open.conf", 13, "unterminated /* comment"));
	CU_ASSERT_EQUAL(d.errors, 1);
	conf_free(&c);
	diag_free(&d);

	/* A "..." string left open would swallow the rest of the file. */
	c = load("openstr.conf", "# x\nhostname = \"mx.example.org\nmax_line = 10\n", &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(has(&d, "openstr.conf", 2, "unterminated string"));
	CU_ASSERT_EQUAL(d.n, 1);
	diag_free(&d);
	write_file("inc-open.conf", "# x\n\nhostname = \"mx.example.org\n", 0644);
	c = load("main-open.conf", "include(\"inc-open.conf\")\nmax_line = 10\n", &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(count_lines(&d, "inc-open.conf:3: unterminated string") == 1);
	CU_ASSERT_EQUAL(d.n, 1);
	diag_free(&d);

	char path[512];
	snprintf(path, sizeof(path), "%s/nul.conf", tmpdir);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fwrite("# x\nhostname = \"a\0b\"\n", 1, 22, f);
	fclose(f);
	diag_init(&d);
	c = conf_load(path, &smtpd_schema, &d);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(has(&d, "nul.conf", 2, "NUL byte"));
	diag_free(&d);
}

static void test_pins(void)
{
	unsigned char out[32], want[32];
	const char *err;
	for (int i = 0; i < 32; i++)
		want[i] = (unsigned char)(0xa0 + i % 16);
	char hex[200] = "", hexc[200] = "sha256:";
	for (int i = 0; i < 32; i++) {
		char b[4];
		snprintf(b, sizeof(b), "%02x", want[i]);
		strcat(hex, b);
		snprintf(b, sizeof(b), "%02X", want[i]);
		strcat(hexc, b);
		if (i < 31)
			strcat(hexc, ":");
	}
	CU_ASSERT_EQUAL(conf_parse_pin(hex, out, 0, &err), 0);
	CU_ASSERT(memcmp(out, want, 32) == 0);
	CU_ASSERT_EQUAL(conf_parse_pin(hexc, out, 0, &err), 0);
	CU_ASSERT(memcmp(out, want, 32) == 0);
	/* base64 (pin-sha256) only where allowed */
	const char *b64ok = "oKGio6SlpqeoqaqrrK2ur6ChoqOkpaanqKmqq6ytrq8=";
	CU_ASSERT_EQUAL(conf_parse_pin(b64ok, out, 1, &err), 0);
	CU_ASSERT(memcmp(out, want, 32) == 0);
	CU_ASSERT_EQUAL(conf_parse_pin(b64ok, out, 0, &err), -1);
	/* certtool's own spelling, as its -i / --key-info output prints it */
	unsigned char again[32];
	char certtool[64] = "pin-sha256:";
	strcat(certtool, b64ok);
	CU_ASSERT_EQUAL(conf_parse_pin(certtool, again, 1, &err), 0);
	CU_ASSERT_EQUAL(memcmp(out, again, 32), 0);
	CU_ASSERT_EQUAL(conf_parse_pin(certtool, again, 0, &err), -1);	/* fingerprints are hex */
	CU_ASSERT_EQUAL(conf_parse_pin("sha256:AB", out, 1, &err), -1);
	CU_ASSERT_EQUAL(conf_parse_pin("", out, 1, &err), -1);
	hex[63] = 'g';
	CU_ASSERT_EQUAL(conf_parse_pin(hex, out, 1, &err), -1);
}

static int setup(void)
{
	tls_global_init();
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-conf-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("conf", setup, teardown);
	CU_ADD(s, test_good);
	CU_ADD(s, test_unknown_key);
	CU_ADD(s, test_rules);
	CU_ADD(s, test_too_many_listeners);
	CU_ADD(s, test_hostname_and_tls_literal);
	CU_ADD(s, test_warnings);
	CU_ADD(s, test_include);
	CU_ADD(s, test_files);
	CU_ADD(s, test_diag_once);
	CU_ADD(s, test_file_problems_once);
	CU_ADD(s, test_pins);
	CU_ADD(s, test_lines_after_comments);
	CU_ADD(s, test_value_lines_after_comments);
	CU_ADD(s, test_comment_in_list);
	CU_ADD(s, test_include_comments);
	CU_ADD(s, test_unterminated_and_nul);

	CU_pSuite st = CU_add_suite("conf_strip", NULL, NULL);
	CU_ADD(st, test_strip_table);
	CU_ADD(st, test_strip_nul);
}

CU_MAIN
