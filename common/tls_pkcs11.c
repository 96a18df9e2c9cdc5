/* tls_pkcs11: private keys given as pkcs11: URLs (RFC 7512). GnuTLS loads
 * them itself (gnutls_certificate_set_x509_key_file2 takes the URL as the
 * key, through the PKCS#11 modules p11-kit registers); this file owns
 * what is ours around that:
 *
 *   - the URL shown in messages with its pin-value hidden (a PIN is a
 *     credential: never printed, never logged);
 *   - -t checks of where the PIN lives: a pin-source file is a secret file
 *     (readable by others: error); a pin-value puts the PIN in the
 *     configuration file, which then must not be readable by others;
 *   - what a failed load means, in words: wrong PIN (and a pin-source file
 *     ending in a newline, which becomes part of the PIN), no such object;
 *   - a signature test right after loading (-t and start-up), and again
 *     once privileges are dropped (tls_server_check_keys), so a token
 *     that the unprivileged user cannot use (SoftHSM keeps its objects in
 *     files it re-reads) stops the start, instead of failing every
 *     handshake with an internal-error alert. */
#include "tls_internal.h"
#include "strbuf.h"
#include "xmem.h"

#include <gnutls/abstract.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define P11_PIN_SOURCE_MAX 4096	/* bytes of a pin-source path */

bool tls_is_pkcs11(const char *key)
{
	return strncmp(key, "pkcs11:", 7) == 0;
}

/* The value of query attribute name ("pin-value", "pin-source") of url,
 * percent-decoded into out; false when absent or too long. */
static bool query_attr(const char *url, const char *name, char *out, size_t outsz)
{
	const char *q = strchr(url, '?');
	size_t nl = strlen(name);
	while (q) {
		q++;
		if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
			const char *v = q + nl + 1;
			size_t o = 0;
			for (; *v && *v != '&'; v++) {
				if (o + 1 >= outsz)
					return false;
				if (v[0] == '%' && v[1] && v[2]) {
					char hex[3] = { v[1], v[2], 0 };
					out[o++] = (char)strtol(hex, NULL, 16);
					v += 2;
				} else {
					out[o++] = *v;
				}
			}
			out[o] = '\0';
			return true;
		}
		q = strchr(q, '&');
	}
	return false;
}

void tls_key_shown(const char *key, char *out, size_t outsz)
{
	struct strbuf b;
	sb_init(&b, out, outsz);
	if (!tls_is_pkcs11(key)) {
		sb_adds(&b, key);
	} else {
		/* Attributes begin after ':' ';' '?' '&'; a pin-value anywhere
		 * (query, or mistakenly the path) is shown hidden. */
		const char *p = key;
		while (*p) {
			size_t n = strcspn(p, ";?&");
			if (strncmp(p, "pin-value=", 10) == 0 || (p == key && strncmp(p, "pkcs11:pin-value=", 17) == 0))
				sb_adds(&b, p == key ? "pkcs11:pin-value=(hidden)" : "pin-value=(hidden)");
			else
				sb_add(&b, p, n);
			p += n;
			if (*p)
				sb_addc(&b, *p++);
		}
	}
	if (!sb_ok(&b)) {
		sb_init(&b, out, outsz);
		sb_adds(&b, tls_is_pkcs11(key) ? "pkcs11:(long URL)" : "(long path)");
	}
}

void tls_pkcs11_check(struct diag *d, struct conf_where w, const char *url)
{
	char src[P11_PIN_SOURCE_MAX], shown[TLS_KEY_SHOWN_MAX];
	struct stat st;
	if (query_attr(url, "pin-source", src, sizeof(src)))
		conf_check_file(d, w, "key: pin-source", src, 1);
	if (query_attr(url, "pin-value", src, sizeof(src))) {
		gnutls_memset(src, 0, sizeof(src));
		/* The PIN sits in the configuration file: a secret file now. */
		if (w.file && stat(w.file, &st) == 0 && (st.st_mode & S_IROTH)) {
			tls_key_shown(url, shown, sizeof(shown));
			diag_error(d, w.file, w.line,
				   "key: '%s' carries its PIN (pin-value) in '%s', which others can read: "
				   "chmod o-rwx it, or use pin-source=FILE", shown, w.file);
		}
	}
}

/* Whether url's pin-source file ends with a newline (which p11-kit passes
 * on as part of the PIN). */
static bool pin_source_newline(const char *url)
{
	char src[P11_PIN_SOURCE_MAX];
	struct stat st;
	char last = 0;
	if (!query_attr(url, "pin-source", src, sizeof(src)))
		return false;
	int fd = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);	/* never block on a FIFO */
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1)
		last = 0;
	close(fd);
	return last == '\n';
}

void tls_pkcs11_explain(struct diag *d, struct conf_where w, const char *url, int err)
{
	char shown[TLS_KEY_SHOWN_MAX], pin[P11_PIN_SOURCE_MAX];
	tls_key_shown(url, shown, sizeof(shown));
	if (err == GNUTLS_E_PKCS11_PIN_ERROR) {
		bool has_pin = query_attr(url, "pin-source", pin, sizeof(pin)) ||
			       query_attr(url, "pin-value", pin, sizeof(pin));
		gnutls_memset(pin, 0, sizeof(pin));
		if (!has_pin)
			diag_error(d, w.file, w.line, "key: '%s' gives no PIN and the token needs one: "
				   "add ?pin-source=FILE (a file holding the PIN, mode 0600)", shown);
		else if (pin_source_newline(url))
			diag_error(d, w.file, w.line, "key: wrong PIN for '%s': its pin-source file ends "
				   "with a newline, which counts as part of the PIN (write it with "
				   "printf '%%s' PIN > FILE)", shown);
		else
			diag_error(d, w.file, w.line, "key: wrong PIN for '%s' (the token counts failed "
				   "logins and may lock itself)", shown);
	} else if (err == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE || err == GNUTLS_E_PKCS11_REQUESTED_OBJECT_NOT_AVAILBLE) {
		diag_error(d, w.file, w.line, "key: no private key matches '%s' in the PKCS#11 tokens "
			   "p11-kit knows (list them: p11tool --list-tokens; p11tool --login "
			   "--list-privkeys 'pkcs11:token=...')", shown);
	} else {
		diag_error(d, w.file, w.line, "key: '%s': %s", shown, gnutls_strerror(err));
	}
}

/* One signature with k: 0, or a GnuTLS error code. */
static int sign_test(gnutls_privkey_t k)
{
	static const unsigned char probe[] = "mailgate pkcs11 key test";
	gnutls_datum_t data = { (unsigned char *)probe, sizeof(probe) - 1 }, sig = { NULL, 0 };
	int r = gnutls_privkey_sign_data(k, GNUTLS_DIG_SHA256, 0, &data, &sig);
	gnutls_free(sig.data);
	return r < 0 ? r : 0;
}

void tls_pkcs11_keep(struct tls_server *srv, struct diag *d, struct conf_where w, const char *url)
{
	char shown[TLS_KEY_SHOWN_MAX];
	gnutls_privkey_t k;
	int r = gnutls_privkey_init(&k);
	tls_key_shown(url, shown, sizeof(shown));
	if (r < 0) {
		diag_error(d, w.file, w.line, "key: '%s': %s", shown, gnutls_strerror(r));
		return;
	}
	if ((r = gnutls_privkey_import_url(k, url, 0)) >= 0 && (r = sign_test(k)) == 0) {
		srv->p11 = xreallocarray(srv->p11, srv->np11 + 1, sizeof(*srv->p11));
		srv->p11[srv->np11].key = k;
		srv->p11[srv->np11].shown = xstrdup(shown);
		srv->np11++;
		return;
	}
	gnutls_privkey_deinit(k);
	diag_error(d, w.file, w.line, "key: '%s' loaded but cannot sign: %s", shown, gnutls_strerror(r));
}

int tls_server_check_keys(struct tls_server *srv, char *err, size_t errsz)
{
	for (size_t i = 0; srv && i < srv->np11; i++) {
		int r = sign_test(srv->p11[i].key);
		if (r < 0) {
			struct strbuf b;
			sb_init(&b, err, errsz);
			sb_addf(&b, "tls \"%s\": key '%s' cannot sign: %s", srv->name,
				srv->p11[i].shown, gnutls_strerror(r));
			return -1;
		}
	}
	return 0;
}

void tls_pkcs11_free(struct tls_server *srv)
{
	for (size_t i = 0; i < srv->np11; i++) {
		gnutls_privkey_deinit(srv->p11[i].key);
		free(srv->p11[i].shown);
	}
	free(srv->p11);
	srv->p11 = NULL;
	srv->np11 = 0;
}
