/* smtp_server: the smtpd worker's shared state - the common server state
 * (TLS objects, limits, sessions; common/server.h) plus what each upstream
 * address advertised at its last EHLO (start-up probe, then every
 * connection), from which the EHLO reply to clients is built. */
#ifndef MG_SMTP_SERVER_H
#define MG_SMTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "server.h"
#include "smtp_reply.h"

struct up_addr_state {
	bool seen;
	unsigned flags;
	uint64_t size;
};

struct smtp_up_state {
	const struct conf_upstream *cu;
	struct up_addr_state *addr;
	bool ehlo_seen;		/* some address answered EHLO */
	bool auth_seen;		/* ... and listed AUTH */
	char auth[160];
};

struct smtp_server {
	struct server base;
	struct smtp_up_state *ups;		/* parallel to conf->upstreams */
};

/* Builds TLS objects; errors go to d. Returns NULL on error. */
struct smtp_server *smtp_server_new(const struct conf *c, struct diag *d);
void smtp_server_free(struct smtp_server **srv);

void smtp_server_note_ehlo(struct smtp_server *srv, const struct conf_upstream *u, int index,
			   const struct smtp_ehlo_ext *e);
/* 8BITMIME / SMTPUTF8 / DSN flags every address of u advertised. */
unsigned smtp_server_passthrough(const struct smtp_server *srv, const struct conf_upstream *u);
/* min(max_message_size, the smallest non-zero SIZE of u's addresses). */
uint64_t smtp_server_size(const struct smtp_server *srv, const struct conf_upstream *u);
/* auth_mechanisms ∩ the upstream's last AUTH list (auth_mechanisms until
 * an EHLO was seen). */
bool smtp_server_auth_offered(const struct smtp_server *srv, const struct conf_upstream *u,
			      const char *mech);

#endif
