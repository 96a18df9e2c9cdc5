/* smtp_policy: see smtp_policy.h. */
#include "smtp_policy.h"
#include "domain.h"

#include <string.h>

bool smtp_domain_accepted(const struct strlist *accept, const char *domain, size_t len)
{
	char norm[DOMAIN_BUFSZ];
	if (len == 0 || domain[0] == '[')
		return false;
	if (domain_normalize(domain, len, norm, sizeof(norm)) < 0)
		return false;
	size_t nl = strlen(norm);
	for (size_t i = 0; i < accept->n; i++) {
		const char *a = accept->v[i];
		size_t al = strlen(a);
		if (a[0] == '.') {
			/* ".example.org": strictly below example.org */
			if (nl > al && strcmp(norm + nl - al, a) == 0)
				return true;
		} else if (strcmp(norm, a) == 0) {
			return true;
		}
	}
	return false;
}

bool smtp_local_part_routes(const char *local, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (local[i] == '%' || local[i] == '!' || local[i] == '@')
			return true;
	return false;
}

enum rcpt_policy smtp_rcpt_policy(const struct strlist *accept, const struct smtp_path *p)
{
	if (p->postmaster)
		return RCPT_LOCAL;
	if (smtp_local_part_routes(p->local, p->locallen))
		return RCPT_ROUTED;
	if (p->domain && smtp_domain_accepted(accept, p->domain, p->domainlen))
		return RCPT_LOCAL;
	return RCPT_RELAY;
}
