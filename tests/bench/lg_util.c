/* lg_util: histogram, test message and reply classifiers for loadgen
 * (see lg_util.h). */
#include "lg_util.h"

#include <stdlib.h>
#include <string.h>

#define SUB (1u << LG_HIST_SUB_BITS)		/* 256: exact range */
#define HALF (1u << (LG_HIST_SUB_BITS - 1))	/* 128 sub-buckets per octave */
#define CAP ((UINT64_C(1) << LG_HIST_MAX_BITS) - 1)

void lg_hist_init(struct lg_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned lg_hist_index(uint64_t v)
{
	if (v > CAP)
		v = CAP;
	if (v < SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned e = msb - (LG_HIST_SUB_BITS - 1);	/* >= 1 */
	unsigned sub = (unsigned)(v >> e);		/* [HALF, SUB) */
	return SUB + (e - 1) * HALF + (sub - HALF);
}

uint64_t lg_hist_lower(unsigned idx)
{
	if (idx < SUB)
		return idx;
	unsigned e = (idx - SUB) / HALF + 1;
	uint64_t sub = HALF + (idx - SUB) % HALF;
	return sub << e;
}

static uint64_t bucket_width(unsigned idx)
{
	return idx < SUB ? 1 : UINT64_C(1) << ((idx - SUB) / HALF + 1);
}

void lg_hist_add(struct lg_hist *h, uint64_t ns)
{
	h->count[lg_hist_index(ns)]++;
	h->n++;
	h->sum += (long double)ns;
	if (ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
}

void lg_hist_merge(struct lg_hist *into, const struct lg_hist *from)
{
	if (!from->n)
		return;
	for (unsigned i = 0; i < LG_HIST_BUCKETS; i++)
		into->count[i] += from->count[i];
	into->n += from->n;
	into->sum += from->sum;
	if (from->min < into->min)
		into->min = from->min;
	if (from->max > into->max)
		into->max = from->max;
}

uint64_t lg_hist_percentile(const struct lg_hist *h, double p)
{
	if (!h->n)
		return 0;
	if (p >= 100.0)
		return h->max;
	if (p <= 0.0)
		return h->min;
	/* nearest rank: the smallest value with at least p % at or below it */
	uint64_t rank = (uint64_t)((p / 100.0) * (double)h->n);
	if ((double)rank < (p / 100.0) * (double)h->n)
		rank++;
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			uint64_t v = lg_hist_lower(i) + bucket_width(i) / 2;
			if (v < h->min)
				v = h->min;
			if (v > h->max)
				v = h->max;
			return v;
		}
	}
	return h->max;
}

double lg_hist_mean(const struct lg_hist *h)
{
	return h->n ? (double)(h->sum / (long double)h->n) : 0.0;
}

/* ---- test message ---- */

#define LINE_MAX_CHARS 76	/* + CRLF = 78 octets */

static size_t put_line(char *dst, size_t chars, size_t *seq)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -_=+/";
	size_t n = sizeof(alphabet) - 1;
	for (size_t i = 0; i < chars; i++)
		dst[i] = alphabet[(*seq + i) % n];
	if (chars)
		dst[0] = 'L';	/* never '.', never a space (no folded header look) */
	(*seq)++;
	dst[chars] = '\r';
	dst[chars + 1] = '\n';
	return chars + 2;
}

char *lg_message(size_t size, size_t *len)
{
	static const char head[] =
		"From: <loadgen@bench.example>\r\n"
		"To: <user@example.org>\r\n"
		"Subject: mailgate loadgen test message\r\n"
		"Message-ID: <loadgen.bench@bench.example>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n";
	if (size < LG_MSG_MIN)
		size = LG_MSG_MIN;
	char *buf = malloc(size);
	if (!buf)
		return NULL;
	size_t hl = sizeof(head) - 1, at = hl, seq = 0;
	memcpy(buf, head, hl);
	size_t full = LINE_MAX_CHARS + 2;
	/* full lines while more than two lines' worth remain, then one or two
	 * lines that end exactly at `size` (each at least 2 octets: CRLF) */
	while (size - at > 2 * full)
		at += put_line(buf + at, LINE_MAX_CHARS, &seq);
	size_t r = size - at;	/* in [0, 2*full] (>= 0 as LG_MSG_MIN > hl) */
	if (r > full) {
		size_t a = r / 2;
		at += put_line(buf + at, a - 2, &seq);
		at += put_line(buf + at, r - a - 2, &seq);
	} else if (r >= 2) {
		at += put_line(buf + at, r - 2, &seq);
	}
	/* r == 1 cannot happen: full lines stop with r > 2 * full - full */
	*len = at;
	return buf;
}

size_t lg_message_check(const char *buf, size_t len)
{
	size_t line = 1, col = 0;
	if (len < 2 || buf[len - 2] != '\r' || buf[len - 1] != '\n')
		return 1;
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (c == '\r') {
			if (i + 1 >= len || buf[i + 1] != '\n')
				return line;
			i++;
			line++;
			col = 0;
			continue;
		}
		if (c == '\n' || c == '\0')
			return line;
		if (col == 0 && c == '.')
			return line;
		if (++col > 998)
			return line;
	}
	return 0;
}

/* ---- reply classifiers ---- */

int lg_smtp_line(const char *line, size_t len, int *last)
{
	if (len < 3)
		return -1;
	for (int i = 0; i < 3; i++)
		if (line[i] < '0' || line[i] > '9')
			return -1;
	if (line[0] < '2' || line[0] > '5')
		return -1;
	if (len == 3 || line[3] == ' ')
		*last = 1;
	else if (line[3] == '-')
		*last = 0;
	else
		return -1;
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

long long lg_imap_literal(const char *line, size_t len)
{
	if (len < 3 || line[len - 1] != '}')
		return -1;
	size_t end = len - 1;
	if (line[end - 1] == '+')
		end--;
	size_t i = end;
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
		i--;
	if (i == end || i == 0 || line[i - 1] != '{' || end - i > 13)
		return -1;
	long long n = 0;
	for (size_t k = i; k < end; k++)
		n = n * 10 + (line[k] - '0');
	if (n > (1LL << 40))
		return -1;
	return n;
}

int lg_imap_tagged(const char *line, size_t len, const char *tag)
{
	size_t tl = strlen(tag);
	if (len < tl + 3 || memcmp(line, tag, tl) != 0 || line[tl] != ' ')
		return 0;
	const char *s = line + tl + 1;
	size_t rest = len - tl - 1;
	if (rest >= 2 && (s[0] == 'O' || s[0] == 'o') && (s[1] == 'K' || s[1] == 'k') &&
	    (rest == 2 || s[2] == ' '))
		return 'O';
	if (rest >= 2 && (s[0] == 'N' || s[0] == 'n') && (s[1] == 'O' || s[1] == 'o') &&
	    (rest == 2 || s[2] == ' '))
		return 'N';
	if (rest >= 3 && (s[0] == 'B' || s[0] == 'b') && (s[1] == 'A' || s[1] == 'a') &&
	    (s[2] == 'D' || s[2] == 'd') && (rest == 3 || s[3] == ' '))
		return 'B';
	return 0;
}
