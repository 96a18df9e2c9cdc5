/* test_peer: identity decisions - DNS-ID matching (wildcards only as the
 * whole left-most label, and never for peer names), peer matching by pins
 * (self-signed tolerated, dates/CRL still apply) and by names (verified
 * chains only; CN only without dNSName SANs; pins and names both when
 * both are listed; first match wins; pin-mismatch reported), the pin
 * oracle (the same rules), the status reported for a pin match, and the certificate-to-user mapping for
 * EXTERNAL - including certificates with names the TLS module could not
 * read exactly (never a fallback). */
#include "conf.h"
#include "cu_main.h"
#include "peer.h"
#include "tls.h"

#include <stdio.h>
#include <string.h>

static void test_dnsid(void)
{
	static const struct { const char *ref, *pres; int wild, want; } cases[] = {
		{ "mx.example.org", "mx.example.org", 1, 1 },
		{ "mx.example.org", "MX.Example.ORG", 1, 1 },
		{ "mx.example.org", "mx.example.org.", 1, 1 },
		{ "mx.example.org", "*.example.org", 1, 1 },
		{ "mx.example.org", "*.example.org", 0, 0 },
		{ "a.mx.example.org", "*.example.org", 1, 0 },	/* one label only */
		{ "example.org", "*.example.org", 1, 0 },
		{ "mx.example.org", "m*.example.org", 1, 0 },	/* partial label */
		{ "mx.example.org", "*x.example.org", 1, 0 },
		{ "mx.example.org", "mx.*.org", 1, 0 },
		{ "example.org", "*.org", 1, 0 },		/* too wide */
		{ "mx.example.org", "*", 1, 0 },
		{ "mx.example.org", "mx.example.org.evil", 1, 0 },
		{ "mx.example.org", "", 1, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT_EQUAL(peer_dnsid_match(cases[i].ref, cases[i].pres, cases[i].wild), cases[i].want);
}

static char *dns1[] = { "partner-mx.test" };
static char *dns2[] = { "a.test", "b.test" };
static char *wild[] = { "*.partner.test" };
static char *mail1[] = { "alice@example.org" };
static char *mail2[] = { "a@example.org", "b@example.org" };
static char *mailbad[] = { "a b@example.org" };
static char *namesP[] = { "partner-mx.test" };
static char *namesW[] = { "x.partner.test" };
static char *namesCN[] = { "cn-only.test" };
static unsigned char pinA[1][32] = { { 0xAA } };

static struct tls_peer cert(enum cert_status st, char **dns, size_t ndns, const char *cn)
{
	struct tls_peer p;
	memset(&p, 0, sizeof(p));
	p.status = st;
	p.issuer_only = st == CERT_UNKNOWN_CA;	/* the usual case: nothing else wrong */
	p.dns = dns;
	p.ndns = ndns;
	p.cn = (char *)cn;
	p.cn_len = cn ? strlen(cn) : 0;
	p.ncn = cn ? 1 : 0;
	memset(p.fp, 0x11, 32);
	memset(p.spki, 0x22, 32);
	return p;
}

static void test_match_names(void)
{
	struct conf_peer peers[3];
	struct peer_result r;
	memset(peers, 0, sizeof(peers));
	peers[0].name = "wild";
	peers[0].names = (struct strlist){ namesW, 1 };
	peers[1].name = "partner";
	peers[1].names = (struct strlist){ namesP, 1 };
	peers[2].name = "cnonly";
	peers[2].names = (struct strlist){ namesCN, 1 };

	struct tls_peer p = cert(CERT_VERIFIED, dns1, 1, "ignored.test");
	peer_match(peers, 3, &p, &r);
	CU_ASSERT_PTR_EQUAL(r.peer, &peers[1]);
	CU_ASSERT_FALSE(r.pin);
	/* Names need a verified chain. */
	p.status = CERT_UNKNOWN_CA;
	peer_match(peers, 3, &p, &r);
	CU_ASSERT_PTR_NULL(r.peer);
	CU_ASSERT_STRING_EQUAL(r.reason, "unknown-ca");
	/* A certificate wildcard never matches a peer name. */
	p = cert(CERT_VERIFIED, wild, 1, NULL);
	peer_match(peers, 3, &p, &r);
	CU_ASSERT_PTR_NULL(r.peer);
	CU_ASSERT_STRING_EQUAL(r.reason, "no-matching-peer");
	/* The CN counts only without dNSName SANs. */
	p = cert(CERT_VERIFIED, NULL, 0, "cn-only.test");
	peer_match(peers, 3, &p, &r);
	CU_ASSERT_PTR_EQUAL(r.peer, &peers[2]);
	p = cert(CERT_VERIFIED, dns2, 2, "cn-only.test");
	peer_match(peers, 3, &p, &r);
	CU_ASSERT_PTR_NULL(r.peer);
	peer_match(peers, 3, NULL, &r);
	CU_ASSERT_STRING_EQUAL(r.reason, "no-certificate");
}

static void test_match_pins(void)
{
	struct conf_peer peers[2];
	struct peer_result r;
	unsigned char good[1][32];
	memset(good, 0x22, 32);	/* our test cert's SPKI */
	memset(peers, 0, sizeof(peers));
	peers[0].name = "other";
	peers[0].fingerprint = (struct pinlist){ pinA, 1 };
	peers[1].name = "pinned";
	peers[1].spki = (struct pinlist){ good, 1 };

	/* Self-signed / unknown issuer is tolerated with a pin. */
	struct tls_peer p = cert(CERT_UNKNOWN_CA, NULL, 0, "pinned.test");
	peer_match(peers, 2, &p, &r);
	CU_ASSERT_PTR_EQUAL(r.peer, &peers[1]);
	CU_ASSERT(r.pin);
	/* ... but not an expired or revoked certificate. */
	p.status = CERT_EXPIRED;
	peer_match(peers, 2, &p, &r);
	CU_ASSERT_PTR_NULL(r.peer);
	p.status = CERT_REVOKED;
	peer_match(peers, 2, &p, &r);
	CU_ASSERT_PTR_NULL(r.peer);
	/* A certificate no pin matches: nothing says which peer it meant. */
	p = cert(CERT_VERIFIED, dns1, 1, NULL);
	memset(p.spki, 0x33, 32);
	peer_match(peers, 2, &p, &r);
	CU_ASSERT_PTR_NULL(r.peer);
	CU_ASSERT_STRING_EQUAL(r.reason, "no-matching-peer");
	p.status = CERT_UNKNOWN_CA;
	peer_match(peers, 2, &p, &r);
	CU_ASSERT_STRING_EQUAL(r.reason, "unknown-ca");
	/* It names a pinned peer whose pin it lacks: pin-mismatch. */
	peers[0].names = (struct strlist){ namesP, 1 };
	peer_match(peers, 2, &p, &r);
	CU_ASSERT_PTR_NULL(r.peer);
	CU_ASSERT_STRING_EQUAL(r.reason, "pin-mismatch");
	peers[0].names = (struct strlist){ NULL, 0 };
	/* Pins and names: both must match. */
	peers[1].names = (struct strlist){ namesP, 1 };
	p = cert(CERT_UNKNOWN_CA, dns2, 2, NULL);
	peer_match(peers, 2, &p, &r);
	CU_ASSERT_PTR_NULL(r.peer);
	p = cert(CERT_UNKNOWN_CA, dns1, 1, NULL);
	peer_match(peers, 2, &p, &r);
	CU_ASSERT_PTR_EQUAL(r.peer, &peers[1]);
}

/* The pin oracle the TLS layer asks on require listeners is peer_match
 * itself: a certificate pinned by a peer whose names it lacks is not
 * pinned (DESIGN.md §6: pins and names both must match). */
static void test_pin_oracle(void)
{
	struct conf_peer peers[2];
	unsigned char good[1][32];
	memset(good, 0x22, 32);	/* cert()'s SPKI */
	memset(peers, 0, sizeof(peers));
	peers[0].name = "other";
	peers[0].fingerprint = (struct pinlist){ pinA, 1 };
	peers[1].name = "pinned";
	peers[1].spki = (struct pinlist){ good, 1 };
	struct conf c;
	memset(&c, 0, sizeof(c));
	c.peers = peers;
	c.npeers = 2;
	static const struct {
		const char *label;
		int names;		/* peers[1] lists namesP */
		char **dns;
		size_t ndns, dns_bad;
		unsigned char spki;
		enum cert_status st;
		bool more_faults;	/* unknown-ca hides e.g. bad-usage (client_eku) */
		int want;
	} cases[] = {
		{ "pin only", 0, NULL, 0, 0, 0x22, CERT_UNKNOWN_CA, false, 1 },
		{ "pin, names match", 1, dns1, 1, 0, 0x22, CERT_UNKNOWN_CA, false, 1 },
		{ "pin, names differ", 1, dns2, 2, 0, 0x22, CERT_UNKNOWN_CA, false, 0 },
		{ "pin, no names in cert", 1, NULL, 0, 0, 0x22, CERT_UNKNOWN_CA, false, 0 },
		{ "pin, name unreadable", 1, dns1, 1, 1, 0x22, CERT_UNKNOWN_CA, false, 0 },
		{ "no pin", 0, dns1, 1, 0, 0x33, CERT_UNKNOWN_CA, false, 0 },
		{ "no pin, names match", 1, dns1, 1, 0, 0x33, CERT_UNKNOWN_CA, false, 0 },
		{ "pin, expired", 0, NULL, 0, 0, 0x22, CERT_EXPIRED, false, 0 },
		{ "pin, more than the issuer wrong", 0, NULL, 0, 0, 0x22, CERT_UNKNOWN_CA, true, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		peers[1].names = cases[i].names ? (struct strlist){ namesP, 1 } : (struct strlist){ NULL, 0 };
		struct tls_peer p = cert(cases[i].st, cases[i].dns, cases[i].ndns, NULL);
		p.dns_bad = cases[i].dns_bad;
		if (cases[i].more_faults)
			p.issuer_only = false;
		memset(p.spki, cases[i].spki, 32);
		struct peer_result r;
		peer_match(peers, 2, &p, &r);
		int got = peer_pinned(&c, &p);
		if (got != cases[i].want)
			printf("\n  pin oracle %s: got %d, want %d\n", cases[i].label, got, cases[i].want);
		CU_ASSERT_EQUAL(got, cases[i].want);
		/* one decision: the oracle says yes exactly when the session's
		 * peer match is a pin match */
		CU_ASSERT_EQUAL(got, r.peer != NULL && r.pin);
	}
}

static void test_external(void)
{
	char user[256];
	struct tls_peer p = cert(CERT_VERIFIED, dns1, 1, "Alice");
	p.email = mail1;
	p.nemail = 1;
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_EMAIL, user), EXT_MAP_OK);
	CU_ASSERT_STRING_EQUAL(user, "alice@example.org");
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_DNS, user), EXT_MAP_OK);
	CU_ASSERT_STRING_EQUAL(user, "partner-mx.test");
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_CN, user), EXT_MAP_OK);
	CU_ASSERT_STRING_EQUAL(user, "Alice");
	/* Only from verified chains: never from a pin-only match. */
	p.status = CERT_UNKNOWN_CA;
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_EMAIL, user), EXT_MAP_UNVERIFIED);
	p.status = CERT_VERIFIED;
	p.email = mail2;
	p.nemail = 2;
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_EMAIL, user), EXT_MAP_AMBIGUOUS);
	p.email = mailbad;
	p.nemail = 1;
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_EMAIL, user), EXT_MAP_INVALID);
	p.nemail = 0;
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_EMAIL, user), EXT_MAP_MISSING);
	p.cn = "a*b";
	p.cn_len = 3;
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_CN, user), EXT_MAP_INVALID);
	p.cn = "x";
	p.cn_len = 1;
	p.ncn = 2;
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_CN, user), EXT_MAP_AMBIGUOUS);
	p.ncn = 1;
	p.cn_len = 2;	/* an embedded NUL */
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_CN, user), EXT_MAP_INVALID);
	CU_ASSERT_EQUAL(peer_external_user(NULL, EXT_ID_CN, user), EXT_MAP_UNVERIFIED);
}

/* The status token reported (log line, Received): verified whenever a pin
 * match made the certificate acceptable; the chain status otherwise. */
static void test_reported_status(void)
{
	static const struct { enum cert_status chain; int pin; enum cert_status want; } cases[] = {
		{ CERT_VERIFIED, 0, CERT_VERIFIED },
		{ CERT_VERIFIED, 1, CERT_VERIFIED },
		{ CERT_UNKNOWN_CA, 1, CERT_VERIFIED },
		{ CERT_UNKNOWN_CA, 0, CERT_UNKNOWN_CA },
		{ CERT_EXPIRED, 0, CERT_EXPIRED },
		{ CERT_BAD_USAGE, 0, CERT_BAD_USAGE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tls_peer p = cert(cases[i].chain, NULL, 0, NULL);
		CU_ASSERT_EQUAL(peer_cert_status(&p, cases[i].pin), cases[i].want);
		CU_ASSERT_EQUAL(p.status, cases[i].chain);	/* the chain status is untouched */
	}
	CU_ASSERT_EQUAL(peer_cert_status(NULL, false), CERT_NONE);
	/* EXTERNAL never comes from a pin-only match. */
	char user[256];
	struct tls_peer p = cert(CERT_UNKNOWN_CA, dns1, 1, "x");
	CU_ASSERT_EQUAL(peer_external_user(&p, EXT_ID_DNS, user), EXT_MAP_UNVERIFIED);
}

static char *longmail[] = { "alice@example.org" };

/* Names the TLS module could not read exactly (over-long, NUL-bearing,
 * beyond TLS_MAX_SANS, undecodable CN) are counted, never dropped: a
 * certificate with an unreadable dNSName has no DNS-ID (no peer by name,
 * and no fallback to its CN); an identity field with an unreadable value
 * is invalid, or ambiguous beside another value. */
static void test_unreadable_names(void)
{
	static const struct {
		const char *label;
		char **dns;
		size_t ndns, dns_bad;
		const char *cn;
		unsigned ncn;
		bool cn_bad;
		char **email;
		size_t nemail, email_bad;
		int want_peer;		/* matches peer "partner" (partner-mx.test) by name */
		enum ext_map want_email, want_dns, want_cn;
	} cases[] = {
		{ "all readable", dns1, 1, 0, "partner-mx.test", 1, false, longmail, 1, 0,
		  1, EXT_MAP_OK, EXT_MAP_OK, EXT_MAP_OK },
		{ "2nd email over-long", dns1, 1, 0, "partner-mx.test", 1, false, longmail, 1, 1,
		  1, EXT_MAP_AMBIGUOUS, EXT_MAP_OK, EXT_MAP_OK },
		{ "only email unreadable", dns1, 1, 0, "x", 1, false, NULL, 0, 1,
		  1, EXT_MAP_INVALID, EXT_MAP_OK, EXT_MAP_OK },
		{ "only dNSName over-long: no CN fallback", NULL, 0, 1, "partner-mx.test", 1, false, NULL, 0, 0,
		  0, EXT_MAP_MISSING, EXT_MAP_INVALID, EXT_MAP_OK },
		{ "readable dNSName beside unreadable", dns1, 1, 1, NULL, 0, false, NULL, 0, 0,
		  0, EXT_MAP_MISSING, EXT_MAP_AMBIGUOUS, EXT_MAP_MISSING },
		{ "more dNSNames than kept", dns1, 1, 40, NULL, 0, false, NULL, 0, 0,
		  0, EXT_MAP_MISSING, EXT_MAP_AMBIGUOUS, EXT_MAP_MISSING },
		{ "CN unreadable", NULL, 0, 0, NULL, 1, true, NULL, 0, 0,
		  0, EXT_MAP_MISSING, EXT_MAP_MISSING, EXT_MAP_INVALID },
		{ "subject unreadable", NULL, 0, 0, NULL, 0, true, NULL, 0, 0,
		  0, EXT_MAP_MISSING, EXT_MAP_MISSING, EXT_MAP_INVALID },
		{ "two CNs: no CN fallback", NULL, 0, 0, "partner-mx.test", 2, false, NULL, 0, 0,
		  0, EXT_MAP_MISSING, EXT_MAP_MISSING, EXT_MAP_AMBIGUOUS },
		{ "two CNs, 2nd unreadable", NULL, 0, 0, "partner-mx.test", 2, true, NULL, 0, 0,
		  0, EXT_MAP_MISSING, EXT_MAP_MISSING, EXT_MAP_AMBIGUOUS },
		{ "CN only", NULL, 0, 0, "partner-mx.test", 1, false, NULL, 0, 0,
		  1, EXT_MAP_MISSING, EXT_MAP_MISSING, EXT_MAP_OK },
	};
	struct conf_peer peer;
	memset(&peer, 0, sizeof(peer));
	peer.name = "partner";
	peer.names = (struct strlist){ namesP, 1 };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tls_peer p = cert(CERT_VERIFIED, cases[i].dns, cases[i].ndns, cases[i].cn);
		p.dns_bad = cases[i].dns_bad;
		p.ncn = cases[i].ncn;
		p.cn_bad = cases[i].cn_bad;
		p.email = cases[i].email;
		p.nemail = cases[i].nemail;
		p.email_bad = cases[i].email_bad;
		struct peer_result r;
		char user[256];
		peer_match(&peer, 1, &p, &r);
		enum ext_map e = peer_external_user(&p, EXT_ID_EMAIL, user);
		enum ext_map d = peer_external_user(&p, EXT_ID_DNS, user);
		enum ext_map c = peer_external_user(&p, EXT_ID_CN, user);
		if ((r.peer != NULL) != cases[i].want_peer || e != cases[i].want_email ||
		    d != cases[i].want_dns || c != cases[i].want_cn)
			printf("\n  %s: peer %d/%d email %s/%s dns %s/%s cn %s/%s\n", cases[i].label,
			       r.peer != NULL, cases[i].want_peer, peer_ext_map_name(e),
			       peer_ext_map_name(cases[i].want_email), peer_ext_map_name(d),
			       peer_ext_map_name(cases[i].want_dns), peer_ext_map_name(c),
			       peer_ext_map_name(cases[i].want_cn));
		CU_ASSERT_EQUAL(r.peer != NULL, cases[i].want_peer);
		CU_ASSERT_EQUAL(e, cases[i].want_email);
		CU_ASSERT_EQUAL(d, cases[i].want_dns);
		CU_ASSERT_EQUAL(c, cases[i].want_cn);
	}
}

/* The one CN a certificate names (DNS-ID fallback, PROXY v2 SSL_CN). */
static void test_single_cn(void)
{
	static const struct { const char *cn; size_t len; unsigned ncn; bool bad; const char *want; } cases[] = {
		{ "bob.test", 8, 1, false, "bob.test" },
		{ "bob.test", 8, 2, false, NULL },		/* which one? */
		{ "bob.test", 8, 2, true, NULL },
		{ NULL, 0, 1, true, NULL },			/* unreadable */
		{ NULL, 0, 0, false, NULL },
		{ "bob", 5, 1, false, NULL },			/* embedded NUL */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tls_peer p = cert(CERT_VERIFIED, NULL, 0, cases[i].cn);
		p.cn_len = cases[i].len;
		p.ncn = cases[i].ncn;
		p.cn_bad = cases[i].bad;
		const char *got = peer_single_cn(&p);
		if (cases[i].want) {
			CU_ASSERT_PTR_NOT_NULL_FATAL(got);
			CU_ASSERT_STRING_EQUAL(got, cases[i].want);
		} else {
			CU_ASSERT_PTR_NULL(got);
		}
	}
	CU_ASSERT_PTR_NULL(peer_single_cn(NULL));
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("peer", NULL, NULL);
	CU_ADD(s, test_dnsid);
	CU_ADD(s, test_match_names);
	CU_ADD(s, test_match_pins);
	CU_ADD(s, test_external);
	CU_ADD(s, test_unreadable_names);
	CU_ADD(s, test_reported_status);
	CU_ADD(s, test_pin_oracle);
	CU_ADD(s, test_single_cn);
}

CU_MAIN
