/* proxyproto: the PROXY protocol (HAProxy spec, v1 text and v2 binary),
 * pure: parsing the header a load balancer puts in front of a connection,
 * and building the header the gateway sends to its upstream - v2 with the
 * TLS TLVs HAProxy's "send-proxy-v2 proxy-v2-options
 * ssl,cert-cn,ssl-cipher,cert-sig,cert-key" produces (DESIGN.md §3).
 * Fuzzed by tests/fuzz/fuzz_proxyproto.c. */
#ifndef MG_PROXYPROTO_H
#define MG_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

#define PP_V1_MAX 107
#define PP_V2_MAX 2048		/* we accept at most this much header */

enum pp_rc { PP_OK, PP_MORE, PP_BAD };

struct pp_info {
	bool local;		/* v2 LOCAL or v1 UNKNOWN: keep the socket addresses */
	struct mg_addr src, dst;
};

/* Parses a header at the start of buf. PP_OK: *consumed is its length. */
enum pp_rc pp_parse(const unsigned char *buf, size_t len, struct pp_info *out, size_t *consumed);

/* What the v2 header says about the client's TLS session. */
struct pp_tls {
	bool tls;
	bool cert;		/* the client presented a certificate */
	bool verified;		/* ... and its chain verified (pins do not count) */
	const char *version;	/* OpenSSL spelling: "TLSv1.3" */
	const char *cipher;	/* OpenSSL spelling */
	const char *cn;		/* only sent when verified */
	const char *sig_alg;	/* the certificate's signature algorithm, e.g. "ecdsa-with-SHA256" */
	const char *key_alg;	/* e.g. "EC256", "RSA2048" */
	const char *sni;	/* PP2_TYPE_AUTHORITY */
	const char *alpn;	/* PP2_TYPE_ALPN */
};

/* Returns the header length written, or 0 if it does not fit; out needs
 * one byte beyond the header (the builder keeps it NUL-terminated).
 * PP_V2_MAX always fits what a session can declare (SNI and ALPN are at
 * most 255 octets, the CN is capped by the TLS module). */
size_t pp_build_v1(char *out, size_t sz, const struct mg_addr *src, const struct mg_addr *dst);
size_t pp_build_v2(unsigned char *out, size_t sz, const struct mg_addr *src, const struct mg_addr *dst,
		   const struct pp_tls *tls);

/* OpenSSL names for GnuTLS/IANA version and cipher-suite names (TLS 1.3
 * suites are the same in both; TLS 1.2 ones differ). */
const char *pp_openssl_version(const char *gnutls_version);
const char *pp_openssl_cipher(const char *iana);

#endif
