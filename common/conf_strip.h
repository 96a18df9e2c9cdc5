/* conf_strip: blanks the comments out of configuration text before
 * libconfuse sees it. libconfuse 3.3's lexer counts every '#' / '//'
 * comment line twice and every block comment one line too many (so each
 * FILE:LINE after a comment is wrong), and its parser refuses a comment
 * inside a list (upstream issue #150). Handing it text without comments
 * avoids both: comment bytes become spaces, every newline stays where it
 * was, and nothing else changes, so the tokens are libconfuse's own and
 * the line numbers are the file's.
 *
 * Where a comment starts is decided exactly as libconfuse's lexer decides
 * it (longest match, flex style):
 *   - '#' outside a quoted string always starts a comment to the end of
 *     the line; so do '//' and '/' '*' (to the first '*' '/') at the start
 *     of a token - inside an unquoted word ("a//b", "a/b*c") they are part
 *     of the word or end it, never a comment;
 *   - "..." strings take backslash escapes (a backslash takes the next
 *     byte, newline included) and ${VAR} substitutions, which run to the
 *     next '}' even across quotes and lines; '...' strings take backslash
 *     escapes only; ${VAR} outside strings also runs to the next '}'.
 * Nothing inside a string or a ${...} is ever blanked. An unterminated
 * string is left as it is, an unterminated block comment is blanked to
 * the end, and the first line of each is reported: libconfuse would
 * silently drop the rest of the file in both cases (but for '...'). */
#ifndef MG_CONF_STRIP_H
#define MG_CONF_STRIP_H

#include <stddef.h>

struct conf_strip_result {
	int open_comment_line;	/* line of an unterminated block comment, 0 = none */
	int open_string_line;	/* line of an unterminated quoted string, 0 = none */
};

/* Writes len bytes to out: in with every comment blanked (newlines kept).
 * out may be in. NUL bytes are ordinary bytes here. */
void conf_strip_comments(const char *in, size_t len, char *out, struct conf_strip_result *res);

#endif
