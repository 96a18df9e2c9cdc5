/* b64: strict base64 (RFC 4648, padded) validation, decoding and encoding,
 * leaving no copy behind. Used for SASL payloads and SPKI pins. */
#ifndef MG_B64_H
#define MG_B64_H

#include <stddef.h>

/* 1 if s[0..len) is non-empty, canonical padded base64. */
int b64_valid(const char *s, size_t len);
/* Decodes into a fresh buffer (NUL-terminated for convenience; *outlen
 * excludes it). Returns 0, or -1 when the input is not valid base64.
 * SASL payloads carry passwords: neither function keeps a copy
 * elsewhere; the caller wipes the result it owns. */
int b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);
/* Encodes into a fresh NUL-terminated string. */
char *b64_encode(const void *in, size_t len);

#endif
