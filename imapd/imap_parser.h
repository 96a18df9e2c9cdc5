/* imap_parser: pure parser for IMAP commands before login (RFC 9051 /
 * 3501 syntax subset): tag, command name, then atoms, quoted strings (with
 * \" and \\ escapes), literals {n} and {n+} (RFC 7888) and parenthesised
 * lists (ID). Lines are limited to IMAP_LINE_MAX octets excluding literal
 * data, literals to the caller's max_literal. The caller keeps the bytes
 * of the command being received and calls imap_parse() again whenever more
 * arrive; the parser says when a "+" continuation is due (once per
 * synchronising literal) and never asks for one for a literal it refuses.
 * Fuzzed by tests/fuzz/fuzz_imap_parser.c. */
#ifndef MG_IMAP_PARSER_H
#define MG_IMAP_PARSER_H

#include <stddef.h>

#define IMAP_LINE_MAX 8192
#define IMAP_TAG_MAX 64
#define IMAP_NAME_MAX 32
#define IMAP_MAX_ARGS 8
#define IMAP_MAX_LITERALS 8
#define IMAP_LIST_DEPTH 4

enum imap_arg_type { IMAP_ARG_ATOM, IMAP_ARG_STRING, IMAP_ARG_LIST };

struct imap_arg {
	enum imap_arg_type type;
	const char *p;		/* ATOM/STRING: the value (quoted: unescaped copy);
				 * LIST: the raw text from '(' */
	size_t len;
	int literal;		/* STRING came from a literal (may hold any byte) */
};

struct imap_cmd {
	char tag[IMAP_TAG_MAX + 1];	/* "" when the tag was invalid (never echoed) */
	char name[IMAP_NAME_MAX + 1];	/* upper case */
	size_t nargs;
	struct imap_arg args[IMAP_MAX_ARGS];
	char arena[IMAP_LINE_MAX];	/* unescaped quoted strings */
	size_t arena_used;
};

enum imap_parse_rc {
	IMAP_PARSE_OK,		/* a whole command; info->consumed bytes */
	IMAP_PARSE_MORE,	/* need more bytes */
	IMAP_PARSE_CONTINUE,	/* need more bytes, and a synchronising literal
				 * whose data starts at info->literal_at was just
				 * announced: send "+" once for it */
	IMAP_PARSE_BAD,		/* syntax error; info->consumed = through the LF */
	IMAP_PARSE_TOO_LONG,	/* line over IMAP_LINE_MAX: "* BAD Line too long" */
	IMAP_PARSE_LITERAL_TOO_BIG,	/* over max_literal: BAD and close */
};

struct imap_parse_info {
	size_t consumed;
	size_t literal_at;	/* CONTINUE: offset of the literal's data */
	size_t literal_len;	/* CONTINUE / LITERAL_TOO_BIG: announced size */
	int sync;		/* the literal is synchronising ({n}) */
};

enum imap_parse_rc imap_parse(const char *buf, size_t len, size_t max_literal, struct imap_cmd *cmd,
			      struct imap_parse_info *info);

#endif
