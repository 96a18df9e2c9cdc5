/* conf_value: pure parsers for configuration values that libconfuse leaves
 * as strings: certificate pins (SHA-256 fingerprints and SPKI pins), enum
 * keywords and sizes. Fuzzed by tests/fuzz/fuzz_conf_value.c. */
#ifndef MG_CONF_VALUE_H
#define MG_CONF_VALUE_H

#include <stddef.h>

/* Parses a SHA-256 pin: optional "sha256:" / "sha256//" prefix, then 64 hex
 * digits in any case with optional ':' between byte pairs, or (allow_b64)
 * the 44-character base64 form, bare or as "pin-sha256:BASE64" (what
 * certtool prints). Returns 0 or -1 (*err set). */
int conf_parse_pin(const char *s, unsigned char out[32], int allow_b64, const char **err);

/* Looks s up in a NULL-terminated keyword list; returns the index or -1. */
int conf_parse_keyword(const char *s, const char *const *words);

#endif
