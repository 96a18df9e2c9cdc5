/* smtp_parse: see smtp_parse.h. Address syntax follows RFC 5321 §4.1.2
 * (Dot-string / Quoted-string local parts, domains or address literals)
 * and RFC 6531 (UTF-8 when SMTPUTF8 is used); parameters follow
 * esmtp-keyword ["=" esmtp-value]. */
#include "smtp_parse.h"
#include "domain.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

static const struct smtp_cmd_def cmd_table[] = {
	{ "EHLO", SMTP_VERB_EHLO, SMTP_CMD_PRE_TLS },
	{ "HELO", SMTP_VERB_HELO, SMTP_CMD_PRE_TLS },
	{ "MAIL", SMTP_VERB_MAIL, 0 },
	{ "RCPT", SMTP_VERB_RCPT, 0 },
	{ "DATA", SMTP_VERB_DATA, 0 },
	{ "RSET", SMTP_VERB_RSET, SMTP_CMD_PRE_TLS },
	{ "NOOP", SMTP_VERB_NOOP, SMTP_CMD_PRE_TLS },
	{ "QUIT", SMTP_VERB_QUIT, SMTP_CMD_PRE_TLS },
	{ "VRFY", SMTP_VERB_VRFY, 0 },
	{ "HELP", SMTP_VERB_HELP, 0 },
	{ "STARTTLS", SMTP_VERB_STARTTLS, SMTP_CMD_PRE_TLS },
	{ "AUTH", SMTP_VERB_AUTH, 0 },
	{ "BDAT", SMTP_VERB_BDAT, 0 },
	{ "XCLIENT", SMTP_VERB_XCLIENT, 0 },
	{ "XFORWARD", SMTP_VERB_XFORWARD, 0 },
	{ "EXPN", SMTP_VERB_EXPN, 0 },
	{ "ETRN", SMTP_VERB_ETRN, 0 },
};

enum smtp_line_rc smtp_line_check(const char *line, size_t len, size_t *content)
{
	if (len == 0 || line[len - 1] != '\n')
		return SMTP_LINE_BARE_LF;
	if (len < 2 || line[len - 2] != '\r')
		return SMTP_LINE_BARE_LF;
	*content = len - 2;
	for (size_t i = 0; i < len - 2; i++) {
		if (line[i] == '\r')
			return SMTP_LINE_BARE_CR;
		if (line[i] == '\n')
			return SMTP_LINE_BARE_LF;
		if (line[i] == '\0')
			return SMTP_LINE_NUL;
	}
	return SMTP_LINE_OK;
}

const struct smtp_cmd_def *smtp_cmd_lookup(const char *line, size_t len, const char **args,
					   size_t *argslen)
{
	size_t vlen = 0;
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	*args = line + (vlen < len ? vlen + 1 : len);
	*argslen = vlen < len ? len - vlen - 1 : 0;
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++)
		if (strlen(cmd_table[i].name) == vlen && strncasecmp(cmd_table[i].name, line, vlen) == 0)
			return &cmd_table[i];
	return NULL;
}

static bool is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	if (c >= 0x80)
		return true;	/* UTF-8 (RFC 6531); flagged via has_8bit */
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

/* Dot-string: atoms separated by single dots. */
static bool dot_string_valid(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!is_atext((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

/* Quoted-string at s; returns its length including quotes, or 0. */
static size_t quoted_len(const char *s, size_t len)
{
	if (len < 2 || s[0] != '"')
		return 0;
	for (size_t i = 1; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\') {
			if (i + 1 >= len)
				return 0;
			unsigned char n = (unsigned char)s[i + 1];
			if (n < 32 || n == 127)
				return 0;
			i++;
		} else if (c == '"') {
			return i + 1;
		} else if (c < 32 || c == 127) {
			return 0;
		}
	}
	return 0;
}

static bool address_literal_valid(const char *s, size_t len)
{
	char buf[64];
	if (len < 3 || s[0] != '[' || s[len - 1] != ']' || len - 2 >= sizeof(buf))
		return false;
	memcpy(buf, s + 1, len - 2);
	buf[len - 2] = '\0';
	unsigned char tmp[16];
	if (strncasecmp(buf, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, buf + 5, tmp) == 1;
	return inet_pton(AF_INET, buf, tmp) == 1;
}

static bool mailbox_domain_valid(const char *s, size_t len)
{
	if (len && s[0] == '[')
		return address_literal_valid(s, len);
	return domain_valid(s, len);
}

/* Parses the mailbox inside <> (source route already removed). */
static enum smtp_path_rc parse_mailbox(const char *s, size_t len, bool is_rcpt,
				       struct smtp_path *out)
{
	size_t loclen;
	if (len == 0)
		return SMTP_PATH_BAD_ADDRESS;
	if (s[0] == '"') {
		loclen = quoted_len(s, len);
		if (!loclen)
			return SMTP_PATH_BAD_ADDRESS;
	} else {
		loclen = 0;
		while (loclen < len && s[loclen] != '@')
			loclen++;
		/* The local part ends at the last '@' for unquoted forms too. */
		const char *last = NULL;
		for (size_t i = 0; i < len; i++)
			if (s[i] == '@')
				last = s + i;
		if (last)
			loclen = (size_t)(last - s);
	}
	out->local = s;
	out->locallen = loclen;
	if (loclen > SMTP_LOCAL_PART_MAX)
		return SMTP_PATH_TOO_LONG;
	if (loclen == len) {
		/* No domain: only <Postmaster> (RFC 5321 §4.1.1.3), for RCPT. */
		if (is_rcpt && len == 10 && strncasecmp(s, "postmaster", 10) == 0) {
			out->postmaster = true;
			return SMTP_PATH_OK;
		}
		return SMTP_PATH_BAD_ADDRESS;
	}
	if (s[loclen] != '@')
		return SMTP_PATH_BAD_ADDRESS;
	if (s[0] != '"' && !dot_string_valid(s, loclen))
		return SMTP_PATH_BAD_ADDRESS;
	out->domain = s + loclen + 1;
	out->domainlen = len - loclen - 1;
	if (out->domainlen > SMTP_DOMAIN_MAX)
		return SMTP_PATH_TOO_LONG;
	if (!mailbox_domain_valid(out->domain, out->domainlen))
		return SMTP_PATH_BAD_ADDRESS;
	out->domain_literal = out->domain[0] == '[';
	return SMTP_PATH_OK;
}

static bool is_keychar(unsigned char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return !first && c == '-';
}

static enum smtp_path_rc parse_params(const char *s, size_t len, struct smtp_path *out)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && s[i] == ' ')
			i++;
		if (i >= len)
			break;
		if (out->nparams == SMTP_MAX_PARAMS)
			return SMTP_PATH_TOO_MANY_PARAMS;
		struct smtp_param *p = &out->params[out->nparams];
		size_t k = i;
		while (i < len && s[i] != ' ' && s[i] != '=') {
			if (!is_keychar((unsigned char)s[i], i == k))
				return SMTP_PATH_BAD_PARAM;
			i++;
		}
		if (i == k)
			return SMTP_PATH_BAD_PARAM;
		p->key = s + k;
		p->keylen = i - k;
		p->val = NULL;
		p->vallen = 0;
		if (i < len && s[i] == '=') {
			size_t v = ++i;
			while (i < len && s[i] != ' ') {
				unsigned char c = (unsigned char)s[i];
				/* esmtp-value: %d33-60 / %d62-126, plus UTF-8 (RFC 6531) */
				if (c == '=' || c < 33 || c == 127)
					return SMTP_PATH_BAD_PARAM;
				i++;
			}
			if (i == v)
				return SMTP_PATH_BAD_PARAM;
			p->val = s + v;
			p->vallen = i - v;
		}
		/* A parameter given twice is ambiguous: which one would the
		 * upstream take? Refused. */
		for (size_t j = 0; j < out->nparams; j++)
			if (out->params[j].keylen == p->keylen &&
			    strncasecmp(out->params[j].key, p->key, p->keylen) == 0)
				return SMTP_PATH_BAD_PARAM;
		out->nparams++;
	}
	return SMTP_PATH_OK;
}

enum smtp_path_rc smtp_parse_path(const char *args, size_t len, const char *prefix,
				  bool is_rcpt, struct smtp_path *out)
{
	size_t plen = strlen(prefix), i;
	memset(out, 0, sizeof(*out));
	if (len < plen || strncasecmp(args, prefix, plen) != 0)
		return SMTP_PATH_SYNTAX;
	i = plen;
	while (i < len && args[i] == ' ')	/* "MAIL FROM: <a@b>" is common */
		i++;
	if (i >= len || args[i] != '<')
		return SMTP_PATH_BAD_ADDRESS;
	size_t open = i++;
	/* Find the closing '>' outside quoted strings. */
	bool inq = false;
	for (; i < len; i++) {
		char c = args[i];
		if (inq && c == '\\') {
			i++;
			continue;
		}
		if (c == '"')
			inq = !inq;
		else if (!inq && c == '>')
			break;
	}
	if (i >= len)
		return SMTP_PATH_BAD_ADDRESS;
	if (i - open + 1 > SMTP_PATH_MAX)
		return SMTP_PATH_TOO_LONG;
	const char *in = args + open + 1;
	size_t inlen = i - open - 1;
	for (size_t j = 0; j < inlen; j++)
		if ((unsigned char)in[j] >= 0x80)
			out->has_8bit = true;
	if (inlen == 0) {
		if (is_rcpt)
			return SMTP_PATH_BAD_ADDRESS;
		out->null_path = true;
		out->mailbox = in;
	} else {
		/* Source route "@a,@b:" is ignored (RFC 5321 §4.1.2 / C). */
		if (in[0] == '@') {
			const char *colon = memchr(in, ':', inlen);
			if (!colon)
				return SMTP_PATH_BAD_ADDRESS;
			inlen -= (size_t)(colon + 1 - in);
			in = colon + 1;
		}
		out->mailbox = in;
		out->mailboxlen = inlen;
		enum smtp_path_rc rc = parse_mailbox(in, inlen, is_rcpt, out);
		if (rc != SMTP_PATH_OK)
			return rc;
	}
	i++;	/* past '>' */
	if (i < len && args[i] != ' ')
		return SMTP_PATH_SYNTAX;
	return parse_params(args + i, len - i, out);
}

bool smtp_param_is(const struct smtp_param *p, const char *key)
{
	return strlen(key) == p->keylen && strncasecmp(p->key, key, p->keylen) == 0;
}

bool smtp_helo_valid(const char *arg, size_t len)
{
	if (len == 0 || len > 255)
		return false;
	if (arg[0] == '[')
		return address_literal_valid(arg, len);
	for (size_t i = 0; i < len; i++)
		if (arg[i] == ' ')
			return false;
	return domain_valid(arg, len);
}

bool smtp_parse_u64(const char *s, size_t len, unsigned long long *out)
{
	unsigned long long v = 0;
	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (~0ULL - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}
