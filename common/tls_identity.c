/* tls_identity: what a peer's certificate says and whether it verified.
 * Computes the DESIGN.md §6 status token (one, by precedence: revoked,
 * bad-signature, expired, not-yet-valid, unknown-ca, then the rest), the
 * SHA-256 certificate fingerprint, the SHA-256 SPKI pin and the subject CN,
 * and applies client_cert = require (failing with the matching alert). */
#include "tls_internal.h"
#include "strbuf.h"
#include "xmem.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509-ext.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const status_names[] = {
	[CERT_NONE] = "none",
	[CERT_VERIFIED] = "verified",
	[CERT_UNKNOWN_CA] = "unknown-ca",
	[CERT_EXPIRED] = "expired",
	[CERT_NOT_YET_VALID] = "not-yet-valid",
	[CERT_REVOKED] = "revoked",
	[CERT_BAD_SIGNATURE] = "bad-signature",
	[CERT_INSECURE_ALGORITHM] = "insecure-algorithm",
	[CERT_BAD_USAGE] = "bad-usage",
	[CERT_CHAIN_TOO_LONG] = "chain-too-long",
	[CERT_INVALID] = "invalid",
};

const char *tls_cert_status_name(enum cert_status st)
{
	if ((unsigned)st >= sizeof(status_names) / sizeof(status_names[0]))
		return "invalid";
	return status_names[st];
}

enum cert_status tls_status_from_gnutls(unsigned st)
{
	if (st == 0)
		return CERT_VERIFIED;
	if (st & GNUTLS_CERT_REVOKED)
		return CERT_REVOKED;
	if (st & GNUTLS_CERT_SIGNATURE_FAILURE)
		return CERT_BAD_SIGNATURE;
	if (st & GNUTLS_CERT_EXPIRED)
		return CERT_EXPIRED;
	if (st & GNUTLS_CERT_NOT_ACTIVATED)
		return CERT_NOT_YET_VALID;
	if (st & GNUTLS_CERT_SIGNER_NOT_FOUND)
		return CERT_UNKNOWN_CA;
	if (st & GNUTLS_CERT_INSECURE_ALGORITHM)
		return CERT_INSECURE_ALGORITHM;
	if (st & (GNUTLS_CERT_PURPOSE_MISMATCH | GNUTLS_CERT_SIGNER_NOT_CA |
		  GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE))
		return CERT_BAD_USAGE;
	return CERT_INVALID;
}

void tls_set_reason(struct tls_session *s, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(s->reason_owned);
	s->reason_owned = xstrdup(buf);
	s->reason = s->reason_owned;
}

int tls_cert_hashes(gnutls_x509_crt_t crt, unsigned char fp[32], unsigned char spki[32])
{
	size_t sz = 32;
	gnutls_pubkey_t pk;
	gnutls_datum_t der = { NULL, 0 };
	int rc = -1;
	if (gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &sz) < 0 || sz != 32)
		return -1;
	if (gnutls_pubkey_init(&pk) < 0)
		return -1;
	if (gnutls_pubkey_import_x509(pk, crt, 0) >= 0 &&
	    gnutls_pubkey_export2(pk, GNUTLS_X509_FMT_DER, &der) >= 0 &&
	    gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data, der.size, spki) >= 0)
		rc = 0;
	gnutls_free(der.data);
	gnutls_pubkey_deinit(pk);
	return rc;
}

/* ASN.1 universal tags of the DirectoryString choices (RFC 5280 §4.1.2.4)
 * and of VisibleString, which some old CAs use. */
enum {
	ASN1_UTF8STRING = 12, ASN1_PRINTABLESTRING = 19, ASN1_TELETEXSTRING = 20,
	ASN1_IA5STRING = 22, ASN1_VISIBLESTRING = 26, ASN1_UNIVERSALSTRING = 28,
	ASN1_BMPSTRING = 30,
};

static void put_utf8(struct strbuf *b, uint32_t c)
{
	char u[4];
	size_t n;
	if (c < 0x80) {
		u[0] = (char)c;
		n = 1;
	} else if (c < 0x800) {
		u[0] = (char)(0xc0 | c >> 6);
		u[1] = (char)(0x80 | (c & 0x3f));
		n = 2;
	} else if (c < 0x10000) {
		u[0] = (char)(0xe0 | c >> 12);
		u[1] = (char)(0x80 | (c >> 6 & 0x3f));
		u[2] = (char)(0x80 | (c & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | c >> 18);
		u[1] = (char)(0x80 | (c >> 12 & 0x3f));
		u[2] = (char)(0x80 | (c >> 6 & 0x3f));
		u[3] = (char)(0x80 | (c & 0x3f));
		n = 4;
	}
	sb_add(b, u, n);
}

/* A DirectoryString's content octets as UTF-8 bytes into b: the 8-bit
 * string types as they are (what the CA wrote, byte for byte), BMPString
 * (UCS-2) and UniversalString (UCS-4) converted. Anything else, or an
 * invalid code point, is unreadable: returns -1 (so is overflowing b). */
static int directory_string(unsigned long tag, const unsigned char *v, size_t n, struct strbuf *b)
{
	unsigned width;
	switch (tag) {
	case ASN1_UTF8STRING: case ASN1_PRINTABLESTRING: case ASN1_TELETEXSTRING:
	case ASN1_IA5STRING: case ASN1_VISIBLESTRING:
		sb_add(b, v, n);
		return sb_ok(b) ? 0 : -1;
	case ASN1_BMPSTRING: width = 2; break;
	case ASN1_UNIVERSALSTRING: width = 4; break;
	default: return -1;
	}
	if (n % width)
		return -1;
	for (size_t i = 0; i < n; i += width) {
		uint32_t c = 0;
		for (unsigned k = 0; k < width; k++)
			c = c << 8 | v[i + k];
		if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
			return -1;
		put_utf8(b, c);
	}
	return sb_ok(b) ? 0 : -1;
}

/* The AVA's OID is a dotted string whose size may count its NUL. */
static bool oid_is(const gnutls_datum_t *oid, const char *want)
{
	size_t n = oid->size;
	if (n && oid->data[n - 1] == '\0')
		n--;
	return n == strlen(want) && memcmp(oid->data, want, n) == 0;
}

/* Every CN of the subject is counted; the first one's raw value is kept.
 * The value comes from the attribute itself (gnutls_x509_dn_get_rdn_ava),
 * not from GnuTLS's RFC 4514 string, whose escaping (\" \, \+ ...) would
 * otherwise be escaped a second time by every consumer. A subject that
 * cannot be walked to its end, or a first CN that cannot be decoded or is
 * longer than TLS_MAX_CN_LEN, leaves cn_bad set: nobody falls back to a
 * truncated or partial name. */
static void read_cn(gnutls_x509_crt_t crt, struct tls_peer *p)
{
	gnutls_x509_dn_t dn;
	if (gnutls_x509_crt_get_subject(crt, &dn) < 0) {
		p->cn_bad = true;
		return;
	}
	for (int irdn = 0;; irdn++) {
		for (int iava = 0;; iava++) {
			gnutls_x509_ava_st ava;
			int r = gnutls_x509_dn_get_rdn_ava(dn, irdn, iava, &ava);
			if (r == GNUTLS_E_ASN1_ELEMENT_NOT_FOUND && iava > 0)
				break;		/* next RDN */
			if (r == GNUTLS_E_ASN1_ELEMENT_NOT_FOUND)
				return;		/* past the last RDN */
			if (r < 0) {
				p->cn_bad = true;
				return;
			}
			if (!oid_is(&ava.oid, GNUTLS_OID_X520_COMMON_NAME))
				continue;
			if (p->ncn++ > 0 || p->cn_bad)
				continue;
			char buf[TLS_MAX_CN_LEN + 1];
			struct strbuf b;
			sb_init(&b, buf, sizeof(buf));
			if (directory_string(ava.value_tag, ava.value.data, ava.value.size, &b) < 0) {
				p->cn_bad = true;
				continue;
			}
			p->cn = xmemdup0(sb_str(&b), sb_len(&b));
			p->cn_len = sb_len(&b);
		}
	}
}

static void add_name(char ***list, size_t *n, size_t *bad, const gnutls_datum_t *v)
{
	if (v->size == 0 || v->size > TLS_MAX_SAN_LEN || memchr(v->data, 0, v->size) ||
	    *n >= TLS_MAX_SANS) {
		(*bad)++;
		return;
	}
	*list = xreallocarray(*list, *n + 1, sizeof(char *));
	(*list)[(*n)++] = xmemdup0(v->data, v->size);
}

/* dNSName and rfc822Name SANs (RFC 5280 §4.2.1.6), every entry of the
 * extension: exact values into dns/email, the others counted in
 * dns_bad/email_bad. An extension that cannot be decoded, or a second
 * one (RFC 5280 §4.2: at most one instance of an extension), counts as an
 * unreadable name of both types. */
static void read_sans(gnutls_x509_crt_t crt, struct tls_peer *p)
{
	gnutls_datum_t der = { NULL, 0 };
	gnutls_subject_alt_names_t sans = NULL;
	unsigned crit = 0;
	int r = gnutls_x509_crt_get_extension_by_oid2(crt, GNUTLS_X509EXT_OID_SAN, 0, &der, &crit);
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
		return;
	if (r < 0 || gnutls_subject_alt_names_init(&sans) < 0 ||
	    gnutls_x509_ext_import_subject_alt_names(&der, sans, 0) < 0)
		goto unreadable;
	gnutls_free(der.data);
	der.data = NULL;
	if (gnutls_x509_crt_get_extension_by_oid2(crt, GNUTLS_X509EXT_OID_SAN, 1, &der, &crit) !=
	    GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
		goto unreadable;
	for (unsigned i = 0;; i++) {
		unsigned type = 0;
		gnutls_datum_t v = { NULL, 0 }, oid = { NULL, 0 };
		r = gnutls_subject_alt_names_get(sans, i, &type, &v, &oid);
		if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (r < 0)
			goto unreadable;
		if (type == GNUTLS_SAN_DNSNAME)
			add_name(&p->dns, &p->ndns, &p->dns_bad, &v);
		else if (type == GNUTLS_SAN_RFC822NAME)
			add_name(&p->email, &p->nemail, &p->email_bad, &v);
	}
	gnutls_subject_alt_names_deinit(sans);
	return;
unreadable:
	p->dns_bad++;
	p->email_bad++;
	gnutls_free(der.data);
	if (sans)
		gnutls_subject_alt_names_deinit(sans);
}

/* The issuer DN and notAfter, for log lines an admin acts on (a refused
 * client certificate, the upstream's): the DN as GnuTLS prints it (RFC
 * 4514), cut to TLS_MAX_ISSUER_LOG bytes - it decides nothing. */
static void read_log_facts(gnutls_x509_crt_t crt, struct tls_peer *p)
{
	gnutls_datum_t dn = { NULL, 0 };
	p->not_after = gnutls_x509_crt_get_expiration_time(crt);
	if (gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0) >= 0 && dn.data)
		p->issuer = xmemdup0(dn.data, dn.size > TLS_MAX_ISSUER_LOG ? TLS_MAX_ISSUER_LOG : dn.size);
	gnutls_free(dn.data);
}

void tls_read_names(gnutls_x509_crt_t crt, struct tls_peer *p)
{
	if (p->names_read)
		return;
	p->names_read = true;
	read_cn(crt, p);
	read_sans(crt, p);
	read_log_facts(crt, p);
}

/* The certificate's signature and key algorithms as OpenSSL (and so
 * HAProxy's cert-sig / cert-key) spell them. */
static void read_algs(gnutls_x509_crt_t crt, struct tls_peer *p)
{
	static const struct { const char *gnutls, *ossl; } sigs[] = {
		{ "ECDSA-SHA256", "ecdsa-with-SHA256" }, { "ECDSA-SHA384", "ecdsa-with-SHA384" },
		{ "ECDSA-SHA512", "ecdsa-with-SHA512" }, { "RSA-SHA256", "sha256WithRSAEncryption" },
		{ "RSA-SHA384", "sha384WithRSAEncryption" }, { "RSA-SHA512", "sha512WithRSAEncryption" },
		{ "RSA-SHA1", "sha1WithRSAEncryption" }, { "EdDSA-Ed25519", "ED25519" },
		{ "RSA-PSS-SHA256", "rsassaPss" }, { "RSA-PSS-SHA384", "rsassaPss" },
	};
	int sa = gnutls_x509_crt_get_signature_algorithm(crt);
	const char *sn = sa >= 0 ? gnutls_sign_get_name((gnutls_sign_algorithm_t)sa) : NULL;
	snprintf(p->sig_alg, sizeof(p->sig_alg), "%s", sn ? sn : "");
	for (size_t i = 0; sn && i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (!strcmp(sn, sigs[i].gnutls))
			snprintf(p->sig_alg, sizeof(p->sig_alg), "%s", sigs[i].ossl);
	unsigned bits = 0;
	int pk = gnutls_x509_crt_get_pk_algorithm(crt, &bits);
	if (pk == GNUTLS_PK_RSA)
		snprintf(p->key_alg, sizeof(p->key_alg), "RSA%u", bits);
	else if (pk == GNUTLS_PK_ECDSA)
		snprintf(p->key_alg, sizeof(p->key_alg), "EC%u", bits);
	else if (pk == GNUTLS_PK_EDDSA_ED25519)
		snprintf(p->key_alg, sizeof(p->key_alg), "ED25519");
}

void tls_peer_free(struct tls_peer *p)
{
	if (!p)
		return;
	free(p->cn);
	free(p->issuer);
	for (size_t i = 0; i < p->ndns; i++)
		free(p->dns[i]);
	free(p->dns);
	for (size_t i = 0; i < p->nemail; i++)
		free(p->email[i]);
	free(p->email);
	free(p);
}

static uint8_t alert_for(enum cert_status st)
{
	switch (st) {
	case CERT_UNKNOWN_CA: return GNUTLS_A_UNKNOWN_CA;
	case CERT_EXPIRED:
	case CERT_NOT_YET_VALID: return GNUTLS_A_CERTIFICATE_EXPIRED;
	case CERT_REVOKED: return GNUTLS_A_CERTIFICATE_REVOKED;
	default: return GNUTLS_A_BAD_CERTIFICATE;
	}
}

/* Fills s->peer from the presented chain and applies the listener's
 * client_cert policy. Returns -1 when the connection must fail. */
int tls_evaluate_peer(struct tls_session *s)
{
	unsigned n = 0, st = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(s->gs, &n);
	gnutls_x509_crt_t crt;

	if (!certs || n == 0) {
		if (s->mode != CLIENT_CERT_REQUIRE)
			return 0;
		s->cert_failed = 1;
		s->alert = gnutls_protocol_get_version(s->gs) == GNUTLS_TLS1_3
				   ? GNUTLS_A_CERTIFICATE_REQUIRED : GNUTLS_A_HANDSHAKE_FAILURE;
		tls_set_reason(s, "client certificate required, none presented");
		return -1;
	}
	if (!s->peer)
		s->peer = xcalloc(1, sizeof(*s->peer));
	if (gnutls_x509_crt_init(&crt) < 0)
		return -1;
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0 ||
	    tls_cert_hashes(crt, s->peer->fp, s->peer->spki) < 0) {
		gnutls_x509_crt_deinit(crt);
		s->peer->status = CERT_INVALID;
		s->cert_failed = 1;
		s->alert = GNUTLS_A_BAD_CERTIFICATE;
		tls_set_reason(s, "client certificate unreadable");
		return s->mode == CLIENT_CERT_REQUIRE ? -1 : 0;
	}
	if (!s->peer->names_read) {
		tls_read_names(crt, s->peer);
		read_algs(crt, s->peer);
	}
	s->peer->not_after = gnutls_x509_crt_get_expiration_time(crt);
	gnutls_x509_crt_deinit(crt);

	if (n > TLS_MAX_CHAIN_DEPTH) {
		s->peer->status = CERT_CHAIN_TOO_LONG;
	} else {
		int r;
		if (s->srv->eku_client) {
			gnutls_typed_vdata_st vd = { GNUTLS_DT_KEY_PURPOSE_OID,
						     (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0 };
			r = gnutls_certificate_verify_peers(s->gs, &vd, 1, &st);
		} else {
			r = gnutls_certificate_verify_peers2(s->gs, &st);
		}
		/* A verification that could not run is invalid, not unknown-ca:
		 * nothing was checked, so a pin must not tolerate it. */
		if (r < 0)
			st = GNUTLS_CERT_INVALID;
		s->peer->status = tls_status_from_gnutls(st);
		/* The status token shows the first fault only (§6 precedence);
		 * a pin may tolerate an unknown issuer, but not what ranks
		 * after it (bad-usage with client_eku = client, an insecure
		 * algorithm, ...): record whether the issuer is all. */
		s->peer->issuer_only = (st & GNUTLS_CERT_SIGNER_NOT_FOUND) &&
				       !(st & ~(unsigned)(GNUTLS_CERT_INVALID | GNUTLS_CERT_SIGNER_NOT_FOUND));
	}
	if (s->mode != CLIENT_CERT_REQUIRE || s->peer->status == CERT_VERIFIED)
		return 0;
	/* A pinned peer may use a self-signed or privately issued cert. */
	if (s->peer->status == CERT_UNKNOWN_CA && s->srv->pin_accept &&
	    s->srv->pin_accept(s->srv->pin_arg, s->peer))
		return 0;
	s->cert_failed = 1;
	s->alert = alert_for(s->peer->status);
	tls_set_reason(s, "client certificate rejected: %s", tls_cert_status_name(s->peer->status));
	return -1;
}

void tls_format_fp(const unsigned char fp[32], char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	if (outsz < 7 + 32 * 3)
		return;
	memcpy(out, "sha256:", 7);
	o = 7;
	for (int i = 0; i < 32; i++) {
		if (i)
			out[o++] = ':';
		out[o++] = hex[fp[i] >> 4];
		out[o++] = hex[fp[i] & 15];
	}
	out[o] = '\0';
}
