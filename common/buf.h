/* buf: a byte queue that allocates only while it holds data (idle
 * sessions keep no buffer memory, DESIGN.md §8) and grows geometrically
 * up to a cap chosen by its owner. */
#ifndef MG_BUF_H
#define MG_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t off;		/* start of unread bytes */
	size_t len;		/* unread bytes */
	size_t cap;
	/* Bytes of storage ever written since it was allocated: what a wipe
	 * covers (a 16 KiB read buffer that held a 6-byte command is wiped
	 * for 6 bytes, not 16 KiB, on every clear). */
	size_t used;
	bool wipe;		/* may hold secrets: wiped whenever storage is let go */
};

static inline size_t buf_len(const struct buf *b) { return b->len; }
/* Never NULL: an empty queue may have no storage, and NULL + 0 is
 * undefined behaviour in C. */
static inline const char *buf_head(const struct buf *b) { return b->data ? b->data + b->off : ""; }

/* Returns room for at least min(want, ...) bytes at the tail; *avail gets
 * the room actually available (>= want). */
char *buf_reserve(struct buf *b, size_t want, size_t *avail);
void buf_commit(struct buf *b, size_t n);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);	/* frees the storage when empty */
void buf_clear(struct buf *b);
/* With on, storage is wiped before it is freed or moved by a growth (a
 * login's credentials pass through). Turning it off wipes what the queue
 * no longer holds (consumed bytes, room), keeping only the unread bytes. */
void buf_set_wipe(struct buf *b, bool on);
/* Index of the first LF at or after from, or -1. */
long buf_find_lf(const struct buf *b, size_t from);

#endif
