/* loader: reading a configuration and everything it names - the file and
 * its includes, the daemon's own keys, every certificate, key, CRL and
 * ticket key - into a configuration and a server ready to serve, as -t,
 * start-up and SIGHUP all do. Problems go to a diag (FILE:LINE: ...). */
#ifndef MG_LOADER_H
#define MG_LOADER_H

#include "daemon_ops.h"
#include "diag.h"

/* Loads o->path. On success (no error in d) sets *cp and *srvp. With
 * o->test, TLS problems are reported even when other errors prevent
 * loading. Where logs go and whether the open-file limit fits are
 * checked too (warnings). */
void loader_load(const struct daemon_ops *ops, const struct daemon_options *o, struct diag *d,
		 struct conf **cp, struct server **srvp);
void loader_free(const struct daemon_ops *ops, struct conf **cp, struct server **srvp);

#endif
