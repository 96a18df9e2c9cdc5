/* imap_auth: see imap_auth.h. */
#include "imap_auth.h"
#include "imap_conf.h"
#include "b64.h"
#include "conn.h"
#include "imap_login.h"
#include "imap_proxy.h"
#include "imap_resp.h"
#include "imap_server.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "proxyproto.h"
#include "sasl.h"
#include "xmem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool imap_auth_external_offered(const struct imap_session *is)
{
	return session_secure(&is->s) && is->ext == EXT_MAP_OK && is->keys->master_user[0];
}

static bool is_string(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_STRING;
}

/* Who tried, for auth-failed and the session line (user may be NULL:
 * not known, e.g. a PLAIN blob that does not parse). */
static void note_attempt(struct imap_session *is, const char *user, const char *mech)
{
	if (user && user != is->user) {
		free(is->user);
		is->user = xstrdup(user);
	}
	if (mech != is->mech)
		snprintf(is->mech, sizeof(is->mech), "%s", mech);
}

/* Every refused login - the upstream's NO or the gateway's own refusal
 * (malformed PLAIN, a NUL or over-long field, EXTERNAL refused, the
 * master user) - logs auth-failed and counts toward max_auth_failures
 * (DESIGN.md §5.2, §7), so none of them is a free guess; the one reaching
 * the limit is followed by BYE and close. The NO itself is sent first. */
static void auth_failed(struct imap_session *is, const char *user, const char *mech)
{
	note_attempt(is, user, mech);
	is->auth_failures++;
	session_log_auth_failed(&is->s, user, mech);
	if (is->auth_failures >= (unsigned)is->keys->max_auth_failures) {
		imap_reply(is, "* BYE Too many authentication failures");
		imap_close(is, RESULT_AUTH_FAILURES);
	}
}

/* The gateway's own refusal of a login. */
static void refuse_login(struct imap_session *is, const char *tag, const char *user, const char *mech,
			 const char *text)
{
	imap_reply(is, "%s NO [AUTHENTICATIONFAILED] %s", tag, text);
	auth_failed(is, user, mech);
}

/* DESIGN.md §5.2: nobody logs in as master_user from outside, or its
 * password is open to guessing from the Internet. Case-insensitive, as
 * upstreams usually compare names; and also the upstream's own way of
 * naming a master login inside the user name, "user*master" (Dovecot's
 * auth_master_user_separator): the name ending in master_user after a
 * byte that user names do not use as such (not a letter, digit, '.',
 * '-', '_', '@' or '+'). */
static bool is_master_user(const struct imap_session *is, const char *name)
{
	const char *m = is->keys->master_user;
	size_t nl = strlen(name), ml = strlen(m);
	if (!ml || nl < ml || strcasecmp(name + nl - ml, m) != 0)
		return false;
	if (nl == ml)
		return true;
	unsigned char sep = (unsigned char)name[nl - ml - 1];
	return !isalnum(sep) && !strchr(".-_@+", sep);
}

/* A line's text with each bare CR written as a space: no client sees a
 * line end the upstream did not send. */
static void write_text(struct conn *c, const char *p, size_t n)
{
	const char *cr;
	while ((cr = memchr(p, '\r', n))) {
		conn_write(c, p, (size_t)(cr - p));
		conn_write(c, " ", 1);
		n -= (size_t)(cr - p) + 1;
		p = cr + 1;
	}
	conn_write(c, p, n);
}

/* An upstream response the client sees before login: its lines end in
 * CRLF whatever the upstream used, and hold no other CR (the client's
 * parser is not the upstream's); literal data goes as it came. */
static void relay_response(struct conn *c, const char *p, size_t len)
{
	size_t pos = 0, text, lit;
	while (pos < len) {
		size_t next = imap_resp_line(p, len, pos, &text, &lit);
		write_text(c, p + pos, text);
		conn_write(c, "\r\n", 2);
		conn_write(c, p + next - lit, lit);
		pos = next;
	}
}

/* The login finished one way or the other (from the login's callback). */
static void login_done(void *owner, enum login_event ev, const char *data, size_t len, const char *why)
{
	struct imap_session *is = owner;
	session_assert(&is->s);
	struct conn *c = is->s.conn;
	conn_cork(c);
	switch (ev) {
	case LOGIN_UNTAGGED:
		relay_response(c, data, len);	/* e.g. "* CAPABILITY ..." */
		conn_uncork(c);
		return;
	case LOGIN_OK:
		conn_write(c, is->tag, strlen(is->tag));
		conn_write(c, " ", 1);
		relay_response(c, data, len);	/* the upstream's code and text */
		is->up_addr = imap_login_addr(is->login);
		is->up = imap_login_take_conn(&is->login);
		imap_drop_credentials(is);
		metrics_auth(true);
		session_set_result(&is->s, RESULT_OK);	/* an earlier "unavailable" is over */
		imap_proxy_start(is);
		conn_uncork(c);
		return;
	case LOGIN_NO:
		conn_write(c, is->tag, strlen(is->tag));
		conn_write(c, " ", 1);
		relay_response(c, data, len);
		is->up_addr = imap_login_addr(is->login);
		imap_login_free(&is->login);	/* a retry reconnects */
		imap_drop_credentials(is);
		imap_enter(is, IMAP_PREAUTH);
		auth_failed(is, is->user, is->mech);
		if (is->s.state == SESSION_CLOSING)
			return;
		if (is->preauth_expired) {	/* sent in time; now the deadline holds */
			imap_preauth_expired(is);
			return;
		}
		imap_process(is);	/* bytes held during the login */
		conn_uncork(c);
		return;
	case LOGIN_UNAVAILABLE:
		log_warn("session %s: upstream unavailable: %s", is->s.id, why ? why : "?");
		imap_login_free(&is->login);
		imap_drop_credentials(is);
		imap_reply(is, "%s NO [UNAVAILABLE] Upstream server unavailable, try again later", is->tag);
		session_set_result(&is->s, RESULT_UPSTREAM_FAILED);
		imap_enter(is, IMAP_PREAUTH);
		if (is->preauth_expired) {
			imap_preauth_expired(is);
			return;
		}
		imap_process(is);
		conn_uncork(c);
		return;
	}
}

static void start_login(struct imap_session *is, const char *tag, const char *mech,
			const struct sasl_plain *cred)
{
	const char *who = cred->authzid[0] ? cred->authzid : cred->authcid;
	struct login_params p;
	if (tag != is->tag)	/* the SASL continuation passes is->tag itself */
		snprintf(is->tag, sizeof(is->tag), "%s", tag);
	note_attempt(is, who, mech);
	is->cred = xmalloc(sizeof(*is->cred));
	*is->cred = *cred;
	memset(&p, 0, sizeof(p));
	p.srv = is->server;
	p.cu = imap_server_route(p.srv, who, is->s.listener);
	p.session_id = is->s.id;
	p.client = &is->s.client;
	p.local = &is->s.local;
	p.cred = is->cred;
	unsigned char pp[PP_V2_MAX];
	p.pp_len = session_proxy_header(&is->s, p.cu->proxy_protocol, pp, sizeof(pp));
	p.pp = pp;
	imap_enter(is, IMAP_LOGIN);
	is->login = imap_login_start(&p, login_done, is);
}

static bool copy_field(char *dst, size_t dstsz, const struct imap_arg *a)
{
	if (a->len == 0 || a->len >= dstsz || memchr(a->p, '\0', a->len))
		return false;
	memcpy(dst, a->p, a->len);
	dst[a->len] = '\0';
	return true;
}

void imap_auth_login(struct imap_session *is, const struct imap_cmd *cmd)
{
	struct sasl_plain cred;
	if (cmd->nargs != 2 || !is_string(&cmd->args[0]) || !is_string(&cmd->args[1])) {
		imap_bad(is, cmd->tag, "Syntax: LOGIN user password");
		return;
	}
	memset(&cred, 0, sizeof(cred));
	bool named = copy_field(cred.authcid, sizeof(cred.authcid), &cmd->args[0]);
	if (!named || !copy_field(cred.passwd, sizeof(cred.passwd), &cmd->args[1])) {
		/* A NUL or an over-long field: no upstream would take it. */
		refuse_login(is, cmd->tag, named ? cred.authcid : NULL, "LOGIN", "Authentication failed");
		explicit_bzero(&cred, sizeof(cred));
		return;
	}
	if (is_master_user(is, cred.authcid)) {
		/* Like a wrong password (Dovecot's words), and no upstream hears of it. */
		log_info("session %s: LOGIN as the master user refused", is->s.id);
		refuse_login(is, cmd->tag, cred.authcid, "LOGIN", "Authentication failed.");
		explicit_bzero(&cred, sizeof(cred));
		return;
	}
	start_login(is, cmd->tag, "LOGIN", &cred);
	explicit_bzero(&cred, sizeof(cred));	/* a plain memset of a dying local may be elided */
	xmem_wipe_stack();	/* what the login's calls left below */
}

/* A base64 SASL PLAIN response, from SASL-IR or the continuation. */
static void plain_response(struct imap_session *is, const char *tag, const char *b64, size_t len)
{
	struct sasl_plain cred;
	if (len == 1 && b64[0] == '=') {
		imap_bad(is, tag, "Empty PLAIN response");
		return;
	}
	if (!b64_valid(b64, len)) {
		imap_bad(is, tag, "Invalid base64");
		return;
	}
	if (sasl_plain_decode(b64, len, &cred) < 0) {
		explicit_bzero(&cred, sizeof(cred));
		refuse_login(is, tag, NULL, "PLAIN", "Malformed PLAIN response");
		return;
	}
	if (is_master_user(is, cred.authcid)) {
		log_info("session %s: PLAIN as the master user refused", is->s.id);
		refuse_login(is, tag, cred.authcid, "PLAIN", "Authentication failed.");
		explicit_bzero(&cred, sizeof(cred));
		return;
	}
	start_login(is, tag, "PLAIN", &cred);
	explicit_bzero(&cred, sizeof(cred));
	xmem_wipe_stack();	/* what the login's calls left below */
}

/* EXTERNAL (RFC 4422 App. A): an empty response, or an authzid byte-equal
 * to the user the certificate names, logs that user in through the
 * upstream's master user (SASL PLAIN authzid = user, authcid = master). */
static void external_response(struct imap_session *is, const char *tag, const char *b64, size_t len)
{
	struct sasl_plain cred;
	char authzid[SASL_NAME_MAX + 1];
	const char *ext_user = is->ext_user ? is->ext_user : "";	/* set whenever EXTERNAL is offered */
	int rc = sasl_external_authzid(b64, len, authzid);
	if (rc == -1) {
		imap_bad(is, tag, "Invalid base64");
		return;
	}
	if (rc < 0 || (authzid[0] && strcmp(authzid, ext_user) != 0)) {
		refuse_login(is, tag, ext_user, "EXTERNAL", "Authorization identity not allowed");
		return;
	}
	memset(&cred, 0, sizeof(cred));
	snprintf(cred.authzid, sizeof(cred.authzid), "%s", ext_user);
	snprintf(cred.authcid, sizeof(cred.authcid), "%s", is->keys->master_user);
	snprintf(cred.passwd, sizeof(cred.passwd), "%s", is->server->master_password);
	start_login(is, tag, "EXTERNAL", &cred);
	explicit_bzero(&cred, sizeof(cred));	/* the master password */
	xmem_wipe_stack();	/* what the login's calls left below */
}

void imap_auth_authenticate(struct imap_session *is, const struct imap_cmd *cmd)
{
	if (cmd->nargs < 1 || cmd->nargs > 2 || cmd->args[0].type != IMAP_ARG_ATOM ||
	    (cmd->nargs == 2 && !is_string(&cmd->args[1]))) {
		imap_bad(is, cmd->tag, "Syntax: AUTHENTICATE mechanism [initial-response]");
		return;
	}
	const struct imap_arg *m = &cmd->args[0];
	if (m->len == 5 && strncasecmp(m->p, "PLAIN", 5) == 0) {
		if (cmd->nargs == 2) {
			plain_response(is, cmd->tag, cmd->args[1].p, cmd->args[1].len);
			return;
		}
		snprintf(is->tag, sizeof(is->tag), "%s", cmd->tag);
		is->sasl_external = 0;
		imap_reply(is, "+ ");
		imap_enter(is, IMAP_SASL);
		return;
	}
	if (m->len == 8 && strncasecmp(m->p, "EXTERNAL", 8) == 0) {
		/* Never a fallback to a client-supplied name (DESIGN.md §6). */
		if (!imap_auth_external_offered(is)) {
			log_info("session %s: EXTERNAL refused: identity=%s", is->s.id,
				 is->keys->master_user[0] ? peer_ext_map_name(is->ext) : "no-master-user");
			refuse_login(is, cmd->tag, NULL, "EXTERNAL", "No certificate identity");
			return;
		}
		if (cmd->nargs == 2) {
			external_response(is, cmd->tag, cmd->args[1].p, cmd->args[1].len);
			return;
		}
		snprintf(is->tag, sizeof(is->tag), "%s", cmd->tag);
		is->sasl_external = 1;
		imap_reply(is, "+ ");
		imap_enter(is, IMAP_SASL);
		return;
	}
	imap_reply(is, "%s NO [CANNOT] Unsupported authentication mechanism", cmd->tag);
}

void imap_auth_give_up(struct imap_session *is, const char *why)
{
	if (is->login)
		login_done(is, LOGIN_UNAVAILABLE, NULL, 0, why);
}

void imap_auth_sasl_line(struct imap_session *is, const char *line, size_t len)
{
	size_t n = len;
	imap_enter(is, IMAP_PREAUTH);
	if (n && line[n - 1] == '\n')
		n--;
	if (n && line[n - 1] == '\r')
		n--;
	if (n == 1 && line[0] == '*') {
		imap_bad(is, is->tag, "Authentication cancelled");
		return;
	}
	if (is->sasl_external)
		external_response(is, is->tag, line, n);
	else
		plain_response(is, is->tag, line, n);
}

