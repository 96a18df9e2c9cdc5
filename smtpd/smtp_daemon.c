/* smtp_daemon: see smtp_daemon.h - SMTP's struct daemon_ops: server
 * state, start-up (reverse DNS, the upstream probe) and accept. */
#include "smtp_daemon.h"
#include "log.h"
#include "rdns.h"
#include "smtp_server.h"
#include "smtp_session.h"

static void *srv_new(const struct conf *c, struct diag *d)
{
	return smtp_server_new(c, d);
}

static void srv_free(void *s)
{
	struct smtp_server *srv = s;
	rdns_shutdown();
	smtp_server_free(&srv);
}

static void srv_start(void *s)
{
	struct smtp_server *srv = s;
	if (srv->base.conf->reverse_dns && rdns_init() < 0)
		log_error("reverse_dns: c-ares initialisation failed; names will be [TEMPUNAVAIL]");
	smtp_server_probe(s);
}

static void srv_accept(void *s, const struct conf_listener *l, int fd, const struct mg_addr *peer,
		       const struct mg_addr *local)
{
	smtp_session_start(s, l, fd, peer, local);
}

static struct server *srv_base(void *s)
{
	return &((struct smtp_server *)s)->base;
}

const struct daemon_ops smtpd_ops = {
	.name = "mailgate-smtpd",
	.kind = DAEMON_SMTPD,
	.server_new = srv_new,
	.server_free = srv_free,
	.server_start = srv_start,
	.accept = srv_accept,
	.base = srv_base,
};
