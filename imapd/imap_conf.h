/* imap_conf: mailgate-imapd's own configuration keys (DESIGN.md §3,
 * "imapd top-level keys"), registered with the configuration loader as a
 * schema: timeout_preauth, timeout_idle, max_auth_failures, max_literal,
 * user_map, external_identity, master_user, master_password_file - with
 * their defaults, ranges, rules and the files they name. */
#ifndef MG_IMAP_CONF_H
#define MG_IMAP_CONF_H

#include "conf.h"

struct imapd_conf {
	int timeout_preauth;
	int timeout_idle;
	int max_auth_failures;
	int max_literal;
	char *user_map;
	int external_identity;		/* enum ext_identity */
	char *master_user;
	char *master_password_file;
	struct conf_where master_password_where, user_map_where;
};

extern const struct conf_schema imapd_schema;

static inline const struct imapd_conf *imapd_conf(const struct conf *c)
{
	return c->daemon;
}

#endif
