/* smtp_data: the DATA end-of-data scanner (pure, resumable byte by byte).
 * The only end of data is CRLF "." CRLF (RFC 5321 §4.1.1.4); bare CR and
 * bare LF are errors (they are how SMTP smuggling works), so the scanner
 * also says how many leading bytes of each chunk are clean: the caller
 * forwards exactly those, so no upstream ever sees a bare CR/LF followed
 * by more data. The size is counted after dot-unstuffing (CRLF counts 2,
 * the final ".CRLF" does not). Fuzzed by tests/fuzz/fuzz_smtp_data.c. */
#ifndef MG_SMTP_DATA_H
#define MG_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_data_state { SD_BOL, SD_MID, SD_CR, SD_DOT, SD_DOTCR };

struct smtp_data_scan {
	enum smtp_data_state st;
	uint64_t size;
	uint64_t max;		/* size limit; 0 = none */
	bool bare;		/* a bare CR or LF was seen */
	bool oversize;		/* size went over max */
	bool done;		/* final dot seen */
};

struct smtp_data_result {
	size_t consumed;	/* bytes of this chunk that belong to the message
				 * (including the final ".CRLF" when done) */
	size_t clean;		/* leading bytes safe to forward (<= consumed);
				 * 0 once an error has been latched */
};

void smtp_data_init(struct smtp_data_scan *s, uint64_t max);
struct smtp_data_result smtp_data_feed(struct smtp_data_scan *s, const char *p, size_t len);

#endif
