/* smtp_reply: pure parsing of upstream SMTP replies (RFC 5321 §4.2:
 * "ddd-text" continuation lines and a final "ddd text" line, same code
 * throughout) with bounds on line length and on the whole reply's bytes,
 * and of the EHLO keywords the gateway cares about. A reply of more than
 * SMTP_REPLY_MAX_LINES lines is kept shortened: its first lines and its
 * last. Fuzzed by tests/fuzz/fuzz_smtp_reply.c. */
#ifndef MG_SMTP_REPLY_H
#define MG_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_MAX_LINES 64	/* lines kept: the first 63 and the last */
#define SMTP_REPLY_MAX_LINE 2048	/* one line, code included, CRLF excluded */
/* The most bytes a reply the parser accepts can take: whoever buffers
 * replies sizes its buffer from this, so a reply the parser would still
 * wait for always fits, and anything longer is refused by the parser. */
#define SMTP_REPLY_MAX_BYTES (SMTP_REPLY_MAX_LINES * (SMTP_REPLY_MAX_LINE + 2))

struct smtp_reply_line {
	const char *text;	/* after "ddd-" / "ddd "; not NUL-terminated */
	size_t len;
};

struct smtp_reply {
	int code;
	size_t nlines;
	struct smtp_reply_line lines[SMTP_REPLY_MAX_LINES];
	size_t dropped;		/* lines left out between those kept */
	size_t total;		/* bytes of input the reply used */
};

/* 1: a complete reply is in out; 0: need more input; -1: malformed. */
int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *out);
/* The upstream framer: the first reply's length, 0 (more) or -1; decided
 * before len reaches SMTP_REPLY_MAX_BYTES. */
long smtp_reply_frame(const char *buf, size_t len);

#define EXT_PIPELINING 0x001
#define EXT_SIZE 0x002
#define EXT_8BITMIME 0x004
#define EXT_SMTPUTF8 0x008
#define EXT_DSN 0x010
#define EXT_STARTTLS 0x020
#define EXT_AUTH 0x040
#define EXT_XCLIENT 0x080
#define EXT_ENHANCED 0x100
#define EXT_CHUNKING 0x200

#define XC_NAME 0x01
#define XC_ADDR 0x02
#define XC_PORT 0x04
#define XC_PROTO 0x08
#define XC_HELO 0x10
#define XC_LOGIN 0x20

struct smtp_ehlo_ext {
	unsigned flags;
	uint64_t size;		/* 0 = no limit announced */
	char auth[160];		/* " PLAIN LOGIN " style: space-delimited, upper case */
	unsigned xclient;	/* XC_* attributes listed */
};

void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo_ext *out);
bool smtp_ehlo_has_auth(const struct smtp_ehlo_ext *e, const char *mech);

#endif
