/* sasl: see sasl.h. */
#include "sasl.h"
#include "b64.h"

#include <stdlib.h>
#include <string.h>

int sasl_plain_parse(const unsigned char *raw, size_t len, struct sasl_plain *out)
{
	const unsigned char *z1 = memchr(raw, 0, len);
	if (!z1)
		return -1;
	const unsigned char *z2 = memchr(z1 + 1, 0, len - (size_t)(z1 + 1 - raw));
	if (!z2 || memchr(z2 + 1, 0, len - (size_t)(z2 + 1 - raw)))
		return -1;
	size_t l1 = (size_t)(z1 - raw), l2 = (size_t)(z2 - z1 - 1), l3 = len - (size_t)(z2 + 1 - raw);
	if (l1 >= sizeof(out->authzid) || l2 == 0 || l2 >= sizeof(out->authcid) || l3 == 0 ||
	    l3 >= sizeof(out->passwd))
		return -1;
	memcpy(out->authzid, raw, l1);
	out->authzid[l1] = '\0';
	memcpy(out->authcid, z1 + 1, l2);
	out->authcid[l2] = '\0';
	memcpy(out->passwd, z2 + 1, l3);
	out->passwd[l3] = '\0';
	return 0;
}

/* Decodes into a fresh buffer that decoded() wipes and frees. */
static int decoded(const char *b64, size_t len, unsigned char **raw, size_t *rawlen)
{
	*raw = NULL;
	*rawlen = 0;
	return b64_decode(b64, len, raw, rawlen);
}

static void wipe_free(unsigned char *raw, size_t len)
{
	if (raw)
		explicit_bzero(raw, len);	/* memset before free may be elided */
	free(raw);
}

int sasl_plain_decode(const char *b64, size_t len, struct sasl_plain *out)
{
	unsigned char *raw;
	size_t rawlen;
	if (decoded(b64, len, &raw, &rawlen) < 0)
		return -1;
	int rc = sasl_plain_parse(raw, rawlen, out);
	wipe_free(raw, rawlen);
	return rc;
}

char *sasl_plain_encode(const struct sasl_plain *c)
{
	size_t a = strnlen(c->authzid, sizeof(c->authzid) - 1);
	size_t u = strnlen(c->authcid, sizeof(c->authcid) - 1);
	size_t p = strnlen(c->passwd, sizeof(c->passwd) - 1);
	unsigned char raw[sizeof(c->authzid) + sizeof(c->authcid) + sizeof(c->passwd)];
	memcpy(raw, c->authzid, a);
	raw[a] = 0;
	memcpy(raw + a + 1, c->authcid, u);
	raw[a + 1 + u] = 0;
	memcpy(raw + a + u + 2, c->passwd, p);
	char *b64 = b64_encode(raw, a + u + p + 2);
	explicit_bzero(raw, sizeof(raw));
	return b64;
}

/* One name of 0-255 octets without NUL into out. */
static int one_name(const unsigned char *raw, size_t len, char out[SASL_NAME_MAX + 1])
{
	if (len > SASL_NAME_MAX || memchr(raw, 0, len))
		return -1;
	memcpy(out, raw, len);
	out[len] = '\0';
	return 0;
}

int sasl_login_name(const char *b64, size_t len, char out[SASL_NAME_MAX + 1])
{
	unsigned char *raw;
	size_t rawlen;
	if (decoded(b64, len, &raw, &rawlen) < 0)
		return -1;
	int rc = rawlen ? one_name(raw, rawlen, out) : -1;
	wipe_free(raw, rawlen);
	return rc;
}

int sasl_external_authzid(const char *b64, size_t len, char out[SASL_NAME_MAX + 1])
{
	unsigned char *raw;
	size_t rawlen;
	out[0] = '\0';
	if (len == 0 || (len == 1 && b64[0] == '='))
		return 0;
	if (decoded(b64, len, &raw, &rawlen) < 0)
		return -1;
	int rc = one_name(raw, rawlen, out) < 0 ? -2 : 0;
	wipe_free(raw, rawlen);
	return rc;
}
