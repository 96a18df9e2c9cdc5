/* smtp_data_ref: see smtp_data_ref.h. The five states of smtp_data.c,
 * written as plainly as possible: a CR pending from an earlier chunk that
 * turns out bare is marked at the chunk's start. */
#include "smtp_data_ref.h"

#define NOWHERE ((size_t)-1)

struct smtp_data_result smtp_data_ref_feed(struct smtp_data_scan *s, const char *p, size_t len)
{
	struct smtp_data_result r = { 0, 0 };
	int was_bad = s->bare || s->oversize;
	size_t bad = NOWHERE, cr = NOWHERE, i;
	for (i = 0; i < len && !s->done; i++) {
		unsigned char c = (unsigned char)p[i];
		int counted = 0;	/* byte counted as a line byte */
		if (s->st == SD_DOTCR || s->st == SD_CR) {
			if (c == '\n') {
				if (s->st == SD_DOTCR) {
					s->done = true;	/* the LF is consumed too */
					goto check;
				}
				s->size += 2;
				s->st = SD_BOL;
				goto check;
			}
			s->bare = true;	/* the pending CR was bare */
			if (bad == NOWHERE)
				bad = cr != NOWHERE ? cr : 0;
			s->size++;
			s->st = SD_MID;
		} else if (s->st == SD_BOL && c == '.') {
			s->st = SD_DOT;
			goto check;
		}
		if (c == '\r') {
			s->st = s->st == SD_DOT ? SD_DOTCR : SD_CR;
			cr = i;
			goto check;
		}
		counted = 1;
		if (c == '\n') {
			s->bare = true;
			if (bad == NOWHERE)
				bad = i;
		}
	check:
		if (counted) {
			s->size++;
			s->st = SD_MID;
		}
		if (s->max && s->size > s->max && !s->oversize) {
			s->oversize = true;
			if (bad == NOWHERE)
				bad = i;
		}
	}
	r.consumed = i;
	r.clean = was_bad ? 0 : bad != NOWHERE ? bad : i;
	return r;
}
