/* conf_check: checks every file a configuration names - it must exist and
 * be readable - and the permissions of secret files (private keys,
 * ticket_key, master_password_file): readable by others is an error,
 * by the group a warning (DESIGN.md §2, §3). Certificate contents are
 * checked by the TLS loader. */
#include "conf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void check_file(struct diag *d, struct conf_where w, const char *key, const char *path,
		       int secret)
{
	struct stat st;
	if (!path[0] || strncmp(path, "pkcs11:", 7) == 0)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		diag_error(d, w.file, w.line, "%s: cannot read '%s': %s", key, path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		diag_error(d, w.file, w.line, "%s: '%s' is not a regular file", key, path);
		close(fd);
		return;
	}
	close(fd);
	if (!secret)
		return;
	if (st.st_mode & S_IROTH)
		diag_error(d, w.file, w.line,
			   "%s: secret file '%s' is readable by others (chmod o-rwx)", key, path);
	else if (st.st_mode & S_IRGRP)
		diag_warn(d, w.file, w.line, "%s: secret file '%s' is readable by its group", key, path);
}

void conf_check_files(const struct conf *c, struct diag *d)
{
	for (size_t i = 0; i < c->ntls; i++) {
		const struct conf_tls *t = &c->tls[i];
		for (size_t j = 0; j < t->cert.n; j++)
			check_file(d, t->cert_where, "cert", t->cert.v[j], 0);
		for (size_t j = 0; j < t->key.n; j++)
			check_file(d, t->key_where, "key", t->key.v[j], 1);
		for (size_t j = 0; j < t->crl.n; j++)
			check_file(d, t->crl_where, "crl", t->crl.v[j], 0);
		check_file(d, t->client_ca_where, "client_ca", t->client_ca, 0);
		check_file(d, t->ocsp_where, "ocsp_staple", t->ocsp_staple, 0);
		check_file(d, t->ticket_where, "ticket_key", t->ticket_key, 1);
		if (t->ticket_key[0]) {
			struct stat st;
			if (stat(t->ticket_key, &st) == 0 && st.st_size != 64)
				diag_error(d, t->ticket_where.file, t->ticket_where.line,
					   "ticket_key: '%s' must hold exactly 64 bytes (has %lld); "
					   "create it with: head -c 64 /dev/urandom > FILE",
					   t->ticket_key, (long long)st.st_size);
		}
	}
	for (size_t i = 0; i < c->ntls_clients; i++) {
		const struct conf_tls_client *t = &c->tls_clients[i];
		check_file(d, t->cert_where, "cert", t->cert, 0);
		check_file(d, t->key_where, "key", t->key, 1);
		check_file(d, t->ca_where, "ca", t->ca, 0);
	}
	if (c->kind == DAEMON_IMAPD) {
		check_file(d, c->master_password_where, "master_password_file", c->master_password_file, 1);
		check_file(d, c->user_map_where, "user_map", c->user_map, 0);
	}
}
