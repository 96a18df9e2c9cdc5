/* xmem: out-of-memory is fatal (Postfix mymalloc style); overflow checked. */
#include "xmem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__	/* defined by the headers above */
#include <malloc.h>
#endif

static void oom(size_t n)
{
	fprintf(stderr, "mailgate: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		oom(nmemb * size);
	return p;
}

void *xreallocarray(void *p, size_t nmemb, size_t size)
{
	if (size && nmemb > SIZE_MAX / size)
		oom(SIZE_MAX);
	size_t n = nmemb * size;
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(nmemb * size);
	return q;
}

char *xstrdup(const char *s)
{
	return xmemdup0(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	return xmemdup0(s, strnlen(s, n));
}

char *xmemdup0(const void *p, size_t n)
{
	if (n == SIZE_MAX)
		oom(n);
	char *s = xmalloc(n + 1);
	if (n)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

void xfree_ptr(void *pp)
{
	void **p = pp;
	free(*p);
	*p = NULL;
}

void xmem_keep_heap(void)
{
#if defined(__GLIBC__) && defined(M_TRIM_THRESHOLD)
	mallopt(M_TRIM_THRESHOLD, (int)XMEM_KEEP);
	mallopt(M_MMAP_THRESHOLD, (int)XMEM_HEAP_BLOCK);
#endif
}

__attribute__((noinline)) void xmem_wipe_stack(void)
{
	unsigned char pad[XMEM_STACK_WIPE];
	explicit_bzero(pad, sizeof(pad));
	__asm__ __volatile__("" : : "r"(pad) : "memory");	/* not optimised away */
}
