/* fuzz_smtp_reply: upstream replies and EHLO keyword parsing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply r;
	struct smtp_ehlo_ext e;
	const char *p = (const char *)data;
	size_t pos = 0;
	while (pos < size) {
		int rc = smtp_reply_parse(p + pos, size - pos, &r);
		if (rc <= 0)
			break;
		if (r.total == 0 || r.total > size - pos || r.nlines == 0)
			abort();
		smtp_ehlo_parse(&r, &e);
		smtp_ehlo_has_auth(&e, "PLAIN");
		pos += r.total;
	}
	return 0;
}
