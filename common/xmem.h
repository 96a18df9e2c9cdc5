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

/* A worker's heap is a pool, not a stack: data buffers (conn queues,
 * GnuTLS records) are freed whenever they empty and taken again for the
 * next read, so glibc's default of giving the top of the heap back to the
 * kernel (brk) and mapping big blocks (mmap) once per allocation cost a
 * TLB shootdown and fresh page faults every time - 35 % of a worker's CPU
 * relaying DATA. Up to XMEM_KEEP bytes of free heap stay mapped, and
 * blocks up to XMEM_HEAP_BLOCK come from the heap. No-op elsewhere. */
#define XMEM_KEEP (8u << 20)
#define XMEM_HEAP_BLOCK (1u << 20)
void xmem_keep_heap(void);

/* Zeroes XMEM_STACK_WIPE bytes of stack below the caller's frame, where
 * the calls it just made left their locals (libsodium's
 * sodium_stackzero): after a line that may hold a secret, copies a
 * library or a spilled register left there are gone too. */
#define XMEM_STACK_WIPE (32u << 10)
void xmem_wipe_stack(void);

#endif
