/* buf: contiguous storage, compacted before growing. */
#include "buf.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>

/* A bigger block for b->len unread bytes; the old one wiped when asked. */
static void grow(struct buf *b, size_t cap)
{
	if (!b->wipe) {
		b->data = xreallocarray(b->data, cap, 1);
		return;
	}
	char *n = xmalloc(cap);
	if (b->len)
		memcpy(n, b->data, b->len);	/* already compacted to offset 0 */
	if (b->data)
		explicit_bzero(b->data, b->used);
	free(b->data);
	b->data = n;
	b->used = b->len;
}

char *buf_reserve(struct buf *b, size_t want, size_t *avail)
{
	if (b->cap - b->off - b->len < want) {
		if (b->off && b->cap - b->len >= want) {
			memmove(b->data, b->data + b->off, b->len);
			b->off = 0;	/* used stays: the moved-from bytes are still there */
		} else {
			size_t need = b->len + want, cap = b->cap ? b->cap : 256;
			while (cap < need)
				cap *= 2;
			if (b->off) {
				memmove(b->data, b->data + b->off, b->len);
				b->off = 0;
			}
			grow(b, cap);
			b->cap = cap;
		}
	}
	*avail = b->cap - b->off - b->len;
	return b->data + b->off + b->len;
}

static void note_used(struct buf *b)
{
	if (b->off + b->len > b->used)
		b->used = b->off + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
	b->len += n;
	note_used(b);
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	size_t avail;
	if (!n)
		return;
	char *dst = buf_reserve(b, n, &avail);
	memcpy(dst, p, n);
	b->len += n;
	note_used(b);
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_clear(b);
		return;
	}
	b->off += n;
	b->len -= n;
}

void buf_clear(struct buf *b)
{
	if (b->wipe && b->data)
		explicit_bzero(b->data, b->used);
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = b->used = 0;
}

void buf_set_wipe(struct buf *b, bool on)
{
	if (b->wipe && !on && b->data) {
		explicit_bzero(b->data, b->off);
		if (b->used > b->off + b->len)
			explicit_bzero(b->data + b->off + b->len, b->used - b->off - b->len);
		b->used = b->off + b->len;
	}
	b->wipe = on;
}

long buf_find_lf(const struct buf *b, size_t from)
{
	if (from >= b->len)
		return -1;
	const char *p = memchr(b->data + b->off + from, '\n', b->len - from);
	return p ? (long)(p - (b->data + b->off)) : -1;
}
