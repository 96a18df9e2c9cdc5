/* imap_bol: whether the upstream's byte stream to a logged-in client sits
 * at a response boundary - right after a line's LF and outside any
 * literal. A line ending in {n}, {n+} or ~{n} announces n octets of
 * literal data, which may hold LFs of their own and after which the line
 * goes on; the autologout BYE (DESIGN.md §5.3) may only be written at a
 * boundary. Pure: bytes in, state out; reads may split the stream
 * anywhere. */
#ifndef MG_IMAP_BOL_H
#define MG_IMAP_BOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The end of a line kept to find a literal announcement in it: "{",
 * IMAP_BOL_DIGITS digits, "+", "}" and the CR. */
#define IMAP_BOL_DIGITS 19	/* every count up to 10^19 - 1 fits uint64_t */
#define IMAP_BOL_TAIL (IMAP_BOL_DIGITS + 4)

struct imap_bol {
	uint64_t literal;		/* octets of literal data still to pass */
	bool at_bol;			/* at a response boundary */
	uint8_t tail_len;
	bool tail_cut;			/* the line was longer than the tail */
	char tail[IMAP_BOL_TAIL];	/* the current line's last bytes */
};

void imap_bol_init(struct imap_bol *b);	/* at a boundary (login done) */
void imap_bol_feed(struct imap_bol *b, const char *p, size_t n);

/* The literal length a line announces at its end (line without its LF,
 * with or without the CR), or -1 for none. A count of more than
 * IMAP_BOL_DIGITS digits - or digits that run to the start of a line
 * cut to its tail (cut: leading zeros may go on before it) - is
 * UINT64_MAX: the stream never returns to a boundary, so the BYE is never
 * written (the safe side). */
int imap_bol_announced(const char *line, size_t len, bool cut, uint64_t *n);

#endif
