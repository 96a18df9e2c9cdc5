/* fuzz_smtp_session: whole mailgate-smtpd sessions in the simulated world
 * (session_harness.h gives the input format and the generic invariants).
 * SMTP invariants checked here:
 *
 *  client stream   every byte forms reply lines "ddd-text" / "ddd text"
 *                  with CRLF, code 200-599, one code per multi-line
 *                  reply, text without CR, LF or NUL; the stream ends at
 *                  a reply boundary;
 *  upstream stream a PROXY header first when configured, parsing as one
 *                  and naming a live session's client; then command lines
 *                  ending in CRLF with no CR, LF or NUL inside; nothing but
 *                  EHLO / STARTTLS / QUIT before TLS on a TLS upstream;
 *                  EHLO, XCLIENT (and the rest) at most 512 octets, AUTH
 *                  lines at most 12288; MAIL/RCPT paths within RFC 5321
 *                  §4.5.3.1 (local part 64, domain 255, path 256);
 *                  nothing after QUIT; message data (after a 354 to DATA)
 *                  without bare CR or LF, ended by CRLF.CRLF;
 *  conversation    each reply answers one client line, in order (see the
 *                  model below); QUIT is answered 221;
 *  accounting      neither the messages the gateway counts as delivered
 *                  nor the final dots clients saw answered 2xx outnumber
 *                  the final dots the upstream answered 2xx (upstream
 *                  replies are paired with commands in order, as the
 *                  gateway itself does - one outstanding at a time). */
#include "proxyproto.h"
#include "session_harness.h"
#include "smtp_conf.h"
#include "smtp_daemon.h"
#include "smtp_reply.h"
#include "smtp_session.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- configuration variants ---- */

#define COMMON \
	"hostname = \"mx.test.example\"\n" \
	"accept_domains = { \"example.org\", \".example.org\" }\n" \
	"tls \"default\" { cert = \"mx.pem\" key = \"mx.key\" }\n" \
	"tls \"mtls\" { cert = \"mx.pem\" key = \"mx.key\" client_ca = \"ca.pem\" client_cert = \"optional\" }\n" \
	"tls_client \"up\" { verify_name = \"mx.up.example\" }\n" \
	"peer \"partner\" { name = \"mx2.partner.example\" relay = true }\n" \
	"peer \"pinned\" { fingerprint = \"sha256:" PIN64 "\" relay = true }\n"
#define PIN64 "5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E"

static const char *const configs[] = {
	/* 0: SMTPS, AUTH, XCLIENT, plain upstream */
	COMMON
	"upstream \"postfix\" { address = \"127.0.0.1:10025\" xclient = true }\n"
	"listener \"smtps\" { max_connections = 16 address = \"192.0.2.1:465\" tls_mode = \"implicit\" auth = true }\n",
	/* 1: submission STARTTLS required; upstream STARTTLS, no XCLIENT, PROXY v1 */
	COMMON
	"upstream \"postfix\" { address = \"127.0.0.1:10025\" xclient = false tls = \"starttls\"\n"
	"  tls_client = \"up\" proxy_protocol = \"v1\" }\n"
	"listener \"sub\" { max_connections = 16 address = \"192.0.2.1:587\" tls_mode = \"starttls\" require_tls = true auth = true }\n",
	/* 2: local MTA on loopback, relay_networks; implicit TLS upstream, PROXY v2, rDNS */
	COMMON
	"reverse_dns = true\n"
	"upstream \"peer-mx\" { address = \"127.0.0.1:10465\" xclient = true tls = \"implicit\"\n"
	"  tls_client = \"up\" proxy_protocol = \"v2\" }\n"
	"listener \"local\" { max_connections = 16 address = \"127.0.0.1:10026\" tls_mode = \"none\" auth = true\n"
	"  relay_networks = { \"127.0.0.1/32\" } }\n",
	/* 3: relay peers only (implicit, optional certs), failover between two addresses */
	COMMON
	"max_errors = 3\n"
	"upstream \"postfix\" { address = { \"127.0.0.1:10025\", \"[::1]:10025\" } xclient = true\n"
	"  connect_timeout = 5 }\n"
	"listener \"relay\" { max_connections = 16 address = \"192.0.2.1:465\" tls_mode = \"implicit\" tls = \"mtls\"\n"
	"  peers_only = true auth = false }\n",
	/* 4: port-25 style MX: STARTTLS optional, small limits, rDNS, more SASL mechanisms,
	 * STARTTLS upstream with PROXY v2 */
	COMMON
	"reverse_dns = true\n"
	"max_recipients = 100\nmax_message_size = 2048\nmax_line = 512\nreceived_header = false\n"
	"auth_mechanisms = { \"PLAIN\", \"LOGIN\", \"EXTERNAL\", \"CRAM-MD5\" }\n"
	"upstream \"postfix\" { address = \"127.0.0.1:10025\" xclient = true tls = \"starttls\"\n"
	"  tls_client = \"up\" proxy_protocol = \"v2\" timeout_reply = 60 }\n"
	"listener \"mx\" { max_connections = 16 address = \"192.0.2.1:2525\" tls_mode = \"starttls\" require_tls = false\n"
	"  auth = true tls = \"mtls\" }\n",
	/* 5: client certificates required, peers relay, two connections at most */
	COMMON
	"upstream \"postfix\" { address = \"127.0.0.1:10025\" xclient = true }\n"
	"listener \"mtls\" { address = \"192.0.2.1:465\" tls_mode = \"implicit\" tls = \"mtls\"\n"
	"  client_cert = \"require\" auth = false max_connections = 2 max_per_ip = 2 }\n",
	/* 6: behind a load balancer (PROXY header in), plain loopback */
	COMMON
	"timeout_handshake = 5\n"
	"upstream \"postfix\" { address = \"127.0.0.1:10025\" xclient = true }\n"
	"listener \"lb\" { max_connections = 16 address = \"127.0.0.1:10027\" tls_mode = \"none\" auth = true\n"
	"  proxy_protocol = true trusted_proxies = { \"127.0.0.1\", \"192.0.2.10\", \"2001:db8::10\" }\n"
	"  relay_networks = { \"192.0.2.0/24\" } }\n",
	/* 7: STARTTLS required, no AUTH, no XCLIENT, short timeouts */
	COMMON
	"timeout_command = 30\ntimeout_data = 60\nshutdown_timeout = 5\n"
	"upstream \"postfix\" { address = \"127.0.0.1:10025\" xclient = false timeout_reply = 30 }\n"
	"listener \"sub\" { max_connections = 16 address = \"192.0.2.1:587\" tls_mode = \"starttls\" require_tls = true\n"
	"  auth = false }\n",
};

/* ---- client stream: reply lines, and the conversation they answer ----
 *
 * The model pairs each complete reply with the client line it answers, in
 * order, as the gateway must (pipelining keeps the order): the greeting
 * first; in DATA (after a 354) the reply goes to the final dot; in an AUTH
 * exchange (after a 334) to the SASL line; after STARTTLS's 220 the lines
 * pipelined behind it are gone; an overlong partial line is one line.
 * A 421 may come at any time and ends the model (the gateway closes).
 * Checked: every reply answers a line; QUIT gets 221; the final dots the
 * client saw accepted never outnumber those the upstream accepted. */

#define MODEL_LINES 1024

enum mode { M_CMD, M_DATA, M_AUTH };

struct cline {
	size_t len;
	char head[12];		/* the line's first bytes */
	bool after_crlf;	/* the line before it ended in CR LF: a "." here ends DATA */
};

struct client_state {
	int st;			/* 0-2 digits, 3 separator, 4 text, 5 after CR */
	int code, line_code;
	bool more;		/* the last line was "ddd-" */
	char sep;
	/* the conversation model */
	struct cline q[MODEL_LINES];
	unsigned qh, qt;	/* queued complete lines: [qh, qt) */
	struct cline part;	/* the line being sent */
	unsigned char last;	/* the last byte sent */
	bool ended_crlf;	/* the last complete line ended in CR LF */
	bool skip_rest;		/* the tail of an overlong line already answered */
	enum mode mode;
	bool greeted, done, lost;
	unsigned dots_2xx;
};

static unsigned client_dots_2xx;	/* over the whole world */

static void client_new(struct hx_client *c)
{
	c->proto = calloc(1, sizeof(struct client_state));
	if (!c->proto)
		abort();
}

static void client_in(struct hx_client *c, const unsigned char *p, size_t n)
{
	struct client_state *cs = c->proto;
	for (size_t i = 0; i < n; i++) {
		if (cs->skip_rest) {
			cs->skip_rest = p[i] != '\n';
			if (!cs->skip_rest)
				cs->ended_crlf = cs->last == '\r';
			cs->last = p[i];
			continue;
		}
		if (cs->part.len < sizeof(cs->part.head))
			cs->part.head[cs->part.len] = (char)p[i];
		cs->part.len++;
		unsigned char before = cs->last;
		cs->last = p[i];
		if (p[i] != '\n')
			continue;
		/* DESIGN.md §4.5: only CR LF "." CR LF ends a message; a "."
		 * line after a bare LF is message text. */
		cs->part.after_crlf = cs->ended_crlf;
		cs->ended_crlf = before == '\r';
		if (cs->qt - cs->qh == MODEL_LINES)
			cs->lost = true;	/* too much to follow: stop judging */
		else
			cs->q[cs->qt++ % MODEL_LINES] = cs->part;
		memset(&cs->part, 0, sizeof(cs->part));
	}
}

static bool line_is(const struct cline *l, const char *word)
{
	size_t n = strlen(word);
	return l->len == n + 2 && !strncasecmp(l->head, word, n) && l->head[n] == '\r';
}

static bool pop_line(struct client_state *cs, struct cline *l)
{
	if (cs->qh != cs->qt) {
		*l = cs->q[cs->qh++ % MODEL_LINES];
		return true;
	}
	/* "500 Line too long" comes before the line's end. */
	if (cs->part.len > (size_t)smtpd_conf(hx.conf)->max_line + 2) {
		*l = cs->part;
		memset(&cs->part, 0, sizeof(cs->part));
		cs->skip_rest = true;
		return true;
	}
	return false;
}

static void model_reply(struct hx_client *c, int code)
{
	struct client_state *cs = c->proto;
	struct cline l;
	if (cs->lost || cs->done)
		return;
	if (!cs->greeted) {
		cs->greeted = true;
		cs->done = code == 421;
		return;
	}
	if (code == 421) {
		cs->done = true;	/* the gateway is closing */
		return;
	}
	if (cs->mode == M_DATA) {
		bool dot = false;
		while (!dot && pop_line(cs, &l))
			dot = l.len == 3 && l.head[0] == '.' && l.head[1] == '\r' && l.after_crlf;
		HX_CHECK(dot, "reply-pairing", "client %d: reply %d during DATA before the final dot", c->index,
			 code);
		if (dot && code >= 200 && code < 300)
			client_dots_2xx++;
		cs->mode = M_CMD;
		return;
	}
	if (!pop_line(cs, &l)) {
		/* DESIGN.md §4.4: an upstream lost between commands is 421. */
		hx_violation(code == 451 ? "unsolicited-451" : "reply-pairing",
			     "client %d: reply %d answers no command", c->index, code);
		cs->lost = true;
		return;
	}
	if (cs->mode == M_AUTH) {
		if (code != 334)
			cs->mode = M_CMD;
		return;
	}
	if (line_is(&l, "QUIT")) {
		HX_CHECK(code == 221, "quit", "client %d: QUIT answered %d, not 221", c->index, code);
		cs->done = true;
	} else if (line_is(&l, "DATA") && code == 354) {
		cs->mode = M_DATA;
	} else if (l.len > 5 && !strncasecmp(l.head, "AUTH ", 5) && code == 334) {
		cs->mode = M_AUTH;
	} else if (line_is(&l, "STARTTLS") && code == 220) {
		cs->qh = cs->qt;	/* pipelined lines are discarded */
		memset(&cs->part, 0, sizeof(cs->part));
	}
}

static void client_out(struct hx_client *c, const unsigned char *p, size_t n)
{
	struct client_state *cs = c->proto;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = p[i];
		switch (cs->st) {
		case 0: case 1: case 2:
			HX_CHECK(ch >= '0' && ch <= '9', "reply-format",
				 "client %d: reply byte %#x where a code digit belongs", c->index, ch);
			cs->line_code = (cs->st ? cs->line_code * 10 : 0) + (ch - '0');
			cs->st++;
			break;
		case 3:
			HX_CHECK(ch == ' ' || ch == '-', "reply-format",
				 "client %d: reply code %d followed by %#x", c->index, cs->line_code, ch);
			HX_CHECK(cs->line_code >= 200 && cs->line_code <= 599, "reply-format",
				 "client %d: reply code %d", c->index, cs->line_code);
			HX_CHECK(!cs->more || cs->line_code == cs->code, "reply-format",
				 "client %d: multi-line reply changes code %d -> %d", c->index, cs->code,
				 cs->line_code);
			cs->code = cs->line_code;
			cs->sep = (char)ch;
			cs->st = 4;
			break;
		case 4:
			if (ch == '\r') {
				cs->st = 5;
				break;
			}
			HX_CHECK(ch != '\n' && ch != '\0', "reply-format",
				 "client %d: %s inside reply text", c->index, ch ? "bare LF" : "NUL");
			break;
		case 5:
			HX_CHECK(ch == '\n', "reply-format", "client %d: bare CR inside reply text", c->index);
			cs->more = cs->sep == '-';
			cs->st = 0;
			if (!cs->more)
				model_reply(c, cs->code);
			break;
		}
	}
}

static void client_end(struct hx_client *c)
{
	struct client_state *cs = c->proto;
	HX_CHECK(cs->st == 0 && !cs->more, "reply-format",
		 "client %d: the gateway closed in the middle of a reply", c->index);
}

/* ---- upstream stream: commands, data, replies ---- */

#define MAX_PAIRS 2048
#define LINE_MAX_CHECK 16384

enum cmd_kind { K_OTHER, K_DATA, K_DOT, K_QUIT, K_SASL, K_AUTH, K_ABORT };

struct up_state {
	/* PROXY header */
	bool pp_done;
	unsigned char pp[PP_V2_MAX];
	size_t pplen;
	/* gateway -> upstream */
	char line[LINE_MAX_CHECK];
	size_t linelen;
	bool in_data, quit_sent;
	bool await_data;	/* DATA sent: what follows depends on its answer */
	int dprev;		/* data: previous byte, or -1 at the start of a line */
	int dstate;		/* 0 line start, 1 ".", 2 ".\r" */
	uint8_t kinds[MAX_PAIRS];
	unsigned ncmds;
	/* upstream -> gateway (mirror of the gateway's reply parsing) */
	char *rbuf;
	size_t rlen, rcap;
	int codes[MAX_PAIRS];
	unsigned nreplies;
	bool greeting;		/* reply 0 is a greeting, not an answer */
	bool dead;		/* unparsable: the gateway drops this connection */
	unsigned paired;	/* commands whose replies were accounted */
};

static unsigned dots_2xx;	/* over the whole world */
/* An upstream's replies stopped parsing while the gateway could still be
 * reading replies queued ahead of the garbage (pipelined during a TLS
 * handshake, say): the model no longer knows which commands they answer,
 * so the delivered counts are not judged in this run. */
static bool blind;
static unsigned long delivered[HX_MAX_CLIENTS];

static void up_new(struct hx_up *u)
{
	struct up_state *st = calloc(1, sizeof(*st));
	if (!st)
		abort();
	st->greeting = true;
	st->pp_done = u->probe || u->cu->proxy_protocol == PROXY_OUT_OFF;
	st->dprev = -1;
	u->proto = st;
}

static void free_up(void *p)
{
	struct up_state *st = p;
	if (st && st->rbuf)
		free(st->rbuf);
	free(p);
}

/* The reply to command k (or -1 if it has not been sent yet). */
static int reply_to(const struct up_state *st, unsigned k)
{
	unsigned r = k + (st->greeting ? 1 : 0);
	return r < st->nreplies ? st->codes[r] : -1;
}

static void account(struct up_state *st)
{
	while (!st->dead && st->paired < st->ncmds && st->paired < MAX_PAIRS) {
		int code = reply_to(st, st->paired);
		if (code < 0)
			return;
		if (st->kinds[st->paired] == K_DOT && code >= 200 && code < 300)
			dots_2xx++;
		st->paired++;
	}
}

/* RFC 5321 §4.2 on its own terms (no line-count limit): 1 and the size
 * and line count of a complete well-formed reply, 0 incomplete, -1 not a
 * reply. Lines up to SMTP_REPLY_MAX_LINE, as the gateway allows. */
static int rfc_reply(const char *b, size_t len, size_t *total, size_t *nlines)
{
	size_t pos = 0;
	int code = -1;
	*nlines = 0;
	for (;;) {
		const char *lf = memchr(b + pos, '\n', len - pos);
		if (!lf)
			return 0;
		size_t end = (size_t)(lf - b), ll = end - pos;
		if (ll && b[end - 1] == '\r')
			ll--;
		const char *l = b + pos;
		if (ll < 3 || ll > SMTP_REPLY_MAX_LINE || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' ||
		    l[2] < '0' || l[2] > '9' || (ll > 3 && l[3] != ' ' && l[3] != '-'))
			return -1;
		int c = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
		if (code >= 0 && c != code)
			return -1;
		code = c;
		for (size_t i = 4; i < ll; i++)
			if (l[i] == '\r' || l[i] == '\0')
				return -1;
		(*nlines)++;
		pos = end + 1;
		if (ll == 3 || l[3] == ' ') {
			*total = pos;
			return 1;
		}
	}
}

static void up_in(struct hx_up *u, const unsigned char *p, size_t n)
{
	struct up_state *st = u->proto;
	struct smtp_reply r;
	if (st->dead)
		return;
	if (st->rlen + n > st->rcap) {
		size_t cap = st->rcap ? st->rcap : 1024;
		while (cap < st->rlen + n)
			cap *= 2;
		st->rbuf = realloc(st->rbuf, cap);
		if (!st->rbuf)
			abort();
		st->rcap = cap;
	}
	memcpy(st->rbuf + st->rlen, p, n);
	st->rlen += n;
	size_t pos = 0;
	for (;;) {
		int rv = smtp_reply_parse(st->rbuf + pos, st->rlen - pos, &r);
		if (rv < 0) {
			/* Refused only beyond the parser's documented bounds
			 * (smtp_reply.h: SMTP_REPLY_MAX_LINE octets a line,
			 * SMTP_REPLY_MAX_BYTES a reply; any number of lines). */
			size_t total = 0, nl = 0;
			HX_CHECK(rfc_reply(st->rbuf + pos, st->rlen - pos, &total, &nl) != 1 ||
				 total >= SMTP_REPLY_MAX_BYTES, "reply-limit", "a well-formed %zu-line, %zu-byte reply from %s counts as malformed",
				 nl, total, u->cu->name);
		}
		if (rv < 0 || st->nreplies == MAX_PAIRS) {
			account(st);
			/* Replies parsed ahead of the commands they answer: the
			 * gateway may still read and use them. */
			if (st->nreplies > st->paired + (st->greeting ? 1u : 0u))
				blind = true;
			st->dead = true;
			break;
		}
		if (rv == 0)
			break;
		st->codes[st->nreplies++] = r.code;
		pos += r.total;
	}
	memmove(st->rbuf, st->rbuf + pos, st->rlen - pos);
	st->rlen -= pos;
	account(st);
}

static void up_tls(struct hx_up *u)
{
	/* Everything before the handshake was consumed or discarded; both
	 * streams start over (an implicit-TLS upstream greets first). */
	struct up_state *st = u->proto;
	st->ncmds = st->nreplies = st->paired = 0;
	st->rlen = 0;
	st->greeting = u->cu->tls == TLS_MODE_IMPLICIT;
	HX_CHECK(st->linelen == 0 && !st->in_data, "upstream-cmd",
		 "TLS started towards %s in the middle of a command line", u->cu->name);
}

static bool is_verb(const char *l, size_t n, const char *verb)
{
	size_t v = strlen(verb);
	return n >= v && strncasecmp(l, verb, v) == 0 && (n == v || l[v] == ' ' || l[v] == '\r');
}

static bool b64ish(const char *l, size_t n)
{
	if (n == 1 && l[0] == '*')
		return true;
	for (size_t i = 0; i < n; i++)
		if (!((l[i] >= 'A' && l[i] <= 'Z') || (l[i] >= 'a' && l[i] <= 'z') ||
		      (l[i] >= '0' && l[i] <= '9') || l[i] == '+' || l[i] == '/' || l[i] == '='))
			return false;
	return true;
}

/* "MAIL FROM:<path>" / "RCPT TO:<path>": RFC 5321 §4.5.3.1 limits. */
static void check_path(struct hx_up *u, const char *l, size_t n, const char *what)
{
	const char *lt = memchr(l, '<', n);
	if (!lt) {
		hx_violation("upstream-cmd", "%s without <path> sent to %s", what, u->cu->name);
		return;
	}
	size_t i = (size_t)(lt - l) + 1, start = i, at = 0;
	bool inq = false;
	for (; i < n; i++) {
		if (inq && l[i] == '\\') {
			i++;
			continue;
		}
		if (l[i] == '"')
			inq = !inq;
		else if (!inq && l[i] == '@')
			at = i;
		else if (!inq && l[i] == '>')
			break;
	}
	size_t path = i - start;
	HX_CHECK(path <= 256, "path-limit", "%s path of %zu octets sent upstream (RFC 5321: 256)", what, path);
	if (at > start) {
		size_t local = at - start, domain = i - at - 1;
		HX_CHECK(local <= 64, "path-limit", "%s local part of %zu octets sent upstream (RFC 5321: 64)",
			 what, local);
		HX_CHECK(domain <= 255, "path-limit", "%s domain of %zu octets sent upstream", what, domain);
	}
}

static void command(struct hx_up *u, const char *l, size_t n)
{
	struct up_state *st = u->proto;
	size_t content = n - 2;	/* without CRLF */
	for (size_t i = 0; i < content; i++)
		HX_CHECK(l[i] != '\r' && l[i] != '\n' && l[i] != '\0', "upstream-cmd",
			 "%s inside a command line sent to %s: %.60s", l[i] == '\0' ? "NUL" : "CR/LF",
			 u->cu->name, l);
	HX_CHECK(!st->quit_sent, "upstream-cmd", "command after QUIT sent to %s: %.60s", u->cu->name, l);
	int prev = st->ncmds ? reply_to(st, st->ncmds - 1) : -1;
	/* What the previous command was (past MAX_PAIRS: unknown, taken as
	 * part of an exchange). */
	int last = st->ncmds && st->ncmds <= MAX_PAIRS ? st->kinds[st->ncmds - 1] : K_SASL;
	enum cmd_kind kind = K_OTHER;
	if (prev == 334 && (last == K_AUTH || last == K_SASL)) {
		/* A SASL exchange goes on. (A 334 to "*" breaks RFC 4954 §4;
		 * the gateway takes the exchange as aborted anyway, and so do
		 * we. A 334 to anything but AUTH or a SASL line - say the
		 * gateway's own RSET, whose reply it does not relay - starts
		 * no exchange.) */
		kind = content == 1 && l[0] == '*' ? K_ABORT : K_SASL;
		HX_CHECK(b64ish(l, content) && n <= 12288, "upstream-cmd",
			 "a SASL response that is not base64 (or too long) sent to %s: %.60s", u->cu->name, l);
	} else if (is_verb(l, content, "EHLO") || is_verb(l, content, "HELO") ||
		   is_verb(l, content, "XCLIENT")) {
		HX_CHECK(n <= 512, "line-length", "a %zu-octet %.7s line sent to %s (limit 512)", n, l,
			 u->cu->name);
	} else if (is_verb(l, content, "MAIL")) {
		/* RFC 5321 §4.5.3.1.4: 512, plus what SIZE (26), RET/ENVID
		 * (RFC 3461: 100), SMTPUTF8 (10) and BODY add. */
		check_path(u, l, content, "MAIL");
		HX_CHECK(n <= 512 + 26 + 100 + 10 + 20, "line-length", "a %zu-octet MAIL line sent to %s", n,
			 u->cu->name);
	} else if (is_verb(l, content, "RCPT")) {
		/* ... and NOTIFY/ORCPT (RFC 3461: 500). */
		check_path(u, l, content, "RCPT");
		HX_CHECK(n <= 512 + 500, "line-length", "a %zu-octet RCPT line sent to %s", n, u->cu->name);
	} else if (is_verb(l, content, "AUTH")) {
		kind = K_AUTH;
		HX_CHECK(n <= 12288, "line-length", "a %zu-octet AUTH line sent to %s", n, u->cu->name);
	} else if (content == 4 && is_verb(l, content, "DATA")) {
		kind = K_DATA;
	} else if (content == 4 && is_verb(l, content, "QUIT")) {
		kind = K_QUIT;
		st->quit_sent = true;
	} else if (!((content == 4 && is_verb(l, content, "RSET")) ||
		     (content == 8 && is_verb(l, content, "STARTTLS")))) {
		hx_violation("upstream-cmd", "unexpected command sent to %s: %.60s", u->cu->name, l);
	}
	if (u->cu->tls != TLS_MODE_NONE && !u->tls_up)
		HX_CHECK(u->cu->tls == TLS_MODE_STARTTLS &&
			 (is_verb(l, content, "EHLO") || kind == K_QUIT || is_verb(l, content, "STARTTLS")),
			 "cleartext", "%.60s sent to %s before TLS (tls = %s)", l, u->cu->name,
			 u->cu->tls == TLS_MODE_STARTTLS ? "starttls" : "implicit");
	if (st->ncmds < MAX_PAIRS)
		st->kinds[st->ncmds] = (uint8_t)kind;
	st->ncmds++;
	st->await_data = kind == K_DATA;
}

static void proxy_header(struct hx_up *u, const unsigned char *p, size_t n, size_t *used)
{
	struct up_state *st = u->proto;
	struct pp_info info;
	size_t take = n < sizeof(st->pp) - st->pplen ? n : sizeof(st->pp) - st->pplen, consumed = 0;
	memcpy(st->pp + st->pplen, p, take);
	st->pplen += take;
	enum pp_rc rc = pp_parse(st->pp, st->pplen, &info, &consumed);
	if (rc == PP_MORE && st->pplen < sizeof(st->pp)) {
		*used = n;
		return;
	}
	HX_CHECK(rc == PP_OK, "proxy-out", "the PROXY header sent to %s does not parse", u->cu->name);
	if (rc != PP_OK) {
		st->pp_done = true;
		*used = n;
		return;
	}
	HX_CHECK((u->cu->proxy_protocol == PROXY_OUT_V1) == (st->pp[0] == 'P'), "proxy-out",
		 "PROXY header version differs from proxy_protocol of %s", u->cu->name);
	bool match = info.local;
	for (struct session *s = hx.srv->sessions; s && !match; s = s->next) {
		struct mg_addr a = s->client;
		addr_unmap_v4(&a);
		struct mg_addr b = info.src;
		addr_unmap_v4(&b);
		char x[64], y[64];
		addr_ip_str(&a, x, sizeof(x));
		addr_ip_str(&b, y, sizeof(y));
		match = !strcmp(x, y) && addr_port(&a) == addr_port(&b);
	}
	HX_CHECK(match, "proxy-out", "the PROXY header sent to %s names no live session's client", u->cu->name);
	st->pp_done = true;
	/* Bytes of this write beyond the header (if any) are the stream. */
	size_t before = st->pplen - take;
	*used = consumed > before ? consumed - before : 0;
}

static void data_byte(struct hx_up *u, unsigned char ch)
{
	struct up_state *st = u->proto;
	if (ch == '\n')
		HX_CHECK(st->dprev == '\r', "data-bare", "bare LF in message data sent to %s", u->cu->name);
	else if (st->dprev == '\r')
		HX_CHECK(0, "data-bare", "bare CR in message data sent to %s", u->cu->name);
	/* End of data: "." alone on a line. */
	if (st->dstate == 0 && ch == '.' && (st->dprev == '\n' || st->dprev == -1))
		st->dstate = 1;
	else if (st->dstate == 1 && ch == '\r')
		st->dstate = 2;
	else if (st->dstate == 2 && ch == '\n') {
		st->in_data = false;
		st->dstate = 0;
		st->dprev = -1;
		if (st->ncmds < MAX_PAIRS)
			st->kinds[st->ncmds] = K_DOT;
		st->ncmds++;
		return;
	} else
		st->dstate = 0;
	st->dprev = ch;
}

static void up_out(struct hx_up *u, const unsigned char *p, size_t n)
{
	struct up_state *st = u->proto;
	if (!st->pp_done) {
		size_t used = 0;
		proxy_header(u, p, n, &used);
		p += used;
		n -= used;
	}
	if (st->dead) {
		/* Replies no longer parse: the gateway drops this connection
		 * when it reads them, and until then - a message it was
		 * already streaming, say - we cannot tell its commands from
		 * message data or SASL lines. */
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (st->await_data) {
			/* The gateway must have read DATA's answer before it sends
			 * anything more: 354 means message data follows. */
			int code = reply_to(st, st->ncmds - 1);
			HX_CHECK(code >= 0 || st->dead, "upstream-cmd",
				 "bytes sent to %s behind DATA before its answer", u->cu->name);
			st->await_data = false;
			st->in_data = code == 354;
			st->dprev = -1;
			st->dstate = 0;
		}
		if (st->in_data) {
			data_byte(u, p[i]);
			continue;
		}
		if (st->linelen == sizeof(st->line)) {
			hx_violation("upstream-cmd", "a command line of over %zu octets sent to %s", sizeof(st->line),
				     u->cu->name);
			st->linelen = 0;
		}
		st->line[st->linelen++] = (char)p[i];
		if (p[i] != '\n')
			continue;
		HX_CHECK(st->linelen >= 2 && st->line[st->linelen - 2] == '\r', "upstream-cmd",
			 "a command line ending in a bare LF sent to %s", u->cu->name);
		if (st->linelen >= 2)
			command(u, st->line, st->linelen);
		st->linelen = 0;
	}
	account(st);
}

static void up_end(struct hx_up *u)
{
	account(u->proto);
}

/* ---- sessions ---- */

static void session_seen(const struct session *s, struct hx_client *c)
{
	delivered[c->index] = ((const struct smtp_session *)s)->delivered;
}

static void world_end(void)
{
	unsigned long total = 0;
	for (int i = 0; i < hx.nups; i++) {
		struct up_state *st = hx.ups[i].proto;
		if (st)
			account(st);
	}
	for (int i = 0; i < hx.nclients; i++)
		total += delivered[i];
	HX_CHECK(blind || total <= dots_2xx, "delivered",
		 "the gateway counts %lu delivered message(s), the upstream accepted %u final dot(s)", total,
		 dots_2xx);
	HX_CHECK(blind || client_dots_2xx <= dots_2xx, "delivered",
		 "clients were told %u message(s) were accepted, the upstream accepted %u final dot(s)",
		 client_dots_2xx, dots_2xx);
	dots_2xx = client_dots_2xx = 0;
	blind = false;
	memset(delivered, 0, sizeof(delivered));
}

static const struct hx_proto smtp_proto = {
	.name = "smtp_session",
	.ops = &smtpd_ops,
	.configs = configs,
	.nconfigs = sizeof(configs) / sizeof(configs[0]),
	.client_new = client_new,
	.client_in = client_in,
	.client_out = client_out,
	.client_end = client_end,
	.up_new = up_new,
	.up_out = up_out,
	.up_in = up_in,
	.up_tls = up_tls,
	.up_end = up_end,
	.session_seen = session_seen,
	.world_end = world_end,
	.free_up = free_up,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dots_2xx = client_dots_2xx = 0;
	blind = false;
	memset(delivered, 0, sizeof(delivered));
	return hx_run(&smtp_proto, data, size);
}
