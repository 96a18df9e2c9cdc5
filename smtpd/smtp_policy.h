/* smtp_policy: recipient and relay decisions of DESIGN.md §4.3, pure.
 * The recipient domain is the part after the last '@' of the mailbox,
 * compared case-insensitively without one trailing dot as A-labels;
 * "example.org" matches exactly, ".example.org" its subdomains; address
 * literals never match; <Postmaster> is always accepted. */
#ifndef MG_SMTP_POLICY_H
#define MG_SMTP_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "smtp_parse.h"

enum rcpt_policy {
	RCPT_LOCAL,		/* in accept_domains (or <Postmaster>) */
	RCPT_RELAY,		/* elsewhere: needs relay permission */
	RCPT_ROUTED,		/* local part holds % ! @: needs relay permission */
};

/* 1 if domain[0..len) is covered by the accept_domains list. */
bool smtp_domain_accepted(const struct strlist *accept, const char *domain, size_t len);
/* 1 if the local part holds '%', '!' or '@' (quoted or not). */
bool smtp_local_part_routes(const char *local, size_t len);
enum rcpt_policy smtp_rcpt_policy(const struct strlist *accept, const struct smtp_path *p);

#endif
