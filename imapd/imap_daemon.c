/* imap_daemon: see imap_daemon.h - IMAP's struct daemon_ops: server
 * state (user_map, master password) and accept. */
#include "imap_daemon.h"
#include "imap_server.h"
#include "imap_session.h"

static void *srv_new(const struct conf *c, struct diag *d)
{
	return imap_server_new(c, d);
}

static void srv_free(void *s)
{
	struct imap_server *srv = s;
	imap_server_free(&srv);
}

static void srv_start(void *s)
{
}

static void srv_accept(void *s, const struct conf_listener *l, int fd, const struct mg_addr *peer,
		       const struct mg_addr *local)
{
	imap_session_start(s, l, fd, peer, local);
}

static struct server *srv_base(void *s)
{
	return &((struct imap_server *)s)->base;
}

const struct daemon_ops imapd_ops = {
	.name = "mailgate-imapd",
	.kind = DAEMON_IMAPD,
	.server_new = srv_new,
	.server_free = srv_free,
	.server_start = srv_start,
	.accept = srv_accept,
	.base = srv_base,
};
