/* peer: identity decisions about a certificate, pure (no GnuTLS): DNS-ID
 * matching (RFC 6125 / 7817), which peer section a client certificate
 * belongs to (DESIGN.md §6), and the user a certificate names for IMAP
 * AUTHENTICATE EXTERNAL. The facts come from the TLS module (struct
 * tls_peer); the decisions are tested in tests/unit/test_peer.c. */
#ifndef MG_PEER_H
#define MG_PEER_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "sasl.h"
#include "tls.h"

/* presented: a dNSName from a certificate; reference: a normalised name
 * (lower-case A-labels, no trailing dot). A wildcard matches only as the
 * whole left-most label of presented ("*.example.org" matches
 * "a.example.org", not "example.org", "a.b.example.org" or with partial
 * labels like "w*.example.org"), and only when allow_wildcard. */
bool peer_dnsid_match(const char *reference, const char *presented, bool allow_wildcard);

/* The DNS-IDs of a certificate: its dNSName SANs, or its CN when it has
 * none (and exactly one CN); none at all when a dNSName or the CN it would
 * fall back to could not be read exactly. Calls fn for each; stops early
 * when fn returns true; returns whether it did. */
bool peer_for_each_dnsid(const struct tls_peer *p, bool (*fn)(void *arg, const char *name), void *arg);

/* The certificate's CN as one name: its only CN, read exactly, without
 * NUL; NULL when it has none, several (which one would be meant is
 * ambiguous, RFC 6125 §6.4.4 / DESIGN.md §6) or one that could not be
 * read. The DNS-ID fallback and the PROXY v2 SSL_CN (which Dovecot takes
 * as the login name) use only this. */
const char *peer_single_cn(const struct tls_peer *p);

struct peer_result {
	const struct conf_peer *peer;	/* NULL: no match */
	bool pin;			/* matched by a pin */
	const char *reason;		/* when no match: "pin-mismatch" (a pinned peer's
					 * names match, its pins do not), else the
					 * certificate's status (expired, unknown-ca, ...),
					 * else "no-matching-peer" */
};

/* First matching peer in file order; p may be NULL (no certificate). */
void peer_match(const struct conf_peer *peers, size_t npeers, const struct tls_peer *p,
		struct peer_result *out);
/* The TLS module's pin oracle on require listeners: whether peer_match
 * (the same rules, pins and names both when a peer lists both) matches p
 * to a peer by its pin. conf is the struct conf. */
int peer_pinned(void *conf, const struct tls_peer *p);

/* The status token to report (session log line, Received header) for p:
 * "verified" when a pin match made the certificate acceptable (DESIGN.md
 * §6: logged cert=verified pin=yes), else the chain's own status. Only
 * for reporting: the chain status (p->status) alone decides EXTERNAL and
 * PROXY v2 verify/CN, where a pin never counts. */
enum cert_status peer_cert_status(const struct tls_peer *p, bool pin);

enum ext_map { EXT_MAP_OK, EXT_MAP_MISSING, EXT_MAP_AMBIGUOUS, EXT_MAP_INVALID, EXT_MAP_UNVERIFIED };
/* The user for AUTHENTICATE EXTERNAL: exactly one value of the field, 1-255
 * bytes, no NUL, control character, space or '*'; only from a
 * chain-verified certificate. Values the TLS module could not read count
 * as values: one of them is invalid, two values ambiguous. */
enum ext_map peer_external_user(const struct tls_peer *p, enum ext_identity field, char out[SASL_NAME_MAX + 1]);
const char *peer_ext_map_name(enum ext_map m);

#endif
