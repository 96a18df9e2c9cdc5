/* peer: see peer.h. */
#include "peer.h"
#include "domain.h"

#include <string.h>
#include <strings.h>

static bool name_eq(const char *a, const char *b, size_t blen)
{
	return strlen(a) == blen && strncasecmp(a, b, blen) == 0;
}

bool peer_dnsid_match(const char *reference, const char *presented, bool allow_wildcard)
{
	size_t pl = strlen(presented);
	if (pl && presented[pl - 1] == '.')
		pl--;
	if (pl == 0)
		return false;
	if (presented[0] == '*') {
		if (!allow_wildcard || pl < 4 || presented[1] != '.')
			return false;	/* "*" must be the whole left-most label */
		const char *rest = presented + 2;
		size_t rl = pl - 2;
		if (!memchr(rest, '.', rl) || memchr(rest, '*', rl))
			return false;	/* no "*.com"; one wildcard only */
		const char *dot = strchr(reference, '.');
		if (!dot || dot == reference)
			return false;
		return name_eq(dot + 1, rest, rl);	/* exactly one label replaced */
	}
	if (memchr(presented, '*', pl))
		return false;
	return name_eq(reference, presented, pl);
}

/* The CN is a DNS-ID only when the certificate has no dNSName SAN at all
 * (RFC 6125 §6.4.4) - one it has but that could not be read counts as
 * one - and only when the subject has exactly one CN, read exactly. A
 * dNSName that could not be read exactly (dns_bad) leaves the set of
 * DNS-IDs unknown: then there are none, never a partial list or the CN. */
bool peer_for_each_dnsid(const struct tls_peer *p, bool (*fn)(void *arg, const char *name), void *arg)
{
	if (p->dns_bad)
		return false;
	if (p->ndns) {
		for (size_t i = 0; i < p->ndns; i++)
			if (fn(arg, p->dns[i]))
				return true;
		return false;
	}
	const char *cn = peer_single_cn(p);
	return cn && fn(arg, cn);
}

const char *peer_single_cn(const struct tls_peer *p)
{
	if (!p || p->ncn != 1 || p->cn_bad || !p->cn || strlen(p->cn) != p->cn_len)
		return NULL;
	return p->cn;
}

struct name_ctx {
	const struct conf_peer *peer;
};

static bool peer_name_hit(void *arg, const char *presented)
{
	const struct conf_peer *P = ((struct name_ctx *)arg)->peer;
	for (size_t i = 0; i < P->names.n; i++)
		if (peer_dnsid_match(P->names.v[i], presented, false))	/* wildcards never */
			return true;
	return false;
}

static bool pin_hit(const struct conf_peer *P, const struct tls_peer *p)
{
	for (size_t i = 0; i < P->fingerprint.n; i++)
		if (memcmp(P->fingerprint.v[i], p->fp, 32) == 0)
			return true;
	for (size_t i = 0; i < P->spki.n; i++)
		if (memcmp(P->spki.v[i], p->spki, 32) == 0)
			return true;
	return false;
}

void peer_match(const struct conf_peer *peers, size_t npeers, const struct tls_peer *p,
		struct peer_result *out)
{
	bool pin_mismatch = false;
	out->peer = NULL;
	out->pin = false;
	out->reason = "no-certificate";
	if (!p)
		return;
	for (size_t i = 0; i < npeers; i++) {
		const struct conf_peer *P = &peers[i];
		struct name_ctx nc = { P };
		bool has_pins = P->fingerprint.n || P->spki.n;
		if (has_pins) {
			if (!pin_hit(P, p)) {
				/* "pin-mismatch" when the certificate names this
				 * pinned peer: its key changed, or an impostor. */
				if (P->names.n && peer_for_each_dnsid(p, peer_name_hit, &nc))
					pin_mismatch = true;
				continue;
			}
			/* A pin tolerates an unknown or self-signed issuer and
			 * nothing else: dates, CRL and signature rank before
			 * unknown-ca in the status precedence; what ranks after
			 * it (the client_eku purpose, ...) is in issuer_only. */
			if (p->status != CERT_VERIFIED && !(p->status == CERT_UNKNOWN_CA && p->issuer_only))
				continue;
			if (P->names.n && !peer_for_each_dnsid(p, peer_name_hit, &nc))
				continue;
			out->peer = P;
			out->pin = true;
			return;
		}
		if (p->status != CERT_VERIFIED)
			continue;	/* names only with a verified chain */
		if (peer_for_each_dnsid(p, peer_name_hit, &nc)) {
			out->peer = P;
			return;
		}
	}
	if (pin_mismatch)
		out->reason = "pin-mismatch";
	else if (p->status != CERT_VERIFIED)
		out->reason = tls_cert_status_name(p->status);	/* the certificate's own fault */
	else
		out->reason = "no-matching-peer";
}

int peer_pinned(void *arg, const struct tls_peer *p)
{
	const struct conf *c = arg;
	struct peer_result r;
	peer_match(c->peers, c->npeers, p, &r);
	return r.peer != NULL && r.pin;
}

enum cert_status peer_cert_status(const struct tls_peer *p, bool pin)
{
	if (!p)
		return CERT_NONE;
	return pin ? CERT_VERIFIED : p->status;
}

/* Exactly one value, counting the ones that could not be read (bad): two
 * values of which one was unreadable are still two (ambiguous), a single
 * unreadable one is invalid - never a fallback to the readable rest. */
static enum ext_map one_value(char *const *v, size_t n, size_t bad, char out[SASL_NAME_MAX + 1])
{
	if (n + bad == 0)
		return EXT_MAP_MISSING;
	if (n + bad > 1)
		return EXT_MAP_AMBIGUOUS;
	if (bad)
		return EXT_MAP_INVALID;
	size_t l = strlen(v[0]);
	if (l == 0 || l > SASL_NAME_MAX)
		return EXT_MAP_INVALID;
	for (size_t i = 0; i < l; i++) {
		unsigned char c = (unsigned char)v[0][i];
		if (c < 0x21 || c == 0x7f || c == '*')
			return EXT_MAP_INVALID;
	}
	memcpy(out, v[0], l + 1);
	return EXT_MAP_OK;
}

enum ext_map peer_external_user(const struct tls_peer *p, enum ext_identity field, char out[SASL_NAME_MAX + 1])
{
	if (!p || p->status != CERT_VERIFIED)
		return EXT_MAP_UNVERIFIED;	/* the chain, never a pin */
	switch (field) {
	case EXT_ID_EMAIL:
		return one_value(p->email, p->nemail, p->email_bad, out);
	case EXT_ID_DNS:
		return one_value(p->dns, p->ndns, p->dns_bad, out);
	case EXT_ID_CN:
		if (p->ncn == 0 && !p->cn_bad)
			return EXT_MAP_MISSING;
		if (p->ncn > 1)
			return EXT_MAP_AMBIGUOUS;
		if (p->cn_bad || !p->cn || strlen(p->cn) != p->cn_len)
			return EXT_MAP_INVALID;	/* unreadable, or an embedded NUL */
		return one_value(&p->cn, 1, 0, out);
	}
	return EXT_MAP_MISSING;
}

const char *peer_ext_map_name(enum ext_map m)
{
	static const char *const names[] = { "ok", "missing", "ambiguous", "invalid", "unverified" };
	return names[m];
}
