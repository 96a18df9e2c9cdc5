/* imap_parser: see imap_parser.h. Each call re-parses the command from its
 * first byte (a command is at most IMAP_LINE_MAX octets of line plus
 * bounded literals), which keeps the parser a pure function of its input:
 * feeding a command whole, split anywhere, or byte by byte gives the same
 * results. */
#include "imap_parser.h"

#include <stdlib.h>
#include <string.h>

struct p {
	const char *b;
	size_t len, pos;
	size_t line;		/* line octets so far (literal data excluded) */
	size_t nlit;
	size_t max_literal;
	struct imap_cmd *cmd;
	struct imap_parse_info *info;
};

/* ATOM-CHAR: any CHAR except atom-specials: ( ) { SP CTL % * " \ ] */
static int atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return !strchr("(){%*\"\\]", c);
}

/* ASTRING-CHAR minus '+' for tags */
static int tag_char(unsigned char c)
{
	return (atom_char(c) || c == ']') && c != '+';
}

static enum imap_parse_rc need_more(struct p *p)
{
	return p->line > IMAP_LINE_MAX ? IMAP_PARSE_TOO_LONG : IMAP_PARSE_MORE;
}

/* Syntax error: report it once the rest of the line is here. */
static enum imap_parse_rc bad(struct p *p)
{
	const char *lf = memchr(p->b + p->pos, '\n', p->len - p->pos);
	if (!lf)
		return p->line + (p->len - p->pos) > IMAP_LINE_MAX ? IMAP_PARSE_TOO_LONG : IMAP_PARSE_MORE;
	p->info->consumed = (size_t)(lf - p->b) + 1;
	return IMAP_PARSE_BAD;
}

static void advance(struct p *p, size_t n)
{
	p->pos += n;
	p->line += n;
}

/* Returns OK with the arg filled, or another code. */
static enum imap_parse_rc parse_quoted(struct p *p, struct imap_arg *a)
{
	struct imap_cmd *cmd = p->cmd;
	size_t start = cmd->arena_used;
	advance(p, 1);	/* opening quote */
	for (;;) {
		if (p->pos >= p->len)
			return need_more(p);
		unsigned char c = (unsigned char)p->b[p->pos];
		if (c == '"') {
			advance(p, 1);
			break;
		}
		if (c == '\r' || c == '\n' || c == '\0')
			return bad(p);
		if (c == '\\') {
			if (p->pos + 1 >= p->len)
				return need_more(p);
			c = (unsigned char)p->b[p->pos + 1];
			if (c != '"' && c != '\\')
				return bad(p);
			advance(p, 1);
		}
		if (cmd->arena_used >= sizeof(cmd->arena))
			return IMAP_PARSE_TOO_LONG;
		cmd->arena[cmd->arena_used++] = (char)c;
		advance(p, 1);
	}
	a->type = IMAP_ARG_STRING;
	a->p = cmd->arena + start;
	a->len = cmd->arena_used - start;
	a->literal = 0;
	return IMAP_PARSE_OK;
}

static enum imap_parse_rc parse_literal(struct p *p, struct imap_arg *a)
{
	size_t n = 0, digits = 0;
	int sync = 1;
	advance(p, 1);	/* '{' */
	while (p->pos < p->len && p->b[p->pos] >= '0' && p->b[p->pos] <= '9') {
		size_t d = (size_t)(p->b[p->pos] - '0');
		if (n > (((size_t)-1) - d) / 10 || ++digits > 10)
			return bad(p);
		n = n * 10 + d;
		advance(p, 1);
		if (n > p->max_literal) {
			/* Refused before any "+": the command and the connection end. */
			p->info->literal_len = n;
			p->info->sync = 1;
			return IMAP_PARSE_LITERAL_TOO_BIG;
		}
	}
	if (p->pos >= p->len)
		return need_more(p);
	if (!digits)
		return bad(p);
	if (p->b[p->pos] == '+') {
		sync = 0;
		advance(p, 1);
		if (p->pos >= p->len)
			return need_more(p);
	}
	if (p->b[p->pos] != '}')
		return bad(p);
	advance(p, 1);
	if (p->pos + 2 > p->len)
		return p->pos < p->len && p->b[p->pos] != '\r' ? bad(p) : need_more(p);
	if (p->b[p->pos] != '\r' || p->b[p->pos + 1] != '\n')
		return bad(p);
	advance(p, 2);
	if (++p->nlit > IMAP_MAX_LITERALS)
		return bad(p);
	/* A synchronising literal waits for "+" even when empty. */
	if (p->len - p->pos < n || (sync && n == 0 && p->len == p->pos)) {
		if (p->line > IMAP_LINE_MAX)
			return IMAP_PARSE_TOO_LONG;
		if (sync && p->len == p->pos) {
			p->info->literal_at = p->pos;
			p->info->literal_len = n;
			p->info->sync = 1;
			return IMAP_PARSE_CONTINUE;
		}
		return IMAP_PARSE_MORE;
	}
	a->type = IMAP_ARG_STRING;
	a->p = p->b + p->pos;
	a->len = n;
	a->literal = 1;
	p->pos += n;	/* literal data does not count toward the line */
	return IMAP_PARSE_OK;
}

static enum imap_parse_rc parse_arg(struct p *p, struct imap_arg *a, int depth);

static enum imap_parse_rc parse_list(struct p *p, struct imap_arg *a, int depth)
{
	size_t start = p->pos;
	struct imap_arg item;
	if (depth >= IMAP_LIST_DEPTH)
		return bad(p);
	advance(p, 1);	/* '(' */
	for (int first = 1;; first = 0) {
		if (p->pos >= p->len)
			return need_more(p);
		if (p->b[p->pos] == ')') {
			advance(p, 1);
			break;
		}
		if (!first) {
			if (p->b[p->pos] != ' ')
				return bad(p);
			advance(p, 1);
			if (p->pos >= p->len)
				return need_more(p);
		}
		enum imap_parse_rc rc = parse_arg(p, &item, depth + 1);
		if (rc != IMAP_PARSE_OK)
			return rc;
	}
	a->type = IMAP_ARG_LIST;
	a->p = p->b + start;
	a->len = p->pos - start;
	a->literal = 0;
	return IMAP_PARSE_OK;
}

static enum imap_parse_rc parse_atom(struct p *p, struct imap_arg *a)
{
	size_t start = p->pos;
	while (p->pos < p->len && (atom_char((unsigned char)p->b[p->pos]) || p->b[p->pos] == ']'))
		advance(p, 1);
	if (p->pos >= p->len)
		return need_more(p);
	if (p->pos == start)
		return bad(p);
	a->type = IMAP_ARG_ATOM;
	a->p = p->b + start;
	a->len = p->pos - start;
	a->literal = 0;
	return IMAP_PARSE_OK;
}

static enum imap_parse_rc parse_arg(struct p *p, struct imap_arg *a, int depth)
{
	switch (p->b[p->pos]) {
	case '"':
		return parse_quoted(p, a);
	case '{':
		return parse_literal(p, a);
	case '(':
		return parse_list(p, a, depth);
	default:
		return parse_atom(p, a);
	}
}

enum imap_parse_rc imap_parse(const char *buf, size_t len, size_t max_literal, struct imap_cmd *cmd,
			      struct imap_parse_info *info)
{
	struct p p = { buf, len, 0, 0, 0, max_literal, cmd, info };
	size_t n;
	memset(info, 0, sizeof(*info));
	cmd->tag[0] = cmd->name[0] = '\0';
	cmd->nargs = 0;
	cmd->arena_used = 0;

	/* tag */
	while (p.pos < len && tag_char((unsigned char)buf[p.pos]))
		advance(&p, 1);
	if (p.pos >= len)
		return need_more(&p);
	if (p.pos == 0 || p.pos > IMAP_TAG_MAX || buf[p.pos] != ' ')
		return bad(&p);	/* tag left empty: never echoed */
	memcpy(cmd->tag, buf, p.pos);
	cmd->tag[p.pos] = '\0';
	advance(&p, 1);

	/* command name */
	size_t ns = p.pos;
	while (p.pos < len && atom_char((unsigned char)buf[p.pos]))
		advance(&p, 1);
	if (p.pos >= len)
		return need_more(&p);
	n = p.pos - ns;
	if (n == 0 || n > IMAP_NAME_MAX)
		return bad(&p);
	for (size_t i = 0; i < n; i++) {
		char c = buf[ns + i];
		cmd->name[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
	}
	cmd->name[n] = '\0';

	/* arguments */
	for (;;) {
		if (p.pos >= len)
			return need_more(&p);
		if (buf[p.pos] == '\r') {
			if (p.pos + 1 >= len)
				return need_more(&p);
			if (buf[p.pos + 1] != '\n')
				return bad(&p);
			info->consumed = p.pos + 2;
			return p.line > IMAP_LINE_MAX ? IMAP_PARSE_TOO_LONG : IMAP_PARSE_OK;
		}
		if (buf[p.pos] != ' ')
			return bad(&p);
		advance(&p, 1);
		if (p.pos >= len)
			return need_more(&p);
		if (cmd->nargs == IMAP_MAX_ARGS)
			return bad(&p);
		enum imap_parse_rc rc = parse_arg(&p, &cmd->args[cmd->nargs], 0);
		if (rc != IMAP_PARSE_OK)
			return rc;
		cmd->nargs++;
	}
}
