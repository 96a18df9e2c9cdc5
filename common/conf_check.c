/* conf_check: checks every file a configuration names - it must exist and
 * be readable - and the permissions of secret files (private keys,
 * ticket_key, master_password_file): readable by others is an error,
 * by the group a warning (DESIGN.md §2, §3). Certificate contents are
 * checked by the TLS loader, which runs the same file checks before it
 * reads a file (so that it never reads what it cannot use) and relies on
 * the diag printing a repeated problem once. */
#include "conf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int conf_check_file(struct diag *d, struct conf_where w, const char *key, const char *path, int secret)
{
	struct stat st;
	if (!path[0] || strncmp(path, "pkcs11:", 7) == 0)
		return 0;
	/* O_NONBLOCK: a FIFO (or a device) at the path must not block the
	 * master - at start or, worse, in a SIGHUP reload - before fstat()
	 * refuses it. On a regular file it changes nothing. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		diag_error(d, w.file, w.line, "%s: cannot read '%s': %s", key, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		diag_error(d, w.file, w.line, "%s: '%s' is not a regular file", key, path);
		close(fd);
		return -1;
	}
	close(fd);
	if (!secret)
		return 0;
	if (st.st_mode & S_IROTH) {
		diag_error(d, w.file, w.line,
			   "%s: secret file '%s' is readable by others (chmod o-rwx)", key, path);
		return -1;
	}
	if (st.st_mode & S_IRGRP)
		diag_warn(d, w.file, w.line, "%s: secret file '%s' is readable by its group", key, path);
	return 0;
}

int conf_check_ticket_key(struct diag *d, struct conf_where w, const char *path)
{
	struct stat st;
	if (!path[0])
		return 0;
	if (conf_check_file(d, w, "ticket_key", path, 1) < 0)
		return -1;
	if (stat(path, &st) == 0 && st.st_size != TLS_TICKET_KEY_FILE_LEN) {
		diag_error(d, w.file, w.line,
			   "ticket_key: '%s' must hold exactly %d bytes (has %lld); "
			   "create it with: head -c %d /dev/urandom > FILE",
			   path, TLS_TICKET_KEY_FILE_LEN, (long long)st.st_size, TLS_TICKET_KEY_FILE_LEN);
		return -1;
	}
	return 0;
}

void conf_check_files(const struct conf *c, struct diag *d)
{
	for (size_t i = 0; i < c->ntls; i++) {
		const struct conf_tls *t = &c->tls[i];
		for (size_t j = 0; j < t->cert.n; j++)
			conf_check_file(d, t->cert_where, "cert", t->cert.v[j], 0);
		for (size_t j = 0; j < t->key.n; j++)
			conf_check_file(d, t->key_where, "key", t->key.v[j], 1);
		for (size_t j = 0; j < t->crl.n; j++)
			conf_check_file(d, t->crl_where, "crl", t->crl.v[j], 0);
		conf_check_file(d, t->client_ca_where, "client_ca", t->client_ca, 0);
		for (size_t j = 0; j < t->ocsp_staple.n; j++)
			conf_check_file(d, t->ocsp_where, "ocsp_staple", t->ocsp_staple.v[j], 0);
		conf_check_ticket_key(d, t->ticket_where, t->ticket_key);
	}
	for (size_t i = 0; i < c->ntls_clients; i++) {
		const struct conf_tls_client *t = &c->tls_clients[i];
		conf_check_file(d, t->cert_where, "cert", t->cert, 0);
		conf_check_file(d, t->key_where, "key", t->key, 1);
		conf_check_file(d, t->ca_where, "ca", t->ca, 0);
	}
	if (c->schema->check_files)
		c->schema->check_files(c, c->daemon, d);
}
