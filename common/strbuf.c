/* strbuf: see strbuf.h. Appends are all-or-nothing: the content stays a
 * prefix made of whole appends, so even a caller that forgot sb_ok()
 * could not send half a parameter. */
#include "strbuf.h"

#include <stdio.h>
#include <string.h>

void sb_init(struct strbuf *b, char *mem, size_t cap)
{
	b->p = mem;
	b->cap = cap;
	b->len = 0;
	b->overflow = cap == 0;
	if (cap)
		mem[0] = '\0';
}

void sb_add(struct strbuf *b, const void *p, size_t n)
{
	if (b->overflow)
		return;
	if (n > b->cap - 1 - b->len) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void sb_adds(struct strbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

void sb_addc(struct strbuf *b, char c)
{
	sb_add(b, &c, 1);
}

void sb_addu(struct strbuf *b, unsigned long long v)
{
	char digits[24];
	size_t i = sizeof(digits);
	do {
		digits[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sb_add(b, digits + i, sizeof(digits) - i);
}

void sb_vaddf(struct strbuf *b, const char *fmt, va_list ap)
{
	if (b->overflow)
		return;
	size_t room = b->cap - b->len;	/* NUL included */
	int n = vsnprintf(b->p + b->len, room, fmt, ap);
	if (n < 0 || (size_t)n >= room) {
		b->p[b->len] = '\0';	/* take the partial piece back */
		b->overflow = true;
		return;
	}
	b->len += (size_t)n;
}

void sb_addf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sb_vaddf(b, fmt, ap);
	va_end(ap);
}

void sb_truncate(struct strbuf *b, size_t n)
{
	if (b->cap == 0)
		return;
	if (n < b->len)
		b->len = n;
	b->p[b->len] = '\0';
	b->overflow = false;
}
