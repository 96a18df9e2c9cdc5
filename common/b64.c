/* b64: strict validation, decoding and encoding, all ours: GnuTLS is
 * lenient about whitespace, and both its decoder and its encoder leave
 * copies of what they handled - a SASL password, a PLAIN blob - where
 * nobody wipes them (gnutls_base64_encode2 encodes through a buffer on
 * its stack). */
#include "b64.h"
#include "xmem.h"

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

/* Written straight into the result, for the same reason as the decoder:
 * a PLAIN blob is as good as the password, and GnuTLS's encoder leaves
 * the last 48 octets' encoding in a stack buffer it never wipes. */
char *b64_encode(const void *p, size_t len)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *in = p;
	char *s = xmalloc((len + 2) / 3 * 4 + 1), *o = s;
	for (size_t i = 0; i < len; i += 3) {
		size_t n = len - i < 3 ? len - i : 3;
		unsigned v = (unsigned)in[i] << 16 | (n > 1 ? (unsigned)in[i + 1] << 8 : 0u) | (n > 2 ? in[i + 2] : 0u);
		*o++ = abc[v >> 18 & 63];
		*o++ = abc[v >> 12 & 63];
		*o++ = n > 1 ? abc[v >> 6 & 63] : '=';
		*o++ = n > 2 ? abc[v & 63] : '=';
	}
	*o = '\0';
	return s;
}
