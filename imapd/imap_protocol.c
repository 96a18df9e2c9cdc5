/* imap_protocol: IMAP's session hooks (DESIGN.md §5) - the greeting with
 * its capabilities, the pre-auth deadline (timeout_preauth: a deadline to
 * log in, not an inactivity timer), identity after every handshake
 * (peers_only, the EXTERNAL user), the pre-auth command loop (literals and
 * their "+" continuations, line limits), input held during a login, the
 * relay after it, the half-close, timeouts and shutdown, and the end. */
#include "imap_protocol.h"
#include "imap_conf.h"
#include "conn.h"
#include "imap_auth.h"
#include "imap_cmd.h"
#include "imap_login.h"
#include "imap_proxy.h"
#include "imap_session.h"
#include "log.h"
#include "server.h"
#include "peer.h"
#include "strbuf.h"
#include "xmem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void start(struct session *s)
{
	struct imap_session *is = imap_of(s);
	is->server = (struct imap_server *)s->srv;
	is->keys = imapd_conf(s->srv->conf);
	is->last_cont = SIZE_MAX;
	is->ext = EXT_MAP_MISSING;
	conn_set_sensitive(s->conn, true);	/* LOGIN and PLAIN: until logged in */
	session_set_deadline(s, is->keys->timeout_preauth);
}

static void greet(struct session *s)
{
	struct imap_session *is = imap_of(s);
	char caps[IMAP_CAPS_MAX];
	struct strbuf b;
	conn_set_timeout(s->conn, 0);	/* the pre-auth deadline applies */
	sb_init(&b, caps, sizeof(caps));
	imap_capability_line(is, &b);
	imap_reply(is, "* OK [CAPABILITY %s] %s ready", caps, session_conf(&is->s)->hostname);
	conn_read_start(s->conn);
}

/* After every handshake: the peer (peers_only) and the EXTERNAL identity. */
static void identified(struct session *s, bool implicit)
{
	struct imap_session *is = imap_of(s);
	if (s->listener->peers_only && !s->peer) {
		log_info("session %s: peers_only: certificate not accepted (%s)", s->id, s->peer_reason);
		imap_reply(is, "* BYE [AUTHENTICATIONFAILED] Certificate not accepted");
		imap_close(is, RESULT_CERT_REJECTED);
		return;
	}
	const struct tls_peer *p = session_cert(s);
	char user[SASL_NAME_MAX + 1];
	is->ext = (uint8_t)peer_external_user(p, is->keys->external_identity, user);
	free(is->ext_user);
	is->ext_user = is->ext == EXT_MAP_OK ? xstrdup(user) : NULL;
	if (p && is->ext != EXT_MAP_OK)
		log_debug("session %s: identity=%s", s->id, peer_ext_map_name(is->ext));
}

static void restarted(struct session *s)
{
	/* After STARTTLS the client asks CAPABILITY again itself. */
	conn_set_timeout(s->conn, 0);
	conn_read_start(s->conn);
}

/* One SASL response line (AUTHENTICATE continuation). False: wait. */
static bool sasl_step(struct imap_session *is)
{
	struct conn *c = is->s.conn;
	size_t end = conn_in_line_end(c);
	char line[IMAP_LINE_MAX + 2];	/* IMAP_LINE_MAX octets, CR, LF */
	if (!end) {
		if (conn_in_len(c) > sizeof(line) - 1) {	/* no room left for the LF */
			imap_reply(is, "* BAD Line too long");
			imap_close(is, RESULT_ERROR);
		}
		return false;
	}
	if (end > sizeof(line)) {
		/* The whole line arrived at once: the input buffer holds more
		 * than a line (room for literals), so the limit is checked here
		 * as well as while the line is incomplete. */
		conn_in_consume(c, end);
		imap_reply(is, "* BAD Line too long");
		imap_close(is, RESULT_ERROR);
		return false;
	}
	memcpy(line, conn_in_data(c), end);
	conn_in_consume(c, end);
	imap_auth_sasl_line(is, line, end);
	explicit_bzero(line, end);	/* a PLAIN response */
	return true;
}

/* One pre-auth command. False: wait for more input (or closed). */
static bool command_step(struct imap_session *is, struct imap_cmd *cmd)
{
	struct conn *c = is->s.conn;
	struct imap_parse_info info;
	switch (imap_parse(conn_in_data(c), conn_in_len(c), (size_t)is->keys->max_literal, cmd,
			   &info)) {
	case IMAP_PARSE_MORE:
		if (conn_in_full(c)) {
			imap_reply(is, "* BAD Command too large");
			imap_close(is, RESULT_ERROR);
		}
		return false;
	case IMAP_PARSE_CONTINUE:
		if (imap_cmd_needs_privacy(is, cmd->name)) {
			/* Refused without "+": the client sends no literal. */
			imap_cmd_privacy_refusal(is, cmd->tag);
			conn_in_clear(c);
			is->last_cont = SIZE_MAX;
			return true;
		}
		if (info.literal_at != is->last_cont) {
			imap_reply(is, "+ Ready for literal data");
			is->last_cont = info.literal_at;
		}
		return false;
	case IMAP_PARSE_OK:
		is->last_cont = SIZE_MAX;
		imap_cmd_dispatch(is, cmd);	/* copies what it keeps */
		conn_in_consume(c, info.consumed);
		return true;
	case IMAP_PARSE_BAD:
		is->last_cont = SIZE_MAX;
		conn_in_consume(c, info.consumed);
		imap_bad(is, cmd->tag, "Syntax error");
		return true;
	case IMAP_PARSE_TOO_LONG:
		imap_reply(is, "* BAD Line too long");
		imap_close(is, RESULT_ERROR);
		return false;
	case IMAP_PARSE_LITERAL_TOO_BIG:
		imap_reply(is, "%s BAD Literal too big", cmd->tag[0] ? cmd->tag : "*");
		imap_close(is, RESULT_ERROR);
		return false;
	}
	return false;
}

/* The pre-auth loop: one command at a time until the input runs out or a
 * command waits (SASL response, upstream login). */
void imap_process(struct imap_session *is)
{
	static struct imap_cmd cmd;	/* 8 KiB arena: not on the stack */
	struct conn *c = is->s.conn;
	bool more = true;
	conn_cork(c);
	while (more && is->s.state == SESSION_ACTIVE &&
	       (is->state == IMAP_PREAUTH || is->state == IMAP_SASL)) {
		if (session_output_full(&is->s))
			break;	/* the client is not reading its replies */
		more = is->state == IMAP_SASL ? sasl_step(is) : command_step(is, &cmd);
		/* The command's unescaped quoted strings (a LOGIN password) stay
		 * in the static arena until wiped. */
		explicit_bzero(cmd.arena, cmd.arena_used);
		cmd.arena_used = 0;
	}
	conn_uncork(c);
	/* Half-closed: every complete command was answered; what is left
	 * can never complete. Close once the replies have gone. */
	if (is->client_eof && !is->s.out_full && (is->state == IMAP_PREAUTH || is->state == IMAP_SASL))
		imap_close(is, RESULT_UNCHANGED);
}

static void input(struct session *s)
{
	struct imap_session *is = imap_of(s);
	switch (is->state) {
	case IMAP_RELAY:
		imap_proxy_from_client(is);
		return;
	case IMAP_LOGIN:
		/* Held until the login ends; bounded. */
		if (conn_in_full(s->conn)) {
			imap_reply(is, "* BAD Too much input during login");
			imap_close(is, RESULT_ERROR);
		}
		return;
	default:
		imap_process(is);
		return;
	}
}

static void drained(struct session *s)
{
	struct imap_session *is = imap_of(s);
	if (is->state == IMAP_RELAY)
		imap_proxy_client_drained(is);
}

/* A half-close (shutdown of the client's write side): the commands
 * before it were delivered and still get their replies, a login in
 * flight its outcome (and then the commands held during it); after login
 * the FIN is passed on. */
static bool eof(struct session *s)
{
	struct imap_session *is = imap_of(s);
	is->client_eof = 1;
	switch (is->state) {
	case IMAP_RELAY:
		imap_proxy_client_eof(is);
		return true;
	case IMAP_LOGIN:
		return true;	/* the login's outcome carries on */
	default:
		imap_process(is);
		return true;
	}
}

static void timeout(struct session *s)
{
	struct imap_session *is = imap_of(s);
	if (is->state == IMAP_RELAY) {
		imap_proxy_idle(is);
		return;
	}
	imap_close(is, RESULT_TIMEOUT);
}

static void deadline(struct session *s)
{
	struct imap_session *is = imap_of(s);
	if (is->state == IMAP_RELAY)
		return;
	if (is->state == IMAP_LOGIN && !is->preauth_expired) {
		/* The client logged in in time: it gets the upstream's answer,
		 * within the upstream's timeout_reply from now at most (the
		 * upstream's own timer restarts on any byte, so this one does
		 * not); a failure is then followed by the BYE (imap_auth.c). */
		is->preauth_expired = 1;
		session_set_deadline(s, s->listener->upstream->timeout_reply);
		return;
	}
	if (is->state == IMAP_LOGIN) {
		imap_auth_give_up(is, "no answer to the login within timeout_reply after timeout_preauth");
		return;
	}
	imap_preauth_expired(is);
}

void imap_preauth_expired(struct imap_session *is)
{
	if (is->s.state == SESSION_ACTIVE)
		imap_reply(is, "* BYE Disconnected for inactivity");
	imap_close(is, RESULT_TIMEOUT);
}

static void shutdown_(struct session *s)
{
	struct imap_session *is = imap_of(s);
	if (is->state == IMAP_RELAY)
		return;	/* relayed sessions end at shutdown_timeout, silently */
	conn_cork(s->conn);
	imap_reply(is, "* BYE Server shutting down");
	imap_close(is, RESULT_SHUTDOWN);
}

static void release(struct imap_session *is)
{
	imap_login_free(&is->login);
	conn_free(&is->up);	/* close_notify to the upstream */
	imap_drop_credentials(is);
}

static void closing(struct session *s)
{
	release(imap_of(s));
}

static void log_keys(struct session *s, struct logkv *kv)
{
	struct imap_session *is = imap_of(s);
	if (is->user)
		logkv_str(kv, "user", is->user);
}

static const char *upstream_addr(const struct session *s)
{
	return ((const struct imap_session *)s)->up_addr;
}

static void free_(struct session *s)
{
	struct imap_session *is = imap_of(s);
	release(is);
	free(is->user);
	free(is->ext_user);
}

/* Room for the start of a pipelined next command after a whole one. */
#define IMAP_IN_PIPELINED 1024

static size_t in_max(const struct conf *c)
{
	/* A command line, its literals, and room for what follows. */
	return IMAP_LINE_MAX + 2 * (size_t)imapd_conf(c)->max_literal + IMAP_IN_PIPELINED;
}

const struct session_ops imap_session_ops = {
	.name = "imap",
	.size = sizeof(struct imap_session),
	.in_max = in_max,
	.limit_refusal = "* BYE [UNAVAILABLE] Too many connections\r\n",
	.internal_error = "* NO Internal error\r\n",
	.start = start,
	.greet = greet,
	.identified = identified,
	.restarted = restarted,
	.input = input,
	.drained = drained,
	.eof = eof,
	.timeout = timeout,
	.deadline = deadline,
	.shutdown = shutdown_,
	.closing = closing,
	.log = log_keys,
	.upstream = upstream_addr,
	.free = free_,
};
