/* smtp_data: a five-state machine over the bytes after "354":
 *   BOL   at the start of a line (after CRLF)
 *   DOT   the line started with '.'
 *   DOTCR the line is "." CR so far
 *   MID   inside a line
 *   CR    a CR was seen inside a line
 * An error latches; scanning still runs to the final dot so the client's
 * reply stays in sync (OpenSMTPD smtp_tx_dataline). */
#include "smtp_data.h"

#include <string.h>

void smtp_data_init(struct smtp_data_scan *s, uint64_t max)
{
	s->st = SD_BOL;
	s->size = 0;
	s->max = max;
	s->bare = s->oversize = s->done = false;
}

struct smtp_data_result smtp_data_feed(struct smtp_data_scan *s, const char *p, size_t len)
{
	struct smtp_data_result r = { 0, 0 };
	bool was_bad = s->bare || s->oversize;
	size_t bad_at = (size_t)-1;	/* first byte not to forward */
	size_t cr_at = (size_t)-1;	/* position of a pending CR in this chunk */
	size_t i;

	for (i = 0; i < len && !s->done; i++) {
		if (s->st == SD_MID) {
			/* Fast path: skip ordinary bytes up to the next CR or LF
			 * with memchr (the scanner was 70% of the CPU of a large
			 * message, byte by byte). */
			const char *cr = memchr(p + i, '\r', len - i);
			size_t lim = cr ? (size_t)(cr - (p + i)) : len - i;
			const char *lf = memchr(p + i, '\n', lim);
			size_t skip = lf ? (size_t)(lf - (p + i)) : lim;
			if (s->max && !s->oversize && s->size + skip > s->max) {
				s->oversize = true;
				if (bad_at == (size_t)-1)
					bad_at = i + (size_t)(s->max - s->size);
			}
			s->size += skip;
			i += skip;
			if (i >= len)
				break;
		}
		unsigned char c = (unsigned char)p[i];
		switch (s->st) {
		case SD_BOL:
			if (c == '.')
				s->st = SD_DOT;
			else if (c == '\r') {
				s->st = SD_CR;
				cr_at = i;
			} else if (c == '\n') {
				s->bare = true;
				s->size++;
				s->st = SD_MID;
				if (bad_at == (size_t)-1)
					bad_at = i;
			} else {
				s->size++;
				s->st = SD_MID;
			}
			break;
		case SD_DOT:	/* the leading dot is removed (RFC 5321 §4.5.2) */
			if (c == '\r') {
				s->st = SD_DOTCR;
				cr_at = i;
			} else if (c == '\n') {
				s->bare = true;
				s->size++;
				s->st = SD_MID;
				if (bad_at == (size_t)-1)
					bad_at = i;
			} else {
				s->size++;
				s->st = SD_MID;
			}
			break;
		case SD_DOTCR:
			if (c == '\n') {
				s->done = true;
				break;
			}
			/* ".\r" + something: the CR was bare */
			s->bare = true;
			if (bad_at == (size_t)-1)
				bad_at = cr_at != (size_t)-1 ? cr_at : 0;
			s->size++;	/* the CR */
			if (c == '\r') {
				s->st = SD_CR;
				cr_at = i;
			} else {
				s->size++;
				s->st = SD_MID;
			}
			break;
		case SD_MID:
			if (c == '\r') {
				s->st = SD_CR;
				cr_at = i;
			} else {
				if (c == '\n') {
					s->bare = true;
					if (bad_at == (size_t)-1)
						bad_at = i;
				}
				s->size++;
			}
			break;
		case SD_CR:
			if (c == '\n') {
				s->size += 2;
				s->st = SD_BOL;
				break;
			}
			s->bare = true;
			if (bad_at == (size_t)-1)
				bad_at = cr_at != (size_t)-1 ? cr_at : 0;
			s->size++;	/* the bare CR */
			if (c == '\r') {
				cr_at = i;	/* still in SD_CR */
			} else {
				s->size++;
				s->st = SD_MID;
			}
			break;
		}
		if (s->max && s->size > s->max && !s->oversize) {
			s->oversize = true;
			if (bad_at == (size_t)-1)
				bad_at = i;
		}
	}
	r.consumed = i;
	if (was_bad)
		r.clean = 0;
	else if (bad_at != (size_t)-1)
		r.clean = bad_at;
	else
		r.clean = r.consumed;
	return r;
}
