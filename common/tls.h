/* tls: the GnuTLS session module. It owns credentials (server: several
 * cert/key pairs chosen by SNI and key type; client: our certificate and the
 * trust anchors for an upstream), priorities, session tickets, strict ALPN,
 * client-certificate requests and their verification status, and
 * non-blocking handshake/read/write/close over a socket fd. It knows nothing
 * of SMTP or IMAP and exposes no GnuTLS types: callers see the TLS_* codes
 * below and arm their read or write watcher accordingly.
 *
 * Two-phase set-up (Postfix style): tls_server_new()/tls_client_new() run
 * once per configuration, before privileges are dropped; the per-connection
 * tls_session_*() calls are cheap. */
#ifndef MG_TLS_H
#define MG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "conf.h"
#include "diag.h"

enum tls_rc {
	TLS_OK = 0,
	TLS_FAILED = -1,
	TLS_WANT_READ = -2,
	TLS_WANT_WRITE = -3,
	TLS_CLOSED = -4,	/* peer closed (close_notify or EOF) */
};

/* Client-certificate status tokens, DESIGN.md §6. */
enum cert_status {
	CERT_NONE,
	CERT_VERIFIED,
	CERT_UNKNOWN_CA,
	CERT_EXPIRED,
	CERT_NOT_YET_VALID,
	CERT_REVOKED,
	CERT_BAD_SIGNATURE,
	CERT_INSECURE_ALGORITHM,
	CERT_BAD_USAGE,
	CERT_CHAIN_TOO_LONG,
	CERT_INVALID,
};
const char *tls_cert_status_name(enum cert_status st);

#define TLS_MAX_CHAIN_DEPTH 6
/* Largest plaintext of one TLS record (RFC 8446 §5.1): one tls_send each. */
#define TLS_RECORD_MAX 16384
/* Largest public key accepted in a peer's chain (bits). */
#define TLS_MAX_KEY_BITS 16384
#define TLS_TICKET_LIFETIME 7200

/* Bounds on what is read from a certificate. A value that does not fit
 * is never cut short or skipped silently: it is counted as unreadable
 * (the *_bad fields below), so that the identity decisions in peer.c can
 * fail closed - e.g. RFC 6125 §6.4.4 consults the CN only when there is
 * no DNS-ID, so a dNSName must not vanish and let the CN stand in, and
 * an identity field must not lose a second value and look unique. */
#define TLS_MAX_SANS 32		/* dNSName and rfc822Name SANs kept, each type */
#define TLS_MAX_SAN_LEN 255	/* octets; RFC 1035 names and §6 identities fit */
#define TLS_MAX_CN_LEN 1024	/* octets of the first CN, as UTF-8 */

/* What we know about the peer's certificate; only allocated when one was
 * presented. These are facts, read once by the TLS module; every decision
 * (peer match, EXTERNAL identity, status to report) is peer.c's. */
struct tls_peer {
	/* The chain's own verification result (client_ca, CRLs, dates). A
	 * pin never changes it: "verified" here means the chain verified. */
	enum cert_status status;
	/* status is unknown-ca and an unknown issuer is the chain's only
	 * fault: what a pin may tolerate (DESIGN.md §6). unknown-ca ranks
	 * before bad-usage, insecure-algorithm, ... and would hide them. */
	bool issuer_only;
	unsigned char fp[32];	/* SHA-256 of the DER certificate */
	unsigned char spki[32];	/* SHA-256 of the DER SubjectPublicKeyInfo */
	/* The first subject CN, the attribute's raw value (RFC 5280
	 * DirectoryString, BMP/Universal strings as UTF-8; never RFC 4514
	 * escaped), NUL-terminated; may hold a NUL (then strlen != cn_len).
	 * NULL when there is none or it could not be read (cn_bad). */
	char *cn;
	size_t cn_len;
	unsigned ncn;		/* how many CNs the subject has */
	bool cn_bad;		/* the subject (or its first CN) could not be read exactly */
	bool names_read;	/* cn/dns/email have been filled in */
	char **dns;		/* dNSName SANs read exactly (1..TLS_MAX_SAN_LEN octets, no NUL) */
	size_t ndns;
	size_t dns_bad;		/* dNSName SANs present but not in dns: over-long, NUL-bearing,
				 * beyond TLS_MAX_SANS; or the SAN extension was unreadable */
	char **email;		/* rfc822Name SANs, as dns */
	size_t nemail;
	size_t email_bad;
	time_t not_after;	/* the certificate's notAfter ((time_t)-1: unreadable) */
	char sig_alg[32];	/* OpenSSL spelling, e.g. "ecdsa-with-SHA256" (PROXY v2) */
	char key_alg[16];	/* e.g. "EC256", "RSA2048" */
	/* For logs only, never for a decision: the issuer DN (RFC 4514, at
	 * most TLS_MAX_ISSUER_LOG bytes of it; NULL if unreadable). */
	char *issuer;
	/* Upstream certificates (tls_client): what accepted it. */
	enum tls_match { TLS_MATCH_NONE, TLS_MATCH_PIN, TLS_MATCH_NAME } match;
};
#define TLS_MAX_ISSUER_LOG 256

struct tls_server;
struct tls_client;
struct tls_session;

void tls_global_init(void);
const char *tls_lib_version(void);

/* Loads one tls section: credentials, CA, CRLs, OCSP, ticket key, priority.
 * Problems go to d with the section's FILE:LINE. NULL on error. */
struct tls_server *tls_server_new(const struct conf_tls *t, struct diag *d);
void tls_server_free(struct tls_server **srv);
/* Installs the pin oracle used on require listeners (see tls_internal.h):
 * fn says whether the certificate p (status unknown-ca) matches a peer by
 * its pin under the full peer rules (peer_pinned in peer.c). */
void tls_server_set_pin_accept(struct tls_server *srv,
			       int (*fn)(void *arg, const struct tls_peer *p), void *arg);

/* Signs once with every pkcs11: key of srv: run after the privileges are
 * dropped (and in every worker), so a token the unprivileged user cannot
 * use stops the start. 0, or -1 with the reason in err. srv may be NULL. */
int tls_server_check_keys(struct tls_server *srv, char *err, size_t errsz);

/* The certificates a server (tls section) or client (tls_client section)
 * loaded, for expiry metrics: each file as configured and its notAfter,
 * read from the credentials in use. *out is owned by the object. */
struct tls_cert_info {
	const char *file;
	time_t not_after;
};
size_t tls_server_certs(const struct tls_server *srv, const struct tls_cert_info **out);
size_t tls_client_certs(const struct tls_client *cli, const struct tls_cert_info **out);

/* t may be NULL: system trust store, no client certificate. */
struct tls_client *tls_client_new(const struct conf_tls_client *t, struct diag *d);
void tls_client_free(struct tls_client **cli);

/* Loads (and frees) every tls and tls_client section, reporting problems
 * to d: used by -t when other errors already prevent a full start. */
void tls_check_conf(const struct conf *c, struct diag *d);

/* Random master secret for tickets when ticket_key = "" (call once in the
 * master before forking so all workers share it). */
void tls_ticket_master_init(void);

struct tls_session *tls_session_server(struct tls_server *srv, int fd,
				       enum client_cert_mode mode);
/* host: the upstream host as configured, used as verify_name and SNI when
 * the tls_client section gives none. */
struct tls_session *tls_session_client(struct tls_client *cli, int fd, const char *host);
void tls_session_free(struct tls_session **s);

int tls_handshake(struct tls_session *s);
/* > 0: bytes read; or TLS_CLOSED / TLS_WANT_* / TLS_FAILED. */
ssize_t tls_recv(struct tls_session *s, void *buf, size_t len);
/* Zero-copy receive: the unread plaintext of the current record, left
 * inside GnuTLS's record buffer (no copy out). Returns its length (> 0)
 * with *p pointing at it, or TLS_CLOSED / TLS_WANT_* / TLS_FAILED as
 * tls_recv. The bytes stay valid until tls_view_consume() takes them
 * all, tls_recv() copies them out, or the session is freed; they are
 * counted by tls_pending(). Wiped when released if tls_set_wipe is on. */
ssize_t tls_recv_view(struct tls_session *s, const char **p);
void tls_view_consume(struct tls_session *s, size_t n);
/* > 0: bytes consumed. After TLS_WANT_*, call again with the same (or a
 * longer) buffer: the interrupted record is completed first. */
ssize_t tls_send(struct tls_session *s, const void *buf, size_t len);
/* Decrypted bytes buffered inside GnuTLS (they never wake the event loop). */
size_t tls_pending(struct tls_session *s);
/* With on, each received record is taken from GnuTLS whole and its
 * plaintext wiped once handed out (GnuTLS frees its record buffers
 * unwiped, and a login's password would linger there). Costs a wipe per
 * record: meant for the pre-login phase only. Turning it off wipes what
 * was already handed out of a record still held. */
void tls_set_wipe(struct tls_session *s, bool on);
/* Sends close_notify once, without blocking: TLS_OK once it went (or
 * failed for good: TLS_FAILED), TLS_WANT_WRITE when the socket had no
 * room - call again when it is writable. Receiving may go on after it
 * (TLS 1.3 half-close; the peer's remaining data, then its EOF). */
int tls_bye(struct tls_session *s);

/* Why the last call failed (static string or owned by the session).
 * Transport failures are put in words ("connection reset by peer",
 * "peer closed the connection during the handshake"), not GnuTLS's
 * "Error in the pull function." */
const char *tls_reason(const struct tls_session *s);
/* Client sessions: the DNS-ID the upstream's certificate must carry
 * ("" when pins decide). */
const char *tls_verify_name(const struct tls_session *s);
/* Result class of a failed handshake for logs and metrics:
 * "cert-rejected" when a client certificate was refused, else "tls-failed". */
bool tls_failed_on_cert(const struct tls_session *s);

const char *tls_version_name(struct tls_session *s);	/* "TLS1.3" */
const char *tls_cipher_name(struct tls_session *s);	/* IANA, "TLS_AES_128_GCM_SHA256" */
/* The server name the client asked for (SNI) and the ALPN protocol
 * negotiated, into out ("" when none). */
void tls_sni(struct tls_session *s, char *out, size_t sz);
void tls_alpn(struct tls_session *s, char *out, size_t sz);
const struct tls_peer *tls_peer(const struct tls_session *s);

/* Hex "sha256:AB:CD:..." rendering for logs; out >= 7 + 32*3 bytes. */
void tls_format_fp(const unsigned char fp[32], char *out, size_t outsz);

#endif
