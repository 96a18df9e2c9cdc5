/* imap_cmd: see imap_cmd.h. Each handler validates its arguments; the
 * table holds what all commands share (the arity, PRIVACY: refused before
 * TLS without a "+" continuation). */
#include "imap_cmd.h"
#include "imap_conf.h"
#include "imap_auth.h"
#include "strbuf.h"

#include <string.h>
#include <strings.h>

void imap_capability_line(const struct imap_session *is, struct strbuf *out)
{
	sb_adds(out, "IMAP4rev1 SASL-IR ID LITERAL+");
	if (session_secure(&is->s)) {
		sb_adds(out, " AUTH=PLAIN");
		if (imap_auth_external_offered(is))
			sb_adds(out, " AUTH=EXTERNAL");
	} else if (is->s.listener->tls_mode == TLS_MODE_STARTTLS) {
		sb_adds(out, " STARTTLS LOGINDISABLED");
	}
}

void imap_cmd_privacy_refusal(struct imap_session *is, const char *tag)
{
	imap_reply(is, "%s NO [PRIVACYREQUIRED] Use STARTTLS first", tag);
}

static void cmd_capability(struct imap_session *is, const struct imap_cmd *cmd)
{
	char caps[IMAP_CAPS_MAX];
	struct strbuf b;
	sb_init(&b, caps, sizeof(caps));
	imap_capability_line(is, &b);
	imap_reply(is, "* CAPABILITY %s", caps);
	imap_reply(is, "%s OK Capability completed", cmd->tag);
}

static void cmd_noop(struct imap_session *is, const struct imap_cmd *cmd)
{
	imap_reply(is, "%s OK NOOP completed", cmd->tag);
}

static void cmd_logout(struct imap_session *is, const struct imap_cmd *cmd)
{
	imap_reply(is, "* BYE Logging out");
	imap_reply(is, "%s OK Logout completed", cmd->tag);
	imap_close(is, RESULT_QUIT);
}

static void cmd_id(struct imap_session *is, const struct imap_cmd *cmd)
{
	const struct imap_arg *a = &cmd->args[0];
	if (a->type != IMAP_ARG_LIST &&
	    !(a->type == IMAP_ARG_ATOM && a->len == 3 && !strncasecmp(a->p, "NIL", 3))) {
		imap_bad(is, cmd->tag, "Syntax: ID (...) or ID NIL");
		return;
	}
	imap_reply(is, "* ID NIL");	/* the client's ID is never forwarded */
	imap_reply(is, "%s OK ID completed", cmd->tag);
}

static void cmd_starttls(struct imap_session *is, const struct imap_cmd *cmd)
{
	if (is->s.listener->tls_mode != TLS_MODE_STARTTLS || session_secure(&is->s)) {
		imap_bad(is, cmd->tag, "STARTTLS not available");
		return;
	}
	imap_reply(is, "%s OK Begin TLS negotiation now", cmd->tag);
	session_starttls(&is->s);	/* bytes pipelined after it are discarded */
}

#define IMAP_CMD_PRIVACY 0x01	/* NO [PRIVACYREQUIRED] before TLS */
#define IMAP_ANY_ARGS (-1)

static const struct {
	const char *name;
	int nargs;	/* exactly this many, or IMAP_ANY_ARGS */
	void (*fn)(struct imap_session *is, const struct imap_cmd *cmd);
	unsigned flags;
} commands[] = {
	{ "CAPABILITY", 0, cmd_capability, 0 },
	{ "NOOP", 0, cmd_noop, 0 },
	{ "LOGOUT", 0, cmd_logout, 0 },
	{ "ID", 1, cmd_id, 0 },
	{ "STARTTLS", 0, cmd_starttls, 0 },
	{ "LOGIN", 2, imap_auth_login, IMAP_CMD_PRIVACY },
	{ "AUTHENTICATE", IMAP_ANY_ARGS, imap_auth_authenticate, IMAP_CMD_PRIVACY },
};

static int find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return (int)i;
	return -1;
}

bool imap_cmd_needs_privacy(const struct imap_session *is, const char *name)
{
	int i = find(name);
	return i >= 0 && (commands[i].flags & IMAP_CMD_PRIVACY) && !session_secure(&is->s);
}

void imap_cmd_dispatch(struct imap_session *is, const struct imap_cmd *cmd)
{
	int i = find(cmd->name);
	if (i < 0) {
		imap_bad(is, cmd->tag, "Unknown command or not allowed before login");
		return;
	}
	if (commands[i].nargs != IMAP_ANY_ARGS && (size_t)commands[i].nargs != cmd->nargs) {
		imap_bad(is, cmd->tag, "Wrong number of arguments");
		return;
	}
	if (imap_cmd_needs_privacy(is, cmd->name)) {
		imap_cmd_privacy_refusal(is, cmd->tag);
		return;
	}
	commands[i].fn(is, cmd);
}
