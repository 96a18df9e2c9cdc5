/* smtp_cmd: commands the gateway answers itself (DESIGN.md §4.1-4.2) and
 * the dispatcher that applies the rules common to all commands: line
 * hygiene, unknown verbs, shutdown notices and require_tls. Each handler
 * validates first and replies with the gateway's own code on error. */
#include "smtp_session_int.h"
#include "conn.h"
#include "log.h"
#include "smtp_server.h"
#include "xmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct conf *conf_of(const struct smtp_session *ss)
{
	return ss->srv->base.conf;
}

static bool offers_starttls(const struct smtp_session *ss)
{
	return ss->s.listener->tls_mode == TLS_MODE_STARTTLS && !smtp_tls_active(ss);
}

/* The EHLO reply, built fresh each time (the upstream's extensions may
 * have changed since the last one). */
static void ehlo_reply(struct smtp_session *ss, char *out, size_t outsz)
{
	const struct conf *cf = conf_of(ss);
	const struct conf_upstream *u = ss->s.listener->upstream;
	char lines[12][200];
	int n = 0;
	unsigned pass = smtp_server_passthrough(ss->srv, u);

	snprintf(lines[n++], sizeof(lines[0]), "%s", cf->hostname);
	snprintf(lines[n++], sizeof(lines[0]), "PIPELINING");
	snprintf(lines[n++], sizeof(lines[0]), "SIZE %llu",
		 (unsigned long long)smtp_server_size(ss->srv, u));
	if (pass & EXT_8BITMIME)
		snprintf(lines[n++], sizeof(lines[0]), "8BITMIME");
	if (pass & EXT_SMTPUTF8)
		snprintf(lines[n++], sizeof(lines[0]), "SMTPUTF8");
	if (pass & EXT_DSN)
		snprintf(lines[n++], sizeof(lines[0]), "DSN");
	snprintf(lines[n++], sizeof(lines[0]), "ENHANCEDSTATUSCODES");
	if (offers_starttls(ss))
		snprintf(lines[n++], sizeof(lines[0]), "STARTTLS");
	if (smtp_auth_allowed(ss) && !ss->authed) {
		char mechs[160] = "";
		for (size_t i = 0; i < cf->auth_mechanisms.n; i++) {
			const char *m = cf->auth_mechanisms.v[i];
			if (!smtp_server_auth_offered(ss->srv, u, m))
				continue;
			if (strlen(mechs) + strlen(m) + 2 < sizeof(mechs)) {
				strcat(mechs, " ");
				strcat(mechs, m);
			}
		}
		if (mechs[0])
			snprintf(lines[n++], sizeof(lines[0]), "AUTH%s", mechs);
	}
	size_t o = 0;
	for (int i = 0; i < n; i++) {
		int w = snprintf(out + o, outsz - o, "250%c%s\r\n", i == n - 1 ? ' ' : '-', lines[i]);
		if (w < 0 || (size_t)w >= outsz - o)
			break;
		o += (size_t)w;
	}
}

static void cmd_helo(struct smtp_session *ss, bool esmtp, const char *args, size_t len)
{
	char reply[2048];
	if (!smtp_helo_valid(args, len)) {
		smtp_reply_err(ss, "501 5.5.4 Syntax: %s hostname (a domain or an address literal)",
			       esmtp ? "EHLO" : "HELO");
		return;
	}
	free(ss->helo_arg);
	ss->helo_arg = xmemdup0(args, len);
	ss->helo = 1;
	ss->esmtp = esmtp;
	smtp_reset_tx(ss);
	if (esmtp)
		ehlo_reply(ss, reply, sizeof(reply));
	else
		snprintf(reply, sizeof(reply), "250 %s\r\n", conf_of(ss)->hostname);
	smtp_txn_rset_then(ss, reply);
}

static void cmd_starttls(struct smtp_session *ss, size_t arglen)
{
	if (ss->s.listener->tls_mode != TLS_MODE_STARTTLS) {
		smtp_reply_err(ss, "502 5.5.1 STARTTLS not offered");
		return;
	}
	if (smtp_tls_active(ss)) {
		smtp_reply_err(ss, "503 5.5.1 TLS already active");
		return;
	}
	if (arglen) {
		smtp_reply_err(ss, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 STARTTLS not allowed during a mail transaction");
		return;
	}
	smtp_reply(ss, "220 2.0.0 Ready to start TLS");
	/* Stop reading at once: anything already queued after the STARTTLS
	 * line is discarded, never executed (CVE-2011-0411 class); the TLS
	 * handshake starts once the 220 is flushed (client_cb). */
	smtp_enter(ss, SS_TLS);
	conn_read_stop(ss->s.conn);
	conn_in_clear(ss->s.conn);
	conn_uncork(ss->s.conn);
	conn_notify_drained(ss->s.conn);
}

void smtp_cmd_dispatch(struct smtp_session *ss, const char *line, size_t len)
{
	size_t content;
	const char *args;
	size_t alen;

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
	if (ss->peer_refused) {
		if (d && d->verb == SMTP_VERB_QUIT) {
			smtp_reply(ss, "221 2.0.0 Bye");
			smtp_close(ss, "cert-rejected");
		} else if (ss->peer_refused == PEER_REFUSED_NEXT) {
			smtp_reply(ss, "421 4.7.1 Certificate not accepted");
			smtp_close(ss, "cert-rejected");
		} else {
			smtp_reply(ss, "503 5.5.1 Certificate not accepted; only QUIT");
		}
		return;
	}
	if (!d) {
		smtp_reply_err(ss, "502 5.5.2 Command not recognized");
		return;
	}
	if (ss->srv->base.shutting_down && !ss->in_tx && d->verb != SMTP_VERB_QUIT) {
		smtp_reply(ss, "421 4.3.2 Service shutting down");
		smtp_close(ss, "shutdown");
		return;
	}
	if (ss->s.listener->tls_mode == TLS_MODE_STARTTLS && ss->s.listener->require_tls &&
	    !smtp_tls_active(ss) && !(d->flags & SMTP_CMD_PRE_TLS)) {
		smtp_reply_err(ss, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	switch (d->verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		cmd_helo(ss, d->verb == SMTP_VERB_EHLO, args, alen);
		return;
	case SMTP_VERB_NOOP:
		smtp_reply(ss, "250 2.0.0 OK");
		return;
	case SMTP_VERB_RSET:
		if (alen) {
			smtp_reply_err(ss, "501 5.5.4 Syntax: RSET");
			return;
		}
		smtp_reset_tx(ss);
		smtp_txn_rset_then(ss, "250 2.0.0 OK\r\n");
		return;
	case SMTP_VERB_QUIT:
		smtp_reply(ss, "221 2.0.0 Bye");
		ss->quit_seen = 1;
		smtp_close(ss, "quit");
		return;
	case SMTP_VERB_VRFY:
		smtp_reply(ss, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
		return;
	case SMTP_VERB_HELP:
		smtp_reply(ss, "214 2.0.0 mailgate: see RFC 5321");
		return;
	case SMTP_VERB_STARTTLS:
		cmd_starttls(ss, alen);
		return;
	case SMTP_VERB_AUTH:
		smtp_txn_auth(ss, args, alen);
		return;
	case SMTP_VERB_MAIL:
		smtp_txn_mail(ss, args, alen);
		return;
	case SMTP_VERB_RCPT:
		smtp_txn_rcpt(ss, args, alen);
		return;
	case SMTP_VERB_DATA:
		smtp_txn_data(ss, args, alen);
		return;
	case SMTP_VERB_BDAT:
		smtp_reply_err(ss, "502 5.5.1 CHUNKING not offered");
		return;
	case SMTP_VERB_XCLIENT:
	case SMTP_VERB_XFORWARD:
		/* Only the gateway speaks XCLIENT, and only to its upstream. */
		smtp_reply_err(ss, "502 5.5.1 Command not permitted");
		return;
	case SMTP_VERB_EXPN:
	case SMTP_VERB_ETRN:
	case SMTP_VERB_UNKNOWN:
		smtp_reply_err(ss, "502 5.5.1 Command not implemented");
		return;
	}
}
