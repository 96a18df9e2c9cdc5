/* imap_resp: see imap_resp.h. */
#include "imap_resp.h"
#include "token.h"

#include <string.h>
#include <strings.h>

/* The literal the line buf[pos, e) announces ("{n}" or "{n+}" at its
 * end, e excluding the line's CR and LF): true and its size in *n. */
static bool announces_literal(const char *buf, size_t pos, size_t e, size_t *n)
{
	if (e <= pos || buf[e - 1] != '}')
		return false;
	size_t d = e - 1, mult = 1, digits = 0;
	*n = 0;
	if (d > pos && buf[d - 1] == '+')
		d--;
	while (d > pos && buf[d - 1] >= '0' && buf[d - 1] <= '9' && digits < 9) {
		*n += (size_t)(buf[d - 1] - '0') * mult;
		mult *= 10;
		d--;
		digits++;
	}
	return digits && d > pos && buf[d - 1] == '{';
}

long imap_resp_length(const char *buf, size_t len)
{
	size_t pos = 0;
	for (;;) {
		const char *lf = memchr(buf + pos, '\n', len - pos);
		if (!lf)
			return len > IMAP_RESP_MAX ? -1 : 0;
		size_t end = (size_t)(lf - buf);	/* the LF */
		if (end + 1 > IMAP_RESP_MAX)
			return -1;
		/* A line ending in "{n}" or "{n+}" announces n more octets. */
		size_t e = end, n;
		if (e > pos && buf[e - 1] == '\r')
			e--;
		if (announces_literal(buf, pos, e, &n)) {
			if (end + 1 + n > IMAP_RESP_MAX)
				return -1;
			if (end + 1 + n > len)
				return 0;
			pos = end + 1 + n;	/* the line continues after the literal */
			continue;
		}
		return (long)end + 1;
	}
}

size_t imap_resp_line(const char *buf, size_t len, size_t pos, size_t *text_len, size_t *lit_len)
{
	const char *lf = memchr(buf + pos, '\n', len - pos);
	size_t end = lf ? (size_t)(lf - buf) : len, e = end, n = 0;
	if (e > pos && buf[e - 1] == '\r')
		e--;
	*text_len = e - pos;
	*lit_len = 0;
	if (!lf)
		return len;
	if (announces_literal(buf, pos, e, &n))
		*lit_len = n < len - end - 1 ? n : len - end - 1;
	return end + 1 + *lit_len;
}

static const struct {
	const char *word;
	enum imap_status st;
} statuses[] = {
	{ "OK", IMAP_ST_OK }, { "NO", IMAP_ST_NO }, { "BAD", IMAP_ST_BAD },
	{ "PREAUTH", IMAP_ST_PREAUTH }, { "BYE", IMAP_ST_BYE },
};

static void parse_status(const char *p, size_t len, struct imap_resp *out)
{
	size_t w = 0;
	while (w < len && p[w] != ' ')
		w++;
	out->status = IMAP_ST_OTHER;
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (strlen(statuses[i].word) == w && strncasecmp(p, statuses[i].word, w) == 0)
			out->status = statuses[i].st;
	if (out->status == IMAP_ST_OTHER)
		return;
	p += w;
	len -= w;
	if (len && *p == ' ') {
		p++;
		len--;
	}
	if (len && *p == '[') {
		const char *close = memchr(p, ']', len);
		if (close) {
			out->code = p + 1;
			out->code_len = (size_t)(close - p - 1);
			len -= (size_t)(close + 1 - p);
			p = close + 1;
			if (len && *p == ' ') {
				p++;
				len--;
			}
		}
	}
	out->text = p;
	out->text_len = len;
}

int imap_resp_parse(const char *line, size_t len, struct imap_resp *out)
{
	memset(out, 0, sizeof(*out));
	if (len >= 1 && line[0] == '+') {
		out->continuation = true;
		out->text = line + (len > 1 ? 2 : 1);
		out->text_len = len > 1 ? len - 2 : 0;
		return 0;
	}
	const char *sp = memchr(line, ' ', len);
	if (!sp || sp == line)
		return -1;
	size_t head = (size_t)(sp - line);
	const char *rest = sp + 1;
	size_t rl = len - head - 1;
	if (head == 1 && line[0] == '*') {
		out->untagged = true;
		out->rest = rest;
		out->rest_len = rl;
	} else {
		out->tag = line;
		out->tag_len = head;
	}
	parse_status(rest, rl, out);
	return 0;
}

bool imap_caps_has(const char *caps, size_t len, const char *cap)
{
	size_t cl = strlen(cap), pos = 0, n;
	const char *w;
	while ((n = token_next(caps, len, &pos, &w)) != 0)
		if (n == cl && strncasecmp(w, cap, cl) == 0)
			return true;
	return false;
}
