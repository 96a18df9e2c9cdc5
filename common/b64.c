/* b64: strict validation and decoding are ours (GnuTLS is lenient about
 * whitespace, and its decoder leaves copies of what it decoded - a SASL
 * password - where nobody wipes them); encoding is GnuTLS's. */
#include "b64.h"
#include "xmem.h"

#include <gnutls/gnutls.h>
#include <stdint.h>
#include <string.h>

static int b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

int b64_valid(const char *s, size_t len)
{
	size_t pad = 0;
	if (len == 0 || len % 4 != 0)
		return 0;
	if (s[len - 1] == '=')
		pad++;
	if (len >= 2 && s[len - 2] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (!b64_char((unsigned char)s[i]))
			return 0;
	return 1;
}

static unsigned b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (unsigned)(c - 'A');
	if (c >= 'a' && c <= 'z')
		return (unsigned)(c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (unsigned)(c - '0' + 52);
	return c == '+' ? 62u : 63u;	/* '/', the charset being checked */
}

/* Our own decoder: it writes each byte straight into the result, so a
 * decoded password exists in exactly one buffer, the one the caller
 * wipes (GnuTLS's leaves copies behind on the stack and heap). */
int b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
	if (!b64_valid(s, len))
		return -1;
	size_t pad = (size_t)(s[len - 1] == '=') + (size_t)(s[len - 2] == '=');
	size_t n = len / 4 * 3 - pad, o = 0;
	unsigned char *d = xmalloc(n + 1);
	for (size_t i = 0; i < len; i += 4) {
		unsigned v = b64_value((unsigned char)s[i]) << 18 | b64_value((unsigned char)s[i + 1]) << 12;
		if (s[i + 2] != '=')
			v |= b64_value((unsigned char)s[i + 2]) << 6;
		if (s[i + 3] != '=')
			v |= b64_value((unsigned char)s[i + 3]);
		d[o++] = (unsigned char)(v >> 16);
		if (o < n)
			d[o++] = (unsigned char)(v >> 8);
		if (o < n)
			d[o++] = (unsigned char)v;
	}
	d[n] = '\0';
	*out = d;
	*outlen = n;
	return 0;
}

char *b64_encode(const void *p, size_t len)
{
	gnutls_datum_t in, res = { NULL, 0 };
	if (len == 0)
		return xstrdup("");
	in.data = (unsigned char *)(uintptr_t)p;
	in.size = (unsigned)len;
	if (gnutls_base64_encode2(&in, &res) < 0)
		return xstrdup("");
	char *s = xmemdup0(res.data, res.size);
	gnutls_memset(res.data, 0, res.size);	/* a PLAIN blob, as good as the password */
	gnutls_free(res.data);
	return s;
}
