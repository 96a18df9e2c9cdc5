/* smtp_upstream: see smtp_upstream.h. The dialogue is one enum state with
 * one setter (dlg_enter); the connection, its failover and its TLS are
 * common/upstream.c's. Every report to the owner is the last statement of
 * its path (the owner may free us). */
#include "smtp_upstream.h"
#include "log.h"
#include "server.h"
#include "smtp_server.h"
#include "strbuf.h"
#include "upstream.h"
#include "xmem.h"

#include <stdlib.h>
#include <string.h>

#define SMTP_UP_MAGIC 0x53555053u
#define EHLO_LINE_MAX 300	/* "EHLO " + a name of at most 255 octets */

enum dlg_state {
	DS_CONNECT,	/* connecting, or waiting for the greeting */
	DS_EHLO,
	DS_STARTTLS,
	DS_TLS,		/* the handshake after STARTTLS */
	DS_EHLO_TLS,
	DS_XCLIENT,
	DS_XEHLO,
	DS_READY,
	DS_WAIT,	/* a command's reply is due */
	DS_QUITTING,	/* the probe: done, QUIT on its way */
};

static const char *const state_names[] = {
	"connect", "ehlo", "starttls", "tls", "ehlo-tls", "xclient", "xehlo", "ready", "wait",
	"quitting",
};

struct smtp_upstream {
	uint32_t magic;
	enum dlg_state st;
	struct smtp_up_params p;
	smtp_up_cb cb;
	void *owner;
	struct upstream *up;
	char lines[SMTP_XCLIENT_MAX_LINES][SMTP_XCLIENT_LINE_MAX + 1];
	int nlines, line;
	char *strings[6];	/* own copies of the caller's strings */
};

static void dlg_enter(struct smtp_upstream *su, enum dlg_state st)
{
	log_debug("upstream %s: %s -> %s", su->p.cu->name, state_names[su->st], state_names[st]);
	su->st = st;
}

static void destroy(struct smtp_upstream *su)
{
	upstream_close(&su->up);
	for (size_t i = 0; i < sizeof(su->strings) / sizeof(su->strings[0]); i++)
		free(su->strings[i]);
	su->magic = 0;
	free(su);
}

static void report(struct smtp_upstream *su, enum up_event ev, const struct smtp_reply *r, int detail,
		   const char *why)
{
	su->cb(su->owner, ev, r, detail, why);
}

static void send_line(struct smtp_upstream *su, const char *line)
{
	upstream_send(su->up, line, strlen(line));
}

static void send_ehlo(struct smtp_upstream *su, const char *name, enum dlg_state next)
{
	char line[EHLO_LINE_MAX];
	struct strbuf b;
	sb_init(&b, line, sizeof(line));
	sb_adds(&b, "EHLO ");
	sb_adds(&b, name);
	sb_add(&b, "\r\n", 2);
	if (!sb_ok(&b)) {	/* names are validated domains of <= 255 octets */
		upstream_failover(su->up, "EHLO name too long");
		return;
	}
	send_line(su, sb_str(&b));
	dlg_enter(su, next);
}

/* Fail closed: the upstream must never judge the gateway's address. */
static void config_error(struct smtp_upstream *su, const char *why)
{
	static const char quit[] = "QUIT\r\n";
	log_error("upstream %s %s: %s", su->p.cu->name, upstream_addr(su->up), why);
	upstream_write(su->up, quit, sizeof(quit) - 1);
	report(su, UP_FAILED, NULL, UPF_CONFIG, why);
}

static void ready(struct smtp_upstream *su)
{
	upstream_ready(su->up);
	dlg_enter(su, DS_READY);
	report(su, UP_READY, NULL, 0, NULL);
}

static void start_xclient(struct smtp_upstream *su, const struct smtp_ehlo_ext *ext)
{
	if (!(ext->flags & EXT_XCLIENT) || !(ext->xclient & XC_ADDR)) {
		config_error(su, "xclient = true but the upstream offers no XCLIENT ADDR "
				 "(Postfix: smtpd_authorized_xclient_hosts)");
		return;
	}
	su->nlines = smtp_xclient_lines(&su->p.xclient, ext->xclient, su->lines);
	if (su->nlines <= 0) {
		config_error(su, "XCLIENT attributes do not fit in 512 octets");
		return;
	}
	su->line = 0;
	send_line(su, su->lines[0]);
	dlg_enter(su, DS_XCLIENT);
}

static void after_final_ehlo(struct smtp_upstream *su, const struct smtp_reply *r)
{
	struct smtp_ehlo_ext ext;
	smtp_ehlo_parse(r, &ext);
	smtp_server_note_ehlo(su->p.srv, su->p.cu, upstream_index(su->up), &ext);
	if (su->p.probe) {
		static const char quit[] = "QUIT\r\n";
		dlg_enter(su, DS_QUITTING);
		upstream_ready(su->up);
		upstream_quit(&su->up, quit, sizeof(quit) - 1);
		report(su, UP_READY, NULL, 0, NULL);
		return;
	}
	if (!su->p.cu->xclient) {
		ready(su);
		return;
	}
	start_xclient(su, &ext);
}

static void on_ehlo(struct smtp_upstream *su, const struct smtp_reply *r)
{
	if (r->code != 250) {
		upstream_failover(su->up, "EHLO refused");
		return;
	}
	if (r->dropped)	/* keywords in the lines left out are not seen */
		log_warn("upstream %s: an EHLO reply of %zu lines: only its first %d and its last were read",
			 su->p.cu->name, r->nlines + r->dropped, SMTP_REPLY_MAX_LINES - 1);
	if (su->st == DS_EHLO && su->p.cu->tls == TLS_MODE_STARTTLS) {
		struct smtp_ehlo_ext ext;
		smtp_ehlo_parse(r, &ext);
		if (!(ext.flags & EXT_STARTTLS)) {
			upstream_failover(su->up, "tls = starttls but the upstream offers no STARTTLS");
			return;
		}
		send_line(su, "STARTTLS\r\n");
		dlg_enter(su, DS_STARTTLS);
		return;
	}
	after_final_ehlo(su, r);
}

/* Octets of an upstream's refusal text quoted in our log line. */
#define REFUSAL_TEXT_MAX 100

static void on_xclient(struct smtp_upstream *su, const struct smtp_reply *r)
{
	char why[160];
	struct strbuf b;
	if (r->code != 220 && r->code != 250) {
		sb_init(&b, why, sizeof(why));
		sb_adds(&b, "XCLIENT refused: ");
		sb_addu(&b, (unsigned)r->code);
		sb_addc(&b, ' ');
		sb_add(&b, r->lines[0].text, r->lines[0].len > REFUSAL_TEXT_MAX ? REFUSAL_TEXT_MAX : r->lines[0].len);
		config_error(su, sb_str(&b));
		return;
	}
	if (++su->line < su->nlines) {
		send_line(su, su->lines[su->line]);
		return;
	}
	send_ehlo(su, su->p.client_helo ? su->p.client_helo : su->p.hostname, DS_XEHLO);
}

static void on_setup_reply(struct smtp_upstream *su, const struct smtp_reply *r)
{
	switch (su->st) {
	case DS_CONNECT:
		if (r->code != 220) {
			upstream_failover(su->up, "greeting is not 220");
			return;
		}
		send_ehlo(su, su->p.hostname, DS_EHLO);
		return;
	case DS_EHLO:
	case DS_EHLO_TLS:
		on_ehlo(su, r);
		return;
	case DS_STARTTLS:
		if (r->code != 220) {
			upstream_failover(su->up, "STARTTLS refused");
			return;
		}
		dlg_enter(su, DS_TLS);
		upstream_start_tls(su->up);	/* bytes after the 220 are discarded */
		return;
	case DS_XCLIENT:
		on_xclient(su, r);
		return;
	case DS_XEHLO:
		if (r->code != 250) {
			config_error(su, "EHLO after XCLIENT refused");
			return;
		}
		ready(su);
		return;
	default:
		return;
	}
}

static void on_response(struct smtp_upstream *su, const char *data, size_t len)
{
	struct smtp_reply r;
	if (smtp_reply_parse(data, len, &r) != 1) {	/* framed by the same parser */
		report(su, UP_LOST, NULL, 0, "malformed reply from upstream");
		return;
	}
	if (su->st == DS_WAIT) {
		dlg_enter(su, DS_READY);
		upstream_expect(su->up, 0);
		report(su, UP_REPLY, &r, 0, NULL);
		return;
	}
	if (su->st == DS_READY) {	/* nobody asked: e.g. "421 timeout" */
		/* A 421 goes with the loss: its words are logged. */
		report(su, UP_LOST, r.code == 421 ? &r : NULL, 0, "unsolicited reply from upstream");
		return;
	}
	on_setup_reply(su, &r);
}

static void up_event(void *owner, struct upstream *up, enum upstream_event ev, const char *data,
		     size_t len)
{
	struct smtp_upstream *su = owner;
	if (su->magic != SMTP_UP_MAGIC)
		abort();
	switch (ev) {
	case UPSTREAM_CONNECTED:
		dlg_enter(su, DS_CONNECT);	/* the greeting comes first */
		return;
	case UPSTREAM_TLS_READY:
		send_ehlo(su, su->p.hostname, DS_EHLO_TLS);
		return;
	case UPSTREAM_RESPONSE:
		on_response(su, data, len);
		return;
	case UPSTREAM_DRAINED:
		report(su, UP_DRAINED, NULL, 0, NULL);
		return;
	case UPSTREAM_FAILED:
		report(su, UP_FAILED, NULL, UPF_UNREACHABLE, data);
		return;
	case UPSTREAM_LOST:
		report(su, UP_LOST, NULL, 0, data);
		return;
	case UPSTREAM_TIMEOUT:
		report(su, UP_TIMEOUT, NULL, 0, "upstream reply timeout");
		return;
	}
}

/* Own copies: the owner's strings (some on its stack) do not outlive
 * the call that starts us. */
static void own_strings(struct smtp_upstream *su)
{
	const char **v[] = { &su->p.hostname, &su->p.client_helo, &su->p.xclient.name,
			     &su->p.xclient.addr, &su->p.xclient.helo, &su->p.xclient.login };
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (*v[i])
			*v[i] = su->strings[i] = xstrdup(*v[i]);
}

struct smtp_upstream *smtp_up_start(const struct smtp_up_params *p, smtp_up_cb cb, void *owner)
{
	struct smtp_upstream *su = xcalloc(1, sizeof(*su));
	su->magic = SMTP_UP_MAGIC;
	su->p = *p;
	su->cb = cb;
	su->owner = owner;
	own_strings(su);
	struct upstream_params up = {
		.cu = p->cu,
		.tls = server_tls_client(&p->srv->base, p->cu),
		.only_index = p->only_index,
		.pp = p->pp,
		.pp_len = p->pp_len,
		.frame = smtp_reply_frame,
		.in_max = SMTP_REPLY_MAX_BYTES,
		.frame_error = "malformed or over-long reply",
		.who = p->who,
	};
	su->p.pp = NULL;
	su->up = upstream_open(&up, up_event, su);
	return su;
}

void smtp_up_command(struct smtp_upstream *su, const char *line, size_t len)
{
	upstream_send(su->up, line, len);
	dlg_enter(su, DS_WAIT);
}

void smtp_up_expect_reply(struct smtp_upstream *su, double seconds)
{
	upstream_expect(su->up, seconds);
	dlg_enter(su, DS_WAIT);
}

void smtp_up_quit(struct smtp_upstream **sup)
{
	static const char quit[] = "QUIT\r\n";
	struct smtp_upstream *su = *sup;
	*sup = NULL;
	if (!su)
		return;
	upstream_quit(&su->up, quit, sizeof(quit) - 1);	/* lives on until it is out */
	destroy(su);
}

void smtp_up_free(struct smtp_upstream **sup)
{
	if (*sup)
		destroy(*sup);
	*sup = NULL;
}

struct upstream *smtp_up_link(const struct smtp_upstream *su)
{
	return su->up;
}

bool smtp_up_ready(const struct smtp_upstream *su)
{
	return su->st == DS_READY;
}
