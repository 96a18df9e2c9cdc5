/* fuzz_smtp_data: the end-of-data scanner. The first byte picks chunk
 * sizes; the invariants checked are the smuggling defence: clean bytes
 * never exceed consumed ones, never hold a bare CR/LF, and the final dot
 * is only reached through CRLF "." CRLF. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t step = (size_t)data[0] % 17 + 1;
	uint64_t max = data[1] & 1 ? (uint64_t)data[1] * 4 : 0;
	const char *p = (const char *)data + 2;
	size_t len = size - 2, pos = 0;
	struct smtp_data_scan s;
	smtp_data_init(&s, max);
	char *fwd = malloc(len + 1);
	size_t fl = 0;
	while (pos < len && !s.done) {
		size_t n = len - pos < step ? len - pos : step;
		struct smtp_data_result r = smtp_data_feed(&s, p + pos, n);
		if (r.clean > r.consumed || r.consumed > n)
			abort();
		memcpy(fwd + fl, p + pos, r.clean);
		fl += r.clean;
		pos += r.consumed;
	}
	for (size_t i = 0; i < fl; i++) {
		if (fwd[i] == '\n' && (i == 0 || fwd[i - 1] != '\r'))
			abort();
		if (fwd[i] == '\r' && i + 1 < fl && fwd[i + 1] != '\n')
			abort();
	}
	if (s.done && !s.bare && !s.oversize) {
		/* Everything up to the end was forwarded and ends with CRLF.CRLF
		 * (or is just ".CRLF"). */
		if (fl != pos || fl < 3 || memcmp(fwd + fl - 3, ".\r\n", 3) != 0)
			abort();
		if (fl > 3 && memcmp(fwd + fl - 5, "\r\n.\r\n", 5) != 0)
			abort();
	}
	free(fwd);
	return 0;
}
