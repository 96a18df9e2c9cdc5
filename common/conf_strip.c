/* conf_strip: see conf_strip.h. A single pass over the bytes that follows
 * libconfuse 3.3's lexer (src/lexer.l) in its INITIAL, "..." and '...'
 * states and blanks what it would have returned as comments. */
#include "conf_strip.h"

#include <stdbool.h>
#include <string.h>

struct strip {
	const char *in;
	char *out;
	size_t len;
	size_t i;
	int line;
	size_t close_end;	/* just past the text's last '}' (0: none) */
};

/* Bytes that end an unquoted word (and, but for '/', cannot start one). */
static bool word_end(char c)
{
	return strchr(" #\"'\t\n\r={}()+,*", c) != NULL && c != '\0';
}

static void copy(struct strip *s, size_t n)
{
	for (size_t k = 0; k < n && s->i < s->len; k++, s->i++) {
		char c = s->in[s->i];
		if (c == '\n')
			s->line++;
		s->out[s->i] = c;
	}
}

/* '#' or '//' to the end of the line; the newline itself stays. */
static void blank_line_comment(struct strip *s)
{
	while (s->i < s->len && s->in[s->i] != '\n')
		s->out[s->i++] = ' ';
}

/* From '/' '*' to the first '*' '/' after it; returns false if none. */
static bool blank_block_comment(struct strip *s)
{
	s->out[s->i++] = ' ';
	s->out[s->i++] = ' ';
	while (s->i < s->len) {
		char c = s->in[s->i];
		if (c == '*' && s->i + 1 < s->len && s->in[s->i + 1] == '/') {
			s->out[s->i++] = ' ';
			s->out[s->i++] = ' ';
			return true;
		}
		if (c == '\n')
			s->line++;
		s->out[s->i++] = c == '\n' ? '\n' : ' ';
	}
	return false;
}

/* At '$': a ${...} substitution runs to the next '}' (libconfuse's
 * $\{[^}]*\} beats every shorter match). Copies it and returns true, or
 * returns false when there is no '{' next or no '}' anywhere after it. */
static bool copy_substitution(struct strip *s)
{
	/* close_end keeps a text of many "${" and no '}' linear. */
	if (s->i + 1 >= s->len || s->in[s->i + 1] != '{' || s->i + 2 >= s->close_end)
		return false;
	const char *close = memchr(s->in + s->i + 2, '}', s->close_end - s->i - 2);
	copy(s, (size_t)(close - (s->in + s->i)) + 1);
	return true;
}

/* At an opening quote: copies the string through its closing quote, or
 * to the end of the text if it has none (returns false then). */
static bool copy_string(struct strip *s, char quote)
{
	copy(s, 1);
	while (s->i < s->len) {
		char c = s->in[s->i];
		if (c == quote) {
			copy(s, 1);
			return true;
		}
		if (c == '\\') {
			copy(s, 2);	/* the escaped byte, whatever it is */
			continue;
		}
		if (c == '$' && quote == '"' && copy_substitution(s))
			continue;
		copy(s, 1);
	}
	return false;
}

void conf_strip_comments(const char *in, size_t len, char *out, struct conf_strip_result *res)
{
	struct strip s = { in, out, len, 0, 1, len };
	while (s.close_end > 0 && in[s.close_end - 1] != '}')
		s.close_end--;
	res->open_comment_line = 0;
	res->open_string_line = 0;
	while (s.i < len) {
		char c = in[s.i];
		char next = s.i + 1 < len ? in[s.i + 1] : '\0';
		if (c == '#' || (c == '/' && next == '/')) {
			blank_line_comment(&s);
		} else if (c == '/' && next == '*') {
			int start = s.line;
			if (!blank_block_comment(&s) && !res->open_comment_line)
				res->open_comment_line = start;
		} else if (c == '"' || c == '\'') {
			int start = s.line;
			if (!copy_string(&s, c))
				res->open_string_line = start;	/* it runs to the end */
		} else if (c == '$' && copy_substitution(&s)) {
			continue;
		} else if (!word_end(c)) {
			/* An unquoted word, to the next word end: a '/' in it -
			 * even '//' or '/' '*' - is part of it, never a comment. */
			do
				copy(&s, 1);
			while (s.i < len && !word_end(in[s.i]));
		} else {
			copy(&s, 1);
		}
	}
}
