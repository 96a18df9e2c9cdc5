/* xmem: allocation wrappers that either succeed or terminate the process,
 * with overflow-checked sizes. Free helpers take T ** and clear the pointer. */
#ifndef MG_XMEM_H
#define MG_XMEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Duplicate n bytes into a fresh NUL-terminated string. */
char *xmemdup0(const void *p, size_t n);
void xfree_ptr(void *pp);	/* pp is really a T **: frees *pp, sets it NULL */

#define XFREE(p) xfree_ptr(&(p))

#endif
