/* imap_conf: see imap_conf.h. */
#include "imap_conf.h"

#include <stddef.h>

#define KEY(n, t, d, lo, hi, f) { n, t, d, lo, hi, NULL, offsetof(struct imapd_conf, f), CK_NO_WHERE }

static const char *const ext_words[] = { "email", "dns", "cn", NULL };

static const struct conf_key keys[] = {
	KEY("timeout_preauth", CK_INT, "60", 1, 86400, timeout_preauth),
	KEY("timeout_idle", CK_INT, "1860", 1, 864000, timeout_idle),
	KEY("max_auth_failures", CK_INT, "3", 1, 100, max_auth_failures),
	KEY("max_literal", CK_INT, "8192", 256, 1048576, max_literal),
	{ "user_map", CK_PATH, "", 0, 0, NULL, offsetof(struct imapd_conf, user_map),
	  offsetof(struct imapd_conf, user_map_where) },
	{ "external_identity", CK_KEYWORD, "email", 0, 0, ext_words,
	  offsetof(struct imapd_conf, external_identity), CK_NO_WHERE },
	KEY("master_user", CK_STR, "", 0, 0, master_user),
	{ "master_password_file", CK_PATH, "", 0, 0, NULL,
	  offsetof(struct imapd_conf, master_password_file),
	  offsetof(struct imapd_conf, master_password_where) },
	{ NULL, CK_INT, NULL, 0, 0, NULL, 0, 0 },
};

static void check(struct conf *c, void *daemon)
{
	const struct imapd_conf *i = daemon;
	if (i->timeout_idle < 1800)
		conf_key_warn("timeout_idle", "timeout_idle = %d: RFC 9051 section 5.4 asks for at "
			      "least 30 minutes (1800)", i->timeout_idle);
	if (i->master_user[0] && !i->master_password_file[0])
		conf_key_error("master_user", "master_user needs master_password_file");
}

static void check_files(const struct conf *c, const void *daemon, struct diag *d)
{
	const struct imapd_conf *i = daemon;
	conf_check_file(d, i->master_password_where, "master_password_file", i->master_password_file, 1);
	conf_check_file(d, i->user_map_where, "user_map", i->user_map, 0);
}

const struct conf_schema imapd_schema = {
	.name = "imapd",
	.alpn_id = "imap",
	.size = sizeof(struct imapd_conf),
	.keys = keys,
	.check = check,
	.check_files = check_files,
};
