/* smtp_parse: pure parsing of SMTP command lines (RFC 5321 §4.1): line
 * hygiene (bare CR, bare LF, NUL), the verb table, MAIL/RCPT paths with
 * quoted local parts and source routes, ESMTP parameters, and EHLO/HELO
 * arguments. No I/O, no allocation: results point into the caller's line.
 * Fuzzed by tests/fuzz/fuzz_smtp_parse.c. */
#ifndef MG_SMTP_PARSE_H
#define MG_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_EHLO,
	SMTP_VERB_HELO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_BDAT,
	SMTP_VERB_XCLIENT,
	SMTP_VERB_XFORWARD,
	SMTP_VERB_EXPN,
	SMTP_VERB_ETRN,
};

/* Flags of the command table. */
#define SMTP_CMD_PRE_TLS 0x01	/* allowed before STARTTLS with require_tls */

struct smtp_cmd_def {
	const char *name;
	enum smtp_verb verb;
	unsigned flags;
};

enum smtp_line_rc { SMTP_LINE_OK, SMTP_LINE_BARE_CR, SMTP_LINE_BARE_LF, SMTP_LINE_NUL };

/* line[0..len) ends with LF. Checks the terminator is CRLF and that no CR,
 * LF or NUL occurs inside. *content gets the length without CRLF. */
enum smtp_line_rc smtp_line_check(const char *line, size_t len, size_t *content);

/* Splits "VERB[ args]". *args points after the single space (or at the
 * end); returns the table entry, or NULL for an unknown verb. */
const struct smtp_cmd_def *smtp_cmd_lookup(const char *line, size_t len, const char **args,
					   size_t *argslen);

#define SMTP_MAX_PARAMS 16
/* RFC 5321 §4.5.3.1: counted as sent (quotes and backslashes included). */
#define SMTP_LOCAL_PART_MAX 64
#define SMTP_DOMAIN_MAX 255
#define SMTP_PATH_MAX 256	/* "<" and ">" included */
/* Storage for a MAIL/RCPT command the gateway builds for its upstream
 * (CRLF and NUL included): the longest path and the parameters it
 * forwards (RFC 3461: ENVID up to 100, ORCPT up to 500 octets) fit; a
 * command that does not is refused, never cut short. */
#define SMTP_CMD_LINE_MAX 1024

struct smtp_param {
	const char *key;
	size_t keylen;
	const char *val;	/* NULL when the parameter has no "=value" */
	size_t vallen;
};

struct smtp_path {
	const char *mailbox;	/* inside <>, source route removed; "" for <> */
	size_t mailboxlen;
	const char *local;	/* local part (with quotes if quoted) */
	size_t locallen;
	const char *domain;	/* after the last '@'; NULL when there is none */
	size_t domainlen;
	bool null_path;		/* <> */
	bool postmaster;	/* <Postmaster> in any case, no domain */
	bool domain_literal;	/* [address literal] */
	bool has_8bit;		/* bytes >= 0x80 (needs SMTPUTF8) */
	struct smtp_param params[SMTP_MAX_PARAMS];
	size_t nparams;
};

enum smtp_path_rc {
	SMTP_PATH_OK,
	SMTP_PATH_SYNTAX,	/* 501 5.5.4 */
	SMTP_PATH_BAD_ADDRESS,	/* 501 5.1.3 / 5.1.7 */
	SMTP_PATH_BAD_PARAM,	/* 555 5.5.4 */
	SMTP_PATH_TOO_MANY_PARAMS,
	SMTP_PATH_TOO_LONG,	/* 501 5.1.3: over an RFC 5321 §4.5.3.1 limit */
};

/* args of "MAIL FROM:<...> params" (prefix "FROM:") or RCPT ("TO:"). */
enum smtp_path_rc smtp_parse_path(const char *args, size_t len, const char *prefix,
				  bool is_rcpt, struct smtp_path *out);

/* 1 if key matches (case-insensitively). */
bool smtp_param_is(const struct smtp_param *p, const char *key);

/* EHLO/HELO argument: one domain or an address literal. */
bool smtp_helo_valid(const char *arg, size_t len);

/* Parses a decimal SIZE value strictly (no sign, no junk, no overflow). */
bool smtp_parse_u64(const char *s, size_t len, unsigned long long *out);

#endif
