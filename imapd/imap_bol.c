/* imap_bol: see imap_bol.h. */
#include "imap_bol.h"

#include <string.h>

void imap_bol_init(struct imap_bol *b)
{
	memset(b, 0, sizeof(*b));
	b->at_bol = true;
}

int imap_bol_announced(const char *line, size_t len, bool cut, uint64_t *n)
{
	if (len && line[len - 1] == '\r')
		len--;
	if (!len || line[len - 1] != '}')
		return -1;
	size_t i = len - 1;
	if (i && line[i - 1] == '+')
		i--;
	size_t end = i, digits = 0;
	while (i && line[i - 1] >= '0' && line[i - 1] <= '9') {
		i--;
		digits++;
	}
	if (digits && !i && cut) {	/* "{" and more digits went by */
		*n = UINT64_MAX;
		return 0;
	}
	if (!digits || !i || line[i - 1] != '{')
		return -1;
	if (digits > IMAP_BOL_DIGITS) {
		*n = UINT64_MAX;
		return 0;
	}
	uint64_t v = 0;
	for (; i < end; i++)
		v = v * 10 + (uint64_t)(line[i] - '0');
	*n = v;
	return 0;
}

/* Keeps the last IMAP_BOL_TAIL bytes of the line so far. */
static void tail_add(struct imap_bol *b, const char *p, size_t n)
{
	if (b->tail_len + n > IMAP_BOL_TAIL)
		b->tail_cut = true;
	if (n >= IMAP_BOL_TAIL) {
		memcpy(b->tail, p + n - IMAP_BOL_TAIL, IMAP_BOL_TAIL);
		b->tail_len = IMAP_BOL_TAIL;
		return;
	}
	size_t keep = b->tail_len + n > IMAP_BOL_TAIL ? IMAP_BOL_TAIL - n : b->tail_len;
	memmove(b->tail, b->tail + b->tail_len - keep, keep);
	memcpy(b->tail + keep, p, n);
	b->tail_len = (uint8_t)(keep + n);
}

void imap_bol_feed(struct imap_bol *b, const char *p, size_t n)
{
	while (n) {
		if (b->literal) {	/* data: skipped whole, LFs and all */
			size_t k = b->literal < n ? (size_t)b->literal : n;
			b->literal -= k;
			p += k;
			n -= k;
			b->at_bol = false;
			b->tail_len = 0;	/* the line goes on after the data */
			b->tail_cut = false;
			continue;
		}
		const char *lf = memchr(p, '\n', n);
		size_t seg = lf ? (size_t)(lf - p) : n;
		if (seg) {
			tail_add(b, p, seg);
			b->at_bol = false;
		}
		if (!lf)
			return;
		/* After an announcement the response goes on, after its data
		 * ({0}: none) - a boundary only after a line that announces
		 * nothing. */
		uint64_t lit;
		bool announced = imap_bol_announced(b->tail, b->tail_len, b->tail_cut, &lit) == 0;
		if (announced)
			b->literal = lit;
		b->tail_len = 0;
		b->tail_cut = false;
		b->at_bol = !announced;
		p += seg + 1;
		n -= seg + 1;
	}
}
