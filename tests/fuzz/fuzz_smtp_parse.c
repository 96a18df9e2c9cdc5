/* fuzz_smtp_parse: SMTP command lines through line hygiene, the verb
 * table, MAIL/RCPT path parsing, the relay policy and HELO validation. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "conf.h"
#include "smtp_parse.h"
#include "smtp_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *doms[] = { "example.org", ".example.net" };
	struct strlist accept = { doms, 2 };
	const char *line = (const char *)data, *args;
	size_t content = size, alen;
	struct smtp_path p;

	smtp_line_check(line, size, &content);
	const struct smtp_cmd_def *d = smtp_cmd_lookup(line, size, &args, &alen);
	if (d && (d->verb == SMTP_VERB_EHLO || d->verb == SMTP_VERB_HELO))
		smtp_helo_valid(args, alen);
	if (smtp_parse_path(line, size, "FROM:", false, &p) == SMTP_PATH_OK)
		smtp_rcpt_policy(&accept, &p);
	if (smtp_parse_path(line, size, "TO:", true, &p) == SMTP_PATH_OK) {
		smtp_rcpt_policy(&accept, &p);
		for (size_t i = 0; i < p.nparams; i++) {
			unsigned long long v;
			if (p.params[i].val)
				smtp_parse_u64(p.params[i].val, p.params[i].vallen, &v);
		}
	}
	return 0;
}
