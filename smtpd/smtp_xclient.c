/* smtp_xclient: see smtp_xclient.h. xtext: bytes 33-126 except '+' and
 * '=' are written as is, everything else as "+HH". */
#include "smtp_xclient.h"
#include "smtp_reply.h"

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

static int add_attr(char *line, size_t *len, const char *key, const char *val)
{
	char enc[513];
	if (smtp_xtext(val, enc, sizeof(enc)) == (size_t)-1)
		return -1;
	int n = snprintf(line + *len, 513 - *len, " %s=%s", key, enc);
	if (n < 0 || *len + (size_t)n + 2 > 512)
		return -1;
	*len += (size_t)n;
	return 0;
}

int smtp_xclient_lines(const struct smtp_xclient_attrs *a, unsigned offered,
		       char lines[SMTP_XCLIENT_MAX_LINES][513])
{
	int nl = 0;
	char port[8];
	snprintf(port, sizeof(port), "%u", a->port);
	struct {
		unsigned bit;
		const char *key, *val;
		int group;
	} items[] = {
		{ XC_NAME, "NAME", a->name, 0 },   { XC_ADDR, "ADDR", a->addr, 0 },
		{ XC_PORT, "PORT", port, 0 },      { XC_PROTO, "PROTO", a->proto, 0 },
		{ XC_HELO, "HELO", a->helo, 1 },   { XC_LOGIN, "LOGIN", a->login, 2 },
	};
	for (int g = 0; g < 3; g++) {
		size_t len = strlen("XCLIENT");
		char *line = lines[nl];
		memcpy(line, "XCLIENT", len + 1);
		int any = 0;
		for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
			if (items[i].group != g || !(offered & items[i].bit) || !items[i].val)
				continue;
			if (add_attr(line, &len, items[i].key, items[i].val) < 0)
				return -1;
			any = 1;
		}
		if (!any)
			continue;
		memcpy(line + len, "\r\n", 3);
		nl++;
	}
	return nl;
}
