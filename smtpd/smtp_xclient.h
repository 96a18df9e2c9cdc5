/* smtp_xclient: XCLIENT command lines (Postfix XCLIENT_README), pure.
 * Values are xtext-encoded (RFC 3461 §4); only attributes the upstream
 * listed are sent; lines are split NAME ADDR PORT PROTO / HELO / LOGIN so
 * none exceeds 512 octets. */
#ifndef MG_SMTP_XCLIENT_H
#define MG_SMTP_XCLIENT_H

#include <stddef.h>

struct smtp_xclient_attrs {
	const char *name;	/* forward-confirmed name, "[UNAVAILABLE]", "[TEMPUNAVAIL]" */
	const char *addr;	/* "192.0.2.1" or "IPV6:2001:db8::1" */
	unsigned port;
	const char *proto;	/* "SMTP" / "ESMTP" */
	const char *helo;	/* NULL: not sent */
	const char *login;	/* NULL: not sent */
};

/* xtext-encodes s into out (NUL-terminated); returns the length or
 * (size_t)-1 if it does not fit. */
size_t smtp_xtext(const char *s, char *out, size_t outsz);

#define SMTP_XCLIENT_MAX_LINES 3
#define SMTP_XCLIENT_LINE_MAX 512	/* octets, CRLF included (RFC 5321 §4.5.3.1.4) */
/* Fills up to 3 lines (each with CRLF, <= 512 octets) for the attributes
 * in "offered" (XC_* bits). Returns the number of lines, or -1 if a value
 * cannot fit within 512 octets. */
int smtp_xclient_lines(const struct smtp_xclient_attrs *a, unsigned offered,
		       char lines[SMTP_XCLIENT_MAX_LINES][SMTP_XCLIENT_LINE_MAX + 1]);

#endif
