/* b64: the charset and padding checks are ours (GnuTLS is lenient about
 * whitespace); the transform itself is GnuTLS's. */
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

int b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
	gnutls_datum_t in, res = { NULL, 0 };
	if (!b64_valid(s, len))
		return -1;
	in.data = (unsigned char *)(uintptr_t)s;
	in.size = (unsigned)len;
	if (gnutls_base64_decode2(&in, &res) < 0)
		return -1;
	*out = (unsigned char *)xmemdup0(res.data, res.size);
	*outlen = res.size;
	gnutls_memset(res.data, 0, res.size);	/* decoded SASL: may be a password */
	gnutls_free(res.data);
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
