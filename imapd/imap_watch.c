/* imap_watch: see imap_watch.h. States, per line:
 *
 *	BOL --byte--> TAG --SP--> SP --'C'--> NAME --"OMPRESS"--> latched
 *	 \--SP---------------------^   \--other--> SKIP    \--other--> SKIP
 *
 * CR anywhere before the name ends the line's chances (SKIP); LF always
 * goes back to BOL. SKIP jumps to the next LF with memchr, so a large
 * APPEND costs about what scanning for line ends costs. */
#include "imap_watch.h"

#include <string.h>

enum { W_BOL, W_TAG, W_SP, W_NAME, W_SKIP };

static const char name[] = "COMPRESS";

void imap_watch_init(struct imap_watch *w)
{
	memset(w, 0, sizeof(*w));
	w->st = W_BOL;
}

static unsigned char upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* The next byte of a possible command name. */
static void name_byte(struct imap_watch *w, unsigned char c)
{
	if (upper(c) != (unsigned char)name[w->matched]) {
		w->st = W_SKIP;
		return;
	}
	if (++w->matched == sizeof(name) - 1)
		w->compress = true;
}

/* One byte that is not an LF, in any state but SKIP. */
static void step(struct imap_watch *w, unsigned char c)
{
	switch (w->st) {
	case W_BOL:
	case W_TAG:
		w->st = c == ' ' ? W_SP : c == '\r' ? W_SKIP : W_TAG;
		return;
	case W_SP:
		if (c == ' ')
			return;	/* stricter servers refuse two spaces; a superset is fine */
		w->matched = 0;
		w->st = W_NAME;
		name_byte(w, c);
		return;
	case W_NAME:
		name_byte(w, c);
		return;
	default:
		return;
	}
}

bool imap_watch_feed(struct imap_watch *w, const char *p, size_t n)
{
	const char *end = p + n;
	while (p < end && !w->compress) {
		if (w->st == W_SKIP) {
			const char *lf = memchr(p, '\n', (size_t)(end - p));
			if (!lf)
				break;
			p = lf;
		}
		if (*p == '\n')
			w->st = W_BOL;
		else
			step(w, (unsigned char)*p);
		p++;
	}
	return w->compress;
}
