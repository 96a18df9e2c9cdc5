/* imap_login: see imap_login.h. One enum state with one setter. Our own
 * command tags are "M1", "M2", ...; the client's tag is put back by the
 * session. Every event to the owner is the last statement of its path (the
 * owner may free us). */
#include "imap_login.h"
#include "b64.h"
#include "conn.h"
#include "imap_resp.h"
#include "imap_server.h"
#include "log.h"
#include "proxyproto.h"
#include "strbuf.h"
#include "tls.h"
#include "upstream.h"
#include "xmem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOGIN_MAGIC 0x4c4f474eu

enum login_state {
	LS_DIAL,
	LS_TLS_IMPLICIT,
	LS_GREETING,
	LS_CAPA,
	LS_STARTTLS,
	LS_TLS,
	LS_CAPA_TLS,
	LS_ID,
	LS_AUTH_CONT,	/* AUTHENTICATE PLAIN without SASL-IR: waiting for "+" */
	LS_LOGIN_LIT1,	/* LOGIN {n}: waiting for "+" before the user name */
	LS_LOGIN_LIT2,	/* ... before the password */
	LS_AUTH,	/* waiting for the tagged answer to our login */
	LS_DONE,
};

static const char *const state_names[] = {
	"dial", "tls-implicit", "greeting", "capability", "starttls", "tls", "capability-tls",
	"id", "auth-continue", "login-literal1", "login-literal2", "auth", "done",
};

struct imap_login {
	uint32_t magic;
	enum login_state st;
	struct login_params p;
	struct sasl_plain cred;
	login_cb cb;
	void *owner;
	struct upstream_dial *dial;
	struct conn *conn;
	int index;
	unsigned tagno;
	char tag[16];		/* tag of our command in flight */
	char caps[1024];	/* last capability list seen */
	int have_caps;
	char client_ip[64], local_ip[64];
	unsigned char pp[PP_V2_MAX];
};

static void enter(struct imap_login *l, enum login_state st)
{
	log_debug("imap upstream %s: %s -> %s", l->p.cu->name, state_names[l->st], state_names[st]);
	l->st = st;
}

/* Our command: "M<n> " + fmt, built whole (IMAP_LOGIN_CMD_MAX is sized
 * for the longest we send, ID with two addresses and a session id). */
static void send_cmd(struct imap_login *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_cmd(struct imap_login *l, const char *fmt, ...)
{
	char line[IMAP_LOGIN_CMD_MAX];
	struct strbuf b;
	va_list ap;
	sb_init(&b, l->tag, sizeof(l->tag));
	sb_addc(&b, 'M');
	sb_addu(&b, ++l->tagno);
	sb_init(&b, line, sizeof(line));
	sb_adds(&b, l->tag);
	sb_addc(&b, ' ');
	va_start(ap, fmt);
	sb_vaddf(&b, fmt, ap);
	va_end(ap);
	if (!sb_ok(&b)) {	/* cannot happen: sized for every command */
		log_error("imap upstream %s: a command did not fit in %zu octets", l->p.cu->name,
			  sizeof(line));
		sb_init(&b, line, sizeof(line));
		sb_adds(&b, l->tag);
		sb_adds(&b, " LOGOUT\r\n");	/* its answer fails the login cleanly */
	}
	conn_write(l->conn, sb_str(&b), sb_len(&b));
	explicit_bzero(line, sb_len(&b));	/* it may hold the PLAIN blob */
	conn_set_timeout(l->conn, l->p.cu->timeout_reply);
}

static void unavailable(struct imap_login *l, const char *why)
{
	enter(l, LS_DONE);
	l->cb(l->owner, LOGIN_UNAVAILABLE, NULL, 0, why);
}

static bool before_auth(enum login_state st)
{
	return st < LS_AUTH_CONT;
}

/* A problem before our login command went out: try the next address. */
static void failover(struct imap_login *l, const char *why)
{
	log_info("imap upstream %s %s: %s", l->p.cu->name, l->p.cu->addrs[l->index].text, why);
	conn_free(&l->conn);
	enter(l, LS_DIAL);
	upstream_dial_next(l->dial, why);
}

/* Any upstream failure: before our login command went out it is the
 * server's, and the next address is tried (DESIGN.md §3); after it the
 * login is over (the client's credentials may have been seen). */
static void upstream_failed(struct imap_login *l, const char *why)
{
	if (before_auth(l->st)) {
		failover(l, why);
		return;
	}
	conn_free(&l->conn);
	unavailable(l, why);
}

static void note_caps(struct imap_login *l, const char *caps, size_t len)
{
	if (len >= sizeof(l->caps))
		len = sizeof(l->caps) - 1;
	memcpy(l->caps, caps, len);
	l->caps[len] = '\0';
	l->have_caps = 1;
}

static void start_tls(struct imap_login *l, enum login_state next)
{
	struct tls_client *cli = server_tls_client(&l->p.srv->base, l->p.cu);
	struct tls_session *t = cli ? tls_session_client(cli, conn_fd(l->conn),
							 l->p.cu->addrs[l->index].host) : NULL;
	if (!t) {
		failover(l, "cannot create a TLS session");
		return;
	}
	conn_start_tls(l->conn, t);	/* drops bytes after the OK (injection) */
	conn_set_timeout(l->conn, l->p.cu->timeout_reply);
	enter(l, next);
}

/* base64(authzid NUL authcid NUL passwd), wiped by the caller. */
static char *plain_blob(const struct sasl_plain *c)
{
	size_t a = strlen(c->authzid), u = strlen(c->authcid), p = strlen(c->passwd);
	unsigned char raw[sizeof(c->authzid) + sizeof(c->authcid) + sizeof(c->passwd)];
	memcpy(raw, c->authzid, a);
	raw[a] = 0;
	memcpy(raw + a + 1, c->authcid, u);
	raw[a + 1 + u] = 0;
	memcpy(raw + a + u + 2, c->passwd, p);
	char *b64 = b64_encode(raw, a + u + p + 2);
	explicit_bzero(raw, sizeof(raw));
	return b64;
}

static void send_login(struct imap_login *l)
{
	const struct sasl_plain *c = &l->cred;
	if (imap_caps_has(l->caps, strlen(l->caps), "AUTH=PLAIN")) {
		char *b64 = plain_blob(c);
		if (imap_caps_has(l->caps, strlen(l->caps), "SASL-IR")) {
			send_cmd(l, "AUTHENTICATE PLAIN %s\r\n", b64);
			enter(l, LS_AUTH);
		} else {
			send_cmd(l, "AUTHENTICATE PLAIN\r\n");
			enter(l, LS_AUTH_CONT);
		}
		explicit_bzero(b64, strlen(b64));
		free(b64);
		return;
	}
	if (c->authzid[0]) {
		static const char no[] = "NO [AUTHENTICATIONFAILED] Upstream cannot log in as another user\r\n";
		enter(l, LS_DONE);
		l->cb(l->owner, LOGIN_NO, no, sizeof(no) - 1, NULL);
		return;
	}
	/* LOGIN with synchronising literals: the values go as data. */
	send_cmd(l, "LOGIN {%zu}\r\n", strlen(c->authcid));
	enter(l, LS_LOGIN_LIT1);
}

static void after_caps(struct imap_login *l)
{
	if (l->p.cu->forward_id) {
		send_cmd(l, "ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" "
			    "\"x-connected-ip\" \"%s\" \"x-connected-port\" \"%u\" "
			    "\"x-session-ext-id\" \"%s\")\r\n",
			 l->client_ip, addr_port(l->p.client), l->local_ip, addr_port(l->p.local),
			 l->p.session_id);
		enter(l, LS_ID);
		return;
	}
	send_login(l);
}

static void need_caps(struct imap_login *l, enum login_state capa_state)
{
	if (l->have_caps && capa_state == LS_CAPA) {
		after_caps(l);
		return;
	}
	send_cmd(l, "CAPABILITY\r\n");
	enter(l, capa_state);
}

static void on_greeting(struct imap_login *l, const struct imap_resp *r)
{
	if (!r->untagged || r->status == IMAP_ST_BYE || r->status == IMAP_ST_OTHER ||
	    r->status == IMAP_ST_NO || r->status == IMAP_ST_BAD) {
		failover(l, "greeting is not * OK");
		return;
	}
	if (r->status == IMAP_ST_PREAUTH) {
		log_error("imap upstream %s %s: configuration error: the upstream greets with PREAUTH "
			  "(it must ask for a login)", l->p.cu->name, l->p.cu->addrs[l->index].text);
		failover(l, "upstream sent PREAUTH");	/* not * OK: the next address */
		return;
	}
	if (r->code_len > 11 && strncasecmp(r->code, "CAPABILITY ", 11) == 0)
		note_caps(l, r->code + 11, r->code_len - 11);
	if (l->p.cu->tls == TLS_MODE_STARTTLS) {
		if (l->have_caps && !imap_caps_has(l->caps, strlen(l->caps), "STARTTLS")) {
			failover(l, "tls = starttls but the upstream offers no STARTTLS");
			return;
		}
		send_cmd(l, "STARTTLS\r\n");
		enter(l, LS_STARTTLS);
		return;
	}
	need_caps(l, LS_CAPA);
}

/* Handles one response; returns nothing, may end in a report. */
static void on_response(struct imap_login *l, const char *resp, size_t len)
{
	struct imap_resp r;
	size_t ll = len;
	const char *lf = memchr(resp, '\n', len);
	if (lf)
		ll = (size_t)(lf - resp);
	if (ll && resp[ll - 1] == '\r')
		ll--;
	if (imap_resp_parse(resp, ll, &r) < 0) {
		upstream_failed(l, "malformed response from upstream");
		return;
	}
	if (l->st == LS_GREETING) {
		on_greeting(l, &r);
		return;
	}
	bool mine = r.tag && r.tag_len == strlen(l->tag) && memcmp(r.tag, l->tag, r.tag_len) == 0;
	if (r.untagged) {
		if (r.status == IMAP_ST_BYE) {
			upstream_failed(l, "upstream said BYE");
			return;
		}
		if (r.rest_len > 11 && strncasecmp(r.rest, "CAPABILITY ", 11) == 0)
			note_caps(l, r.rest + 11, r.rest_len - 11);
		if (l->st == LS_AUTH)	/* after our login command: the client sees it */
			l->cb(l->owner, LOGIN_UNTAGGED, resp, len, NULL);
		return;
	}
	if (r.continuation) {
		char line[sizeof(l->cred.authcid) + 32];
		struct strbuf b;
		switch (l->st) {
		case LS_AUTH_CONT: {
			char *b64 = plain_blob(&l->cred);
			conn_write(l->conn, b64, strlen(b64));
			conn_write(l->conn, "\r\n", 2);
			explicit_bzero(b64, strlen(b64));
			free(b64);
			enter(l, LS_AUTH);
			return;
		}
		case LS_LOGIN_LIT1:
			/* The user name's literal data, then the password's
			 * announcement (sized: authcid < 256 octets). */
			sb_init(&b, line, sizeof(line));
			sb_adds(&b, l->cred.authcid);
			sb_adds(&b, " {");
			sb_addu(&b, strlen(l->cred.passwd));
			sb_adds(&b, "}\r\n");
			conn_write(l->conn, sb_str(&b), sb_len(&b));
			enter(l, LS_LOGIN_LIT2);
			return;
		case LS_LOGIN_LIT2:
			conn_write(l->conn, l->cred.passwd, strlen(l->cred.passwd));
			conn_write(l->conn, "\r\n", 2);
			enter(l, LS_AUTH);
			return;
		default:
			break;
		}
		upstream_failed(l, "unexpected continuation from upstream");
		return;
	}
	if (!mine)
		return;	/* not ours: ignore */
	switch (l->st) {
	case LS_STARTTLS:
		if (r.status != IMAP_ST_OK) {
			failover(l, "STARTTLS refused");
			return;
		}
		l->have_caps = 0;	/* capabilities before TLS mean nothing now */
		start_tls(l, LS_TLS);
		return;
	case LS_CAPA:
	case LS_CAPA_TLS:
		if (r.status != IMAP_ST_OK || !l->have_caps) {
			failover(l, "CAPABILITY failed");
			return;
		}
		after_caps(l);
		return;
	case LS_ID:
		/* Whatever the answer to ID, go on: it is informational. */
		send_login(l);
		return;
	case LS_AUTH:
	case LS_AUTH_CONT:
	case LS_LOGIN_LIT1:
	case LS_LOGIN_LIT2: {
		/* The line after our tag; the session puts the client's tag back. */
		const char *after = resp + r.tag_len + 1;
		size_t alen = len - r.tag_len - 1;
		enter(l, LS_DONE);
		l->cb(l->owner, r.status == IMAP_ST_OK ? LOGIN_OK : LOGIN_NO, after, alen, NULL);
		return;
	}
	default:
		return;
	}
}

static void conn_cb_login(struct conn *c, enum conn_event ev, void *arg)
{
	struct imap_login *l = arg;
	if (l->magic != LOGIN_MAGIC)
		abort();
	switch (ev) {
	case CONN_EV_READ: {
		long n = imap_resp_length(conn_in_data(c), conn_in_len(c));
		if (n == 0)
			return;
		if (n < 0) {	/* over IMAP_RESP_MAX, a greeting included */
			upstream_failed(l, "oversized response from upstream");
			return;
		}
		char *copy = xmemdup0(conn_in_data(c), (size_t)n);
		conn_in_consume(c, (size_t)n);
		if (conn_in_len(c))
			conn_kick(c);	/* more queued: come back */
		struct imap_login *self = l;
		on_response(self, copy, (size_t)n);
		free(copy);
		return;
	}
	case CONN_EV_HANDSHAKE:
		if (l->st == LS_TLS_IMPLICIT)
			enter(l, LS_GREETING);
		else
			need_caps(l, LS_CAPA_TLS);
		return;
	case CONN_EV_DRAINED:
		return;
	case CONN_EV_TIMEOUT:
	case CONN_EV_EOF:
	case CONN_EV_ERROR: {
		char why[300];
		snprintf(why, sizeof(why), "%s", ev == CONN_EV_TIMEOUT ? "timeout"
					   : ev == CONN_EV_EOF ? "connection closed" : conn_error(c));
		upstream_failed(l, why);
		return;
	}
	}
}

static void dial_cb(void *arg, int fd, int index, const char *err)
{
	struct imap_login *l = arg;
	if (fd < 0) {
		char why[600];
		snprintf(why, sizeof(why), "%s", err);
		unavailable(l, why);
		return;
	}
	l->index = index;
	l->have_caps = 0;
	l->conn = conn_new(fd, IMAP_RESP_MAX + 1024, conn_cb_login, l);
	conn_set_sensitive(l->conn, true);	/* our AUTHENTICATE / LOGIN may queue */
	conn_read_start(l->conn);
	if (l->p.pp_len)	/* before anything else, TLS included */
		conn_write(l->conn, l->pp, l->p.pp_len);
	conn_set_timeout(l->conn, l->p.cu->timeout_reply);
	if (l->p.cu->tls == TLS_MODE_IMPLICIT)
		start_tls(l, LS_TLS_IMPLICIT);
	else
		enter(l, LS_GREETING);
}

struct imap_login *imap_login_start(const struct login_params *p, login_cb cb, void *owner)
{
	struct imap_login *l = xcalloc(1, sizeof(*l));
	l->magic = LOGIN_MAGIC;
	l->p = *p;
	l->cred = *p->cred;
	l->p.cred = &l->cred;
	if (p->pp_len)	/* <= PP_V2_MAX: built into a buffer of that size */
		memcpy(l->pp, p->pp, p->pp_len);
	l->p.pp = l->pp;
	l->cb = cb;
	l->owner = owner;
	addr_ip_str(p->client, l->client_ip, sizeof(l->client_ip));
	addr_ip_str(p->local, l->local_ip, sizeof(l->local_ip));
	l->st = LS_DIAL;
	l->dial = upstream_dial_start(p->cu, dial_cb, l);
	return l;
}

struct conn *imap_login_take_conn(struct imap_login *l)
{
	struct conn *c = l->conn;
	l->conn = NULL;
	conn_set_sensitive(c, false);	/* logged in: the relay's bytes are the user's */
	return c;
}

void imap_login_free(struct imap_login **lp)
{
	struct imap_login *l = *lp;
	if (!l)
		return;
	upstream_dial_free(&l->dial);
	conn_free(&l->conn);
	explicit_bzero(&l->cred, sizeof(l->cred));
	l->magic = 0;
	free(l);
	*lp = NULL;
}

const char *imap_login_addr(const struct imap_login *l)
{
	return l->p.cu->addrs[l->index].text;
}
