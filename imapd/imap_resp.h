/* imap_resp: pure parsing of the upstream IMAP server's responses during
 * login: where one response ends (a line, plus the literals it announces)
 * and its lines, and what it says - untagged / continuation / tagged, status (OK, NO,
 * BAD, PREAUTH, BYE), response code, text - and capability lists.
 * Fuzzed by tests/fuzz/fuzz_imap_resp.c. */
#ifndef MG_IMAP_RESP_H
#define MG_IMAP_RESP_H

#include <stdbool.h>
#include <stddef.h>

#define IMAP_RESP_MAX 65536

enum imap_status { IMAP_ST_OTHER, IMAP_ST_OK, IMAP_ST_NO, IMAP_ST_BAD, IMAP_ST_PREAUTH, IMAP_ST_BYE };

struct imap_resp {
	bool untagged;		/* "* ..." */
	bool continuation;	/* "+ ..." */
	const char *tag;	/* tagged: the tag */
	size_t tag_len;
	enum imap_status status;
	const char *code;	/* inside [...], without the brackets */
	size_t code_len;
	const char *text;	/* after the status (and code) */
	size_t text_len;
	const char *rest;	/* untagged: everything after "* " */
	size_t rest_len;
};

/* Length of the first complete response in buf (line + announced
 * literals, through the final CRLF), 0 if incomplete, -1 if it would
 * exceed IMAP_RESP_MAX. */
long imap_resp_length(const char *buf, size_t len);
/* The lines of a response imap_resp_length() framed, one at a time (for
 * relaying it with CRLF line ends whatever the upstream used): from pos,
 * the line's text without CR or LF (*text_len) and the literal it
 * announces, cut at len (*lit_len); returns the offset after both. */
size_t imap_resp_line(const char *buf, size_t len, size_t pos, size_t *text_len, size_t *lit_len);
/* Parses the first line of a response (without its CRLF). 0, or -1 when
 * the line is not an IMAP response. */
int imap_resp_parse(const char *line, size_t len, struct imap_resp *out);
/* Case-insensitive search for capability cap in a space-separated list,
 * e.g. the code "CAPABILITY IMAP4rev1 AUTH=PLAIN ..." or an untagged
 * CAPABILITY response's rest. */
bool imap_caps_has(const char *caps, size_t len, const char *cap);

#endif
