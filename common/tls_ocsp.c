/* tls_ocsp: the OCSP responses a tls section staples (ocsp_staple, one
 * DER response per cert, in cert's order). Each is checked before GnuTLS
 * gets it, so -t says what is wrong in words an administrator can act on:
 *
 *   - not a successful DER OCSP response, or one about another
 *     certificate (serial numbers named): error;
 *   - signed by neither the issuer nor a responder the issuer delegated
 *     (checked when the cert file carries the issuer after the leaf, as a
 *     chain file does): error;
 *   - status revoked or unknown: error - GnuTLS never staples it, and a
 *     revoked certificate must be replaced, not served;
 *   - past its nextUpdate: warning, and nothing is stapled for that cert
 *     until a fresh response is fetched (GnuTLS refuses stale responses;
 *     the gateway still starts, as nginx and HAProxy do);
 *   - nextUpdate within OCSP_EXPIRY_WARN_SECONDS: warning.
 *
 * At run time GnuTLS staples a loaded response only while it is fresh:
 * once its nextUpdate passes, handshakes go on without a staple. */
#include "tls_internal.h"

#include <gnutls/ocsp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define OCSP_EXPIRY_WARN_SECONDS 86400
#define OCSP_SERIAL_MAX 64	/* octets of a serial number we print */

static void hex_serial(const gnutls_datum_t *in, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	unsigned i = 0;
	while (i + 1 < in->size && in->data[i] == 0)
		i++;	/* a DER INTEGER's sign octet: print serials as CAs do */
	for (; i < in->size && i < OCSP_SERIAL_MAX && o + 3 <= outsz; i++) {
		out[o++] = hex[in->data[i] >> 4];
		out[o++] = hex[in->data[i] & 15];
	}
	out[o] = '\0';
}

static void crt_serial(gnutls_x509_crt_t crt, char *out, size_t outsz)
{
	unsigned char raw[OCSP_SERIAL_MAX];
	size_t n = sizeof(raw);
	if (gnutls_x509_crt_get_serial(crt, raw, &n) < 0)
		n = 0;
	gnutls_datum_t d = { raw, (unsigned)n };
	hex_serial(&d, out, outsz);
}

static void utc(time_t t, char *out, size_t outsz)
{
	struct tm tm;
	if (t == (time_t)-1 || !gmtime_r(&t, &tm) || !strftime(out, outsz, "%Y-%m-%d %H:%M UTC", &tm))
		snprintf(out, outsz, "(unknown)");
}

struct ocsp_ctx {
	struct diag *d;
	struct conf_where w;
	const char *path;	/* the response file */
	const char *cert;	/* the cert file it is for */
};

/* The response's signature, when the cert file names the leaf's issuer
 * next (a chain file): by the issuer itself or by a responder certificate
 * it issued for OCSP signing (RFC 6960 §4.2.2.2) - what a client checks. */
static int check_signer(struct ocsp_ctx *c, gnutls_ocsp_resp_t resp, gnutls_x509_crt_t *crts, unsigned n)
{
	if (n < 2 || !gnutls_x509_crt_check_issuer(crts[0], crts[1]))
		return 0;	/* no issuer at hand: clients judge it */
	gnutls_x509_trust_list_t tl;
	gnutls_x509_crt_t issuer;
	gnutls_datum_t der = { NULL, 0 };
	unsigned verify = 0;
	int r = -1;
	if (gnutls_x509_trust_list_init(&tl, 0) < 0)
		return 0;
	if (gnutls_x509_crt_export2(crts[1], GNUTLS_X509_FMT_DER, &der) >= 0 &&
	    gnutls_x509_crt_init(&issuer) >= 0) {
		if (gnutls_x509_crt_import(issuer, &der, GNUTLS_X509_FMT_DER) >= 0 &&
		    gnutls_x509_trust_list_add_cas(tl, &issuer, 1, 0) == 1)
			r = gnutls_ocsp_resp_verify(resp, tl, &verify, 0);
		else
			gnutls_x509_crt_deinit(issuer);
	}
	gnutls_free(der.data);
	gnutls_x509_trust_list_deinit(tl, 1);
	if (r >= 0 && verify == 0)
		return 0;
	diag_error(c->d, c->w.file, c->w.line,
		   "ocsp_staple: '%s' is not signed by the issuer of '%s' nor by a responder it "
		   "delegated (fetch the response from that CA's responder)", c->path, c->cert);
	return -1;
}

/* The checks of the header comment; 1 = load it, 0 = skip it (warned),
 * -1 = error reported. */
static int judge(struct ocsp_ctx *c, gnutls_ocsp_resp_t resp, gnutls_x509_crt_t *crts, unsigned n)
{
	gnutls_datum_t serial = { NULL, 0 };
	unsigned status = 0;
	time_t this_upd = (time_t)-1, next_upd = (time_t)-1, rev = (time_t)-1;
	char want[2 * OCSP_SERIAL_MAX + 1], got[2 * OCSP_SERIAL_MAX + 1], when[40];
	int rs = gnutls_ocsp_resp_get_status(resp);
	if (rs != GNUTLS_OCSP_RESP_SUCCESSFUL) {
		diag_error(c->d, c->w.file, c->w.line,
			   "ocsp_staple: '%s': the responder answered with error status %d, not a response",
			   c->path, rs);
		return -1;
	}
	if (gnutls_ocsp_resp_get_single(resp, 0, NULL, NULL, NULL, &serial, &status, &this_upd,
					&next_upd, &rev, NULL) < 0) {
		diag_error(c->d, c->w.file, c->w.line, "ocsp_staple: '%s' holds no certificate status",
			   c->path);
		return -1;
	}
	hex_serial(&serial, got, sizeof(got));
	gnutls_free(serial.data);
	if (gnutls_ocsp_resp_check_crt(resp, 0, crts[0]) < 0) {
		crt_serial(crts[0], want, sizeof(want));
		diag_error(c->d, c->w.file, c->w.line,
			   "ocsp_staple: '%s' is about another certificate (serial %s), not '%s' (serial %s)",
			   c->path, got, c->cert, want);
		return -1;
	}
	if (check_signer(c, resp, crts, n) < 0)
		return -1;
	if (status == GNUTLS_OCSP_CERT_REVOKED) {
		utc(rev, when, sizeof(when));
		diag_error(c->d, c->w.file, c->w.line,
			   "ocsp_staple: '%s' says '%s' was REVOKED on %s: replace the certificate",
			   c->path, c->cert, when);
		return -1;
	}
	if (status != GNUTLS_OCSP_CERT_GOOD) {
		diag_error(c->d, c->w.file, c->w.line,
			   "ocsp_staple: '%s': the responder does not know '%s' (status unknown)", c->path,
			   c->cert);
		return -1;
	}
	time_t now = time(NULL);
	if (next_upd != (time_t)-1 && next_upd <= now) {
		utc(next_upd, when, sizeof(when));
		diag_warn(c->d, c->w.file, c->w.line,
			  "ocsp_staple: '%s' expired on %s (nextUpdate): not stapled until a fresh "
			  "response is fetched", c->path, when);
		return 0;
	}
	if (next_upd != (time_t)-1 && next_upd - now < OCSP_EXPIRY_WARN_SECONDS) {
		utc(next_upd, when, sizeof(when));
		diag_warn(c->d, c->w.file, c->w.line, "ocsp_staple: '%s' expires on %s: fetch a fresh one",
			  c->path, when);
	}
	return 1;
}

/* One response for the chain at index idx in cred, read from c->path. */
static void load_one(gnutls_certificate_credentials_t cred, struct ocsp_ctx *c, unsigned idx)
{
	gnutls_datum_t raw = { NULL, 0 }, pem = { NULL, 0 };
	gnutls_x509_crt_t *crts = NULL;
	unsigned n = 0;
	gnutls_ocsp_resp_t resp = NULL;
	if (gnutls_load_file(c->path, &raw) < 0 || gnutls_load_file(c->cert, &pem) < 0)
		goto out;	/* unreadable files are reported by their checks */
	if (gnutls_x509_crt_list_import2(&crts, &n, &pem, GNUTLS_X509_FMT_PEM, 0) < 0 || n == 0)
		goto out;	/* reported by the cert loader */
	if (gnutls_ocsp_resp_init(&resp) < 0)
		goto out;
	if (gnutls_ocsp_resp_import(resp, &raw) < 0) {
		diag_error(c->d, c->w.file, c->w.line,
			   "ocsp_staple: '%s' is not a DER OCSP response (as ocsptool --ask or openssl "
			   "ocsp -respout write it)", c->path);
		goto out;
	}
	if (judge(c, resp, crts, n) == 1) {
		int r = gnutls_certificate_set_ocsp_status_request_mem(cred, &raw, idx, GNUTLS_X509_FMT_DER);
		if (r < 0)
			diag_error(c->d, c->w.file, c->w.line, "ocsp_staple: '%s': %s", c->path,
				   gnutls_strerror(r));
	}
out:
	if (resp)
		gnutls_ocsp_resp_deinit(resp);
	for (unsigned i = 0; i < n; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	gnutls_free(raw.data);
	gnutls_free(pem.data);
}

void tls_ocsp_load(gnutls_certificate_credentials_t cred, const struct conf_tls *t, const int *chain_idx,
		   struct diag *d)
{
	for (size_t i = 0; i < t->ocsp_staple.n && i < t->cert.n; i++) {
		struct ocsp_ctx c = { d, t->ocsp_where, t->ocsp_staple.v[i], t->cert.v[i] };
		if (!c.path[0] || chain_idx[i] < 0)
			continue;	/* none for this cert, or the cert did not load */
		if (conf_check_file(d, t->ocsp_where, "ocsp_staple", c.path, 0) < 0)
			continue;
		load_one(cred, &c, (unsigned)chain_idx[i]);
	}
}
