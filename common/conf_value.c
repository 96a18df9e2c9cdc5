/* conf_value: strict, allocation-free value parsers. */
#include "conf_value.h"
#include "b64.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_hex_pin(const char *s, unsigned char out[32])
{
	size_t n = 0;
	int colons = strchr(s, ':') != NULL;
	while (*s) {
		int hi, lo;
		if (n == 32)
			return -1;
		hi = hexval(s[0]);
		if (hi < 0)
			return -1;
		lo = hexval(s[1]);
		if (lo < 0)
			return -1;
		out[n++] = (unsigned char)(hi << 4 | lo);
		s += 2;
		if (colons && n < 32) {
			if (*s != ':')
				return -1;
			s++;
		}
	}
	return n == 32 ? 0 : -1;
}

int conf_parse_pin(const char *s, unsigned char out[32], int allow_b64, const char **err)
{
	/* "pin-sha256:BASE64" is what certtool -i / --key-info prints; "sha256//"
	 * is the HPKP / curl spelling; "sha256:" prefixes hex. */
	if (allow_b64 && strncasecmp(s, "pin-sha256:", 11) == 0)
		s += 11;
	else if (strncasecmp(s, "sha256:", 7) == 0)
		s += 7;
	else if (strncasecmp(s, "sha256//", 8) == 0)
		s += 8;
	if (parse_hex_pin(s, out) == 0)
		return 0;
	if (allow_b64 && strlen(s) == 44) {
		unsigned char *raw = NULL;
		size_t rawlen = 0;
		if (b64_decode(s, 44, &raw, &rawlen) == 0 && rawlen == 32) {
			memcpy(out, raw, 32);
			free(raw);
			return 0;
		}
		free(raw);
	}
	*err = allow_b64 ? "malformed SHA-256 pin (64 hex digits, colons optional, or 44 base64 characters)"
			 : "malformed SHA-256 fingerprint (64 hex digits, colons optional)";
	return -1;
}

int conf_parse_keyword(const char *s, const char *const *words)
{
	for (int i = 0; words[i]; i++)
		if (strcmp(s, words[i]) == 0)
			return i;
	return -1;
}
