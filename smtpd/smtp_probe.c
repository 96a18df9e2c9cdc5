/* smtp_probe: see smtp_probe.h. Each probe owns its upstream; the
 * upstream reports once (ready after QUIT was queued, or failed) and the
 * probe ends there. */
#include "smtp_probe.h"
#include "conf.h"
#include "smtp_server.h"
#include "smtp_upstream.h"
#include "xmem.h"

#include <stdlib.h>

struct probe {
	struct smtp_upstream *up;
};

static void probe_done(void *owner, enum up_event ev, const struct smtp_reply *r, int detail,
		       const char *why)
{
	struct probe *p = owner;
	if (ev == UP_DRAINED)
		return;
	smtp_up_free(&p->up);	/* after READY the QUIT lives on by itself */
	free(p);
}

void smtp_probe_start(struct smtp_server *srv)
{
	const struct conf *c = srv->base.conf;
	for (size_t i = 0; i < c->nupstreams; i++) {
		const struct conf_upstream *u = &c->upstreams[i];
		for (size_t j = 0; j < u->naddrs; j++) {
			struct probe *p = xcalloc(1, sizeof(*p));
			struct smtp_up_params params = {
				.srv = srv,
				.cu = u,
				.hostname = c->hostname,
				.probe = true,
				.only_index = (int)j,
				.who = "",
			};
			p->up = smtp_up_start(&params, probe_done, p);
		}
	}
}
