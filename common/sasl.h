/* sasl: decoding and encoding of the SASL mechanisms the gateway handles
 * (RFC 4616 PLAIN, the LOGIN mechanism's user name, RFC 4422 EXTERNAL's
 * authorization identity), pure, used by both daemons: smtpd to learn the
 * user name of an AUTH it relays, imapd to log users in on their behalf.
 * Everything that held a password is wiped before it is freed; callers
 * wipe their struct sasl_plain (explicit_bzero) on every path. */
#ifndef MG_SASL_H
#define MG_SASL_H

#include <stddef.h>

/* The longest user name and password the gateway takes (octets). */
#define SASL_NAME_MAX 255
#define SASL_PASSWD_MAX 1023

struct sasl_plain {
	char authzid[SASL_NAME_MAX + 1];
	char authcid[SASL_NAME_MAX + 1];
	char passwd[SASL_PASSWD_MAX + 1];
};

/* Raw PLAIN bytes: authzid NUL authcid NUL passwd, exactly two NULs,
 * authcid and passwd non-empty, every field within its array. 0 or -1. */
int sasl_plain_parse(const unsigned char *raw, size_t len, struct sasl_plain *out);
/* The same from base64 ("=" - an empty response - is an error here). */
int sasl_plain_decode(const char *b64, size_t len, struct sasl_plain *out);
/* base64(authzid NUL authcid NUL passwd), a fresh string the caller
 * wipes and frees. */
char *sasl_plain_encode(const struct sasl_plain *c);
/* LOGIN's first response (the user name): base64 of 1-255 octets without
 * NUL. 0 or -1. */
int sasl_login_name(const char *b64, size_t len, char out[SASL_NAME_MAX + 1]);
/* EXTERNAL's response: "" or "=" (none) or the base64 authorization
 * identity. 0 (out may be ""), -1 for bad base64, -2 for an identity no
 * user can have (over 255 octets, or a NUL). */
int sasl_external_authzid(const char *b64, size_t len, char out[SASL_NAME_MAX + 1]);

#endif
