/* smtp_upstream: see smtp_upstream.h. One enum state with one setter
 * (up_enter), replies parsed with smtp_reply_parse(). A QUIT-ing upstream
 * is detached from its owner and frees itself once QUIT is flushed. */
#include "smtp_upstream.h"
#include "conn.h"
#include "log.h"
#include "smtp_server.h"
#include "tls.h"
#include "upstream.h"
#include "xmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UP_MAGIC 0x53555053u
/* Input buffer: one reply of the longest shape the parser accepts (so
 * the parser, not the buffer, decides when a reply is too long). */
#define UP_IN_MAX SMTP_REPLY_MAX_BYTES

enum up_state {
	US_DIAL,
	US_TLS_IMPLICIT,
	US_GREETING,
	US_EHLO,
	US_STARTTLS,
	US_TLS,
	US_EHLO_TLS,
	US_XCLIENT,
	US_XEHLO,
	US_READY,
	US_WAIT,
	US_QUITTING,
};

static const char *const state_names[] = {
	"dial", "tls-implicit", "greeting", "ehlo", "starttls", "tls", "ehlo-tls",
	"xclient", "xehlo", "ready", "wait", "quitting",
};

struct smtp_upstream {
	uint32_t magic;
	enum up_state st;
	struct smtp_up_params p;
	smtp_up_cb cb;
	void *owner;
	struct upstream_dial *dial;
	struct conn *conn;
	int index;
	char lines[SMTP_XCLIENT_MAX_LINES][SMTP_XCLIENT_LINE_MAX + 1];
	int nlines, line;
	char *helo_copy;
	char *xc_strings[4];
	unsigned char *pp;
};

static void up_enter(struct smtp_upstream *up, enum up_state st)
{
	log_debug("upstream %s: %s -> %s", up->p.cu->name, state_names[up->st], state_names[st]);
	up->st = st;
}

static void up_destroy(struct smtp_upstream *up)
{
	upstream_dial_free(&up->dial);
	conn_free(&up->conn);
	free(up->helo_copy);
	free(up->pp);
	for (int i = 0; i < 4; i++)
		free(up->xc_strings[i]);
	up->magic = 0;
	free(up);
}

/* Reports to the owner; the owner may free up, so this is always the
 * last statement of its caller. */
static void report(struct smtp_upstream *up, enum up_event ev, const struct smtp_reply *r,
		   int detail, const char *why)
{
	up->cb(up->owner, ev, r, detail, why);
}

static void up_send(struct smtp_upstream *up, const char *line)
{
	conn_write(up->conn, line, strlen(line));
	conn_set_timeout(up->conn, up->p.cu->timeout_reply);
}

/* Queues QUIT and frees the upstream once it is flushed (or after 10 s). */
static void begin_quit(struct smtp_upstream *up)
{
	upstream_dial_free(&up->dial);
	conn_write(up->conn, "QUIT\r\n", 6);
	up_enter(up, US_QUITTING);
	conn_set_timeout(up->conn, 10);
	conn_notify_drained(up->conn);
}

static bool setup_state(enum up_state st)
{
	return st < US_READY;
}

/* Set-up problem on the current address: try the next one. */
static void setup_failover(struct smtp_upstream *up, const char *why)
{
	log_info("upstream %s %s: %s", up->p.cu->name, up->p.cu->addrs[up->index].text, why);
	conn_free(&up->conn);
	up_enter(up, US_DIAL);
	if (up->p.only_index >= 0) {
		report(up, UP_FAILED, NULL, UPF_UNREACHABLE, why);
		return;
	}
	upstream_dial_next(up->dial, why);
}

static void setup_config_error(struct smtp_upstream *up, const char *why)
{
	log_error("upstream %s %s: %s", up->p.cu->name, up->p.cu->addrs[up->index].text, why);
	conn_write(up->conn, "QUIT\r\n", 6);
	report(up, UP_FAILED, NULL, UPF_CONFIG, why);
}

static void send_ehlo(struct smtp_upstream *up, const char *name, enum up_state next)
{
	char line[300];
	snprintf(line, sizeof(line), "EHLO %s\r\n", name);
	up_send(up, line);
	up_enter(up, next);
}

static void after_final_ehlo(struct smtp_upstream *up, const struct smtp_reply *r)
{
	struct smtp_ehlo_ext ext;
	smtp_ehlo_parse(r, &ext);
	smtp_server_note_ehlo(up->p.srv, up->p.cu, up->index, &ext);
	if (up->p.probe) {
		begin_quit(up);	/* frees itself; the owner forgets us */
		report(up, UP_READY, NULL, 0, NULL);
		return;
	}
	if (!up->p.cu->xclient) {
		up_enter(up, US_READY);
		conn_set_timeout(up->conn, 0);
		report(up, UP_READY, NULL, 0, NULL);
		return;
	}
	/* Fail closed: the upstream must never judge the gateway's address. */
	if (!(ext.flags & EXT_XCLIENT) || !(ext.xclient & XC_ADDR)) {
		setup_config_error(up, "xclient = true but the upstream offers no XCLIENT ADDR "
				       "(Postfix: smtpd_authorized_xclient_hosts)");
		return;
	}
	up->nlines = smtp_xclient_lines(&up->p.xclient, ext.xclient, up->lines);
	if (up->nlines <= 0) {
		setup_config_error(up, "XCLIENT attributes do not fit in 512 octets");
		return;
	}
	up->line = 0;
	for (int i = 0; i < up->nlines; i++)
		log_debug("upstream %s: %.*s", up->p.cu->name, (int)strcspn(up->lines[i], "\r"),
			  up->lines[i]);
	up_send(up, up->lines[0]);
	up_enter(up, US_XCLIENT);
}

static void start_tls(struct smtp_upstream *up, enum up_state next)
{
	struct tls_client *cli = server_tls_client(&up->p.srv->base, up->p.cu);
	struct tls_session *t = cli ? tls_session_client(cli, conn_fd(up->conn),
							 up->p.cu->addrs[up->index].host) : NULL;
	if (!t) {
		setup_failover(up, "cannot create a TLS session");
		return;
	}
	conn_start_tls(up->conn, t);
	conn_set_timeout(up->conn, up->p.cu->timeout_reply);
	up_enter(up, next);
}

static void on_setup_reply(struct smtp_upstream *up, const struct smtp_reply *r)
{
	char why[160];
	switch (up->st) {
	case US_GREETING:
		if (r->code != 220) {
			snprintf(why, sizeof(why), "greeting %d instead of 220", r->code);
			setup_failover(up, why);
			return;
		}
		send_ehlo(up, up->p.hostname, US_EHLO);
		return;
	case US_EHLO:
	case US_EHLO_TLS:
		if (r->code != 250) {
			snprintf(why, sizeof(why), "EHLO answered %d", r->code);
			setup_failover(up, why);
			return;
		}
		if (up->st == US_EHLO && up->p.cu->tls == TLS_MODE_STARTTLS) {
			struct smtp_ehlo_ext ext;
			smtp_ehlo_parse(r, &ext);
			if (!(ext.flags & EXT_STARTTLS)) {
				setup_failover(up, "tls = starttls but the upstream offers no STARTTLS");
				return;
			}
			up_send(up, "STARTTLS\r\n");
			up_enter(up, US_STARTTLS);
			return;
		}
		after_final_ehlo(up, r);
		return;
	case US_STARTTLS:
		if (r->code != 220) {
			snprintf(why, sizeof(why), "STARTTLS answered %d", r->code);
			setup_failover(up, why);
			return;
		}
		/* Bytes after the 220 and before the handshake are discarded
		 * (STARTTLS response injection); conn_start_tls clears them. */
		start_tls(up, US_TLS);
		return;
	case US_XCLIENT:
		if (r->code != 220 && r->code != 250) {
			snprintf(why, sizeof(why), "XCLIENT refused: %d %.*s", r->code,
				 (int)(r->lines[0].len > 100 ? 100 : r->lines[0].len), r->lines[0].text);
			setup_config_error(up, why);
			return;
		}
		if (++up->line < up->nlines) {
			up_send(up, up->lines[up->line]);
			return;
		}
		send_ehlo(up, up->p.client_helo ? up->p.client_helo : up->p.hostname, US_XEHLO);
		return;
	case US_XEHLO:
		if (r->code != 250) {
			snprintf(why, sizeof(why), "EHLO after XCLIENT answered %d", r->code);
			setup_config_error(up, why);
			return;
		}
		up_enter(up, US_READY);
		conn_set_timeout(up->conn, 0);
		report(up, UP_READY, NULL, 0, NULL);
		return;
	default:
		return;
	}
}

/* A reply's text points into the input queue; handlers may end in the
 * owner freeing us, so the reply is moved out (whole, never cut short)
 * and consumed first. */
static char *take_reply(struct smtp_upstream *up, struct smtp_reply *r)
{
	const char *in = conn_in_data(up->conn);
	char *copy = xmemdup0(in, r->total);
	for (size_t i = 0; i < r->nlines; i++)
		r->lines[i].text = copy + (r->lines[i].text - in);
	conn_in_consume(up->conn, r->total);
	if (conn_in_len(up->conn))
		conn_kick(up->conn);	/* more replies queued: come back */
	return copy;
}

static void on_reply(struct smtp_upstream *up, const struct smtp_reply *r)
{
	if (setup_state(up->st)) {
		on_setup_reply(up, r);
		return;
	}
	if (up->st == US_WAIT) {
		up_enter(up, US_READY);
		conn_set_timeout(up->conn, 0);
		report(up, UP_REPLY, r, 0, NULL);
		return;
	}
	/* A reply nobody asked for (e.g. "421 timeout" before closing). */
	report(up, UP_LOST, NULL, 0, "unsolicited reply from upstream");
}

static void on_read(struct smtp_upstream *up)
{
	struct smtp_reply r;
	int rv = smtp_reply_parse(conn_in_data(up->conn), conn_in_len(up->conn), &r);
	if (rv == 0 && !conn_in_full(up->conn))
		return;
	if (rv <= 0) {	/* malformed, or (cannot happen) too long for the buffer */
		if (setup_state(up->st))
			setup_failover(up, "malformed reply");
		else
			report(up, UP_LOST, NULL, 0, "malformed or over-long reply from upstream");
		return;
	}
	char *copy = take_reply(up, &r);
	on_reply(up, &r);
	free(copy);
}

static void conn_cb_up(struct conn *c, enum conn_event ev, void *arg)
{
	struct smtp_upstream *up = arg;
	if (up->magic != UP_MAGIC)
		abort();
	if (up->st == US_QUITTING) {
		if (ev == CONN_EV_READ)
			conn_in_clear(c);
		else if (ev != CONN_EV_HANDSHAKE)
			up_destroy(up);	/* QUIT flushed, or the peer went away */
		return;
	}
	switch (ev) {
	case CONN_EV_READ:
		on_read(up);
		return;
	case CONN_EV_HANDSHAKE:
		if (up->st == US_TLS_IMPLICIT)
			up_enter(up, US_GREETING);	/* the greeting comes first */
		else
			send_ehlo(up, up->p.hostname, US_EHLO_TLS);
		return;
	case CONN_EV_DRAINED:
		report(up, UP_DRAINED, NULL, 0, NULL);
		return;
	case CONN_EV_TIMEOUT:
		if (setup_state(up->st)) {
			setup_failover(up, "timeout");
			return;
		}
		report(up, UP_TIMEOUT, NULL, 0, "upstream reply timeout");
		return;
	case CONN_EV_EOF:
	case CONN_EV_ERROR: {
		char why[300];
		snprintf(why, sizeof(why), "%s", ev == CONN_EV_EOF ? "connection closed" : conn_error(c));
		if (setup_state(up->st)) {
			setup_failover(up, why);
			return;
		}
		report(up, UP_LOST, NULL, 0, why);
		return;
	}
	}
}

static void dial_cb(void *arg, int fd, int index, const char *err)
{
	struct smtp_upstream *up = arg;
	if (fd < 0) {
		report(up, UP_FAILED, NULL, UPF_UNREACHABLE, err);
		return;
	}
	up->index = index;
	up->conn = conn_new(fd, UP_IN_MAX, conn_cb_up, up);
	conn_read_start(up->conn);
	if (up->p.pp_len)	/* before anything else, TLS included */
		conn_write(up->conn, up->pp, up->p.pp_len);
	conn_set_timeout(up->conn, up->p.cu->timeout_reply);
	if (up->p.cu->tls == TLS_MODE_IMPLICIT)
		start_tls(up, US_TLS_IMPLICIT);
	else
		up_enter(up, US_GREETING);
}

struct smtp_upstream *smtp_up_start(const struct smtp_up_params *p, smtp_up_cb cb, void *owner)
{
	struct smtp_upstream *up = xcalloc(1, sizeof(*up));
	up->magic = UP_MAGIC;
	up->p = *p;
	up->cb = cb;
	up->owner = owner;
	/* Own copies: the owner's strings (some on its stack) do not outlive
	 * this call. */
	if (p->client_helo)
		up->p.client_helo = up->helo_copy = xstrdup(p->client_helo);
	if (p->pp_len) {
		up->pp = xmalloc(p->pp_len);
		memcpy(up->pp, p->pp, p->pp_len);
		up->p.pp = up->pp;
	}
	const char **xs[4] = { &up->p.xclient.name, &up->p.xclient.addr, &up->p.xclient.helo,
			       &up->p.xclient.login };
	for (int i = 0; i < 4; i++)
		if (*xs[i])
			*xs[i] = up->xc_strings[i] = xstrdup(*xs[i]);
	up->st = US_DIAL;
	if (p->only_index >= 0)
		up->dial = upstream_dial_start_at(p->cu, p->only_index, dial_cb, up);
	else
		up->dial = upstream_dial_start(p->cu, dial_cb, up);
	return up;
}

void smtp_up_command(struct smtp_upstream *up, const char *line, size_t len)
{
	conn_write(up->conn, line, len);
	conn_set_timeout(up->conn, up->p.cu->timeout_reply);
	up_enter(up, US_WAIT);
}

void smtp_up_data(struct smtp_upstream *up, const char *p, size_t len)
{
	conn_write(up->conn, p, len);
}

void smtp_up_expect_reply(struct smtp_upstream *up, double seconds)
{
	conn_set_timeout(up->conn, seconds);
	up_enter(up, US_WAIT);
}

size_t smtp_up_out_len(const struct smtp_upstream *up)
{
	return up->conn ? conn_out_len(up->conn) : 0;
}

void smtp_up_notify_drained(struct smtp_upstream *up)
{
	conn_notify_drained(up->conn);
}

void smtp_up_quit(struct smtp_upstream **upp)
{
	struct smtp_upstream *up = *upp;
	*upp = NULL;
	if (!up)
		return;
	if (!up->conn || up->st < US_READY) {
		up_destroy(up);
		return;
	}
	begin_quit(up);
}

void smtp_up_free(struct smtp_upstream **upp)
{
	if (*upp)
		up_destroy(*upp);
	*upp = NULL;
}

const char *smtp_up_addr(const struct smtp_upstream *up)
{
	return up->p.cu->addrs[up->index].text;
}

bool smtp_up_ready(const struct smtp_upstream *up)
{
	return up->st == US_READY;
}

void smtp_up_set_owner(struct smtp_upstream *up, void *owner)
{
	up->owner = owner;
}
