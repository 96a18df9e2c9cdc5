/* smtp_xclient: see smtp_xclient.h. xtext: bytes 33-126 except '+' and
 * '=' are written as is, everything else as "+HH". */
#include "smtp_xclient.h"
#include "smtp_reply.h"
#include "strbuf.h"

#include <stdio.h>
#include <string.h>

size_t smtp_xtext(const char *s, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 33 && c <= 126 && c != '+' && c != '=') {
			if (o + 1 >= outsz)
				return (size_t)-1;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= outsz)
				return (size_t)-1;
			out[o++] = '+';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (o >= outsz)
		return (size_t)-1;
	out[o] = '\0';
	return o;
}

/* " KEY=xtext(VAL)": all of it or nothing. */
static void add_attr(struct strbuf *b, const char *key, const char *val)
{
	char enc[SMTP_XCLIENT_LINE_MAX];
	if (smtp_xtext(val, enc, sizeof(enc)) == (size_t)-1) {
		sb_fail(b);	/* cannot be encoded within one line */
		return;
	}
	sb_addc(b, ' ');
	sb_adds(b, key);
	sb_addc(b, '=');
	sb_adds(b, enc);
}

int smtp_xclient_lines(const struct smtp_xclient_attrs *a, unsigned offered,
		       char lines[SMTP_XCLIENT_MAX_LINES][SMTP_XCLIENT_LINE_MAX + 1])
{
	int nl = 0;
	char port[8];
	struct strbuf b;
	sb_init(&b, port, sizeof(port));
	sb_addu(&b, a->port);
	struct {
		unsigned bit;
		const char *key, *val;
		int group;
	} items[] = {
		{ XC_NAME, "NAME", a->name, 0 },   { XC_ADDR, "ADDR", a->addr, 0 },
		{ XC_PORT, "PORT", port, 0 },      { XC_PROTO, "PROTO", a->proto, 0 },
		{ XC_HELO, "HELO", a->helo, 1 },   { XC_LOGIN, "LOGIN", a->login, 2 },
	};
	for (int g = 0; g < SMTP_XCLIENT_MAX_LINES; g++) {
		int any = 0;
		/* A line, CRLF included, is at most SMTP_XCLIENT_LINE_MAX. */
		sb_init(&b, lines[nl], SMTP_XCLIENT_LINE_MAX + 1);
		sb_adds(&b, "XCLIENT");
		for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
			if (items[i].group != g || !(offered & items[i].bit) || !items[i].val)
				continue;
			add_attr(&b, items[i].key, items[i].val);
			any = 1;
		}
		sb_add(&b, "\r\n", 2);
		if (!sb_ok(&b))
			return -1;
		if (any)
			nl++;
	}
	return nl;
}
