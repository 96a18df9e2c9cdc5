/* fuzz_imap_parser: pre-auth IMAP commands, fed as the session feeds them
 * (the buffer grows; every prefix is parsed), plus SASL PLAIN decoding of
 * every string argument. Checks: consumed never exceeds the input, a
 * continuation is only asked for at the end of the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "imap_parser.h"
#include "sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct imap_cmd cmd;
	struct imap_parse_info info;
	struct sasl_plain sp;
	const char *p = (const char *)data;
	size_t pos = 0;
	while (pos < size) {
		enum imap_parse_rc rc = imap_parse(p + pos, size - pos, 256, &cmd, &info);
		if (rc == IMAP_PARSE_CONTINUE && info.literal_at != size - pos)
			abort();
		if (rc != IMAP_PARSE_OK && rc != IMAP_PARSE_BAD)
			break;
		if (info.consumed == 0 || info.consumed > size - pos)
			abort();
		for (size_t i = 0; rc == IMAP_PARSE_OK && i < cmd.nargs; i++)
			if (cmd.args[i].type != IMAP_ARG_LIST)
				sasl_plain_decode(cmd.args[i].p, cmd.args[i].len, &sp);
		pos += info.consumed;
	}
	sasl_plain_parse(data, size, &sp);
	return 0;
}
