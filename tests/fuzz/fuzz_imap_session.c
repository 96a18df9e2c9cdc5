/* fuzz_imap_session: whole mailgate-imapd sessions in the simulated world
 * (session_harness.h gives the input format and the generic invariants).
 * IMAP invariants checked here:
 *
 *  client stream   before login every response the gateway writes is
 *                  made of lines ending in CRLF (no bare CR or LF, no NUL,
 *                  literals announced with {n} skipped), and the stream is
 *                  at a response boundary when the login completes or the
 *                  session ends;
 *  upstream stream a PROXY header first when configured; then only the
 *                  gateway's own commands, tagged M<n> - CAPABILITY,
 *                  STARTTLS, ID (with forward_id), AUTHENTICATE PLAIN
 *                  with base64, LOGIN with synchronising literals - each
 *                  line ending in CRLF (client bytes are never spliced into
 *                  a command line); nothing but CAPABILITY / STARTTLS
 *                  before TLS on a TLS upstream (credentials never in
 *                  clear); no login as master_user except an EXTERNAL one
 *                  whose authzid is the user the verified client
 *                  certificate names (DESIGN.md §5.2, §6); no literal data
 *                  before the upstream's "+". After the upstream's OK to
 *                  the login, the bytes are the user's;
 *  relay           after login the client gets exactly the upstream's
 *                  bytes from the end of its login OK on, plus at most an
 *                  autologout BYE at a line boundary of them, and the
 *                  upstream gets exactly the client's bytes from the end of
 *                  its login command on (§5.3). */
#include "b64.h"
#include "conn.h"
#include "imap_conf.h"
#include "imap_daemon.h"
#include "imap_resp.h"
#include "imap_session.h"
#include "proxyproto.h"
#include "session_harness.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- configuration variants ---- */

#define COMMON \
	"hostname = \"imap.test.example\"\n" \
	"tls \"default\" { cert = \"mx.pem\" key = \"mx.key\" }\n" \
	"tls \"mtls\" { cert = \"mx.pem\" key = \"mx.key\" client_ca = \"ca.pem\" client_cert = \"optional\" }\n" \
	"tls_client \"up\" { verify_name = \"imap.up.example\" }\n" \
	"peer \"partner\" { name = \"mx2.partner.example\" }\n" \
	"peer \"pinned\" { fingerprint = \"sha256:" PIN64 "\" }\n"
#define PIN64 "5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E"
#define MASTER "master_user = \"master\"\nmaster_password_file = \"master.pw\"\n"

static const char *const configs[] = {
	/* 0: IMAPS, plain upstream with ID forwarding */
	COMMON
	"upstream \"dovecot\" { address = \"127.0.0.1:10143\" forward_id = true }\n"
	"listener \"imaps\" { max_connections = 16 address = \"192.0.2.1:993\" tls_mode = \"implicit\" }\n",
	/* 1: STARTTLS, optional certs, EXTERNAL by email; STARTTLS upstream, PROXY v1, small literals */
	COMMON MASTER
	"external_identity = \"email\"\nmax_literal = 256\n"
	"upstream \"dovecot\" { address = \"127.0.0.1:10143\" tls = \"starttls\" tls_client = \"up\"\n"
	"  proxy_protocol = \"v1\" forward_id = false }\n"
	"listener \"imap\" { max_connections = 16 address = \"192.0.2.1:143\" tls_mode = \"starttls\" tls = \"mtls\" }\n",
	/* 2: loopback plain, user_map routing, implicit TLS upstream with PROXY v2 */
	COMMON
	"user_map = \"users.map\"\nmax_auth_failures = 2\nmax_errors = 3\n"
	"upstream \"dovecot\" { address = \"127.0.0.1:10993\" tls = \"implicit\" tls_client = \"up\"\n"
	"  proxy_protocol = \"v2\" }\n"
	"upstream \"other\" { address = { \"127.0.0.1:20143\", \"127.0.0.1:20144\" } connect_timeout = 3 }\n"
	"listener \"local\" { max_connections = 16 address = \"127.0.0.1:10144\" tls_mode = \"none\" upstream = \"dovecot\" }\n",
	/* 3: certificates required, peers only, EXTERNAL by DNS name */
	COMMON MASTER
	"external_identity = \"dns\"\n"
	"upstream \"dovecot\" { address = \"127.0.0.1:10143\" }\n"
	"listener \"mtls\" { max_connections = 16 address = \"192.0.2.1:993\" tls_mode = \"implicit\" tls = \"mtls\"\n"
	"  client_cert = \"require\" peers_only = true }\n",
	/* 4: EXTERNAL by CN, short timeouts, two connections at most */
	COMMON MASTER
	"external_identity = \"cn\"\ntimeout_preauth = 10\ntimeout_idle = 60\nshutdown_timeout = 5\n"
	"upstream \"dovecot\" { address = \"127.0.0.1:10143\" forward_id = true timeout_reply = 20 }\n"
	"listener \"imaps\" { address = \"192.0.2.1:993\" tls_mode = \"implicit\" tls = \"mtls\"\n"
	"  max_connections = 2 }\n",
	/* 5: behind a load balancer (PROXY header in), STARTTLS upstream */
	COMMON
	"timeout_handshake = 5\n"
	"upstream \"dovecot\" { address = \"127.0.0.1:10143\" tls = \"starttls\" tls_client = \"up\" }\n"
	"listener \"lb\" { max_connections = 16 address = \"127.0.0.1:10145\" tls_mode = \"none\" proxy_protocol = true\n"
	"  trusted_proxies = { \"127.0.0.1\", \"192.0.2.10\", \"2001:db8::10\" } }\n",
};

static const char *const files[] = {
	"master.pw", "s3cret-master\n",
	"users.map", "# user upstream\nbob other\nalice dovecot\n",
};

/* ---- a line walker with IMAP literals ({n} / {n+} at a line's end) ---- */

struct walker {
	size_t lit;		/* literal bytes still to skip */
	bool mid;		/* inside a line (or right after a literal) */
	int prev;		/* previous byte of the line, -1 at its start */
	char tail[16];		/* the line's last bytes, for "{n}" */
	size_t ntail;
	char line[8300];	/* the current line (command lines are at most 2 KiB) */
	size_t nline;
	bool truncated;		/* it did not fit in line[] */
	bool nonsync;		/* the literal just announced was {n+} */
	bool used;		/* line[] was handed out: start afresh */
	bool relayed_text_ok;	/* NUL may appear (upstream text relayed) */
};

/* The literal a finished line announces (its text before CRLF in tail). */
static size_t announced(struct walker *w, bool *is_lit)
{
	size_t e = w->ntail, n = 0, mult = 1, digits = 0;
	*is_lit = false;
	w->nonsync = false;
	if (!e || w->tail[e - 1] != '}')
		return 0;
	e--;
	if (e && w->tail[e - 1] == '+') {
		w->nonsync = true;
		e--;
	}
	while (e && w->tail[e - 1] >= '0' && w->tail[e - 1] <= '9' && digits < 9) {
		n += (size_t)(w->tail[e - 1] - '0') * mult;
		mult *= 10;
		e--;
		digits++;
	}
	if (!digits || !e || w->tail[e - 1] != '{')
		return 0;
	*is_lit = true;
	return n;
}

enum walk { W_BYTE, W_LINE, W_LITERAL_BYTE };

/* Feeds one byte; W_LINE when a line ended (w->line holds its start). */
static enum walk walk(struct walker *w, unsigned char ch, const char *who, const char *id)
{
	if (w->lit) {
		w->lit--;
		return W_LITERAL_BYTE;
	}
	if (w->used) {
		w->used = false;
		w->nline = 0;
		w->line[0] = '\0';
		w->truncated = false;
	}
	w->mid = true;
	if (ch == '\n') {
		HX_CHECK(w->prev == '\r', id, "%s: a line ending in a bare LF: %.60s", who, w->line);
		if (w->ntail && w->tail[w->ntail - 1] == '\r')
			w->ntail--;
		if (w->nline && w->line[w->nline - 1] == '\r')
			w->line[--w->nline] = '\0';
		w->used = true;
		bool is_lit;
		size_t n = announced(w, &is_lit);
		w->prev = -1;
		w->ntail = 0;
		if (is_lit) {
			w->lit = n;
			w->mid = true;	/* the response goes on after the literal */
		} else {
			w->mid = false;
		}
		return W_LINE;
	}
	HX_CHECK(w->prev != '\r', id, "%s: a bare CR inside a line: %.60s", who, w->line);
	/* The gateway's own commands never hold NUL; relayed upstream text
	 * is the upstream's (DESIGN.md §5 sets no rule on it). */
	HX_CHECK(ch != '\0' || w->relayed_text_ok, id, "%s: NUL inside a line: %.60s", who, w->line);
	if (w->nline + 1 < sizeof(w->line)) {
		w->line[w->nline++] = (char)ch;
		w->line[w->nline] = '\0';
	} else {
		w->truncated = true;
	}
	if (w->ntail == sizeof(w->tail)) {
		memmove(w->tail, w->tail + 1, sizeof(w->tail) - 1);
		w->ntail--;
	}
	w->tail[w->ntail++] = (char)ch;
	w->prev = ch;
	return W_BYTE;
}

static bool at_boundary(const struct walker *w)
{
	return !w->lit && !w->mid;
}

/* ---- client stream ---- */

struct client_state {
	struct walker w;
	uint64_t seen;		/* bytes of output so far */
	bool boundary_checked;
	/* after login: the upstream relayed from, and where in its bytes */
	struct hx_up *up;
	size_t e_pos, e_start;
	size_t bye;		/* bytes of the autologout BYE written */
	bool mismatch;
	/* the other way: what the client sent, and where its relay starts */
	unsigned char *clog;
	size_t clen, ccap;
	size_t c_start;
	bool c_known;
};

static const char autologout[] = "* BYE Autologout\r\n";

static void append(unsigned char **buf, size_t *len, size_t *cap, const unsigned char *p, size_t n)
{
	if (*len + n > *cap) {
		size_t c = *cap ? *cap : 1024;
		while (c < *len + n)
			c *= 2;
		*buf = realloc(*buf, c);
		if (!*buf)
			abort();
		*cap = c;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
}

static void client_in(struct hx_client *c, const unsigned char *p, size_t n)
{
	struct client_state *cs = c->proto;
	append(&cs->clog, &cs->clen, &cs->ccap, p, n);
}
static bool upstream_byte(struct hx_up *u, size_t pos, unsigned char *ch);

static void client_new(struct hx_client *c)
{
	struct client_state *cs = calloc(1, sizeof(*cs));
	if (!cs)
		abort();
	cs->w.prev = -1;
	cs->w.relayed_text_ok = true;
	c->proto = cs;
}

static void free_client(void *p)
{
	struct client_state *cs = p;
	if (cs)
		free(cs->clog);
	free(p);
}

static void check_boundary(struct hx_client *c, const char *when)
{
	struct client_state *cs = c->proto;
	HX_CHECK(at_boundary(&cs->w), "imap-crlf", "client %d: %s in the middle of a response line "
		 "(byte %llu of its output): %.60s", c->index, when, (unsigned long long)cs->seen, cs->w.line);
}

/* DESIGN.md §5.3: after login the client gets the upstream's bytes,
 * untouched and in order, and nothing else but a "* BYE Autologout" at a
 * line boundary of them. */
static void relayed(struct hx_client *c, unsigned char ch)
{
	struct client_state *cs = c->proto;
	unsigned char want;
	if (!cs->up || cs->mismatch)
		return;
	if (!cs->bye && upstream_byte(cs->up, cs->e_pos, &want) && want == ch) {
		cs->e_pos++;
		return;
	}
	if (!cs->bye) {
		bool bol = cs->e_pos == cs->e_start || (upstream_byte(cs->up, cs->e_pos - 1, &want) && want == '\n');
		HX_CHECK(bol, "relay", "client %d: after login, a byte %#x the upstream did not send, inside "
			 "a line of the upstream's", c->index, ch);
	}
	if (cs->bye < sizeof(autologout) - 1 && autologout[cs->bye] == (char)ch) {
		cs->bye++;
		return;
	}
	hx_violation("relay", "client %d: after login, byte %#x is neither the upstream's (offset %zu) nor "
		     "the autologout BYE", c->index, ch, cs->e_pos);
	cs->mismatch = true;
}

static void client_out(struct hx_client *c, const unsigned char *p, size_t n)
{
	struct client_state *cs = c->proto;
	char who[32];
	snprintf(who, sizeof(who), "client %d (pre-login)", c->index);
	for (size_t i = 0; i < n; i++, cs->seen++) {
		if (c->login_seen && cs->seen >= c->boundary) {
			if (!cs->boundary_checked) {
				cs->boundary_checked = true;
				check_boundary(c, "login completed");
			}
			relayed(c, p[i]);
			continue;
		}
		walk(&cs->w, p[i], who, "imap-crlf");
	}
}

static void client_end(struct hx_client *c)
{
	struct client_state *cs = c->proto;
	if (!c->login_seen || cs->seen < c->boundary)
		check_boundary(c, "the gateway closed");
}

/* ---- upstream stream ---- */

struct up_state {
	bool pp_done;
	unsigned char pp[PP_V2_MAX];
	size_t pplen;
	struct walker w;	/* gateway -> upstream */
	bool relay;		/* the upstream accepted our login: raw relay */
	char login_tag[16];	/* our login command's tag, once sent */
	bool plain_no_ir;	/* AUTHENTICATE PLAIN without SASL-IR: a data line follows */
	int lit_stage;		/* LOGIN: 1 user literal announced, 2 password announced */
	size_t lit_len;
	char lit[300];		/* the literal being sent (the user name) */
	size_t nlit;
	bool lit_first;		/* a literal was announced, none of it sent yet */
	bool login_sent;	/* our login command is complete: the rest is relay */
	uint64_t out;		/* bytes the gateway wrote so far */
	uint64_t u0;		/* ... when the login command was complete */
	unsigned char *rlog;	/* what it wrote after that */
	size_t rlen, rcap, rchecked;
	struct hx_client *owner;	/* the client logged in over it */
	unsigned conts;		/* "+" continuations the upstream sent */
	unsigned conts_used;
	/* upstream -> gateway: every byte (the relay check reads it), and
	 * the tagged responses in order (the login's OK ends our commands) */
	char *log;
	size_t loglen, logcap;
	size_t parsed;		/* log offset the response parser reached */
	struct {
		char tag[16];
		bool ok;
	} tagged[64];
	unsigned ntagged;
};

/* DESIGN.md §5.3, the other way: after login the upstream gets exactly the
 * client's bytes from the end of its login command on (those held during
 * the login first). */
static void check_up_relay(struct hx_up *u)
{
	struct up_state *st = u->proto;
	struct hx_client *c = st->owner;
	if (!c)
		return;
	struct client_state *cs = c->proto;
	if (!cs->c_known)
		return;
	for (; st->rchecked < st->rlen; st->rchecked++) {
		size_t k = cs->c_start + st->rchecked;
		if (k >= cs->clen || cs->clog[k] != st->rlog[st->rchecked]) {
			hx_violation("relay", "client %d: after login, upstream byte %zu (%#x) is not the client's "
				     "byte %zu", c->index, st->rchecked, st->rlog[st->rchecked], k);
			st->rchecked = st->rlen;
			st->owner = NULL;
			return;
		}
	}
}

static bool upstream_byte(struct hx_up *u, size_t pos, unsigned char *ch)
{
	struct up_state *st = u->proto;
	if (pos >= st->loglen)
		return false;
	*ch = (unsigned char)st->log[pos];
	return true;
}

static void up_new(struct hx_up *u)
{
	struct up_state *st = calloc(1, sizeof(*st));
	if (!st)
		abort();
	st->pp_done = u->cu->proxy_protocol == PROXY_OUT_OFF;
	st->w.prev = -1;
	u->proto = st;
}

static void free_up(void *p)
{
	struct up_state *st = p;
	if (st) {
		free(st->log);
		free(st->rlog);
	}
	free(p);
}

static void up_in(struct hx_up *u, const unsigned char *p, size_t n)
{
	struct up_state *st = u->proto;
	struct imap_resp r;
	if (st->loglen + n > st->logcap) {
		size_t cap = st->logcap ? st->logcap : 1024;
		while (cap < st->loglen + n)
			cap *= 2;
		st->log = realloc(st->log, cap);
		if (!st->log)
			abort();
		st->logcap = cap;
	}
	memcpy(st->log + st->loglen, p, n);
	st->loglen += n;
	for (;;) {
		long len = imap_resp_length(st->log + st->parsed, st->loglen - st->parsed);
		if (len <= 0)
			break;
		const char *line = st->log + st->parsed;
		const char *lf = memchr(line, '\n', (size_t)len);
		size_t ll = lf ? (size_t)(lf - line) : (size_t)len;
		if (ll && line[ll - 1] == '\r')
			ll--;
		if (imap_resp_parse(line, ll, &r) == 0) {
			if (r.continuation)
				st->conts++;
			if (r.tag && r.tag_len < sizeof(st->tagged[0].tag) &&
			    st->ntagged < sizeof(st->tagged) / sizeof(st->tagged[0])) {
				memcpy(st->tagged[st->ntagged].tag, r.tag, r.tag_len);
				st->tagged[st->ntagged].tag[r.tag_len] = '\0';
				st->tagged[st->ntagged++].ok = r.status == IMAP_ST_OK;
			}
		}
		st->parsed += (size_t)len;
	}
}

/* Whether the gateway may be relaying by now: an OK for our login tag
 * M<k> has arrived after the first answer to M<k-1> (the gateway sends
 * one command at a time: an OK before that answers nothing it had sent).
 * A superset of what the gateway accepts - never a false alarm. */
static bool login_accepted(struct up_state *st)
{
	if (st->relay || !st->login_tag[0])
		return st->relay;
	unsigned from = 0;
	unsigned long k = strtoul(st->login_tag + 1, NULL, 10);
	char prev[16];
	snprintf(prev, sizeof(prev), "M%lu", k - 1);
	for (unsigned i = 0; k > 1 && i < st->ntagged; i++)
		if (!strcmp(st->tagged[i].tag, prev)) {
			from = i + 1;
			break;
		}
	for (unsigned i = from; i < st->ntagged; i++)
		if (st->tagged[i].ok && !strcmp(st->tagged[i].tag, st->login_tag))
			st->relay = true;
	return st->relay;
}

static void up_tls(struct hx_up *u)
{
	struct up_state *st = u->proto;
	st->parsed = st->loglen;	/* what came before the handshake is gone */
	st->ntagged = 0;
	st->conts = st->conts_used = 0;
	HX_CHECK(at_boundary(&st->w), "upstream-cmd", "TLS started towards %s in the middle of a command",
		 u->cu->name);
}

/* A verified client certificate of this world names `user` for EXTERNAL. */
static bool external_allowed(const char *user)
{
	char mapped[256];
	for (int i = 0; i < hx.nclients; i++) {
		struct hx_client *c = &hx.clients[i];
		if (c->tls_ok && c->cert_status == CERT_VERIFIED &&
		    hx_external_user(c->ident, c->cert_status, imapd_conf(hx.conf)->external_identity, mapped) &&
		    !strcmp(mapped, user))
			return true;
	}
	return false;
}

static void check_plain(struct hx_up *u, const char *b64, size_t len)
{
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	if (b64_decode(b64, len, &raw, &rawlen) < 0) {
		hx_violation("upstream-cmd", "AUTHENTICATE PLAIN with invalid base64 sent to %s", u->cu->name);
		return;
	}
	const unsigned char *z1 = memchr(raw, 0, rawlen);
	const unsigned char *z2 = z1 ? memchr(z1 + 1, 0, rawlen - (size_t)(z1 + 1 - raw)) : NULL;
	HX_CHECK(z1 && z2, "upstream-cmd", "a PLAIN response without two NULs sent to %s", u->cu->name);
	if (z1 && z2 && imapd_conf(hx.conf)->master_user[0]) {
		char authzid[300], authcid[300];
		snprintf(authzid, sizeof(authzid), "%.*s", (int)(z1 - raw), (const char *)raw);
		snprintf(authcid, sizeof(authcid), "%.*s", (int)(z2 - z1 - 1), (const char *)z1 + 1);
		if (!strcasecmp(authcid, imapd_conf(hx.conf)->master_user))
			HX_CHECK(authzid[0] && external_allowed(authzid), "master-user",
				 "login as master_user \"%s\" for \"%s\", which no verified client certificate names",
				 authcid, authzid);
	}
	memset(raw, 0, rawlen);
	free(raw);
}

static bool tag_ok(const char *l, size_t *taglen)
{
	size_t i = 1;
	if (l[0] != 'M')
		return false;
	while (l[i] >= '0' && l[i] <= '9')
		i++;
	*taglen = i;
	return i > 1 && l[i] == ' ';
}

static bool b64_text(const char *s)
{
	size_t n = strlen(s);
	return n && b64_valid(s, n);
}

/* One finished command line of the gateway. */
static void up_line(struct hx_up *u, const char *l)
{
	struct up_state *st = u->proto;
	HX_CHECK(!st->w.truncated, "line-length", "a command line of over %zu octets sent to %s",
		 sizeof(st->w.line), u->cu->name);
	size_t tl;
	bool pre_tls = u->cu->tls != TLS_MODE_NONE && !u->tls_up;
	if (st->lit_stage == 1) {
		/* After the user literal: " {n}" announcing the password. */
		st->lit_stage = 2;
		return;
	}
	if (st->lit_stage == 2) {
		HX_CHECK(l[0] == '\0', "upstream-cmd", "bytes after the LOGIN password sent to %s", u->cu->name);
		st->lit_stage = 0;
		st->login_sent = true;
		return;
	}
	if (st->plain_no_ir) {
		st->plain_no_ir = false;
		st->login_sent = true;
		HX_CHECK(b64_text(l), "upstream-cmd", "a PLAIN continuation that is not base64 sent to %s",
			 u->cu->name);
		if (b64_text(l))
			check_plain(u, l, strlen(l));
		return;
	}
	if (!tag_ok(l, &tl)) {
		hx_violation("upstream-cmd", "an untagged or foreign line sent to %s: %.60s", u->cu->name, l);
		return;
	}
	const char *cmd = l + tl + 1;
	HX_CHECK(!pre_tls || (u->cu->tls == TLS_MODE_STARTTLS &&
			      (!strcmp(cmd, "CAPABILITY") || !strcmp(cmd, "STARTTLS"))),
		 "cleartext", "%.60s sent to %s before TLS", l, u->cu->name);
	if (!strcmp(cmd, "CAPABILITY") || !strcmp(cmd, "STARTTLS"))
		return;
	if (!strncmp(cmd, "ID (", 4)) {
		HX_CHECK(u->cu->forward_id, "upstream-cmd", "ID sent to %s, which has forward_id = false",
			 u->cu->name);
		HX_CHECK(!strncmp(cmd, "ID (\"x-originating-ip\" \"", 24) && cmd[strlen(cmd) - 1] == ')',
			 "upstream-cmd", "a malformed ID sent to %s: %.80s", u->cu->name, cmd);
		return;
	}
	snprintf(st->login_tag, sizeof(st->login_tag), "%.*s", (int)tl, l);
	if (!strcmp(cmd, "AUTHENTICATE PLAIN")) {
		st->plain_no_ir = true;
		return;
	}
	if (!strncmp(cmd, "AUTHENTICATE PLAIN ", 19)) {
		st->login_sent = true;
		HX_CHECK(b64_text(cmd + 19), "upstream-cmd", "AUTHENTICATE PLAIN with a non-base64 argument sent "
			 "to %s", u->cu->name);
		if (b64_text(cmd + 19))
			check_plain(u, cmd + 19, strlen(cmd + 19));
		return;
	}
	if (!strncmp(cmd, "LOGIN {", 7) && cmd[strlen(cmd) - 1] == '}' && !st->w.nonsync) {
		st->lit_stage = 1;
		st->nlit = 0;
		return;
	}
	st->login_tag[0] = '\0';
	hx_violation("upstream-cmd", "an unexpected command sent to %s: %.60s", u->cu->name, l);
}

static void proxy_header(struct hx_up *u, const unsigned char *p, size_t n, size_t *used)
{
	struct up_state *st = u->proto;
	struct pp_info info;
	size_t take = n < sizeof(st->pp) - st->pplen ? n : sizeof(st->pp) - st->pplen, consumed = 0;
	memcpy(st->pp + st->pplen, p, take);
	st->pplen += take;
	enum pp_rc rc = pp_parse(st->pp, st->pplen, &info, &consumed);
	*used = n;
	if (rc == PP_MORE && st->pplen < sizeof(st->pp))
		return;
	st->pp_done = true;
	HX_CHECK(rc == PP_OK, "proxy-out", "the PROXY header sent to %s does not parse", u->cu->name);
	if (rc != PP_OK)
		return;
	HX_CHECK((u->cu->proxy_protocol == PROXY_OUT_V1) == (st->pp[0] == 'P'), "proxy-out",
		 "PROXY header version differs from proxy_protocol of %s", u->cu->name);
	size_t before = st->pplen - take;
	*used = consumed > before ? consumed - before : 0;
}

static void up_out(struct hx_up *u, const unsigned char *p, size_t n)
{
	struct up_state *st = u->proto;
	char who[64];
	if (!st->pp_done) {
		size_t used = 0;
		proxy_header(u, p, n, &used);
		p += used;
		n -= used;
		st->out += used;
	}
	snprintf(who, sizeof(who), "upstream %s", u->cu->name);
	for (size_t i = 0; i < n; i++, st->out++) {
		/* After our login command - or an OK to it, even one that came
		 * before all of it was sent - the bytes are the user's, and only
		 * after the OK. An upstream may send its "+"s and the OK ahead of
		 * our command (all in the log already): the gateway takes them in
		 * order, so while our command is mid-literal the bytes are still
		 * ours. (An OK that the gateway reads while its LOGIN waits for a
		 * "+" ends the upstream: no byte of ours may follow it, or the
		 * relay check below fires.) */
		bool mid_command = st->lit_stage || st->plain_no_ir;
		if (st->login_sent || (login_accepted(st) && !mid_command)) {
			HX_CHECK(login_accepted(st), "upstream-cmd", "bytes sent to %s after the login command, "
				 "before its OK", u->cu->name);
			if (!st->rlen)
				st->u0 = st->out;
			append(&st->rlog, &st->rlen, &st->rcap, p + i, n - i);
			st->out += n - i;
			check_up_relay(u);
			return;
		}
		if (st->w.lit && st->lit_first) {
			st->lit_first = false;
			/* A synchronising literal waits for the server's "+". */
			if (!st->w.nonsync)
				HX_CHECK(st->conts > st->conts_used++, "upstream-cmd",
					 "literal data sent to %s before its \"+\" continuation", u->cu->name);
		}
		enum walk r = walk(&st->w, p[i], who, "upstream-cmd");
		if (r == W_LITERAL_BYTE) {
			if (st->lit_stage == 1 && st->nlit + 1 < sizeof(st->lit))
				st->lit[st->nlit++] = (char)p[i];
			if (!st->w.lit && st->lit_stage == 1) {
				st->lit[st->nlit] = '\0';
				HX_CHECK(!imapd_conf(hx.conf)->master_user[0] || strcasecmp(st->lit, imapd_conf(hx.conf)->master_user),
					 "master-user", "LOGIN as master_user \"%s\" sent to %s", st->lit, u->cu->name);
				st->nlit = 0;
			}
			continue;
		}
		if (r == W_LINE) {
			up_line(u, st->w.line);
			st->lit_first = st->w.lit > 0;
		}
	}
}

static void up_end(struct hx_up *u)
{
}

/* ---- sessions ---- */

static const struct imap_session *is_of(const struct session *s)
{
	return (const struct imap_session *)s;
}

static bool logged_in(const struct session *s)
{
	return is_of(s)->state == IMAP_RELAY;
}

/* At login: which upstream connection the session relays, and from which
 * of its bytes on (those the gateway read but did not consume yet come
 * first). */
static void session_seen(const struct session *s, struct hx_client *c)
{
	const struct imap_session *is = is_of(s);
	struct client_state *cs = c->proto;
	if (is->state != IMAP_RELAY) {
		/* What the pre-auth loop consumed: while the login runs it
		 * consumes nothing (bytes are held in the conn), so the value
		 * seen last before the login completes is where the relay of
		 * the client's bytes starts. */
		cs->c_start = (size_t)(sim_sock_peer_sent(c->sock) - sim_sock_unread(c->sock) -
				       sim_tls_held(c->sock) - conn_in_len(s->conn));
		return;
	}
	if (cs->up || !is->up)
		return;
	for (int i = 0; i < hx.nups; i++) {
		struct hx_up *u = &hx.ups[i];
		if (!sim_sock_open(u->sock) || sim_sock_fd(u->sock) != conn_fd(is->up))
			continue;
		size_t read = (size_t)(sim_sock_peer_sent(u->sock) - sim_sock_unread(u->sock)) -
			      sim_tls_held(u->sock);
		struct up_state *st = u->proto;
		cs->up = u;
		cs->e_start = cs->e_pos = read - conn_in_len(is->up);
		cs->c_known = true;
		st->owner = c;
		check_up_relay(u);
		return;
	}
	sim_fail("client %d: logged in over a connection that is no upstream socket", c->index);
}

static const struct hx_proto imap_proto = {
	.name = "imap_session",
	.ops = &imapd_ops,
	.configs = configs,
	.nconfigs = sizeof(configs) / sizeof(configs[0]),
	.files = files,
	.nfiles = sizeof(files) / sizeof(files[0]) / 2,
	.logged_in = logged_in,
	.session_seen = session_seen,
	.client_new = client_new,
	.client_in = client_in,
	.client_out = client_out,
	.free_client = free_client,
	.client_end = client_end,
	.up_new = up_new,
	.up_out = up_out,
	.up_in = up_in,
	.up_tls = up_tls,
	.up_end = up_end,
	.free_up = free_up,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return hx_run(&imap_proto, data, size);
}
