/* smtp_cmd: see smtp_cmd.h. Each handler validates first and answers
 * with the gateway's own code on error (every such reply counts toward
 * max_errors). */
#include "smtp_cmd.h"
#include "smtp_conf.h"
#include "log.h"
#include "server.h"
#include "smtp_auth.h"
#include "smtp_body.h"
#include "smtp_mail.h"
#include "smtp_parse.h"
#include "smtp_relay.h"
#include "smtp_server.h"
#include "strbuf.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>

static bool offers_starttls(const struct smtp_session *ss)
{
	return ss->s.listener->tls_mode == TLS_MODE_STARTTLS && !session_tls(&ss->s);
}

/* The EHLO reply, built fresh each time (the upstream's extensions may
 * have changed since the last one). */
static void ehlo_reply(struct smtp_session *ss, struct strbuf *out)
{
	const struct conf *cf = session_conf(&ss->s);
	const struct conf_upstream *u = ss->s.listener->upstream;
	struct smtp_server *srv = ss->server;
	char size[32], auth[SMTP_EHLO_AUTH_MAX];
	const char *kw[12];
	size_t n = 0;
	unsigned pass = smtp_server_passthrough(srv, u);
	struct strbuf b;

	sb_init(&b, size, sizeof(size));
	sb_adds(&b, "SIZE ");
	sb_addu(&b, smtp_server_size(srv, u));
	kw[n++] = cf->hostname;
	kw[n++] = "PIPELINING";
	kw[n++] = size;
	if (pass & EXT_8BITMIME)
		kw[n++] = "8BITMIME";
	if (pass & EXT_SMTPUTF8)
		kw[n++] = "SMTPUTF8";
	if (pass & EXT_DSN)
		kw[n++] = "DSN";
	kw[n++] = "ENHANCEDSTATUSCODES";
	if (offers_starttls(ss))
		kw[n++] = "STARTTLS";
	if (smtp_auth_allowed(ss) && !ss->authed) {
		sb_init(&b, auth, sizeof(auth));
		sb_adds(&b, "AUTH");
		for (size_t i = 0; i < smtpd_conf(cf)->auth_mechanisms.n; i++) {
			const char *m = smtpd_conf(cf)->auth_mechanisms.v[i];
			size_t keep = sb_len(&b);
			if (!smtp_server_auth_offered(srv, u, m))
				continue;
			sb_addc(&b, ' ');
			sb_adds(&b, m);
			if (!sb_ok(&b))
				sb_truncate(&b, keep);	/* offer the ones that fit */
		}
		if (sb_len(&b) > 4)
			kw[n++] = auth;
	}
	for (size_t i = 0; i < n; i++) {
		sb_adds(out, i + 1 == n ? "250 " : "250-");
		sb_adds(out, kw[i]);
		sb_add(out, "\r\n", 2);
	}
}

static void helo_common(struct smtp_session *ss, bool esmtp, const char *args, size_t len)
{
	char reply[SMTP_EHLO_REPLY_MAX];
	struct strbuf b;
	if (!smtp_helo_valid(args, len)) {
		smtp_reply_err(ss, "501 5.5.4 Syntax: %s hostname (a domain or an address literal)",
			       esmtp ? "EHLO" : "HELO");
		return;
	}
	bool again = ss->helo;	/* not the first of the session or of its TLS */
	free(ss->helo_arg);
	ss->helo_arg = xmemdup0(args, len);
	ss->helo = 1;
	ss->esmtp = esmtp;
	smtp_reset_tx(ss);
	sb_init(&b, reply, sizeof(reply));
	if (esmtp) {
		ehlo_reply(ss, &b);
	} else {
		sb_adds(&b, "250 ");
		sb_adds(&b, session_conf(&ss->s)->hostname);
		sb_add(&b, "\r\n", 2);
	}
	if (!sb_ok(&b)) {	/* sized for every keyword: cannot happen */
		log_error("session %s: EHLO reply does not fit in %zu octets", ss->s.id, sizeof(reply));
		sb_init(&b, reply, sizeof(reply));
		sb_adds(&b, "451 4.3.0 Internal error\r\n");
	}
	/* A repeated EHLO or HELO does no work either: one every
	 * timeout_command - 1 seconds must not hold a slot for ever (junk,
	 * as NOOP; the first, and the first after STARTTLS, are free). */
	if (again && smtp_junk(ss)) {
		session_write(&ss->s, sb_str(&b), sb_len(&b));	/* the session ends: no upstream RSET */
		smtp_too_many_errors(ss);
		return;
	}
	smtp_relay_rset_then(ss, sb_str(&b));
}

static void cmd_ehlo(struct smtp_session *ss, const char *args, size_t len)
{
	helo_common(ss, true, args, len);
}

static void cmd_helo(struct smtp_session *ss, const char *args, size_t len)
{
	helo_common(ss, false, args, len);
}

/* NOOP, VRFY and HELP: the usual answer, and one more junk command
 * (EHLO, HELO and RSET count too: see there). */
static void junk_reply(struct smtp_session *ss, const char *reply)
{
	bool spent = smtp_junk(ss);
	smtp_reply(ss, "%s", reply);
	if (spent)
		smtp_too_many_errors(ss);
}

static void cmd_noop(struct smtp_session *ss, const char *args, size_t len)
{
	junk_reply(ss, "250 2.0.0 OK");
}

static void cmd_rset(struct smtp_session *ss, const char *args, size_t len)
{
	if (len) {
		smtp_reply_err(ss, "501 5.5.4 Syntax: RSET");
		return;
	}
	smtp_reset_tx(ss);
	if (smtp_junk(ss)) {
		/* The session ends: no point resetting the upstream first. */
		smtp_reply(ss, "250 2.0.0 OK");
		smtp_too_many_errors(ss);
		return;
	}
	smtp_relay_rset_then(ss, "250 2.0.0 OK\r\n");
}

static void cmd_quit(struct smtp_session *ss, const char *args, size_t len)
{
	smtp_reply(ss, "221 2.0.0 Bye");
	ss->quit_seen = 1;
	smtp_close(ss, ss->s.result == RESULT_OK ? RESULT_QUIT : RESULT_UNCHANGED);
}

static void cmd_vrfy(struct smtp_session *ss, const char *args, size_t len)
{
	junk_reply(ss, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_help(struct smtp_session *ss, const char *args, size_t len)
{
	junk_reply(ss, "214 2.0.0 mailgate: see RFC 5321");
}

static void cmd_starttls(struct smtp_session *ss, const char *args, size_t len)
{
	if (ss->s.listener->tls_mode != TLS_MODE_STARTTLS) {
		smtp_reply_err(ss, "502 5.5.1 STARTTLS not offered");
		return;
	}
	if (session_tls(&ss->s)) {
		smtp_reply_err(ss, "503 5.5.1 TLS already active");
		return;
	}
	if (len) {
		smtp_reply_err(ss, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 STARTTLS not allowed during a mail transaction");
		return;
	}
	smtp_reply(ss, "220 2.0.0 Ready to start TLS");
	session_starttls(&ss->s);	/* what follows the line is discarded (RFC 3207 §4.2) */
}

static void cmd_bdat(struct smtp_session *ss, const char *args, size_t len)
{
	smtp_reply_err(ss, "502 5.5.1 CHUNKING not offered");
}

/* Only the gateway speaks XCLIENT and XFORWARD, and only to its upstream. */
static void cmd_forbidden(struct smtp_session *ss, const char *args, size_t len)
{
	smtp_reply_err(ss, "502 5.5.1 Command not permitted");
}

static void cmd_unimplemented(struct smtp_session *ss, const char *args, size_t len)
{
	smtp_reply_err(ss, "502 5.5.1 Command not implemented");
}

#define CMD_NEEDS_HELO 0x01	/* 503 before EHLO/HELO */

typedef void (*smtp_cmd_fn)(struct smtp_session *ss, const char *args, size_t len);

/* The handler of each verb (names and syntax flags: smtp_parse.c). */
static const struct {
	smtp_cmd_fn fn;
	unsigned flags;
} commands[] = {
	[SMTP_VERB_UNKNOWN] = { cmd_unimplemented, 0 },
	[SMTP_VERB_EHLO] = { cmd_ehlo, 0 },
	[SMTP_VERB_HELO] = { cmd_helo, 0 },
	[SMTP_VERB_MAIL] = { smtp_mail, CMD_NEEDS_HELO },
	[SMTP_VERB_RCPT] = { smtp_rcpt, 0 },
	[SMTP_VERB_DATA] = { smtp_data_cmd, 0 },
	[SMTP_VERB_RSET] = { cmd_rset, 0 },
	[SMTP_VERB_NOOP] = { cmd_noop, 0 },
	[SMTP_VERB_QUIT] = { cmd_quit, 0 },
	[SMTP_VERB_VRFY] = { cmd_vrfy, 0 },
	[SMTP_VERB_HELP] = { cmd_help, 0 },
	[SMTP_VERB_STARTTLS] = { cmd_starttls, 0 },
	[SMTP_VERB_AUTH] = { smtp_auth, CMD_NEEDS_HELO },
	[SMTP_VERB_BDAT] = { cmd_bdat, 0 },
	[SMTP_VERB_XCLIENT] = { cmd_forbidden, 0 },
	[SMTP_VERB_XFORWARD] = { cmd_forbidden, 0 },
	[SMTP_VERB_EXPN] = { cmd_unimplemented, 0 },
	[SMTP_VERB_ETRN] = { cmd_unimplemented, 0 },
};

/* peers_only and no matching certificate (DESIGN.md §4.1). */
static void refused_peer(struct smtp_session *ss, const struct smtp_cmd_def *d)
{
	if (d && d->verb == SMTP_VERB_QUIT) {
		smtp_reply(ss, "221 2.0.0 Bye");
		smtp_close(ss, RESULT_CERT_REJECTED);
	} else if (ss->peer_refused == PEER_REFUSED_NEXT) {
		smtp_reply(ss, "421 4.7.1 Certificate not accepted");
		smtp_close(ss, RESULT_CERT_REJECTED);
	} else {
		/* Counts toward max_errors: a refused client cannot hold the
		 * connection by talking. */
		smtp_reply_err(ss, "503 5.5.1 Certificate not accepted; only QUIT");
	}
}

/* The rules every command meets before its handler; true when refused. */
static bool refused(struct smtp_session *ss, const struct smtp_cmd_def *d)
{
	if (ss->peer_refused) {
		refused_peer(ss, d);
		return true;
	}
	if (!d) {
		smtp_reply_err(ss, "502 5.5.2 Command not recognized");
		return true;
	}
	if (ss->s.srv->shutting_down && !ss->in_tx && d->verb != SMTP_VERB_QUIT) {
		smtp_reply(ss, "421 4.3.2 Service shutting down");
		smtp_close(ss, RESULT_SHUTDOWN);
		return true;
	}
	if (ss->s.listener->tls_mode == TLS_MODE_STARTTLS && ss->s.listener->require_tls &&
	    !session_tls(&ss->s) && !(d->flags & SMTP_CMD_PRE_TLS)) {
		smtp_reply_err(ss, "530 5.7.0 Must issue a STARTTLS command first");
		return true;
	}
	if ((commands[d->verb].flags & CMD_NEEDS_HELO) && !ss->helo) {
		/* The upstream would get no HELO for the session (Postfix
		 * answers this the same way). */
		smtp_reply_err(ss, "503 5.5.1 Send EHLO or HELO first");
		return true;
	}
	return false;
}

void smtp_cmd_dispatch(struct smtp_session *ss, const char *line, size_t len)
{
	size_t content, alen;
	const char *args;

	switch (smtp_line_check(line, len, &content)) {
	case SMTP_LINE_OK:
		break;
	case SMTP_LINE_NUL:
		smtp_reply_err(ss, "500 5.5.2 NUL character in command");
		return;
	default:
		smtp_reply_err(ss, "500 5.5.2 Bare CR or LF in command");
		return;
	}
	const struct smtp_cmd_def *d = smtp_cmd_lookup(line, content, &args, &alen);
	if (refused(ss, d))
		return;
	commands[d->verb].fn(ss, args, alen);
}
