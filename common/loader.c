/* loader: see loader.h. */
#include "loader.h"
#include "fdlimit.h"
#include "logsetup.h"
#include "tls.h"

void loader_load(const struct daemon_ops *ops, const struct daemon_options *o, struct diag *d,
		 struct conf **cp, struct server **srvp)
{
	const char *path = o->path;
	*cp = NULL;
	*srvp = NULL;
	struct conf *c = conf_load(path, ops->schema, d);
	struct server *srv = NULL;
	if (c) {
		conf_check_files(c, d);
		logsetup_check(c, o->foreground, d);
		fdlimit_check(c, d);
		if (d->errors == 0)
			srv = ops->server_new(c, d);	/* loads TLS credentials */
		else if (o->test)
			tls_check_conf(c, d);		/* report those problems too */
	}
	if (d->errors || !srv) {
		if (srv)
			ops->server_free(srv);
		conf_free(&c);
		if (!d->errors)
			diag_error(d, path, 0, "cannot load the configuration");
		return;
	}
	*cp = c;
	*srvp = srv;
}

void loader_free(const struct daemon_ops *ops, struct conf **cp, struct server **srvp)
{
	if (*srvp)
		ops->server_free(*srvp);
	*srvp = NULL;
	conf_free(cp);
}
