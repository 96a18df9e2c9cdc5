/* fuzz_imap_resp: upstream IMAP responses - response boundaries with
 * literals, the lines within one, status/code/text parsing, capability
 * search. */
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
		/* Its lines cover it exactly, each step moving on. */
		size_t at = 0, text, lit;
		while (at < (size_t)n) {
			size_t next = imap_resp_line(p + pos, (size_t)n, at, &text, &lit);
			if (next <= at || next > (size_t)n || text + lit > next - at ||
			    memchr(p + pos + at, '\n', text))
				abort();
			at = next;
		}
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
