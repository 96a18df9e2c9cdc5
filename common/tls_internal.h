/* tls_internal: state shared by the files of the TLS module (tls.c,
 * tls_creds.c, tls_identity.c, tls_ocsp.c, tls_pkcs11.c). Nothing outside
 * common/tls*.c includes it. */
#ifndef MG_TLS_INTERNAL_H
#define MG_TLS_INTERNAL_H

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/x509.h>
#include <stdint.h>

#include "tls.h"

#define TLS_SERVER_MAGIC 0x544c5353u
#define TLS_SESSION_MAGIC 0x544c5345u
#define TLS_RECORD_HEADER 5	/* type, version, length (RFC 8446 §5.1) */

/* A pkcs11: key of a tls section, imported once more beside the copy
 * GnuTLS holds in cred, for the signature test after the privilege drop
 * (tls_server_check_keys); shown = the URL with its PIN hidden. */
struct tls_p11key {
	gnutls_privkey_t key;
	char *shown;
};

struct tls_server {
	uint32_t magic;
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t prio;
	gnutls_datum_t ticket_key;
	gnutls_datum_t *alpn;
	unsigned nalpn;
	bool alpn_strict;
	bool eku_client;
	bool has_client_ca;
	char *name;
	/* Peer pins (DESIGN.md §6): a certificate whose only fault is an
	 * unknown issuer is accepted on a require listener when this says a
	 * peer matches it by its pin - under the same rules as the peer match
	 * the session makes later (pins and names both, when both are
	 * listed), so the handshake and the session never disagree. Set by
	 * the daemon (peer_pinned); may be NULL. */
	int (*pin_accept)(void *arg, const struct tls_peer *p);
	void *pin_arg;
	struct tls_p11key *p11;
	size_t np11;
	struct tls_cert_info *certs;	/* loaded pairs (tls_server_certs) */
	size_t ncerts;
};

struct tls_client {
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t prio;
	gnutls_datum_t *alpn;
	unsigned nalpn;
	char *verify_name;	/* "" = the upstream host */
	unsigned char (*pins_fp)[32];
	size_t npins_fp;
	unsigned char (*pins_spki)[32];
	size_t npins_spki;
	struct tls_cert_info *certs;	/* our certificate, if any (tls_client_certs) */
	size_t ncerts;
};

enum tls_role { TLS_ROLE_SERVER, TLS_ROLE_CLIENT };

struct tls_session {
	uint32_t magic;
	uint8_t role;
	uint8_t mode;		/* enum client_cert_mode (server) */
	uint8_t send_pending;
	uint8_t cert_failed;
	uint8_t bye_sent;
	uint8_t peer_fin;	/* the peer's TCP FIN was read (transport_pull) */
	uint8_t handshaking;	/* inside tls_handshake() until it succeeds */
	uint8_t got_first;	/* first_byte holds the first byte received */
	uint8_t first_byte;	/* 22 for TLS; a letter when the peer speaks plain text */
	uint8_t wipe;		/* tls_set_wipe(): received plaintext may be secret */
	uint8_t alert;		/* alert to send when the handshake fails, 0 = none */
	uint8_t ahead_len;	/* bytes in ahead[] not yet handed to GnuTLS */
	uint8_t ahead_off;	/* where they start */
	/* Read-ahead of the next record's header (transport_pull): GnuTLS
	 * asks for a record's header, then its body; reading the next
	 * header along with a body halves the receive calls per record. */
	unsigned char ahead[TLS_RECORD_HEADER];
	int io_errno;		/* the last socket error the transport saw (not EAGAIN) */
	gnutls_session_t gs;
	int fd;
	gnutls_packet_t held;	/* the record being handed out (wipe, tls_recv_view) */
	size_t held_off;	/* bytes of it already handed out */
	struct tls_server *srv;
	struct tls_client *cli;
	struct tls_peer *peer;
	const char *reason;
	char *reason_owned;
	char *verify_host;	/* client: the DNS-ID the server must present */
};

/* tls_ocsp.c: loads t->ocsp_staple[i] for the chain chain_idx[i] of cred
 * (-1: cert i did not load, skipped), after checking each response;
 * problems go to d (see there). */
void tls_ocsp_load(gnutls_certificate_credentials_t cred, const struct conf_tls *t, const int *chain_idx,
		   struct diag *d);

/* tls_pkcs11.c: private keys given as pkcs11: URLs (see there). */
#define TLS_KEY_SHOWN_MAX 1024	/* a key path or URL as printed, PIN hidden */
bool tls_is_pkcs11(const char *key);
/* key as it may be printed: a pkcs11: URL with pin-value=(hidden). */
void tls_key_shown(const char *key, char *out, size_t outsz);
/* -t checks of where url's PIN lives (pin-source file, pin-value). */
void tls_pkcs11_check(struct diag *d, struct conf_where w, const char *url);
/* Reports a failed load of url (GnuTLS error err) in words. */
void tls_pkcs11_explain(struct diag *d, struct conf_where w, const char *url, int err);
/* Imports url once more into srv->p11 and signs with it once; an error
 * goes to d. */
void tls_pkcs11_keep(struct tls_server *srv, struct diag *d, struct conf_where w, const char *url);
void tls_pkcs11_free(struct tls_server *srv);

/* tls_identity.c */
int tls_evaluate_peer(struct tls_session *s);
void tls_set_reason(struct tls_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int tls_cert_hashes(gnutls_x509_crt_t crt, unsigned char fp[32], unsigned char spki[32]);
enum cert_status tls_status_from_gnutls(unsigned status);
void tls_peer_free(struct tls_peer *p);
/* The subject CN(s) and the dNSName and rfc822Name SANs into p, once
 * (p->names_read). Values are copied exactly or counted as unreadable
 * (cn_bad, dns_bad, email_bad), never truncated or skipped silently. */
void tls_read_names(gnutls_x509_crt_t crt, struct tls_peer *p);

#endif
