/* fuzz_smtp_data: the end-of-data scanner. The first byte picks chunk
 * sizes (1 to 17, or 64 to 8,000 when its top bit is set, so that the
 * fast paths run over long stretches); the invariants checked are the
 * smuggling defence: clean bytes never exceed consumed ones, never hold a
 * bare CR/LF, and the final dot is only reached through CRLF "." CRLF.
 * And every chunk's result and the state after it must equal those of
 * the plain byte-by-byte model in smtp_data_ref.c. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"
#include "smtp_data_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t step = data[0] & 0x80 ? (size_t)(data[0] & 0x7f) * 62 + 64 : (size_t)data[0] % 17 + 1;
	uint64_t max = data[1] & 1 ? (uint64_t)data[1] * 4 : 0;
	const char *p = (const char *)data + 2;
	size_t len = size - 2, pos = 0;
	struct smtp_data_scan s, ref;
	smtp_data_init(&s, max);
	smtp_data_init(&ref, max);
	char *fwd = malloc(len + 1);
	size_t fl = 0;
	while (pos < len && !s.done) {
		size_t n = len - pos < step ? len - pos : step;
		struct smtp_data_result r = smtp_data_feed(&s, p + pos, n);
		struct smtp_data_result rr = smtp_data_ref_feed(&ref, p + pos, n);
		if (r.clean > r.consumed || r.consumed > n)
			abort();
		if (r.consumed != rr.consumed || r.clean != rr.clean || s.st != ref.st || s.size != ref.size ||
		    s.bare != ref.bare || s.oversize != ref.oversize || s.done != ref.done)
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
