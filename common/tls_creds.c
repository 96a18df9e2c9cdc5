/* tls_creds: loading of server and client credentials from the
 * configuration, with FILE:LINE diagnostics: cert/key pairs (key mismatch,
 * expired or soon-expiring certificates), client CA, CRLs (past
 * nextUpdate), priority strings, ALPN ids and the per-section ticket key
 * derived from ticket_key (or a random per-start master). OCSP staples
 * are tls_ocsp.c's, what is ours around pkcs11: keys tls_pkcs11.c's. */
#include "tls_internal.h"
#include "peer.h"
#include "xmem.h"

#include <fcntl.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPIRY_WARN_SECONDS (14 * 86400)

static unsigned char ticket_master[64];
static int ticket_master_set;

void tls_ticket_master_init(void)
{
	if (!ticket_master_set) {
		gnutls_rnd(GNUTLS_RND_KEY, ticket_master, sizeof(ticket_master));
		ticket_master_set = 1;
	}
}

static gnutls_datum_t *copy_alpn(const struct strlist *ids, unsigned *n)
{
	*n = (unsigned)ids->n;
	if (!ids->n)
		return NULL;
	gnutls_datum_t *v = xcalloc(ids->n, sizeof(*v));
	for (size_t i = 0; i < ids->n; i++) {
		v[i].data = (unsigned char *)xstrdup(ids->v[i]);
		v[i].size = (unsigned)strlen(ids->v[i]);
	}
	return v;
}

static void free_alpn(gnutls_datum_t *v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(v[i].data);
	free(v);
}

/* Whether a file can be read at all, checked (and any problem reported)
 * with conf_check_files()'s own words before GnuTLS reads it: a problem
 * both of them meet is then printed once (diag.h), and GnuTLS errors below
 * are about contents only. */
static bool usable(struct diag *d, struct conf_where w, const char *key, const char *path, int secret)
{
	return conf_check_file(d, w, key, path, secret) == 0;
}

/* Dates of the leaf certificate in a PEM chain file. */
static void check_cert_dates(struct diag *d, struct conf_where w, const char *path)
{
	gnutls_datum_t data = { NULL, 0 };
	gnutls_x509_crt_t *crts = NULL;
	unsigned n = 0;
	if (gnutls_load_file(path, &data) < 0)
		return;	/* reported by usable() */
	if (gnutls_x509_crt_list_import2(&crts, &n, &data, GNUTLS_X509_FMT_PEM, 0) < 0 || n == 0) {
		diag_error(d, w.file, w.line, "cert: '%s' holds no PEM certificate", path);
		gnutls_free(data.data);
		return;
	}
	time_t now = time(NULL);
	time_t na = gnutls_x509_crt_get_expiration_time(crts[0]);
	time_t nb = gnutls_x509_crt_get_activation_time(crts[0]);
	if (na != (time_t)-1 && na < now)
		diag_error(d, w.file, w.line, "cert: '%s' expired %ld day(s) ago", path,
			   (long)((now - na) / 86400));
	else if (na != (time_t)-1 && na - now < EXPIRY_WARN_SECONDS)
		diag_warn(d, w.file, w.line, "cert: '%s' expires in %ld day(s)", path,
			  (long)((na - now) / 86400));
	if (nb != (time_t)-1 && nb > now)
		diag_warn(d, w.file, w.line, "cert: '%s' is not valid yet", path);
	for (unsigned i = 0; i < n; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	gnutls_free(data.data);
}

static void check_crl_dates(struct diag *d, struct conf_where w, const char *path)
{
	gnutls_datum_t data = { NULL, 0 };
	gnutls_x509_crl_t *crls = NULL;
	unsigned n = 0;
	if (gnutls_load_file(path, &data) < 0)
		return;
	if (gnutls_x509_crl_list_import2(&crls, &n, &data, GNUTLS_X509_FMT_PEM, 0) < 0 || n == 0) {
		diag_error(d, w.file, w.line, "crl: '%s' holds no PEM CRL", path);
		gnutls_free(data.data);
		return;
	}
	time_t now = time(NULL);
	for (unsigned i = 0; i < n; i++) {
		time_t next = gnutls_x509_crl_get_next_update(crls[i]);
		if (next != (time_t)-1 && next < now)
			diag_warn(d, w.file, w.line, "crl: '%s' is past its nextUpdate; fetch a fresh one",
				  path);
		gnutls_x509_crl_deinit(crls[i]);
	}
	gnutls_free(crls);
	gnutls_free(data.data);
}

/* key may be a pkcs11: URL: GnuTLS loads it through p11-kit's modules;
 * its PIN never appears in a message (tls_key_shown). */
static int load_pair(gnutls_certificate_credentials_t cred, struct diag *d,
		     struct conf_where cw, struct conf_where kw, const char *cert, const char *key)
{
	char shown[TLS_KEY_SHOWN_MAX];
	int r = gnutls_certificate_set_x509_key_file2(cred, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (r >= 0)
		return 0;
	tls_key_shown(key, shown, sizeof(shown));
	if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
		diag_error(d, kw.file, kw.line, "key: '%s' does not match cert '%s'", shown, cert);
	else if (r == GNUTLS_E_DECRYPTION_FAILED && !tls_is_pkcs11(key))
		diag_error(d, kw.file, kw.line, "key: '%s' is encrypted; store it unencrypted (mode 0600)",
			   shown);
	else if (tls_is_pkcs11(key))
		tls_pkcs11_explain(d, kw, key, r);
	else
		diag_error(d, cw.file, cw.line, "cert '%s' / key '%s': %s", cert, shown, gnutls_strerror(r));
	return -1;
}

/* The notAfter of pair idx of cred (as loaded: PEM file or PKCS#11),
 * appended to *v as file's; nothing when it cannot be read. */
static void note_cert(gnutls_certificate_credentials_t cred, unsigned idx, const char *file,
		      struct tls_cert_info **v, size_t *n)
{
	gnutls_datum_t der = { NULL, 0 };	/* cred's own copy: not freed */
	gnutls_x509_crt_t crt;
	time_t na = (time_t)-1;
	if (gnutls_certificate_get_crt_raw(cred, idx, 0, &der) < 0 || gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &der, GNUTLS_X509_FMT_DER) >= 0)
		na = gnutls_x509_crt_get_expiration_time(crt);
	gnutls_x509_crt_deinit(crt);
	if (na == (time_t)-1)
		return;
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[*n].file = xstrdup(file);
	(*v)[*n].not_after = na;
	(*n)++;
}

static void free_certs(struct tls_cert_info *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)v[i].file);
	free(v);
}

size_t tls_server_certs(const struct tls_server *srv, const struct tls_cert_info **out)
{
	*out = srv->certs;
	return srv->ncerts;
}

size_t tls_client_certs(const struct tls_client *cli, const struct tls_cert_info **out)
{
	*out = cli->certs;
	return cli->ncerts;
}

static int server_verify(gnutls_session_t gs)
{
	struct tls_session *s = gnutls_session_get_ptr(gs);
	if (!s || s->magic != TLS_SESSION_MAGIC || s->role != TLS_ROLE_SERVER)
		return 0;
	return tls_evaluate_peer(s) < 0 ? -1 : 0;
}

static int load_ticket_master(const char *path, unsigned char out[64])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);	/* see conf_check_file() */
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, out, 64);
	unsigned char extra;
	ssize_t more = n == 64 ? read(fd, &extra, 1) : 0;
	close(fd);
	return n == 64 && more == 0 ? 0 : -1;
}

/* Each section derives its own key, so one section's tickets are never
 * accepted by another (DESIGN.md §3): HMAC-SHA512(master, the label
 * 'mailgate ticket key for tls "NAME"'), fed in pieces, so a name of any
 * length is hashed whole. */
static void derive_ticket_key(const unsigned char master[64], const char *name, unsigned char out[64])
{
	static const char pre[] = "mailgate ticket key for tls \"";
	gnutls_hmac_hd_t h;
	if (gnutls_hmac_init(&h, GNUTLS_MAC_SHA512, master, 64) < 0) {
		gnutls_rnd(GNUTLS_RND_KEY, out, 64);	/* tickets then just fail to resume */
		return;
	}
	gnutls_hmac(h, pre, sizeof(pre) - 1);
	gnutls_hmac(h, name, strlen(name));
	gnutls_hmac(h, "\"", 1);
	gnutls_hmac_deinit(h, out);
}

struct tls_server *tls_server_new(const struct conf_tls *t, struct diag *d)
{
	int errors = d->errors;
	struct tls_server *srv = xcalloc(1, sizeof(*srv));
	const char *errpos = NULL;
	unsigned char master[64];

	srv->magic = TLS_SERVER_MAGIC;
	srv->name = xstrdup(t->name);
	/* chain_idx[i]: where cert i landed in cred (GnuTLS numbers the
	 * chains in the order they were added), -1 if it did not load. */
	int *chain_idx = xcalloc(t->cert.n + 1, sizeof(*chain_idx));
	int nchains = 0;
	gnutls_certificate_allocate_credentials(&srv->cred);
	for (size_t i = 0; i < t->cert.n; i++) {
		chain_idx[i] = -1;
		if (i >= t->key.n)
			continue;
		bool cert_ok = usable(d, t->cert_where, "cert", t->cert.v[i], 0);
		bool key_ok = usable(d, t->key_where, "key", t->key.v[i], 1);
		if (!cert_ok || !key_ok)
			continue;
		check_cert_dates(d, t->cert_where, t->cert.v[i]);
		if (tls_is_pkcs11(t->key.v[i]))
			tls_pkcs11_check(d, t->key_where, t->key.v[i]);
		if (load_pair(srv->cred, d, t->cert_where, t->key_where, t->cert.v[i], t->key.v[i]) < 0)
			continue;
		note_cert(srv->cred, (unsigned)nchains, t->cert.v[i], &srv->certs, &srv->ncerts);
		chain_idx[i] = nchains++;
		if (tls_is_pkcs11(t->key.v[i]))
			tls_pkcs11_keep(srv, d, t->key_where, t->key.v[i]);
	}
	if (t->client_ca[0] && usable(d, t->client_ca_where, "client_ca", t->client_ca, 0)) {
		int r = gnutls_certificate_set_x509_trust_file(srv->cred, t->client_ca, GNUTLS_X509_FMT_PEM);
		if (r <= 0)
			diag_error(d, t->client_ca_where.file, t->client_ca_where.line,
				   "client_ca: '%s': %s", t->client_ca,
				   r == 0 ? "no certificates found" : gnutls_strerror(r));
		srv->has_client_ca = r > 0;
	}
	for (size_t i = 0; i < t->crl.n; i++) {
		if (!usable(d, t->crl_where, "crl", t->crl.v[i], 0))
			continue;
		int r = gnutls_certificate_set_x509_crl_file(srv->cred, t->crl.v[i], GNUTLS_X509_FMT_PEM);
		if (r < 0)
			diag_error(d, t->crl_where.file, t->crl_where.line, "crl: '%s': %s", t->crl.v[i],
				   gnutls_strerror(r));
		else
			check_crl_dates(d, t->crl_where, t->crl.v[i]);
	}
	tls_ocsp_load(srv->cred, t, chain_idx, d);
	free(chain_idx);
	gnutls_certificate_set_verify_function(srv->cred, server_verify);
	gnutls_certificate_set_verify_limits(srv->cred, TLS_MAX_KEY_BITS, TLS_MAX_CHAIN_DEPTH);
	if (gnutls_priority_init(&srv->prio, t->priority, &errpos) < 0) {
		diag_error(d, t->priority_where.file, t->priority_where.line,
			   "priority: bad GnuTLS priority string near '%s'", errpos ? errpos : t->priority);
		srv->prio = NULL;
	}
	if (t->ticket_key[0]) {
		memset(master, 0, sizeof(master));
		if (conf_check_ticket_key(d, t->ticket_where, t->ticket_key) == 0 &&
		    load_ticket_master(t->ticket_key, master) < 0)
			diag_error(d, t->ticket_where.file, t->ticket_where.line,
				   "ticket_key: cannot read %d bytes from '%s'", TLS_TICKET_KEY_FILE_LEN,
				   t->ticket_key);
	} else {
		tls_ticket_master_init();
		memcpy(master, ticket_master, sizeof(master));
	}
	srv->ticket_key.data = gnutls_malloc(64);
	srv->ticket_key.size = 64;
	derive_ticket_key(master, t->name, srv->ticket_key.data);
	gnutls_memset(master, 0, sizeof(master));
	srv->alpn_strict = t->alpn;
	srv->alpn = copy_alpn(&t->alpn_ids, &srv->nalpn);
	srv->eku_client = t->client_eku_client;
	if (d->errors > errors) {
		tls_server_free(&srv);
		return NULL;
	}
	return srv;
}

void tls_server_set_pin_accept(struct tls_server *srv, int (*fn)(void *, const struct tls_peer *),
			       void *arg)
{
	srv->pin_accept = fn;
	srv->pin_arg = arg;
}

void tls_server_free(struct tls_server **sp)
{
	struct tls_server *srv = *sp;
	if (!srv)
		return;
	gnutls_certificate_free_credentials(srv->cred);
	if (srv->prio)
		gnutls_priority_deinit(srv->prio);
	if (srv->ticket_key.data) {
		gnutls_memset(srv->ticket_key.data, 0, srv->ticket_key.size);
		gnutls_free(srv->ticket_key.data);
	}
	free_alpn(srv->alpn, srv->nalpn);
	tls_pkcs11_free(srv);
	free_certs(srv->certs, srv->ncerts);
	free(srv->name);
	srv->magic = 0;
	free(srv);
	*sp = NULL;
}

static bool pin_match(const struct tls_client *cli, const unsigned char fp[32],
		      const unsigned char spki[32])
{
	for (size_t i = 0; i < cli->npins_fp; i++)
		if (memcmp(cli->pins_fp[i], fp, 32) == 0)
			return true;
	for (size_t i = 0; i < cli->npins_spki; i++)
		if (memcmp(cli->pins_spki[i], spki, 32) == 0)
			return true;
	return false;
}

/* The upstream's certificate (DESIGN.md §3 tls_client): with pins, a
 * matching pin replaces the chain and name checks and no match refuses
 * the upstream; without pins, the chain must verify against `ca` and a
 * dNSName SAN must match verify_name (RFC 6125/7817: DNS-IDs only, the CN
 * is not consulted; a wildcard only as the whole left-most label).
 *
 * Either way the certificate must be one for a TLS server: RFC 5280
 * §4.2.1.12 - with an extendedKeyUsage extension a certificate may only
 * be used for the purposes it lists, so it must list id-kp-serverAuth (or
 * anyExtendedKeyUsage); without the extension any use is allowed. A pin
 * says which key it is, the EKU what that key may be used for, so a relay
 * peer's clientAuth-only certificate never passes for a server, pinned or
 * not. On the chain path GnuTLS checks it (GNUTLS_DT_KEY_PURPOSE_OID, which
 * also covers the intermediates); on the pin path the same end-certificate
 * check GnuTLS applies there (gnutls_x509_crt_check_key_purpose), so both
 * paths decide alike. An unreadable extension fails. */
static int client_verify(gnutls_session_t gs)
{
	struct tls_session *s = gnutls_session_get_ptr(gs);
	unsigned n = 0, st = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(gs, &n);
	if (!s || s->magic != TLS_SESSION_MAGIC || s->role != TLS_ROLE_CLIENT)
		return -1;
	if (!certs || n == 0) {
		tls_set_reason(s, "server certificate rejected: none presented");
		return -1;
	}
	s->peer = s->peer ? s->peer : xcalloc(1, sizeof(*s->peer));
	gnutls_x509_crt_t crt;
	if (gnutls_x509_crt_init(&crt) < 0)
		return -1;
	int ok = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >= 0 &&
		 tls_cert_hashes(crt, s->peer->fp, s->peer->spki) == 0;
	bool server_purpose = ok && gnutls_x509_crt_check_key_purpose(crt, GNUTLS_KP_TLS_WWW_SERVER, 0);
	if (ok) {
		tls_read_names(crt, s->peer);
		s->peer->not_after = gnutls_x509_crt_get_expiration_time(crt);
	}
	gnutls_x509_crt_deinit(crt);
	if (!ok) {
		tls_set_reason(s, "server certificate rejected: unreadable");
		return -1;
	}
	gnutls_typed_vdata_st purpose = { GNUTLS_DT_KEY_PURPOSE_OID,
					  (unsigned char *)GNUTLS_KP_TLS_WWW_SERVER, 0 };
	int vr = gnutls_certificate_verify_peers(gs, &purpose, 1, &st);
	/* The chain's own result, for the log (a pin does not change it). */
	s->peer->status = tls_status_from_gnutls(vr < 0 ? GNUTLS_CERT_INVALID : st);
	if (s->cli->npins_fp || s->cli->npins_spki) {
		if (!pin_match(s->cli, s->peer->fp, s->peer->spki)) {
			char fps[120];
			tls_format_fp(s->peer->fp, fps, sizeof(fps));
			tls_set_reason(s, "server certificate rejected: matches no pin (fp=%s)", fps);
			return -1;
		}
		if (!server_purpose) {
			tls_set_reason(s, "server certificate rejected: pinned, but its extended key "
					  "usage does not allow a TLS server (serverAuth)");
			return -1;
		}
		s->peer->match = TLS_MATCH_PIN;
		return 0;
	}
	if (vr < 0 || st != 0) {
		gnutls_datum_t out = { NULL, 0 };
		gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &out, 0);
		tls_set_reason(s, "server certificate rejected: %s",
			       out.data ? (char *)out.data : "verification failed");
		gnutls_free(out.data);
		return -1;
	}
	/* Only names read exactly are compared; one that could not be read
	 * (over-long, NUL-bearing, beyond TLS_MAX_SANS) can only fail to
	 * match, never match as something else, and the CN is never used. */
	for (size_t i = 0; i < s->peer->ndns; i++)
		if (s->verify_host[0] && peer_dnsid_match(s->verify_host, s->peer->dns[i], true)) {
			s->peer->match = TLS_MATCH_NAME;
			return 0;
		}
	if (s->peer->dns_bad) {
		tls_set_reason(s, "server certificate rejected: no DNS name in it matches '%s' "
				  "(%zu unreadable)", s->verify_host, s->peer->dns_bad);
		return -1;
	}
	tls_set_reason(s, "server certificate rejected: no DNS name in it matches '%s'", s->verify_host);
	return -1;
}

struct tls_client *tls_client_new(const struct conf_tls_client *t, struct diag *d)
{
	int errors = d->errors;
	const char *errpos = NULL;
	struct tls_client *cli = xcalloc(1, sizeof(*cli));
	gnutls_certificate_allocate_credentials(&cli->cred);
	if (t && t->ca[0]) {
		if (usable(d, t->ca_where, "ca", t->ca, 0)) {
			int r = gnutls_certificate_set_x509_trust_file(cli->cred, t->ca, GNUTLS_X509_FMT_PEM);
			if (r <= 0)
				diag_error(d, t->ca_where.file, t->ca_where.line, "ca: '%s': %s", t->ca,
					   r == 0 ? "no certificates found" : gnutls_strerror(r));
		}
	} else {
		gnutls_certificate_set_x509_system_trust(cli->cred);
	}
	if (t && t->cert[0] && t->key[0]) {
		bool cert_ok = usable(d, t->cert_where, "cert", t->cert, 0);
		bool key_ok = usable(d, t->key_where, "key", t->key, 1);
		if (cert_ok && key_ok) {
			check_cert_dates(d, t->cert_where, t->cert);
			if (tls_is_pkcs11(t->key))
				tls_pkcs11_check(d, t->key_where, t->key);
			if (load_pair(cli->cred, d, t->cert_where, t->key_where, t->cert, t->key) == 0)
				note_cert(cli->cred, 0, t->cert, &cli->certs, &cli->ncerts);
		}
	}
	gnutls_certificate_set_verify_limits(cli->cred, TLS_MAX_KEY_BITS, TLS_MAX_CHAIN_DEPTH);
	const char *prio = t ? t->priority : CONF_TLS_PRIORITY;
	if (gnutls_priority_init(&cli->prio, prio, &errpos) < 0) {
		struct conf_where w = t ? t->where : (struct conf_where){ NULL, 0 };
		diag_error(d, w.file, w.line, "priority: bad GnuTLS priority string near '%s'",
			   errpos ? errpos : prio);
		cli->prio = NULL;
	}
	cli->verify_name = xstrdup(t ? t->verify_name : "");
	if (t && (t->fingerprint.n || t->spki.n)) {
		cli->npins_fp = t->fingerprint.n;
		cli->pins_fp = cli->npins_fp ? xcalloc(cli->npins_fp, 32) : NULL;
		if (cli->npins_fp)
			memcpy(cli->pins_fp, t->fingerprint.v, cli->npins_fp * 32);
		cli->npins_spki = t->spki.n;
		cli->pins_spki = cli->npins_spki ? xcalloc(cli->npins_spki, 32) : NULL;
		if (cli->npins_spki)
			memcpy(cli->pins_spki, t->spki.v, cli->npins_spki * 32);
	}
	gnutls_certificate_set_verify_function(cli->cred, client_verify);
	cli->alpn = t ? copy_alpn(&t->alpn_ids, &cli->nalpn) : NULL;
	if (d->errors > errors) {
		tls_client_free(&cli);
		return NULL;
	}
	return cli;
}

void tls_client_free(struct tls_client **cp)
{
	struct tls_client *cli = *cp;
	if (!cli)
		return;
	gnutls_certificate_free_credentials(cli->cred);
	if (cli->prio)
		gnutls_priority_deinit(cli->prio);
	free_alpn(cli->alpn, cli->nalpn);
	free_certs(cli->certs, cli->ncerts);
	free(cli->verify_name);
	free(cli->pins_fp);
	free(cli->pins_spki);
	free(cli);
	*cp = NULL;
}

void tls_check_conf(const struct conf *c, struct diag *d)
{
	for (size_t i = 0; i < c->ntls; i++) {
		struct tls_server *srv = tls_server_new(&c->tls[i], d);
		tls_server_free(&srv);
	}
	for (size_t i = 0; i < c->ntls_clients; i++) {
		struct tls_client *cli = tls_client_new(&c->tls_clients[i], d);
		tls_client_free(&cli);
	}
}
