/* addr: numeric address parsing and matching; no name resolution here. */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int addr_parse_port(const char *s, uint16_t *port, int allow_zero)
{
	unsigned long v = 0;
	if (!*s || strlen(s) > 5 || (s[0] == '0' && s[1]))
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v > 65535 || (v == 0 && !allow_zero))
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int addr_split_hostport(const char *s, char *host, size_t hostsz, uint16_t *port,
			const char **err)
{
	const char *colon, *hs, *he;
	if (s[0] == '[') {
		he = strchr(s, ']');
		if (!he || he[1] != ':') {
			*err = "expected [IPv6]:PORT";
			return -1;
		}
		hs = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			*err = "missing :PORT";
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s))) {
			*err = "IPv6 addresses must be written [IPv6]:PORT";
			return -1;
		}
		hs = s;
		he = colon;
	}
	if (he == hs) {
		*err = "empty host";
		return -1;
	}
	if ((size_t)(he - hs) >= hostsz) {
		*err = "host too long";
		return -1;
	}
	if (addr_parse_port(colon + 1, port, 0) < 0) {
		*err = "bad port (1-65535)";
		return -1;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	return 0;
}

int addr_from_literal(const char *host, uint16_t port, struct mg_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) == 1) {
		out->u.in4.sin_family = AF_INET;
		out->u.in4.sin_port = htons(port);
		out->len = sizeof(out->u.in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
		out->u.in6.sin6_family = AF_INET6;
		out->u.in6.sin6_port = htons(port);
		out->len = sizeof(out->u.in6);
		return 0;
	}
	return -1;
}

int addr_parse_cidr(const char *s, struct mg_cidr *out, const char **err)
{
	char ip[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned maxbits;
	memset(out, 0, sizeof(*out));
	if (iplen == 0 || iplen >= sizeof(ip)) {
		*err = "bad address";
		return -1;
	}
	memcpy(ip, s, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, out->net) == 1) {
		out->family = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, ip, out->net) == 1) {
		out->family = AF_INET6;
		maxbits = 128;
	} else {
		*err = "bad address (IPv4 or IPv6 literal expected)";
		return -1;
	}
	out->bits = maxbits;
	if (slash) {
		const char *p = slash + 1;
		unsigned v = 0;
		if (!*p || strlen(p) > 3) {
			*err = "bad prefix length";
			return -1;
		}
		for (; *p; p++) {
			if (*p < '0' || *p > '9') {
				*err = "bad prefix length";
				return -1;
			}
			v = v * 10 + (unsigned)(*p - '0');
		}
		if (v > maxbits) {
			*err = "prefix length too long";
			return -1;
		}
		out->bits = v;
	}
	/* Clear host bits so matching is a plain prefix compare. */
	for (unsigned i = 0; i < maxbits / 8; i++) {
		unsigned keep = out->bits > i * 8 ? out->bits - i * 8 : 0;
		if (keep >= 8)
			continue;
		out->net[i] &= (unsigned char)(0xff << (8 - keep));
	}
	return 0;
}

static int prefix_eq(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned full = bits / 8, rem = bits % 8;
	if (memcmp(a, b, full) != 0)
		return 0;
	if (rem) {
		unsigned char mask = (unsigned char)(0xff << (8 - rem));
		if ((a[full] & mask) != (b[full] & mask))
			return 0;
	}
	return 1;
}

int addr_cidr_match(const struct mg_cidr *c, const struct mg_addr *a)
{
	if (c->family == AF_INET && a->u.sa.sa_family == AF_INET)
		return prefix_eq(c->net, (const unsigned char *)&a->u.in4.sin_addr, c->bits);
	if (c->family == AF_INET6 && a->u.sa.sa_family == AF_INET6)
		return prefix_eq(c->net, a->u.in6.sin6_addr.s6_addr, c->bits);
	return 0;
}

int addr_cidr_is_loopback(const struct mg_cidr *c)
{
	if (c->family == AF_INET)
		return c->net[0] == 127 && c->bits >= 8;
	static const unsigned char lo6[16] = { [15] = 1 };
	return c->bits == 128 && memcmp(c->net, lo6, 16) == 0;
}

void addr_unmap_v4(struct mg_addr *a)
{
	if (a->u.sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
		return;
	struct sockaddr_in in4;
	memset(&in4, 0, sizeof(in4));
	in4.sin_family = AF_INET;
	in4.sin_port = a->u.in6.sin6_port;
	memcpy(&in4.sin_addr, a->u.in6.sin6_addr.s6_addr + 12, 4);
	memset(&a->u, 0, sizeof(a->u));
	a->u.in4 = in4;
	a->len = sizeof(in4);
}

void addr_map_v6(struct mg_addr *a)
{
	if (a->u.sa.sa_family != AF_INET)
		return;
	struct sockaddr_in6 in6;
	memset(&in6, 0, sizeof(in6));
	in6.sin6_family = AF_INET6;
	in6.sin6_port = a->u.in4.sin_port;
	in6.sin6_addr.s6_addr[10] = in6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(in6.sin6_addr.s6_addr + 12, &a->u.in4.sin_addr, 4);
	memset(&a->u, 0, sizeof(a->u));
	a->u.in6 = in6;
	a->len = sizeof(in6);
}

int addr_is_loopback(const struct mg_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return (ntohl(a->u.in4.sin_addr.s_addr) >> 24) == 127;
	if (a->u.sa.sa_family == AF_INET6) {
		if (IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
			return a->u.in6.sin6_addr.s6_addr[12] == 127;
		return IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr);
	}
	return 0;
}


uint16_t addr_port(const struct mg_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return ntohs(a->u.in4.sin_port);
	if (a->u.sa.sa_family == AF_INET6)
		return ntohs(a->u.in6.sin6_port);
	return 0;
}

void addr_ip_str(const struct mg_addr *a, char *out, size_t sz)
{
	const void *src = a->u.sa.sa_family == AF_INET ? (const void *)&a->u.in4.sin_addr
						       : (const void *)&a->u.in6.sin6_addr;
	if (a->u.sa.sa_family != AF_INET && a->u.sa.sa_family != AF_INET6) {
		snprintf(out, sz, "unknown");
		return;
	}
	if (!inet_ntop(a->u.sa.sa_family, src, out, (socklen_t)sz))
		snprintf(out, sz, "unknown");
}

void addr_str(const struct mg_addr *a, char *out, size_t sz)
{
	char ip[INET6_ADDRSTRLEN];
	addr_ip_str(a, ip, sizeof(ip));
	if (a->u.sa.sa_family == AF_INET6)
		snprintf(out, sz, "[%s]:%u", ip, addr_port(a));
	else
		snprintf(out, sz, "%s:%u", ip, addr_port(a));
}

void addr_from_sockaddr(struct mg_addr *a, const struct sockaddr *sa, socklen_t len)
{
	memset(a, 0, sizeof(*a));
	if (len > sizeof(a->u))
		len = sizeof(a->u);
	memcpy(&a->u, sa, len);
	a->len = len;
	addr_unmap_v4(a);
}

void addr_key(const struct mg_addr *a, uint8_t out[16])
{
	memset(out, 0, 16);
	if (a->u.sa.sa_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a->u.in4.sin_addr, 4);
	} else if (a->u.sa.sa_family == AF_INET6) {
		memcpy(out, a->u.in6.sin6_addr.s6_addr, 16);
	}
}
