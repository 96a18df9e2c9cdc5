/* smtp_cmd: commands the gateway answers itself (DESIGN.md §4.1-4.2) and
 * the dispatcher that applies the rules common to all commands: line
 * hygiene, unknown verbs, shutdown notices and require_tls. Each handler
 * validates first and replies with the gateway's own code on error. */
#include "smtp_session_int.h"
#include "conn.h"
#include "log.h"
#include "smtp_server.h"
#include "strbuf.h"
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
static void ehlo_reply(struct smtp_session *ss, struct strbuf *out)
{
	const struct conf *cf = conf_of(ss);
	const struct conf_upstream *u = ss->s.listener->upstream;
	char size[32], auth[SMTP_EHLO_AUTH_MAX];
	const char *kw[12];
	size_t n = 0;
	unsigned pass = smtp_server_passthrough(ss->srv, u);
	struct strbuf b;

	sb_init(&b, size, sizeof(size));
	sb_adds(&b, "SIZE ");
	sb_addu(&b, smtp_server_size(ss->srv, u));
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
		for (size_t i = 0; i < cf->auth_mechanisms.n; i++) {
			const char *m = cf->auth_mechanisms.v[i];
			size_t keep = sb_len(&b);
			if (!smtp_server_auth_offered(ss->srv, u, m))
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

static void cmd_helo(struct smtp_session *ss, bool esmtp, const char *args, size_t len)
{
	char reply[SMTP_EHLO_REPLY_MAX];
	struct strbuf b;
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
	sb_init(&b, reply, sizeof(reply));
	if (esmtp) {
		ehlo_reply(ss, &b);
	} else {
		sb_adds(&b, "250 ");
		sb_adds(&b, conf_of(ss)->hostname);
		sb_add(&b, "\r\n", 2);
	}
	if (!sb_ok(&b)) {	/* sized for every keyword: cannot happen */
		log_error("session %s: EHLO reply does not fit in %zu octets", ss->s.id, sizeof(reply));
		sb_init(&b, reply, sizeof(reply));
		sb_adds(&b, "451 4.3.0 Internal error\r\n");
	}
	smtp_txn_rset_then(ss, sb_str(&b));
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
			/* Counts toward max_errors: a refused client cannot
			 * hold the connection by talking. */
			smtp_reply_err(ss, "503 5.5.1 Certificate not accepted; only QUIT");
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
