/* imap_daemon: mailgate-imapd as a plug-in of the shared daemon
 * (common/daemon.c): its server state (user_map, the master password)
 * and its session hooks. main.c only hands this over. */
#include "imap_daemon.h"
#include "imap_conf.h"
#include "imap_protocol.h"
#include "imap_server.h"

static struct server *srv_new(const struct conf *c, struct diag *d)
{
	struct imap_server *srv = imap_server_new(c, d);
	return srv ? &srv->base : NULL;
}

static void srv_free(struct server *base)
{
	struct imap_server *srv = (struct imap_server *)base;
	imap_server_free(&srv);
}

const struct daemon_ops imapd_ops = {
	.name = "mailgate-imapd",
	.schema = &imapd_schema,
	.session = &imap_session_ops,
	.server_new = srv_new,
	.server_free = srv_free,
};
