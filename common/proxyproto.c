/* proxyproto: see proxyproto.h. v1: "PROXY TCP4|TCP6|UNKNOWN src dst
 * sport dport\r\n", at most 107 bytes. v2: the 12-byte signature, version
 * and command, family, a 16-bit length, addresses, then TLVs (ignored on
 * input). */
#include "proxyproto.h"
#include "strbuf.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const unsigned char v2sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

static enum pp_rc parse_v1(const unsigned char *buf, size_t len, struct pp_info *out, size_t *consumed)
{
	const unsigned char *lf = memchr(buf, '\n', len < PP_V1_MAX ? len : PP_V1_MAX);
	if (!lf)
		return len >= PP_V1_MAX ? PP_BAD : PP_MORE;
	size_t n = (size_t)(lf - buf) + 1;
	if (n < 8 || buf[n - 2] != '\r')
		return PP_BAD;
	char line[PP_V1_MAX + 1];
	memcpy(line, buf, n - 2);
	line[n - 2] = '\0';
	char *f[7];
	int nf = 0;
	for (char *p = line, *save; nf < 7 && (f[nf] = strtok_r(nf ? NULL : p, " ", &save)); nf++)
		;
	if (nf < 2 || strcmp(f[0], "PROXY") != 0)
		return PP_BAD;
	memset(out, 0, sizeof(*out));
	*consumed = n;
	if (strcmp(f[1], "UNKNOWN") == 0) {
		out->local = true;
		return PP_OK;
	}
	if (nf != 6 || (strcmp(f[1], "TCP4") && strcmp(f[1], "TCP6")))
		return PP_BAD;
	uint16_t sp, dp;
	if (addr_parse_port(f[4], &sp, 1) < 0 || addr_parse_port(f[5], &dp, 1) < 0)
		return PP_BAD;
	if (addr_from_literal(f[2], sp, &out->src) < 0 || addr_from_literal(f[3], dp, &out->dst) < 0)
		return PP_BAD;
	int fam = strcmp(f[1], "TCP4") == 0 ? AF_INET : AF_INET6;
	if (out->src.u.sa.sa_family != fam || out->dst.u.sa.sa_family != fam)
		return PP_BAD;
	addr_unmap_v4(&out->src);
	addr_unmap_v4(&out->dst);
	return PP_OK;
}

static enum pp_rc parse_v2(const unsigned char *buf, size_t len, struct pp_info *out, size_t *consumed)
{
	if (len < 16)
		return PP_MORE;
	unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0f, fam = buf[13];
	size_t plen = (size_t)buf[14] << 8 | buf[15];
	if (ver != 2 || cmd > 1 || 16 + plen > PP_V2_MAX)
		return PP_BAD;
	if (len < 16 + plen)
		return PP_MORE;
	memset(out, 0, sizeof(*out));
	*consumed = 16 + plen;
	if (cmd == 0) {	/* LOCAL: health checks etc. keep the socket addresses */
		out->local = true;
		return PP_OK;
	}
	const unsigned char *a = buf + 16;
	if (fam == 0x11) {	/* TCP over IPv4 */
		if (plen < 12)
			return PP_BAD;
		out->src.u.in4.sin_family = out->dst.u.in4.sin_family = AF_INET;
		memcpy(&out->src.u.in4.sin_addr, a, 4);
		memcpy(&out->dst.u.in4.sin_addr, a + 4, 4);
		memcpy(&out->src.u.in4.sin_port, a + 8, 2);
		memcpy(&out->dst.u.in4.sin_port, a + 10, 2);
		out->src.len = out->dst.len = sizeof(struct sockaddr_in);
	} else if (fam == 0x21) {	/* TCP over IPv6 */
		if (plen < 36)
			return PP_BAD;
		out->src.u.in6.sin6_family = out->dst.u.in6.sin6_family = AF_INET6;
		memcpy(&out->src.u.in6.sin6_addr, a, 16);
		memcpy(&out->dst.u.in6.sin6_addr, a + 16, 16);
		memcpy(&out->src.u.in6.sin6_port, a + 32, 2);
		memcpy(&out->dst.u.in6.sin6_port, a + 34, 2);
		out->src.len = out->dst.len = sizeof(struct sockaddr_in6);
		addr_unmap_v4(&out->src);
		addr_unmap_v4(&out->dst);
	} else if (fam == 0x00) {
		out->local = true;	/* UNSPEC: keep the socket addresses */
	} else {
		return PP_BAD;	/* UDP or unix sockets make no sense for us */
	}
	return PP_OK;
}

enum pp_rc pp_parse(const unsigned char *buf, size_t len, struct pp_info *out, size_t *consumed)
{
	size_t n = len < 12 ? len : 12;
	if (memcmp(buf, v2sig, n) == 0)
		return len < 12 ? PP_MORE : parse_v2(buf, len, out, consumed);
	n = len < 6 ? len : 6;
	if (memcmp(buf, "PROXY ", n) == 0)
		return len < 6 ? PP_MORE : parse_v1(buf, len, out, consumed);
	return PP_BAD;
}

/* A header carries one family: a client and a local address of different
 * families are both sent as IPv6, the IPv4 one as ::ffff:a.b.c.d (what
 * HAProxy does). Returns the family to send. */
static int same_family(struct mg_addr *src, struct mg_addr *dst)
{
	int fam = src->u.sa.sa_family;
	if (fam != dst->u.sa.sa_family) {
		addr_map_v6(src);
		addr_map_v6(dst);
		fam = AF_INET6;
	}
	return fam;
}

size_t pp_build_v1(char *out, size_t sz, const struct mg_addr *src_in, const struct mg_addr *dst_in)
{
	struct mg_addr src = *src_in, dst = *dst_in;
	int fam = same_family(&src, &dst);
	char ip[64];
	struct strbuf b;
	sb_init(&b, out, sz);
	if (fam != AF_INET && fam != AF_INET6) {
		sb_adds(&b, "PROXY UNKNOWN\r\n");
	} else {
		sb_adds(&b, fam == AF_INET ? "PROXY TCP4 " : "PROXY TCP6 ");
		addr_ip_str(&src, ip, sizeof(ip));
		sb_adds(&b, ip);
		sb_addc(&b, ' ');
		addr_ip_str(&dst, ip, sizeof(ip));
		sb_adds(&b, ip);
		sb_addc(&b, ' ');
		sb_addu(&b, addr_port(&src));
		sb_addc(&b, ' ');
		sb_addu(&b, addr_port(&dst));
		sb_add(&b, "\r\n", 2);
	}
	return sb_ok(&b) ? sb_len(&b) : 0;
}

static void tlv(struct strbuf *w, unsigned char type, const void *v, size_t n)
{
	unsigned char h[3] = { type, (unsigned char)(n >> 8), (unsigned char)n };
	if (n > 0xffff) {
		sb_fail(w);
		return;
	}
	sb_add(w, h, 3);
	sb_add(w, v, n);
}

static void tlv_str(struct strbuf *w, unsigned char type, const char *s)
{
	if (s && *s)
		tlv(w, type, s, strlen(s));
}

/* PP2_TYPE_SSL's value: client flags, verify, then its sub-TLVs. */
static void ssl_tlv(struct strbuf *w, const struct pp_tls *tls)
{
	char ssl[PP_V2_MAX];
	struct strbuf s;
	unsigned char client = 0x01;		/* PP2_CLIENT_SSL */
	if (tls->cert)
		client |= 0x02 | 0x04;		/* CERT_CONN | CERT_SESS */
	uint32_t verify = htonl(tls->cert && !tls->verified ? 1 : 0);
	sb_init(&s, ssl, sizeof(ssl));
	sb_add(&s, &client, 1);
	sb_add(&s, &verify, 4);
	tlv_str(&s, 0x21, tls->version);	/* PP2_SUBTYPE_SSL_VERSION */
	if (tls->cert && tls->verified)
		tlv_str(&s, 0x22, tls->cn);	/* PP2_SUBTYPE_SSL_CN */
	tlv_str(&s, 0x23, tls->cipher);		/* PP2_SUBTYPE_SSL_CIPHER */
	if (tls->cert) {
		tlv_str(&s, 0x24, tls->sig_alg);	/* PP2_SUBTYPE_SSL_SIG_ALG */
		tlv_str(&s, 0x25, tls->key_alg);	/* PP2_SUBTYPE_SSL_KEY_ALG */
	}
	if (!sb_ok(&s))
		sb_fail(w);
	else
		tlv(w, 0x20, ssl, sb_len(&s));	/* PP2_TYPE_SSL */
}

size_t pp_build_v2(unsigned char *out, size_t sz, const struct mg_addr *src_in,
		   const struct mg_addr *dst_in, const struct pp_tls *tls)
{
	struct mg_addr src = *src_in, dst = *dst_in;
	int fam = same_family(&src, &dst);
	struct strbuf w;
	sb_init(&w, (char *)out, sz);
	sb_add(&w, v2sig, 12);
	unsigned char vc = 0x21;	/* version 2, PROXY */
	sb_add(&w, &vc, 1);
	unsigned char fb = fam == AF_INET ? 0x11 : fam == AF_INET6 ? 0x21 : 0x00;
	sb_add(&w, &fb, 1);
	size_t len_at = sb_len(&w);
	sb_add(&w, "\0\0", 2);
	if (fb == 0x11) {
		sb_add(&w, &src.u.in4.sin_addr, 4);
		sb_add(&w, &dst.u.in4.sin_addr, 4);
		sb_add(&w, &src.u.in4.sin_port, 2);
		sb_add(&w, &dst.u.in4.sin_port, 2);
	} else if (fb == 0x21) {
		sb_add(&w, &src.u.in6.sin6_addr, 16);
		sb_add(&w, &dst.u.in6.sin6_addr, 16);
		sb_add(&w, &src.u.in6.sin6_port, 2);
		sb_add(&w, &dst.u.in6.sin6_port, 2);
	}
	if (tls && tls->alpn)
		tlv_str(&w, 0x01, tls->alpn);		/* PP2_TYPE_ALPN */
	if (tls && tls->sni)
		tlv_str(&w, 0x02, tls->sni);		/* PP2_TYPE_AUTHORITY */
	if (tls && tls->tls)
		ssl_tlv(&w, tls);
	if (!sb_ok(&w) || sb_len(&w) - 16 > 0xffff)
		return 0;
	size_t plen = sb_len(&w) - 16;
	out[len_at] = (unsigned char)(plen >> 8);
	out[len_at + 1] = (unsigned char)plen;
	return sb_len(&w);
}

const char *pp_openssl_version(const char *v)
{
	if (!strcmp(v, "TLS1.3"))
		return "TLSv1.3";
	if (!strcmp(v, "TLS1.2"))
		return "TLSv1.2";
	return v;
}

const char *pp_openssl_cipher(const char *iana)
{
	static const struct { const char *iana, *ossl; } t[] = {
		{ "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256" },
		{ "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384" },
		{ "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256" },
		{ "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384" },
		{ "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305" },
		{ "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305" },
		{ "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256" },
		{ "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384" },
		{ "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256" },
		{ "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384" },
		{ "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256" },
		{ "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384" },
		{ "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305" },
		{ "TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256" },
		{ "TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcmp(iana, t[i].iana))
			return t[i].ossl;
	return iana;	/* TLS 1.3 suites are spelt the same */
}
