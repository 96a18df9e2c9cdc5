/* fuzz_conf_strip: the configuration comment stripper (conf_strip.h) on
 * arbitrary bytes. Besides memory safety it checks what the output must
 * be whatever the input: the same length, every newline where it was,
 * every other byte kept or blanked to a space, the same bytes whether
 * written in place or not, and nothing left to strip (a second pass
 * changes nothing, finds no open comment and the same open string). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf_strip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	char *out = malloc(size + 1), *inplace = malloc(size + 1), *again = malloc(size + 1);
	struct conf_strip_result r, r2;

	conf_strip_comments(in, size, out, &r);
	memcpy(inplace, in, size);
	conf_strip_comments(inplace, size, inplace, &r2);
	if (memcmp(out, inplace, size) != 0 || r.open_comment_line != r2.open_comment_line ||
	    r.open_string_line != r2.open_string_line)
		abort();
	int lines = 1;
	for (size_t i = 0; i < size; i++) {
		if ((in[i] == '\n') != (out[i] == '\n'))
			abort();
		if (out[i] != in[i] && out[i] != ' ')
			abort();
		lines += in[i] == '\n';
	}
	if (r.open_comment_line < 0 || r.open_comment_line > lines || r.open_string_line < 0 ||
	    r.open_string_line > lines || (r.open_comment_line && r.open_string_line))
		abort();
	conf_strip_comments(out, size, again, &r2);
	if (memcmp(again, out, size) != 0 || r2.open_comment_line != 0 ||
	    r2.open_string_line != r.open_string_line)
		abort();
	free(out);
	free(inplace);
	free(again);
	return 0;
}
