/* smtp_received: tokens are laid out left to right and the line is folded
 * (CRLF + TAB) before a token that would pass column 78. The CN is written
 * with non-printable bytes and "(", ")", "\" as \xHH, at most 64 bytes. */
#include "smtp_received.h"
#include "strbuf.h"

#include <stdio.h>
#include <string.h>

struct out {
	struct strbuf b;
	size_t col;
};

static void put(struct out *o, const char *s, size_t n)
{
	sb_add(&o->b, s, n);
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

/* Each space-separated word of t as a token; a t that overflowed makes
 * the whole header overflow (refused, never cut short). */
static void tok_split(struct out *o, struct strbuf *t)
{
	if (!sb_ok(t)) {
		sb_fail(&o->b);
		return;
	}
	char *save = t->p, *sp;
	while ((sp = strchr(save, ' ')) != NULL) {
		*sp = '\0';
		tok(o, save);
		save = sp + 1;
	}
	tok(o, save);
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

/* The "(client certificate: STATUS[, CN=cn][, peer=NAME])" comment. */
static void cert_comment(const struct smtp_received_info *in, struct strbuf *b)
{
	sb_adds(b, "(client certificate: ");
	sb_adds(b, in->cert_status);
	if (in->cn && in->cn_len) {
		char cn[64 * 4 + 1];
		cn_escape(in->cn, in->cn_len, cn, sizeof(cn));
		sb_adds(b, ", CN=");
		sb_adds(b, cn);
	}
	if (in->peer) {
		sb_adds(b, ", peer=");
		sb_adds(b, in->peer);
	}
	sb_addc(b, ')');
}

size_t smtp_received_build(const struct smtp_received_info *in, char *out, size_t outsz)
{
	struct out o;
	char tmp[512];
	struct strbuf t;
	sb_init(&o.b, out, outsz);
	o.col = 0;
	put(&o, "Received: from", 14);
	tok(&o, in->helo && in->helo[0] ? in->helo : in->ip);
	sb_init(&t, tmp, sizeof(tmp));
	sb_addc(&t, '(');
	sb_adds(&t, in->rdns ? in->rdns : "unknown");
	sb_adds(&t, in->ipv6 ? " [IPv6:" : " [");
	sb_adds(&t, in->ip);
	sb_adds(&t, "])");
	if (!sb_ok(&t))
		return 0;
	tok(&o, tmp);
	tok(&o, "by");
	tok(&o, in->hostname);
	tok(&o, "(mailgate)");
	tok(&o, "with");
	tok(&o, in->proto);
	if (in->suite) {
		tok(&o, "tls");
		tok(&o, in->suite);
		sb_init(&t, tmp, sizeof(tmp));
		cert_comment(in, &t);
		tok_split(&o, &t);	/* the comment may hold spaces: fold at them */
	}
	tok(&o, "id");
	sb_init(&t, tmp, sizeof(tmp));
	sb_adds(&t, in->id);
	sb_addc(&t, '.');
	sb_addu(&t, in->msgno);
	sb_addc(&t, ';');
	if (!sb_ok(&t))
		return 0;
	tok(&o, tmp);
	struct tm tm;
	gmtime_r(&in->when, &tm);
	size_t dl = strftime(tmp, sizeof(tmp), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	/* The date as one unit on its own folded line if needed. */
	if (o.col + 1 + dl > 78) {
		put(&o, "\r\n\t", 3);
		o.col = 8;
	} else {
		put(&o, " ", 1);
	}
	put(&o, tmp, dl);
	put(&o, "\r\n", 2);
	return sb_ok(&o.b) ? sb_len(&o.b) : 0;
}
