/* smtp_daemon: mailgate-smtpd as a plug-in of the shared daemon
 * (common/daemon.c): its server state, its start-up (reverse DNS, the
 * upstream probe) and its session hooks. main.c only hands this over. */
#include "smtp_daemon.h"
#include "smtp_conf.h"
#include "log.h"
#include "rdns.h"
#include "smtp_probe.h"
#include "smtp_protocol.h"
#include "smtp_server.h"

static struct server *srv_new(const struct conf *c, struct diag *d)
{
	struct smtp_server *srv = smtp_server_new(c, d);
	return srv ? &srv->base : NULL;
}

static void srv_free(struct server *base)
{
	struct smtp_server *srv = (struct smtp_server *)base;
	rdns_shutdown();
	smtp_server_free(&srv);
}

static void srv_start(struct server *base)
{
	if (smtpd_conf(base->conf)->reverse_dns && rdns_init() < 0)
		log_error("reverse_dns: c-ares initialisation failed; names will be [TEMPUNAVAIL]");
	smtp_probe_start((struct smtp_server *)base);
}

const struct daemon_ops smtpd_ops = {
	.name = "mailgate-smtpd",
	.schema = &smtpd_schema,
	.session = &smtp_session_ops,
	.server_new = srv_new,
	.server_free = srv_free,
	.server_start = srv_start,
};
