/* imap_watch: spots a COMPRESS command (RFC 4978) in the client-to-
 * upstream byte stream after login, which the gateway relays untouched.
 * Once one has gone by, the stream may be compressed and the gateway
 * must never write into it again (DESIGN.md §5.3: no "* BYE Autologout").
 *
 * A command starts at the beginning of the stream or after an LF, and
 * arrives in any number of pieces: the watcher is a byte-at-a-time state
 * machine that keeps its place across calls, so where the reads split a
 * line does not matter. It recognises "tag SP COMPRESS" with the command
 * name in any case, the tag being any run of bytes other than SP, CR and
 * LF - a superset of what Dovecot (and RFC 9051) accept. Literal data is
 * not told apart from command lines: a line inside an APPEND that looks
 * like a COMPRESS command is a false positive, which only costs the BYE;
 * a false negative would corrupt the client's stream, so the match errs
 * that way. Pure: no I/O, no allocation. */
#ifndef MG_IMAP_WATCH_H
#define MG_IMAP_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_watch {
	uint8_t st;		/* internal state */
	uint8_t matched;	/* letters of "COMPRESS" seen so far */
	bool compress;		/* latched: a COMPRESS command went by */
};

void imap_watch_init(struct imap_watch *w);
/* Feeds the next n bytes of the stream; returns w->compress (once true,
 * true for good: later bytes are not even looked at). */
bool imap_watch_feed(struct imap_watch *w, const char *p, size_t n);

#endif
