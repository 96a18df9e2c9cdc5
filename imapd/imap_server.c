/* imap_server: see imap_server.h. user_map lines are "user upstream-name";
 * blank lines and lines starting with '#' are ignored; an unknown upstream
 * name is a FILE:LINE error. */
#include "imap_server.h"
#include "imap_conf.h"
#include "xmem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void load_user_map(struct imap_server *srv, const struct conf *c, struct diag *d)
{
	FILE *f = fopen(imapd_conf(c)->user_map, "r");
	char line[1024];
	int lineno = 0;
	if (!f) {
		diag_error(d, imapd_conf(c)->user_map_where.file, imapd_conf(c)->user_map_where.line, "user_map: cannot read '%s': %s",
			   imapd_conf(c)->user_map, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char user[512], up[512], extra[2];
		lineno++;
		if (line[0] == '#' || strspn(line, " \t\r\n") == strlen(line))
			continue;
		int n = sscanf(line, "%511s %511s %1s", user, up, extra);
		if (n != 2) {
			diag_error(d, imapd_conf(c)->user_map, lineno, "expected \"user upstream-name\"");
			continue;
		}
		const struct conf_upstream *u = conf_find_upstream(c, up);
		if (!u) {
			diag_error(d, imapd_conf(c)->user_map, lineno, "no upstream section \"%s\"", up);
			continue;
		}
		srv->routes = xreallocarray(srv->routes, srv->nroutes + 1, sizeof(*srv->routes));
		srv->routes[srv->nroutes].user = xstrdup(user);
		srv->routes[srv->nroutes].up = u;
		srv->nroutes++;
	}
	fclose(f);
}

static void load_master_password(struct imap_server *srv, const struct conf *c, struct diag *d)
{
	FILE *f = fopen(imapd_conf(c)->master_password_file, "r");
	char line[1024], iobuf[BUFSIZ];	/* stdio would free its buffer unwiped */
	if (!f) {
		diag_error(d, imapd_conf(c)->master_password_where.file, imapd_conf(c)->master_password_where.line,
			   "master_password_file: cannot read '%s': %s", imapd_conf(c)->master_password_file,
			   strerror(errno));
		return;
	}
	setvbuf(f, iobuf, _IOFBF, sizeof(iobuf));
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	explicit_bzero(iobuf, sizeof(iobuf));
	size_t n = strlen(line);
	if (n && line[n - 1] == '\n')	/* one CR/LF stripped */
		line[--n] = '\0';
	if (n && line[n - 1] == '\r')
		line[--n] = '\0';
	if (!n)
		diag_error(d, imapd_conf(c)->master_password_where.file, imapd_conf(c)->master_password_where.line,
			   "master_password_file: '%s' is empty", imapd_conf(c)->master_password_file);
	srv->master_password = xstrdup(line);
	explicit_bzero(line, sizeof(line));
}

struct imap_server *imap_server_new(const struct conf *c, struct diag *d)
{
	int errors = d->errors;
	struct imap_server *srv = xcalloc(1, sizeof(*srv));
	if (server_init(&srv->base, c, d) < 0) {
		free(srv);
		return NULL;
	}
	if (imapd_conf(c)->user_map[0])
		load_user_map(srv, c, d);
	if (imapd_conf(c)->master_user[0])
		load_master_password(srv, c, d);
	if (d->errors > errors) {
		imap_server_free(&srv);
		return NULL;
	}
	return srv;
}

void imap_server_free(struct imap_server **sp)
{
	struct imap_server *srv = *sp;
	if (!srv)
		return;
	for (size_t i = 0; i < srv->nroutes; i++)
		free(srv->routes[i].user);
	free(srv->routes);
	if (srv->master_password) {
		explicit_bzero(srv->master_password, strlen(srv->master_password));
		free(srv->master_password);
	}
	server_fini(&srv->base);
	free(srv);
	*sp = NULL;
}

const struct conf_upstream *imap_server_route(const struct imap_server *srv, const char *user,
					      const struct conf_listener *l)
{
	for (size_t i = 0; i < srv->nroutes; i++)
		if (strcmp(srv->routes[i].user, user) == 0)
			return srv->routes[i].up;
	return l->upstream;
}
