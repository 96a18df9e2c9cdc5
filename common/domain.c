/* domain: LDH checks by hand, U-label to A-label through libidn2. */
#include "domain.h"

#include <idn2.h>
#include <stdlib.h>
#include <string.h>

static int ldh_valid(const char *s, size_t len)
{
	size_t lab = 0;
	if (len && s[len - 1] == '.')
		len--;
	if (len == 0 || len > DOMAIN_NAME_MAX)
		return 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (lab == 0 || lab > 63)
				return 0;
			if (s[i - 1] == '-' || s[i - lab] == '-')
				return 0;
			lab = 0;
			continue;
		}
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return 0;
		lab++;
	}
	return 1;
}

int domain_normalize(const char *s, size_t len, char *out, size_t outsz)
{
	int ascii = 1;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] >= 0x80)
			ascii = 0;
		if (s[i] == '\0')
			return -1;
	}
	if (ascii) {
		if (!ldh_valid(s, len))
			return -1;
		if (len && s[len - 1] == '.')
			len--;
		if (len + 1 > outsz)
			return -1;
		for (size_t i = 0; i < len; i++) {
			char c = s[i];
			out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		out[len] = '\0';
		return 0;
	}
	if (len > 1024)
		return -1;
	char tmp[1025];
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	char *a = NULL;
	if (idn2_to_ascii_8z(tmp, &a, IDN2_NONTRANSITIONAL) != IDN2_OK)
		return -1;
	int rc = domain_normalize(a, strlen(a), out, outsz);
	idn2_free(a);
	return rc;
}

int domain_valid(const char *s, size_t len)
{
	char buf[DOMAIN_BUFSZ];
	return domain_normalize(s, len, buf, sizeof(buf)) == 0;
}

int domain_has_dot(const char *s)
{
	const char *dot = strchr(s, '.');
	return dot && dot != s && dot[1] != '\0';
}
