/* fuzz_imap_resp: upstream IMAP responses - response boundaries with
 * literals, status/code/text parsing, capability search. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t pos = 0;
	while (pos < size) {
		long n = imap_resp_length(p + pos, size - pos);
		if (n <= 0)
			break;
		if ((size_t)n > size - pos)
			abort();
		struct imap_resp r;
		const char *lf = memchr(p + pos, '\n', (size_t)n);
		size_t ll = lf ? (size_t)(lf - (p + pos)) : (size_t)n;
		if (imap_resp_parse(p + pos, ll, &r) == 0) {
			if (r.code && r.code + r.code_len > p + pos + ll)
				abort();
			imap_caps_has(r.code ? r.code : "", r.code ? r.code_len : 0, "AUTH=PLAIN");
			imap_caps_has(r.rest ? r.rest : "", r.rest ? r.rest_len : 0, "STARTTLS");
		}
		pos += (size_t)n;
	}
	return 0;
}
