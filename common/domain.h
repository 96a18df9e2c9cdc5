/* domain: DNS name syntax and normalisation (pure). Names are compared as
 * lower-case A-labels without one trailing dot (DESIGN.md §4.3, §6). */
#ifndef MG_DOMAIN_H
#define MG_DOMAIN_H

#include <stddef.h>

/* The longest domain name, in octets of text (RFC 1035 §2.3.4 limits the
 * wire form to 255, which is 253 of text without the trailing dot). */
#define DOMAIN_NAME_MAX 253
/* A buffer for any normalised name and its NUL. */
#define DOMAIN_BUFSZ (DOMAIN_NAME_MAX + 3)

/* 1 if s is a syntactically valid domain: LDH labels of 1-63 octets (no
 * leading/trailing hyphen), total <= 253, optionally one trailing dot, or
 * U-labels (bytes >= 0x80) that convert to A-labels. */
int domain_valid(const char *s, size_t len);
/* Writes the lower-case A-label form without trailing dot. Returns 0, or -1
 * if the name is not a valid domain (or does not fit). */
int domain_normalize(const char *s, size_t len, char *out, size_t outsz);
/* 1 if the (normalised) name has at least two labels. */
int domain_has_dot(const char *s);

#endif
