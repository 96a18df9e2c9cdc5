/* smtp_received: builds our Received: header (DESIGN.md §4.5), folded at
 * 78 columns, pure. */
#ifndef MG_SMTP_RECEIVED_H
#define MG_SMTP_RECEIVED_H

#include <stddef.h>
#include <time.h>

struct smtp_received_info {
	const char *helo;	/* client's HELO/EHLO argument */
	const char *rdns;	/* forward-confirmed name or NULL ("unknown") */
	const char *ip;		/* client IP, no brackets */
	int ipv6;
	const char *hostname;	/* ours */
	const char *proto;	/* ESMTPS, ESMTPSA, ... */
	const char *suite;	/* IANA cipher suite; NULL without TLS */
	const char *cert_status;	/* NULL without TLS */
	const char *cn;		/* raw CN bytes (verified certs only) or NULL */
	size_t cn_len;
	const char *peer;	/* matched peer section or NULL */
	const char *id;		/* session id */
	unsigned msgno;
	time_t when;
};

/* Writes the header including the final CRLF into out (NUL-terminated);
 * returns its length, or 0 if it does not fit. */
size_t smtp_received_build(const struct smtp_received_info *in, char *out, size_t outsz);
/* PROTO per RFC 3848/6531. */
const char *smtp_received_proto(int esmtp, int tls, int auth, int utf8);

#endif
