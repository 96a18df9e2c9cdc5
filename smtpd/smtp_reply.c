/* smtp_reply: see smtp_reply.h. Upstream servers are trusted more than
 * clients, but their replies are still relayed to clients, so every line
 * is checked for its shape and bounded. A lone LF terminator is accepted
 * from upstreams; CR and NUL inside a line are not. */
#include "smtp_reply.h"
#include "token.h"

#include <string.h>
#include <strings.h>

int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *out)
{
	size_t pos = 0;
	out->nlines = 0;
	out->dropped = 0;
	out->code = 0;
	for (;;) {
		/* Decided as soon as a limit is passed, never "need more"
		 * once SMTP_REPLY_MAX_BYTES (the caller's buffer size) are
		 * there. */
		const char *lf = memchr(buf + pos, '\n', len - pos);
		if (!lf)
			return len - pos > SMTP_REPLY_MAX_LINE + 1 || len >= SMTP_REPLY_MAX_BYTES ? -1 : 0;	/* + CR */
		size_t end = (size_t)(lf - buf);	/* index of LF */
		size_t llen = end - pos;
		if (llen && buf[end - 1] == '\r')
			llen--;
		if (llen > SMTP_REPLY_MAX_LINE || llen < 3)
			return -1;
		const char *l = buf + pos;
		for (int i = 0; i < 3; i++)
			if (l[i] < '0' || l[i] > '9')
				return -1;
		int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
		if (code < 200 || code > 599)
			return -1;
		if (out->nlines && code != out->code)
			return -1;
		out->code = code;
		char sep = llen > 3 ? l[3] : ' ';
		if (sep != ' ' && sep != '-')
			return -1;
		for (size_t i = 4; i < llen; i++)
			if (l[i] == '\r' || l[i] == '\0')
				return -1;
		/* RFC 5321 sets no line count: past SMTP_REPLY_MAX_LINES the
		 * last slot takes each new line, so the first lines and the
		 * final one are kept (and the code is known). */
		size_t slot = out->nlines < SMTP_REPLY_MAX_LINES ? out->nlines : SMTP_REPLY_MAX_LINES - 1;
		out->lines[slot].text = llen > 4 ? l + 4 : l + llen;
		out->lines[slot].len = llen > 4 ? llen - 4 : 0;
		if (out->nlines < SMTP_REPLY_MAX_LINES)
			out->nlines++;
		else
			out->dropped++;
		pos = end + 1;
		if (sep == ' ') {
			out->total = pos;
			return 1;
		}
	}
}

long smtp_reply_frame(const char *buf, size_t len)
{
	struct smtp_reply r;
	int rc = smtp_reply_parse(buf, len, &r);
	return rc > 0 ? (long)r.total : rc;
}

static bool kw(const struct smtp_reply_line *l, const char *word, const char **rest, size_t *restlen)
{
	size_t n = strlen(word);
	if (l->len < n || strncasecmp(l->text, word, n) != 0)
		return false;
	if (l->len > n && l->text[n] != ' ' && l->text[n] != '=')
		return false;
	*rest = l->text + n + (l->len > n ? 1 : 0);
	*restlen = l->len > n ? l->len - n - 1 : 0;
	return true;
}

static void parse_xclient(const char *p, size_t len, struct smtp_ehlo_ext *out)
{
	static const struct { const char *name; unsigned bit; } attrs[] = {
		{ "NAME", XC_NAME }, { "ADDR", XC_ADDR }, { "PORT", XC_PORT },
		{ "PROTO", XC_PROTO }, { "HELO", XC_HELO }, { "LOGIN", XC_LOGIN },
	};
	size_t pos = 0, n;
	const char *w;
	while ((n = token_next(p, len, &pos, &w)) != 0)
		for (size_t a = 0; a < sizeof(attrs) / sizeof(attrs[0]); a++)
			if (strlen(attrs[a].name) == n && strncasecmp(attrs[a].name, w, n) == 0)
				out->xclient |= attrs[a].bit;
}

static void parse_auth(const char *p, size_t len, struct smtp_ehlo_ext *out)
{
	size_t o = 0;
	out->auth[o++] = ' ';
	for (size_t i = 0; i < len && o + 2 < sizeof(out->auth); i++) {
		char c = p[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c == ' ' && out->auth[o - 1] == ' ')
			continue;
		out->auth[o++] = c;
	}
	if (out->auth[o - 1] != ' ')
		out->auth[o++] = ' ';
	out->auth[o] = '\0';
}

void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo_ext *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 1; i < r->nlines; i++) {
		const struct smtp_reply_line *l = &r->lines[i];
		const char *rest;
		size_t rl;
		if (kw(l, "PIPELINING", &rest, &rl))
			out->flags |= EXT_PIPELINING;
		else if (kw(l, "SIZE", &rest, &rl)) {
			uint64_t v = 0;
			size_t j = 0;
			for (; j < rl && rest[j] >= '0' && rest[j] <= '9' && v < (1ULL << 50); j++)
				v = v * 10 + (uint64_t)(rest[j] - '0');
			out->flags |= EXT_SIZE;
			out->size = v;
		} else if (kw(l, "8BITMIME", &rest, &rl))
			out->flags |= EXT_8BITMIME;
		else if (kw(l, "SMTPUTF8", &rest, &rl))
			out->flags |= EXT_SMTPUTF8;
		else if (kw(l, "DSN", &rest, &rl))
			out->flags |= EXT_DSN;
		else if (kw(l, "STARTTLS", &rest, &rl))
			out->flags |= EXT_STARTTLS;
		else if (kw(l, "ENHANCEDSTATUSCODES", &rest, &rl))
			out->flags |= EXT_ENHANCED;
		else if (kw(l, "CHUNKING", &rest, &rl))
			out->flags |= EXT_CHUNKING;
		else if (kw(l, "XCLIENT", &rest, &rl)) {
			out->flags |= EXT_XCLIENT;
			parse_xclient(rest, rl, out);
		} else if (kw(l, "AUTH", &rest, &rl)) {
			out->flags |= EXT_AUTH;
			parse_auth(rest, rl, out);
		}
	}
}

bool smtp_ehlo_has_auth(const struct smtp_ehlo_ext *e, const char *mech)
{
	char pat[32];
	size_t n = strlen(mech);
	if (!(e->flags & EXT_AUTH) || n + 3 > sizeof(pat))
		return false;
	pat[0] = ' ';
	memcpy(pat + 1, mech, n);
	pat[n + 1] = ' ';
	pat[n + 2] = '\0';
	return strstr(e->auth, pat) != NULL;
}
