/* token: space-separated words (capability lists, XCLIENT attribute
 * names), pure. */
#ifndef MG_TOKEN_H
#define MG_TOKEN_H

#include <stddef.h>

/* The next word of s[0..len) at or after *pos: *word points at it and its
 * length is returned (0: no more words); *pos moves past it. */
size_t token_next(const char *s, size_t len, size_t *pos, const char **word);

#endif
