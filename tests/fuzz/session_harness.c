/* session_harness: see session_harness.h. The generic invariants live here:
 *
 *  - lifecycle: a session seen closing stays closing (a closed session
 *    never comes back to life), and from then on the gateway writes to its
 *    client at most what it had queued at that moment;
 *  - the end: with the clock run out, every session ended and was freed,
 *    the server counts none, every simulated fd is closed, no watcher or
 *    queued event is left, every TLS session and rdns query is gone, and
 *    server_free releases every TLS object;
 *  - what tests/sim checks on its own (use after close, write after FIN,
 *    plaintext on a TLS socket, tls_send retries, busy loops).
 *
 * Protocol-specific stream checks are in the fuzz_*_session.c files. */
#include "session_harness.h"
#include "conn.h"
#include "log.h"
#include "proxyin.h"
#include "rdns.h"
#include "server.h"

#include <ev.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_END_STEPS 20000
#define MAX_CONFIGS 16

struct hx_world hx;

static bool ignored(const char *id)
{
	const char *ign = getenv("MG_SIM_IGNORE");
	size_t n = strlen(id);
	if (ign)
		for (const char *p = ign; (p = strstr(p, id)); p += n)
			if ((p == ign || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
				return true;
	return false;
}

void hx_violation(const char *id, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	if (ignored(id))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sim_fail("[%s] %s: %s", id, hx.proto ? hx.proto->name : "?", msg);
}

/* MG_SIM_TRACE=1: every byte either way on fd 2, for reading a finding. */
static int trace_on = -1;

static void trace(const char *who, int idx, const unsigned char *p, size_t n)
{
	if (trace_on < 0)
		trace_on = getenv("MG_SIM_TRACE") != NULL;
	if (!trace_on)
		return;
	static const char hex[] = "0123456789abcdef";
	char out[4 * 4096 + 8];
	size_t o = 0;
	for (size_t i = 0; i < n && o + 8 < sizeof(out); i++) {
		unsigned char ch = p[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
			out[o++] = (char)ch;
			continue;
		}
		out[o++] = '\\';
		if (ch == '\n' || ch == '\r') {
			out[o++] = ch == '\n' ? 'n' : 'r';
			continue;
		}
		out[o++] = 'x';
		out[o++] = hex[ch >> 4];
		out[o++] = hex[ch & 15];
	}
	out[o] = '\0';
	dprintf(2, "[+%8.3f] %s%d %s\n", sim_now() - 1700000000.0, who, idx, out);
}

/* The other operations (hang-ups, windows, clock, TLS outcomes) by name. */
static void trace_op(int o)
{
	if (trace_on < 0)
		trace_on = getenv("MG_SIM_TRACE") != NULL;
	if (!trace_on)
		return;
	dprintf(2, "[+%8.3f] op '%c'\n", sim_now() - 1700000000.0, o > 0x20 && o < 0x7f ? o : '?');
}

/* ---- one-time set-up: configuration files in a private folder ---- */

static char confdir[256];
static struct conf *confs[MAX_CONFIGS];
static const struct hx_proto *confs_of;

static void write_file(const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", confdir, name);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		abort();
	}
}

/* The private folder goes when the process ends (each replayed seed is a
 * process of its own: standalone.c). */
static void remove_confdir(void)
{
	DIR *d = opendir(confdir);
	struct dirent *e;
	char path[600];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", confdir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(confdir);
}

static char logpath[600];

/* Logging runs at info (its escaping is exercised) into sim.log in the
 * private folder, emptied before every input: log.c writes whole lines to
 * a regular file or to fd 2, and fd 2 is for sanitizer and sim_fail
 * reports. MG_SIM_LOG=1 shows the logs on fd 2, MG_SIM_LOG=debug with
 * debug lines. */
static void quiet_logs(void)
{
	const char *v = getenv("MG_SIM_LOG");
	char err[256];
	log_init("sim");
	enum log_level lvl = v && !strcmp(v, "debug") ? LOG_LVL_DEBUG : LOG_LVL_INFO;
	if (v) {
		log_configure(LOG_TARGET_STDERR, LOG_FORMAT_TEXT, lvl);
		return;
	}
	snprintf(logpath, sizeof(logpath), "%s/sim.log", confdir);
	if (log_open_file(logpath, getuid(), getgid(), err, sizeof(err)) < 0) {
		fprintf(stdout, "%s\n", err);
		abort();
	}
	log_configure(LOG_TARGET_FILE, LOG_FORMAT_TEXT, lvl);
	FILE *null = fopen("/dev/null", "w");	/* and whatever else uses stdio's stderr */
	if (null)
		stderr = null;
}

static void empty_log(void)
{
	if (logpath[0] && truncate(logpath, 0) < 0) {
		/* best effort: the file only grows */
	}
}

static void init_once(const struct hx_proto *p)
{
	if (confs_of == p)
		return;
	if (confs_of)
		abort();	/* one protocol per process */
	confs_of = p;
	tls_global_init();
	const char *tmp = getenv("TMPDIR");
	snprintf(confdir, sizeof(confdir), "%s/mg-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp", p->name);
	if (!mkdtemp(confdir)) {
		perror("mkdtemp");
		abort();
	}
	atexit(remove_confdir);
	quiet_logs();
	for (size_t i = 0; i + 1 < 2 * p->nfiles; i += 2)
		write_file(p->files[i], p->files[i + 1]);
	if (p->nconfigs > MAX_CONFIGS)
		abort();
	for (size_t i = 0; i < p->nconfigs; i++) {
		char name[32], path[512];
		struct diag d;
		snprintf(name, sizeof(name), "v%zu.conf", i);
		write_file(name, p->configs[i]);
		snprintf(path, sizeof(path), "%s/%s", confdir, name);
		diag_init(&d);
		confs[i] = conf_load(path, p->ops->schema, &d);
		if (!confs[i] || d.errors) {
			for (size_t j = 0; j < d.n; j++)
				fprintf(stdout, "%s\n", d.lines[j]);
			fprintf(stdout, "%s: configuration variant %zu does not load\n", p->name, i);
			abort();
		}
		diag_free(&d);
	}
}

/* ---- certificate identities for 'T' ---- */

struct ident {
	const char *cn;
	size_t cn_len;
	const char *dns[3];
	const char *email[3];
	unsigned char fpb;	/* fingerprint: 32 times this byte */
};

static const char long_cn[] =
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxx";

static const struct ident idents[HX_NIDENT] = {
	{ "client.example.org", 18, { "client.example.org" }, { "alice@example.org" }, 0x11 },
	{ "mx2.partner.example", 19, { "mx2.partner.example" }, { NULL }, 0x22 },
	{ "alice@example.org", 17, { NULL }, { "alice@example.org", "bob@example.org" }, 0x33 },
	{ "evil\0.partner.example", 21, { "*.partner.example" }, { "mallory@example.org" }, 0x44 },
	{ NULL, 0, { "a b.example.org" }, { "has space@example.org" }, 0x55 },
	{ long_cn, sizeof(long_cn) - 1, { "bob" }, { "bob" }, 0x66 },
	{ "pinned.example", 14, { NULL }, { "carol@example.org" }, 0x5e },	/* pinned in the configs */
	{ "master", 6, { "master" }, { "master" }, 0x77 },
};

static size_t count3(const char *const v[3])
{
	size_t n = 0;
	while (n < 3 && v[n])
		n++;
	return n;
}

const struct tls_peer *hx_identity(int ident, int status)
{
	static struct tls_peer p;
	const struct ident *id = &idents[ident % HX_NIDENT];
	memset(&p, 0, sizeof(p));
	p.status = (enum cert_status)status;
	p.issuer_only = status == CERT_UNKNOWN_CA;	/* the one fault a pin may excuse */
	p.names_read = true;
	p.not_after = (time_t)1700000000 + 90 * 86400;	/* the sim's clock starts at 1700000000 */
	p.issuer = (char *)"CN=Sim CA,O=mailgate tests";
	memset(p.fp, id->fpb, sizeof(p.fp));
	memset(p.spki, id->fpb ^ 0xff, sizeof(p.spki));
	p.cn = (char *)id->cn;
	p.cn_len = id->cn_len;
	p.ncn = id->cn ? 1 : 0;
	p.dns = (char **)id->dns;
	p.ndns = count3(id->dns);
	p.email = (char **)id->email;
	p.nemail = count3(id->email);
	snprintf(p.sig_alg, sizeof(p.sig_alg), "ecdsa-with-SHA256");
	snprintf(p.key_alg, sizeof(p.key_alg), "EC256");
	return &p;
}

static bool ext_value_ok(const char *v, size_t n)
{
	if (n < 1 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch < 0x20 || ch == 0x7f || ch == ' ' || ch == '*')
			return false;
	}
	return true;
}

bool hx_external_user(int ident, int status, enum ext_identity field, char out[256])
{
	const struct ident *id = &idents[ident % HX_NIDENT];
	const char *v = NULL;
	size_t n = 0;
	if (status != CERT_VERIFIED)
		return false;
	if (field == EXT_ID_CN) {
		if (!id->cn)
			return false;
		v = id->cn;
		n = id->cn_len;
	} else {
		const char *const *list = field == EXT_ID_EMAIL ? id->email : id->dns;
		if (count3(list) != 1)
			return false;
		v = list[0];
		n = strlen(v);
	}
	if (!ext_value_ok(v, n))
		return false;
	memcpy(out, v, n);
	out[n] = '\0';
	return true;
}

/* ---- the world: clients, upstream connections, sim hooks ---- */

static const char *const client_ips[4] = { "192.0.2.10", "127.0.0.1", "2001:db8::10", "198.51.100.7" };
static int world_flags;

struct hx_client *hx_client_of(const struct session *s)
{
	if (!s->conn)
		return NULL;
	int fd = conn_fd(s->conn);
	for (int i = 0; i < hx.nclients; i++)
		if (sim_sock_fd(hx.clients[i].sock) == fd)
			return &hx.clients[i];
	return NULL;
}

static bool is_client(const struct sim_sock *s, struct hx_client **c)
{
	for (int i = 0; i < hx.nclients; i++)
		if (hx.clients[i].sock == s) {
			*c = &hx.clients[i];
			return true;
		}
	return false;
}

static struct hx_up *up_of(const struct sim_sock *s)
{
	for (int i = 0; i < hx.nups; i++)
		if (hx.ups[i].sock == s)
			return &hx.ups[i];
	return NULL;
}

static void on_wrote(void *arg, struct sim_sock *s, const unsigned char *p, size_t n)
{
	struct hx_client *c;
	if (is_client(s, &c)) {
		trace("gw>client", c->index, p, n);
		if (c->closing_seen && sim_sock_written(s) > c->allowed) {
			hx_violation("write-after-close",
				     "client %d: the gateway wrote %llu bytes, but only %llu were queued when its "
				     "session began closing", c->index, (unsigned long long)sim_sock_written(s),
				     (unsigned long long)c->allowed);
			c->allowed = sim_sock_written(s);
		}
		if (hx.proto->client_out)
			hx.proto->client_out(c, p, n);
		return;
	}
	struct hx_up *u = up_of(s);
	trace("gw>up", u ? (int)(u - hx.ups) : -1, p, n);
	if (u && hx.proto->up_out)
		hx.proto->up_out(u, p, n);
}

static const struct conf_upstream *upstream_for(const struct sockaddr *sa, socklen_t len)
{
	for (size_t i = 0; i < hx.conf->nupstreams; i++) {
		const struct conf_upstream *u = &hx.conf->upstreams[i];
		for (size_t j = 0; j < u->naddrs; j++)
			if (u->addrs[j].addr.len == len && memcmp(&u->addrs[j].addr.u, sa, len) == 0)
				return u;
	}
	return NULL;
}

static void on_dialed(void *arg, struct sim_sock *s)
{
	if (hx.nups == HX_MAX_UPS)
		sim_fail("more than %d upstream connections in one input", HX_MAX_UPS);
	struct hx_up *u = &hx.ups[hx.nups++];
	/* A client that logs in again and again makes an upstream connection
	 * each time: the table full, later dials are refused (as by a dead
	 * upstream), not taken for a gateway that dials without end. */
	if (hx.nups == HX_MAX_UPS)
		sim_set_dial_policy(SIM_DIAL_REFUSE_NOW);
	socklen_t len;
	const struct sockaddr *sa = sim_sock_dest(s, &len);
	memset(u, 0, sizeof(*u));
	u->sock = s;
	u->probe = hx.starting;
	u->cu = upstream_for(sa, len);
	if (!u->cu)
		sim_fail("the gateway connected to an address no upstream section names");
	if (hx.proto->up_new)
		hx.proto->up_new(u);
}

static void on_tls_started(void *arg, struct sim_sock *s, bool client)
{
	struct hx_client *c;
	if (is_client(s, &c)) {
		if (client)
			sim_fail("client %d: the gateway started a TLS client session towards a mail client",
				 c->index);
		return;
	}
	struct hx_up *u = up_of(s);
	if (!u || !client)
		sim_fail("a TLS session of the wrong role on an upstream connection");
	if (u->cu->tls == TLS_MODE_NONE)
		sim_fail("TLS started towards upstream \"%s\", which has tls = none", u->cu->name);
	u->tls_started = true;
	if (hx.proto->up_tls)
		hx.proto->up_tls(u);
}

static void on_tls_done(void *arg, struct sim_sock *s, bool ok)
{
	struct hx_client *c;
	if (is_client(s, &c)) {
		c->tls_ok = ok;
		return;
	}
	struct hx_up *u = up_of(s);
	if (u)
		u->tls_up = ok;
}

static void on_closed(void *arg, struct sim_sock *s)
{
	struct hx_client *c;
	if (is_client(s, &c)) {
		c->ended = true;
		if (hx.proto->client_end && !c->hung_up)
			hx.proto->client_end(c);
		return;
	}
	struct hx_up *u = up_of(s);
	if (u) {
		u->ended = true;
		if (hx.proto->up_end)
			hx.proto->up_end(u);
	}
}

/* After every callback: the state of each live session. */
static void after_callback(void *arg)
{
	if (!hx.srv)
		return;
	unsigned n = 0;
	for (struct session *s = hx.srv->sessions; s; s = s->next) {
		if (++n > hx.srv->nsessions)
			sim_fail("the server's session list is longer than nsessions (%u)", hx.srv->nsessions);
		struct hx_client *c = hx_client_of(s);
		if (!c)
			sim_fail("a live session (%s) whose conn is no client socket", s->id);
		session_assert(s);
		bool closing = s->state == SESSION_CLOSING;
		if (c->closing_seen && !closing) {
			hx_violation("revived", "client %d: session %s came back to life after it began closing",
				     c->index, s->id);
			c->closing_seen = false;	/* ignored: follow it from here */
		}
		/* Everything the gateway wrote or still holds queued for c. */
		uint64_t total = sim_sock_written(c->sock) + conn_out_len(s->conn) -
				 sim_tls_unsent_written(c->sock);
		if (closing && !c->closing_seen) {
			c->closing_seen = true;
			c->allowed = total;
		}
		if (hx.proto->logged_in && !c->login_seen && hx.proto->logged_in(s)) {
			c->login_seen = true;
			c->boundary = total;
		}
		if (hx.proto->session_seen)
			hx.proto->session_seen(s, c);
	}
	if (n != hx.srv->nsessions)
		sim_fail("the server counts %u sessions, its list holds %u", hx.srv->nsessions, n);
}

static void busy(void)
{
	hx_violation("busy-loop", "callbacks keep running without any I/O (the worker would spin)");
}

/* ---- accepting clients ---- */

static const struct conf_listener *the_listener(void)
{
	return &hx.conf->listeners[0];
}

static void after_proxy(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local,
			bool lb_local, double accepted)
{
	session_accept_at(hx.srv, hx.proto->ops->session, the_listener(), fd, peer, local, lb_local,
			  accepted);
}

static void new_client(void)
{
	if (hx.nclients == HX_MAX_CLIENTS)
		return;
	const struct conf_listener *l = the_listener();
	struct hx_client *c = &hx.clients[hx.nclients];
	struct mg_addr local = l->addrs[0];
	int fd;
	memset(c, 0, sizeof(*c));
	c->index = hx.nclients++;
	c->cert_status = -1;
	if (addr_from_literal(client_ips[world_flags & 3], (uint16_t)(40000 + c->index), &c->addr) < 0)
		abort();
	c->sock = sim_sock_accepted(&fd);
	if (hx.proto->client_new)
		hx.proto->client_new(c);
	if (l->proxy_protocol) {
		proxyin_start(fd, l, hx.conf->timeout_handshake, &c->addr, &local, after_proxy, NULL);
		return;
	}
	session_accept(hx.srv, hx.proto->ops->session, l, fd, &c->addr, &local, false);
}

static struct hx_client *cur_client(void)
{
	return hx.nclients ? &hx.clients[hx.nclients - 1] : NULL;
}

/* The upstream connection ops talk through: the newest one that is
 * connected and not shut by the gateway. */
static struct hx_up *cur_up(void)
{
	for (int i = hx.nups - 1; i >= 0; i--) {
		struct hx_up *u = &hx.ups[i];
		if (sim_sock_connect_state(u->sock) == SIM_CONN_OK && !sim_sock_gw_shut(u->sock))
			return u;
	}
	return NULL;
}

static struct hx_up *oldest_pending(void)
{
	for (int i = 0; i < hx.nups; i++)
		if (sim_sock_open(hx.ups[i].sock) && sim_sock_connect_state(hx.ups[i].sock) == SIM_CONN_PENDING)
			return &hx.ups[i];
	return NULL;
}

static void peer_send_up(struct hx_up *u, const unsigned char *p, size_t n)
{
	if (u && sim_peer_send(u->sock, p, n)) {
		trace("up>gw", (int)(u - hx.ups), p, n);
		if (hx.proto->up_in)
			hx.proto->up_in(u, p, n);
	}
}

/* At rest: the gateway must not sit on bytes an upstream sent while
 * nothing else holds it up - no socket it waits to write to (the other
 * side's back-pressure), no connect in progress. Such bytes would wait
 * for a timeout (e.g. a reply the parser cannot finish in a full input
 * buffer). */
static void check_stall(void)
{
	for (int i = 0; i < hx.nclients; i++)
		if (sim_sock_open(hx.clients[i].sock) && sim_sock_watched(hx.clients[i].sock, EV_WRITE))
			return;
	for (int i = 0; i < hx.nups; i++)
		if (sim_sock_open(hx.ups[i].sock) && sim_sock_watched(hx.ups[i].sock, EV_WRITE))
			return;
	for (int i = 0; i < hx.nups; i++) {
		struct sim_sock *s = hx.ups[i].sock;
		if (!sim_sock_open(s) || sim_sock_gw_shut(s) || sim_sock_connect_state(s) != SIM_CONN_OK ||
		    !sim_sock_unread(s) || sim_tls_pending(s) || sim_sock_watched(s, EV_READ))
			continue;
		hx_violation("stalled-input", "upstream connection %d: %zu byte(s) unread and nobody reading, "
			     "though no output is held up", i, sim_sock_unread(s));
	}
}

/* ---- the operations ---- */

struct input {
	const uint8_t *p;
	size_t n, pos;
};

static int byte(struct input *in)
{
	return in->pos < in->n ? in->p[in->pos++] : 0;
}

/* Through the next LF (inclusive), or to the end. */
static size_t line(struct input *in, const uint8_t **start)
{
	*start = in->p + in->pos;
	const uint8_t *lf = memchr(*start, '\n', in->n - in->pos);
	size_t len = lf ? (size_t)(lf - *start) + 1 : in->n - in->pos;
	in->pos += len;
	return len;
}

/* A length-prefixed chunk; one cut short by the end of the input is
 * dropped whole (so a seed cut anywhere never sends half a PROXY header
 * it meant to send at once). */
static size_t chunk(struct input *in, const uint8_t **start)
{
	size_t len = (size_t)byte(in) << 8;
	len |= (size_t)byte(in);
	*start = in->p + in->pos;
	if (len > in->n - in->pos) {
		in->pos = in->n;
		return 0;
	}
	in->pos += len;
	return len;
}

static const size_t windows[8] = { 0, 1, 2, 7, 64, 512, 4096, SIM_WINDOW_UNLIMITED };
static const int statuses[11] = {
	-1, CERT_VERIFIED, CERT_UNKNOWN_CA, CERT_EXPIRED, CERT_NOT_YET_VALID, CERT_REVOKED,
	CERT_BAD_SIGNATURE, CERT_INSECURE_ALGORITHM, CERT_BAD_USAGE, CERT_CHAIN_TOO_LONG, CERT_INVALID,
};
static const char *const rdns_names[4] = {
	"client.example.org", "host.with-dash.example", "a.b", "ends.with.dot.example.",
};

static void op_client_tls(struct input *in)
{
	int a = byte(in), id = byte(in) % HX_NIDENT;
	struct hx_client *c = cur_client();
	int status = statuses[(a & 15) % 11];
	struct sim_tls_facts f = {
		.ok = !(a & 0x20),
		.fail_on_cert = (a & 0x40) != 0,
		.tls12 = (a & 0x10) != 0,
		.peer = status < 0 ? NULL : hx_identity(id, status),
		.sni = (a & 0x80) ? "mx.test.example" : NULL,
	};
	if (c && sim_tls_resolve(c->sock, &f)) {
		c->cert_status = status;
		c->ident = id;
	}
}

static void op_up_tls(struct input *in)
{
	int b = byte(in);
	for (int i = 0; i < hx.nups; i++) {
		struct hx_up *u = &hx.ups[i];
		struct sim_tls_facts f = { .ok = !(b & 1) };
		if (sim_sock_open(u->sock) && sim_tls_pending(u->sock) && sim_tls_resolve(u->sock, &f))
			return;
	}
}

static void op(struct input *in)
{
	const uint8_t *p;
	size_t n;
	struct hx_client *c = cur_client();
	struct hx_up *u;
	int o = byte(in);
	if (o && strchr("hxrHXRKFPTtw+~SZDN", o))	/* the bytes are traced as they go */
		trace_op(o);
	switch (o) {
	case 'C':
	case 'c':
		n = o == 'C' ? line(in, &p) : chunk(in, &p);
		if (c && sim_peer_send(c->sock, p, n)) {
			trace("client>gw", c->index, p, n);
			if (hx.proto->client_in)
				hx.proto->client_in(c, p, n);
		}
		break;
	case 'U':
		n = line(in, &p);
		peer_send_up(cur_up(), p, n);
		break;
	case 'u':
		n = chunk(in, &p);
		peer_send_up(cur_up(), p, n);
		break;
	case 'h': if (c) sim_peer_shutdown(c->sock); break;
	case 'x':
	case 'r':
		if (c) {
			c->hung_up = true;
			if (o == 'x')
				sim_peer_close(c->sock);
			else
				sim_peer_reset(c->sock);
		}
		break;
	case 'H': if ((u = cur_up())) sim_peer_shutdown(u->sock); break;
	case 'X': if ((u = cur_up())) sim_peer_close(u->sock); break;
	case 'R': if ((u = cur_up())) sim_peer_reset(u->sock); break;
	case 'K':
	case 'F':
		if ((u = oldest_pending()))
			sim_connect_resolve(u->sock, o == 'K');
		break;
	case 'P': {
		enum sim_dial_policy pol = (enum sim_dial_policy)(byte(in) % 3);
		if (hx.nups < HX_MAX_UPS)	/* full: refused from now on */
			sim_set_dial_policy(pol);
		break;
	}
	case 'T': op_client_tls(in); break;
	case 't': op_up_tls(in); break;
	case 'w': {
		int side = byte(in) & 1;
		size_t win = windows[byte(in) & 7];
		if (side == 0 && c)
			sim_sock_set_window(c->sock, win);
		else if (side == 1 && (u = cur_up()))
			sim_sock_set_window(u->sock, win);
		break;
	}
	case '+': sim_advance(); break;
	case '~': sim_advance_by((double)byte(in)); break;
	case 'S': session_shutdown_all(hx.srv); after_callback(NULL); break;
	case 'Z': session_kill_all(hx.srv); after_callback(NULL); break;
	case 'D': {
		int b = byte(in);
		sim_rdns_answer(b % 3 == 0 ? RDNS_OK : b % 3 == 1 ? RDNS_NONE : RDNS_TEMP, rdns_names[(b / 3) & 3]);
		break;
	}
	case 'N': new_client(); break;
	default:
		return;	/* padding, or a byte the mutator made up */
	}
	sim_run_until_idle();
	after_callback(NULL);
	check_stall();
}

/* ---- the end of a scenario ---- */

static bool all_over(void)
{
	return hx.srv->nsessions == 0 && sim_open_fds() == 0 && sim_active_watchers() == 0;
}

static void finish(void)
{
	int steps = 0;
	sim_run_until_idle();
	for (; steps < MAX_END_STEPS && !all_over(); steps++)
		if (!sim_advance())
			break;
	if (hx.srv->nsessions && ignored("revived")) {
		/* A revived session may have no timer left at all (that is the
		 * known finding); with it ignored, end such sessions here. */
		session_kill_all(hx.srv);
		for (; steps < MAX_END_STEPS && !all_over(); steps++)
			if (!sim_advance())
				break;
	}
	if (getenv("MG_SIM_STEPS"))
		dprintf(2, "end: %d clock steps to +%.1f s\n", steps, sim_now() - 1700000000.0);
	if (hx.srv->nsessions)
		sim_fail("%u session(s) never ended (clock run to +%.0f s)", hx.srv->nsessions,
			 sim_now() - 1700000000.0);
	if (sim_open_fds())
		sim_fail("%u simulated fd(s) never closed", sim_open_fds());
	if (sim_active_watchers())
		sim_fail("%u watcher(s) left active after every session ended", sim_active_watchers());
	if (sim_pending_events())
		sim_fail("%u event(s) left queued", sim_pending_events());
	if (sim_rdns_live())
		sim_fail("%u reverse DNS query(ies) never delivered or cancelled", sim_rdns_live());
	if (sim_tls_live_sessions())
		sim_fail("%u TLS session(s) never freed", sim_tls_live_sessions());
	for (int i = 0; i < hx.nclients; i++)
		if (!hx.clients[i].ended)
			sim_fail("client %d: its fd is open although every session ended", i);
	if (hx.proto->world_end)
		hx.proto->world_end();
	struct server *srv = hx.srv;
	hx.srv = NULL;
	hx.proto->ops->server_free(srv);
	if (sim_tls_live_servers())
		sim_fail("%u TLS server/client object(s) survive server_free", sim_tls_live_servers());
	if (sim_active_watchers())
		sim_fail("server_free left %u watcher(s) active", sim_active_watchers());
}

static void free_world(void)
{
	for (int i = 0; i < hx.nclients; i++)
		(hx.proto->free_client ? hx.proto->free_client : free)(hx.clients[i].proto);
	for (int i = 0; i < hx.nups; i++)
		(hx.proto->free_up ? hx.proto->free_up : free)(hx.ups[i].proto);
}

int hx_run(const struct hx_proto *p, const uint8_t *data, size_t size)
{
	static const size_t records[4] = { 16384, 1, 7, 512 };
	struct input in = { data, size, 0 };
	struct diag d;
	init_once(p);
	if (size < 2)
		return 0;
	int variant = byte(&in) % (int)p->nconfigs;
	world_flags = byte(&in);

	empty_log();
	sim_reset();
	memset(&hx, 0, sizeof(hx));
	hx.proto = p;
	hx.variant = variant;
	hx.conf = confs[variant];
	struct sim_net_hooks hooks = {
		.gw_wrote = on_wrote, .dialed = on_dialed, .tls_started = on_tls_started,
		.tls_done = on_tls_done, .closed = on_closed,
	};
	sim_net_set_hooks(&hooks);
	sim_set_after_callback(after_callback, NULL);
	sim_set_busy_handler(busy);
	sim_tls_set_record(records[(world_flags >> 2) & 3]);
	conn_loop_init();

	diag_init(&d);
	hx.srv = p->ops->server_new(hx.conf, &d);
	if (!hx.srv || d.errors)
		sim_fail("%s: server_new failed for variant %d", p->name, variant);
	diag_free(&d);
	hx.starting = true;
	if (p->ops->server_start)
		p->ops->server_start(hx.srv);
	hx.starting = false;
	sim_run_until_idle();
	new_client();
	sim_run_until_idle();

	while (in.pos < in.n)
		op(&in);
	finish();
	free_world();
	sim_set_after_callback(NULL, NULL);
	sim_set_busy_handler(NULL);
	sim_net_set_hooks(NULL);
	return 0;
}
