/* imap_session: the life of one IMAP client session - accept (limits),
 * implicit TLS or greeting, the pre-auth command loop (literals and their
 * "+" continuations, line limits, the BAD budget), STARTTLS switch-over,
 * the pre-auth deadline, shutdown, closing and the session-end log line.
 * Commands are in imap_cmd.c, the relay after login in imap_proxy.c.
 *
 * Lifetime rule (as in smtpd): only conn/login callbacks free a session,
 * always as their last statement (imap_free()). */
#include "imap_session_int.h"
#include "conn.h"
#include "imap_server.h"
#include "log.h"
#include "peer.h"
#include "server.h"
#include "strbuf.h"
#include "timer.h"
#include "tls.h"
#include "xmem.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLOSE_GRACE 10.0

static const struct session_hooks imap_hooks;
static const char *const state_names[] = { "handshake", "preauth", "sasl", "login", "tls", "proxy",
					   "closing" };

void imap_enter(struct imap_session *is, enum imap_state st)
{
	log_debug("session %s: %s -> %s", is->s.id, state_names[is->state], state_names[st]);
	is->state = st;
}

const struct conf *imap_conf(const struct imap_session *is)
{
	return is->srv->base.conf;
}

bool imap_secure(const struct imap_session *is)
{
	return conn_tls_ready(is->s.conn) || is->s.listener->tls_mode == TLS_MODE_NONE;
}

/* Every line the gateway writes to an IMAP client is built here, whole
 * or not at all (sized for the longest we build: a tag and a text). */
void imap_reply(struct imap_session *is, const char *fmt, ...)
{
	char line[IMAP_REPLY_LINE_MAX];
	struct strbuf b;
	va_list ap;
	sb_init(&b, line, sizeof(line));
	va_start(ap, fmt);
	sb_vaddf(&b, fmt, ap);
	va_end(ap);
	sb_add(&b, "\r\n", 2);
	if (!sb_ok(&b)) {
		log_error("session %s: a reply did not fit in %zu octets", is->s.id, sizeof(line));
		sb_init(&b, line, sizeof(line));
		sb_adds(&b, "* NO Internal error\r\n");
	}
	conn_write(is->s.conn, sb_str(&b), sb_len(&b));
}

void imap_bad(struct imap_session *is, const char *tag, const char *text)
{
	/* A malformed tag is never echoed (cross-protocol guard). */
	imap_reply(is, "%s BAD %s", tag && tag[0] ? tag : "*", text);
	if (++is->errors >= imap_conf(is)->max_errors && is->state != IS_CLOSING) {
		imap_reply(is, "* BYE Too many invalid commands");
		imap_close(is, "too-many-errors");
	}
}

void imap_drop_credentials(struct imap_session *is)
{
	if (is->cred) {
		explicit_bzero(is->cred, sizeof(*is->cred));	/* memset before free may be elided */
		XFREE(is->cred);
	}
}

static void imap_free(struct imap_session *is)
{
	struct logkv kv;
	session_log_begin(&is->s, &kv);
	if (is->user)
		logkv_str(&kv, "user", is->user);
	if (is->up_addr[0])
		logkv_str(&kv, "upstream", is->up_addr);
	session_log_end(&is->s, &kv);
	imap_login_free(&is->login);
	conn_free(&is->up);
	imap_drop_credentials(is);
	mg_timer_stop(&is->deadline);
	server_unlink(&is->srv->base, &is->s);
	conn_free(&is->s.conn);
	free(is->user);
	is->magic = 0;
	free(is);
}

void imap_close(struct imap_session *is, const char *result)
{
	if (is->state == IS_CLOSING)
		return;
	if (result)
		is->s.result = result;
	imap_login_free(&is->login);
	conn_free(&is->up);	/* close_notify to the upstream */
	imap_drop_credentials(is);
	mg_timer_stop(&is->deadline);
	imap_enter(is, IS_CLOSING);
	conn_read_stop(is->s.conn);
	conn_in_clear(is->s.conn);
	conn_uncork(is->s.conn);
	conn_set_timeout(is->s.conn, CLOSE_GRACE);
	conn_notify_drained(is->s.conn);
}

/* The pre-auth loop: one command at a time until the input runs out or a
 * command waits (SASL response, upstream login). */
void imap_process(struct imap_session *is)
{
	static struct imap_cmd cmd;	/* 8 KiB arena: not on the stack */
	struct conn *c = is->s.conn;
	size_t max_lit = (size_t)imap_conf(is)->max_literal;

	conn_cork(c);
	while (is->state == IS_PREAUTH || is->state == IS_SASL) {
		/* The last command's unescaped quoted strings (a LOGIN password)
		 * stay in the static arena until wiped. */
		explicit_bzero(cmd.arena, cmd.arena_used);
		cmd.arena_used = 0;
		if (is->state == IS_SASL) {
			size_t end = conn_in_line_end(c);
			if (!end) {
				if (conn_in_len(c) > IMAP_LINE_MAX) {
					imap_reply(is, "* BAD Line too long");
					imap_close(is, "error");
				}
				break;
			}
			char *line = xmemdup0(conn_in_data(c), end);
			conn_in_consume(c, end);
			imap_cmd_sasl_line(is, line, end);
			explicit_bzero(line, end);	/* a PLAIN response */
			free(line);
			continue;
		}
		struct imap_parse_info info;
		enum imap_parse_rc rc = imap_parse(conn_in_data(c), conn_in_len(c), max_lit, &cmd, &info);
		switch (rc) {
		case IMAP_PARSE_MORE:
			if (conn_in_full(c)) {
				imap_reply(is, "* BAD Command too large");
				imap_close(is, "error");
			}
			goto out;
		case IMAP_PARSE_CONTINUE:
			if (imap_cmd_needs_privacy(is, cmd.name)) {
				/* Refused without "+": the client sends no literal. */
				imap_cmd_privacy_refusal(is, cmd.tag);
				conn_in_clear(c);
				is->last_cont = SIZE_MAX;
				continue;
			}
			if (info.literal_at != is->last_cont) {
				imap_reply(is, "+ Ready for literal data");
				is->last_cont = info.literal_at;
			}
			goto out;
		case IMAP_PARSE_OK:
			is->last_cont = SIZE_MAX;
			imap_cmd_dispatch(is, &cmd);	/* copies what it keeps */
			conn_in_consume(c, info.consumed);
			continue;
		case IMAP_PARSE_BAD:
			is->last_cont = SIZE_MAX;
			conn_in_consume(c, info.consumed);
			imap_bad(is, cmd.tag, "Syntax error");
			continue;
		case IMAP_PARSE_TOO_LONG:
			imap_reply(is, "* BAD Line too long");
			imap_close(is, "error");
			goto out;
		case IMAP_PARSE_LITERAL_TOO_BIG:
			imap_reply(is, "%s BAD Literal too big", cmd.tag[0] ? cmd.tag : "*");
			imap_close(is, "error");
			goto out;
		}
	}
out:
	explicit_bzero(cmd.arena, cmd.arena_used);
	cmd.arena_used = 0;
	conn_uncork(c);
	/* Half-closed: every complete command was answered; what is left
	 * can never complete. Close once the replies have gone. */
	if (is->client_eof && (is->state == IS_PREAUTH || is->state == IS_SASL))
		imap_close(is, NULL);
}

static void greet(struct imap_session *is)
{
	char caps[IMAP_CAPS_MAX];
	struct strbuf b;
	imap_enter(is, IS_PREAUTH);
	conn_set_timeout(is->s.conn, 0);	/* the pre-auth deadline applies */
	sb_init(&b, caps, sizeof(caps));
	imap_capability_line(is, &b);
	imap_reply(is, "* OK [CAPABILITY %s] %s ready", caps, imap_conf(is)->hostname);
	conn_read_start(is->s.conn);
}

static void tls_failed(struct imap_session *is)
{
	struct tls_session *t = conn_tls(is->s.conn);
	struct logkv kv;
	logkv_begin(&kv, "tls-failed", 1);
	logkv_raw(&kv, "session", is->s.id);
	logkv_raw(&kv, "client", is->s.ip);
	logkv_str(&kv, "reason", conn_error(is->s.conn));
	logkv_end(&kv, LOG_LVL_INFO);
	is->s.result = t && tls_failed_on_cert(t) ? "cert-rejected" : "tls-failed";
}

/* After every handshake: the peer (peers_only) and the EXTERNAL identity. */
static bool identify(struct imap_session *is)
{
	const struct conf *c = imap_conf(is);
	session_identify(&is->s, c);
	if (is->s.listener->peers_only && !is->s.peer) {
		log_info("session %s: peers_only: certificate not accepted (%s)", is->s.id,
			 is->s.peer_reason);
		imap_reply(is, "* BYE [AUTHENTICATIONFAILED] Certificate not accepted");
		imap_close(is, "cert-rejected");
		return false;
	}
	struct tls_session *t = conn_tls(is->s.conn);
	is->ext = (uint8_t)peer_external_user(t ? tls_peer(t) : NULL, c->external_identity, is->ext_user);
	if (tls_peer(t) && is->ext != EXT_MAP_OK)
		log_debug("session %s: identity=%s", is->s.id, peer_ext_map_name(is->ext));
	return true;
}

static void client_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct imap_session *is = arg;
	if (is->magic != IMAP_SESSION_MAGIC)
		abort();
	if (is->state == IS_PROXY) {
		imap_proxy_client_event(is, ev);
		return;
	}
	switch (ev) {
	case CONN_EV_READ:
		if (is->state == IS_CLOSING || is->state == IS_TLS) {
			conn_in_clear(c);	/* discarded, never executed */
			return;
		}
		if (is->state == IS_LOGIN) {
			/* Held until the login ends; bounded. */
			if (conn_in_full(c)) {
				imap_reply(is, "* BAD Too much input during login");
				imap_close(is, "error");
			}
			return;
		}
		imap_process(is);
		return;
	case CONN_EV_HANDSHAKE:
		if (is->state == IS_CLOSING)
			return;	/* closed means closed: nothing re-opens it */
		if (!identify(is))
			return;
		if (is->state == IS_HANDSHAKE) {
			greet(is);
			return;
		}
		/* After STARTTLS the client asks CAPABILITY again itself. */
		imap_enter(is, IS_PREAUTH);
		conn_set_timeout(c, 0);
		conn_read_start(c);
		return;
	case CONN_EV_DRAINED:
		if (is->state == IS_CLOSING) {
			imap_free(is);
			return;
		}
		if (is->state == IS_TLS) {
			struct tls_server *ts = server_tls(&is->srv->base, is->s.listener->tls);
			conn_set_timeout(c, imap_conf(is)->timeout_handshake);
			conn_start_tls(c, tls_session_server(ts, conn_fd(c), is->s.listener->client_cert));
		}
		return;
	case CONN_EV_EOF:
		/* A half-close (shutdown of the client's write side): the
		 * commands before it were delivered with CONN_EV_READ and still
		 * get their replies, a login in flight its outcome (and then the
		 * commands held during it); imap_process() closes after that. */
		is->client_eof = 1;
		if (is->state == IS_LOGIN)
			return;	/* login_done() carries on */
		if (is->state == IS_PREAUTH || is->state == IS_SASL) {
			imap_process(is);
			return;
		}
		imap_free(is);
		return;
	case CONN_EV_ERROR:
		if (is->state == IS_HANDSHAKE || is->state == IS_TLS)
			tls_failed(is);
		else if (is->state != IS_CLOSING)
			is->s.result = "error";
		imap_free(is);
		return;
	case CONN_EV_TIMEOUT:
		if (is->state != IS_CLOSING)
			is->s.result = "timeout";
		imap_free(is);
		return;
	}
}

/* timeout_preauth: a deadline for logging in, not an inactivity timer, so
 * a client cannot hold a pre-auth session with NOOPs forever. */
static void preauth_deadline(void *arg)
{
	struct imap_session *is = arg;
	mg_timer_stop(&is->deadline);
	if (is->state == IS_PROXY || is->state == IS_CLOSING)
		return;
	if (is->state != IS_HANDSHAKE && is->state != IS_TLS)
		imap_reply(is, "* BYE Disconnected for inactivity");
	imap_close(is, "timeout");
}

void imap_session_start(struct imap_server *srv, const struct conf_listener *l, int fd,
			const struct mg_addr *peer, const struct mg_addr *local)
{
	const struct conf *c = srv->base.conf;
	if (!server_admit(&srv->base, l, fd, peer, "* BYE [UNAVAILABLE] Too many connections\r\n"))
		return;
	struct imap_session *is = xcalloc(1, sizeof(*is));
	is->magic = IMAP_SESSION_MAGIC;
	is->srv = srv;
	is->last_cont = SIZE_MAX;
	is->ext = EXT_MAP_MISSING;
	session_init(&is->s, l, peer, local);
	size_t in_max = IMAP_LINE_MAX + 2 * (size_t)c->max_literal + 1024;
	is->s.conn = conn_new(fd, in_max, client_cb, is);
	conn_set_sensitive(is->s.conn, true);	/* LOGIN and PLAIN: until logged in */
	is->s.hooks = &imap_hooks;
	server_link(&srv->base, &is->s);
	is->deadline = mg_timer_start(c->timeout_preauth, 0, preauth_deadline, is);
	if (l->tls_mode == TLS_MODE_IMPLICIT) {
		is->state = IS_HANDSHAKE;
		conn_set_timeout(is->s.conn, c->timeout_handshake);
		conn_start_tls(is->s.conn, tls_session_server(server_tls(&srv->base, l->tls), fd,
							      l->client_cert));
		return;
	}
	greet(is);
}

static void hook_notice(struct session *s)
{
	struct imap_session *is = (struct imap_session *)((char *)s - offsetof(struct imap_session, s));
	if (is->state == IS_PREAUTH || is->state == IS_SASL || is->state == IS_LOGIN) {
		conn_cork(is->s.conn);
		imap_reply(is, "* BYE Server shutting down");
		imap_close(is, "shutdown");
	}
}

static void hook_kill(struct session *s)
{
	struct imap_session *is = (struct imap_session *)((char *)s - offsetof(struct imap_session, s));
	imap_close(is, "shutdown");	/* after login: close both sides, write nothing */
}

static const struct session_hooks imap_hooks = { hook_notice, hook_kill };
