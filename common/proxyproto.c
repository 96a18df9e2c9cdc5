/* proxyproto: see proxyproto.h. v1: "PROXY TCP4|TCP6|UNKNOWN src dst
 * sport dport\r\n", at most 107 bytes. v2: the 12-byte signature, version
 * and command, family, a 16-bit length, addresses, then TLVs (ignored on
 * input). */
#include "proxyproto.h"

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
	char s[64], d[64];
	int n;
	if (fam != AF_INET && fam != AF_INET6)
		n = snprintf(out, sz, "PROXY UNKNOWN\r\n");
	else {
		addr_ip_str(&src, s, sizeof(s));
		addr_ip_str(&dst, d, sizeof(d));
		n = snprintf(out, sz, "PROXY %s %s %s %u %u\r\n", fam == AF_INET ? "TCP4" : "TCP6", s,
			     d, addr_port(&src), addr_port(&dst));
	}
	return n > 0 && (size_t)n < sz ? (size_t)n : 0;
}

struct w {
	unsigned char *p;
	size_t sz, len;
	int overflow;
};

static void put(struct w *w, const void *p, size_t n)
{
	if (w->len + n > w->sz) {
		w->overflow = 1;
		return;
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

static void tlv(struct w *w, unsigned char type, const void *v, size_t n)
{
	unsigned char h[3] = { type, (unsigned char)(n >> 8), (unsigned char)n };
	if (n > 0xffff) {
		w->overflow = 1;
		return;
	}
	put(w, h, 3);
	put(w, v, n);
}

static void tlv_str(struct w *w, unsigned char type, const char *s)
{
	if (s && *s)
		tlv(w, type, s, strlen(s));
}

size_t pp_build_v2(unsigned char *out, size_t sz, const struct mg_addr *src_in,
		   const struct mg_addr *dst_in, const struct pp_tls *tls)
{
	struct mg_addr src = *src_in, dst = *dst_in;
	int fam = same_family(&src, &dst);
	struct w w = { out, sz, 0, 0 };
	put(&w, v2sig, 12);
	unsigned char vc = 0x21;	/* version 2, PROXY */
	put(&w, &vc, 1);
	unsigned char fb = fam == AF_INET ? 0x11 : fam == AF_INET6 ? 0x21 : 0x00;
	put(&w, &fb, 1);
	size_t len_at = w.len;
	put(&w, "\0\0", 2);
	if (fb == 0x11) {
		put(&w, &src.u.in4.sin_addr, 4);
		put(&w, &dst.u.in4.sin_addr, 4);
		put(&w, &src.u.in4.sin_port, 2);
		put(&w, &dst.u.in4.sin_port, 2);
	} else if (fb == 0x21) {
		put(&w, &src.u.in6.sin6_addr, 16);
		put(&w, &dst.u.in6.sin6_addr, 16);
		put(&w, &src.u.in6.sin6_port, 2);
		put(&w, &dst.u.in6.sin6_port, 2);
	}
	if (tls && tls->alpn)
		tlv_str(&w, 0x01, tls->alpn);		/* PP2_TYPE_ALPN */
	if (tls && tls->sni)
		tlv_str(&w, 0x02, tls->sni);		/* PP2_TYPE_AUTHORITY */
	if (tls && tls->tls) {
		unsigned char ssl[1024];
		struct w s = { ssl, sizeof(ssl), 0, 0 };
		unsigned char client = 0x01;		/* PP2_CLIENT_SSL */
		if (tls->cert)
			client |= 0x02 | 0x04;		/* CERT_CONN | CERT_SESS */
		uint32_t verify = htonl(tls->cert && !tls->verified ? 1 : 0);
		put(&s, &client, 1);
		put(&s, &verify, 4);
		tlv_str(&s, 0x21, tls->version);	/* PP2_SUBTYPE_SSL_VERSION */
		if (tls->cert && tls->verified)
			tlv_str(&s, 0x22, tls->cn);	/* PP2_SUBTYPE_SSL_CN */
		tlv_str(&s, 0x23, tls->cipher);		/* PP2_SUBTYPE_SSL_CIPHER */
		if (tls->cert) {
			tlv_str(&s, 0x24, tls->sig_alg);	/* PP2_SUBTYPE_SSL_SIG_ALG */
			tlv_str(&s, 0x25, tls->key_alg);	/* PP2_SUBTYPE_SSL_KEY_ALG */
		}
		if (s.overflow)
			return 0;
		tlv(&w, 0x20, ssl, s.len);		/* PP2_TYPE_SSL */
	}
	if (w.overflow)
		return 0;
	size_t plen = w.len - 16;
	out[len_at] = (unsigned char)(plen >> 8);
	out[len_at + 1] = (unsigned char)plen;
	return w.len;
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
