/* token: see token.h. */
#include "token.h"

size_t token_next(const char *s, size_t len, size_t *pos, const char **word)
{
	size_t i = *pos;
	while (i < len && s[i] == ' ')
		i++;
	size_t start = i;
	while (i < len && s[i] != ' ')
		i++;
	*pos = i;
	*word = s + start;
	return i - start;
}
