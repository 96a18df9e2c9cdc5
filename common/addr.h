/* addr: socket address helpers, all pure: parse "IP:PORT" / "[IPv6]:PORT" /
 * "host:port", CIDR prefixes, loopback tests, IPv4-mapped conversion and
 * formatting. A struct mg_addr is 32 bytes, cheap to keep per session. */
#ifndef MG_ADDR_H
#define MG_ADDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct mg_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} u;
	socklen_t len;
};

struct mg_cidr {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char net[16];
	unsigned bits;
};

#define MG_ADDR_STRLEN 64	/* "[ffff:...]:65535" fits */

/* Splits "host:port" or "[v6]:port" into host (no brackets) and port.
 * Returns 0, or -1 with *err set to a static reason. */
int addr_split_hostport(const char *s, char *host, size_t hostsz, uint16_t *port,
			const char **err);
/* A decimal port 1-65535 (0 allowed when allow_zero), no sign, no
 * leading zeros, no junk. Returns 0 or -1. */
int addr_parse_port(const char *s, uint16_t *port, int allow_zero);
/* Parses a numeric IPv4/IPv6 literal plus port. Returns 0 or -1. */
int addr_from_literal(const char *host, uint16_t port, struct mg_addr *out);
/* "a.b.c.d/n", "v6/n" or a bare address (full-length prefix). 0 or -1. */
int addr_parse_cidr(const char *s, struct mg_cidr *out, const char **err);
int addr_cidr_match(const struct mg_cidr *c, const struct mg_addr *a);
int addr_cidr_is_loopback(const struct mg_cidr *c);
/* Turns ::ffff:a.b.c.d into a.b.c.d in place. */
void addr_unmap_v4(struct mg_addr *a);
/* The reverse: an IPv4 address becomes ::ffff:a.b.c.d in place; IPv6
 * addresses are left alone. */
void addr_map_v6(struct mg_addr *a);
int addr_is_loopback(const struct mg_addr *a);
uint16_t addr_port(const struct mg_addr *a);
/* "192.0.2.1" / "2001:db8::1" */
void addr_ip_str(const struct mg_addr *a, char *out, size_t sz);
/* The address as 16 bytes for tables: IPv6 as is, IPv4 as ::ffff:a.b.c.d
 * (so both spellings of one IPv4 client count as one), else zeros. */
void addr_key(const struct mg_addr *a, uint8_t out[16]);
/* "192.0.2.1:25" / "[2001:db8::1]:25" */
void addr_str(const struct mg_addr *a, char *out, size_t sz);
void addr_from_sockaddr(struct mg_addr *a, const struct sockaddr *sa, socklen_t len);

#endif
