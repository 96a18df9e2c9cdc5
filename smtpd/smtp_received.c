/* smtp_received: tokens are laid out left to right and the line is folded
 * (CRLF + TAB) before a token that would pass column 78. The CN is written
 * with non-printable bytes and "(", ")", "\" as \xHH, at most 64 bytes. */
#include "smtp_received.h"

#include <stdio.h>
#include <string.h>

struct out {
	char *p;
	size_t sz, len, col;
	int overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->sz) {
		o->overflow = 1;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
	o->col += n;
}

/* A token preceded by a space, or by a fold when it would pass 78. */
static void tok(struct out *o, const char *s)
{
	size_t n = strlen(s);
	if (o->col + 1 + n > 78 && o->col > 8) {
		put(o, "\r\n\t", 3);
		o->col = 8;
	} else {
		put(o, " ", 1);
	}
	put(o, s, n);
}

static void cn_escape(const char *cn, size_t len, char *dst, size_t dsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	if (len > 64)
		len = 64;
	for (size_t i = 0; i < len && o + 5 < dsz; i++) {
		unsigned char c = (unsigned char)cn[i];
		if (c < 0x20 || c > 0x7e || c == '(' || c == ')' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		} else {
			dst[o++] = (char)c;
		}
	}
	dst[o] = '\0';
}

const char *smtp_received_proto(int esmtp, int tls, int auth, int utf8)
{
	if (!esmtp)
		return "SMTP";
	if (utf8)
		return tls ? (auth ? "UTF8SMTPSA" : "UTF8SMTPS") : (auth ? "UTF8SMTPA" : "UTF8SMTP");
	return tls ? (auth ? "ESMTPSA" : "ESMTPS") : (auth ? "ESMTPA" : "ESMTP");
}

size_t smtp_received_build(const struct smtp_received_info *in, char *out, size_t outsz)
{
	struct out o = { out, outsz, 0, 0, 0 };
	char tmp[512];
	put(&o, "Received: from", 14);
	tok(&o, in->helo && in->helo[0] ? in->helo : in->ip);
	snprintf(tmp, sizeof(tmp), "(%s [%s%s])", in->rdns ? in->rdns : "unknown",
		 in->ipv6 ? "IPv6:" : "", in->ip);
	tok(&o, tmp);
	tok(&o, "by");
	tok(&o, in->hostname);
	tok(&o, "(mailgate)");
	tok(&o, "with");
	tok(&o, in->proto);
	if (in->suite) {
		tok(&o, "tls");
		tok(&o, in->suite);
		snprintf(tmp, sizeof(tmp), "(client certificate: %s", in->cert_status);
		if (in->cn && in->cn_len) {
			char cn[300];
			cn_escape(in->cn, in->cn_len, cn, sizeof(cn));
			size_t l = strlen(tmp);
			snprintf(tmp + l, sizeof(tmp) - l, ", CN=%s", cn);
		}
		if (in->peer) {
			size_t l = strlen(tmp);
			snprintf(tmp + l, sizeof(tmp) - l, ", peer=%s", in->peer);
		}
		size_t l = strlen(tmp);
		snprintf(tmp + l, sizeof(tmp) - l, ")");
		/* The parenthesised comment may hold spaces: fold at them. */
		char *save = tmp, *sp;
		while ((sp = strchr(save, ' ')) != NULL) {
			*sp = '\0';
			tok(&o, save);
			save = sp + 1;
		}
		tok(&o, save);
	}
	tok(&o, "id");
	snprintf(tmp, sizeof(tmp), "%s.%u;", in->id, in->msgno);
	tok(&o, tmp);
	struct tm tm;
	gmtime_r(&in->when, &tm);
	strftime(tmp, sizeof(tmp), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	/* The date as one unit on its own folded line if needed. */
	size_t dl = strlen(tmp);
	if (o.col + 1 + dl > 78) {
		put(&o, "\r\n\t", 3);
		o.col = 8;
		put(&o, tmp, dl);
	} else {
		put(&o, " ", 1);
		put(&o, tmp, dl);
	}
	put(&o, "\r\n", 2);
	return o.overflow ? 0 : o.len;
}
