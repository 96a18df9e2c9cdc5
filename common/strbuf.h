/* strbuf: the one bounded builder for every line mailgate puts on the
 * wire or in the log (SMTP/IMAP commands and replies, XCLIENT, PROXY
 * headers, Received, log lines). It writes into caller-owned storage and
 * never past it: an append that does not fit in full is dropped, the
 * builder remembers the overflow, and every later append is a no-op. The
 * caller checks sb_ok() once, before sending; a line that did not fit is
 * refused, never sent truncated (a truncated command is a different
 * command). This is the only place that looks at vsnprintf's return value.
 *
 *	char line[SMTP_CMD_LINE_MAX];
 *	struct strbuf b;
 *	sb_init(&b, line, sizeof(line));
 *	sb_adds(&b, "MAIL FROM:<");
 *	sb_add(&b, mailbox, mailboxlen);
 *	sb_adds(&b, ">\r\n");
 *	if (!sb_ok(&b))
 *		refuse();
 */
#ifndef MG_STRBUF_H
#define MG_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct strbuf {
	char *p;	/* always NUL-terminated */
	size_t cap;	/* bytes of storage, NUL included (>= 1) */
	size_t len;
	bool overflow;
};

/* mem[0..cap) becomes the (empty) buffer; cap must be at least 1. */
void sb_init(struct strbuf *b, char *mem, size_t cap);
void sb_add(struct strbuf *b, const void *p, size_t n);
void sb_adds(struct strbuf *b, const char *s);
void sb_addc(struct strbuf *b, char c);
void sb_addu(struct strbuf *b, unsigned long long v);
void sb_addf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vaddf(struct strbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Marks the builder failed (a piece known not to fit). */
static inline void sb_fail(struct strbuf *b) { b->overflow = true; }
/* Drops everything after the first n bytes (n <= len) and clears the
 * overflow: for "try this piece, and take it back if it does not fit". */
void sb_truncate(struct strbuf *b, size_t n);

static inline bool sb_ok(const struct strbuf *b) { return !b->overflow; }
static inline const char *sb_str(const struct strbuf *b) { return b->p; }
static inline size_t sb_len(const struct strbuf *b) { return b->len; }
static inline size_t sb_room(const struct strbuf *b) { return b->overflow ? 0 : b->cap - 1 - b->len; }

#endif
