/* imap_login: see imap_login.h. One enum state with one setter. Our own
 * command tags are "M1", "M2", ...; the client's tag is put back by the
 * session. Before our login command goes out, every upstream problem is
 * the server's and the next address is tried (upstream_failover); once
 * it has gone out (upstream_ready), a problem ends the login. Every event
 * to the owner is the last statement of its path (the owner may free us). */
#include "imap_login.h"
#include "imap_resp.h"
#include "imap_server.h"
#include "log.h"
#include "proxyproto.h"
#include "strbuf.h"
#include "upstream.h"
#include "xmem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOGIN_MAGIC 0x4c4f474eu
/* The upstream's capability list kept; atoms past a longer list's cut
 * are not seen (Dovecot's full list is about 600 octets). */
#define IMAP_CAPS_MAX 1024

enum login_state {
	LS_DIAL,	/* connecting (and the implicit handshake) */
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
	"dial", "greeting", "capability", "starttls", "tls", "capability-tls",
	"id", "auth-continue", "login-literal1", "login-literal2", "auth", "done",
};

struct imap_login {
	uint32_t magic;
	enum login_state st;
	struct login_params p;
	struct sasl_plain cred;
	login_cb cb;
	void *owner;
	struct upstream *up;
	unsigned tagno;
	char tag[16];		/* tag of our command in flight */
	char caps[IMAP_CAPS_MAX];	/* last capability list seen */
	int have_caps;
	size_t untagged;	/* bytes of untagged responses so far */
	char client_ip[64], local_ip[64];
};

/* Untagged responses a login may take from one upstream (its greeting
 * and capability exchange included): a real server sends a few hundred
 * bytes; one that talks on and on is failed before the worker queues its
 * words for a client that may not read them. */
#define IMAP_LOGIN_UNTAGGED_MAX (64 * 1024)

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
	upstream_send(l->up, sb_str(&b), sb_len(&b));
	explicit_bzero(line, sb_len(&b));	/* it may hold the PLAIN blob */
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
	enter(l, LS_DIAL);
	upstream_failover(l->up, why);
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
	upstream_close(&l->up);
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

static const char capability_sp[] = "CAPABILITY ";
#define CAPABILITY_SP_LEN (sizeof(capability_sp) - 1)

/* "CAPABILITY a b c" in a response code or an untagged line. */
static void maybe_caps(struct imap_login *l, const char *p, size_t len)
{
	if (len > CAPABILITY_SP_LEN && strncasecmp(p, capability_sp, CAPABILITY_SP_LEN) == 0)
		note_caps(l, p + CAPABILITY_SP_LEN, len - CAPABILITY_SP_LEN);
}

static void send_login(struct imap_login *l)
{
	const struct sasl_plain *c = &l->cred;
	upstream_ready(l->up);	/* from here on, no other address */
	if (imap_caps_has(l->caps, strlen(l->caps), "AUTH=PLAIN")) {
		char *b64 = sasl_plain_encode(c);
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
			  "(it must ask for a login)", l->p.cu->name, upstream_addr(l->up));
		failover(l, "upstream sent PREAUTH");	/* not * OK: the next address */
		return;
	}
	maybe_caps(l, r->code, r->code_len);
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

static void on_untagged(struct imap_login *l, const struct imap_resp *r, const char *resp, size_t len)
{
	if (r->status == IMAP_ST_BYE) {
		upstream_failed(l, "upstream said BYE");
		return;
	}
	l->untagged += len;
	if (l->untagged > IMAP_LOGIN_UNTAGGED_MAX) {
		upstream_failed(l, "upstream sent over 64 KiB of untagged responses during the login");
		return;
	}
	maybe_caps(l, r->rest, r->rest_len);
	if (l->st == LS_AUTH)	/* after our login command: the client sees it */
		l->cb(l->owner, LOGIN_UNTAGGED, resp, len, NULL);
}

/* "+": the upstream asks for the next part of our login. */
static void on_continuation(struct imap_login *l)
{
	char line[sizeof(l->cred.authcid) + 32];
	struct strbuf b;
	switch (l->st) {
	case LS_AUTH_CONT: {
		char *b64 = sasl_plain_encode(&l->cred);
		upstream_write(l->up, b64, strlen(b64));
		upstream_write(l->up, "\r\n", 2);
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
		upstream_write(l->up, sb_str(&b), sb_len(&b));
		enter(l, LS_LOGIN_LIT2);
		return;
	case LS_LOGIN_LIT2:
		upstream_write(l->up, l->cred.passwd, strlen(l->cred.passwd));
		upstream_write(l->up, "\r\n", 2);
		enter(l, LS_AUTH);
		return;
	default:
		upstream_failed(l, "unexpected continuation from upstream");
		return;
	}
}

/* The tagged answer to our command in flight. */
static void on_tagged(struct imap_login *l, const struct imap_resp *r, const char *resp, size_t len)
{
	switch (l->st) {
	case LS_STARTTLS:
		if (r->status != IMAP_ST_OK) {
			failover(l, "STARTTLS refused");
			return;
		}
		l->have_caps = 0;	/* capabilities before TLS mean nothing now */
		enter(l, LS_TLS);
		upstream_start_tls(l->up);	/* bytes after the OK are discarded */
		return;
	case LS_CAPA:
	case LS_CAPA_TLS:
		if (r->status != IMAP_ST_OK || !l->have_caps) {
			failover(l, "CAPABILITY failed");
			return;
		}
		after_caps(l);
		return;
	case LS_ID:
		/* Whatever the answer to ID, go on: it is informational. */
		send_login(l);
		return;
	case LS_AUTH_CONT:
	case LS_LOGIN_LIT1:
	case LS_LOGIN_LIT2:
		/* Our command waits for a "+": a NO or BAD here aborts it (RFC
		 * 9051 §7.5), but an OK cannot answer a command not yet sent
		 * whole - relaying from here on would let the client's bytes
		 * finish our LOGIN. */
		if (r->status == IMAP_ST_OK) {
			upstream_failed(l, "upstream accepted a login it had not received");
			return;
		}
		/* fall through */
	case LS_AUTH:
		/* The line after our tag; the session puts the client's tag back. */
		enter(l, LS_DONE);
		l->cb(l->owner, r->status == IMAP_ST_OK ? LOGIN_OK : LOGIN_NO, resp + r->tag_len + 1,
		      len - r->tag_len - 1, NULL);
		return;
	default:
		return;
	}
}

/* Handles one response; may end in a report. */
static void on_response(struct imap_login *l, const char *resp, size_t len)
{
	struct imap_resp r;
	size_t ll = len;
	const char *lf = memchr(resp, '\n', len);
	if (lf)
		ll = (size_t)(lf - resp);
	if (ll && resp[ll - 1] == '\r')
		ll--;
	if (imap_resp_parse(resp, ll, &r) < 0)
		upstream_failed(l, "malformed response from upstream");
	else if (l->st == LS_GREETING)
		on_greeting(l, &r);
	else if (r.untagged)
		on_untagged(l, &r, resp, len);
	else if (r.continuation)
		on_continuation(l);
	else if (r.tag && r.tag_len == strlen(l->tag) && memcmp(r.tag, l->tag, r.tag_len) == 0)
		on_tagged(l, &r, resp, len);
	/* else: not ours, ignored */
}

/* The owner of an upstream event, checked. */
static struct imap_login *login_of(void *owner)
{
	struct imap_login *l = owner;
	if (l->magic != LOGIN_MAGIC)
		abort();
	return l;
}

static void up_event(void *owner, struct upstream *up, enum upstream_event ev, const char *data,
		     size_t len)
{
	struct imap_login *l = login_of(owner);
	switch (ev) {
	case UPSTREAM_CONNECTED:
		l->have_caps = 0;
		l->untagged = 0;	/* each address its own 64 KiB */
		enter(l, LS_GREETING);	/* the greeting comes first */
		return;
	case UPSTREAM_TLS_READY:
		need_caps(l, LS_CAPA_TLS);
		return;
	case UPSTREAM_RESPONSE:
		on_response(l, data, len);
		return;
	case UPSTREAM_DRAINED:
		return;
	case UPSTREAM_FAILED:
		unavailable(l, data);
		return;
	case UPSTREAM_LOST:
	case UPSTREAM_TIMEOUT:
		upstream_failed(l, ev == UPSTREAM_TIMEOUT ? "timeout" : data);
		return;
	}
}

struct imap_login *imap_login_start(const struct login_params *p, login_cb cb, void *owner)
{
	struct imap_login *l = xcalloc(1, sizeof(*l));
	l->magic = LOGIN_MAGIC;
	l->p = *p;
	l->cred = *p->cred;
	l->p.cred = &l->cred;
	l->p.pp = NULL;
	l->cb = cb;
	l->owner = owner;
	addr_ip_str(p->client, l->client_ip, sizeof(l->client_ip));
	addr_ip_str(p->local, l->local_ip, sizeof(l->local_ip));
	l->st = LS_DIAL;
	struct upstream_params up = {
		.cu = p->cu,
		.tls = server_tls_client(&p->srv->base, p->cu),
		.only_index = -1,
		.pp = p->pp,
		.pp_len = p->pp_len,
		.frame = imap_resp_length,
		.in_max = IMAP_RESP_MAX + 1,
		.frame_error = "oversized response from upstream",
		.log_name = "imap upstream",
		.who = p->session_id,
	};
	l->up = upstream_open(&up, up_event, l);
	upstream_set_sensitive(l->up, true);	/* our AUTHENTICATE / LOGIN may queue */
	return l;
}

struct conn *imap_login_take_conn(struct imap_login **lp)
{
	struct imap_login *l = *lp;
	upstream_set_sensitive(l->up, false);	/* logged in: the relay's bytes are the user's */
	struct conn *c = upstream_detach(&l->up);
	imap_login_free(lp);
	return c;
}

void imap_login_free(struct imap_login **lp)
{
	struct imap_login *l = *lp;
	if (!l)
		return;
	upstream_close(&l->up);
	explicit_bzero(&l->cred, sizeof(l->cred));
	l->magic = 0;
	free(l);
	*lp = NULL;
}

const char *imap_login_addr(const struct imap_login *l)
{
	return upstream_addr(l->up);
}
