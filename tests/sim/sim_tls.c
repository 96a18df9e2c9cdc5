/* sim_tls: the whole common/tls.h API as a pass-through over simulated
 * sockets (see sim.h), replacing tls.c, tls_creds.c and tls_identity.c.
 * Application bytes cross unencrypted; what a real stack would decide -
 * whether the handshake succeeds, the client certificate and its status,
 * SNI, ALPN - the driver chooses with sim_tls_resolve().
 *
 * Kept from the real module: a handshake is "want read" until the peer's
 * flight arrives (the driver resolving it, or the peer closing); the
 * listener's client_cert policy is applied to the certificate the driver
 * gives (none: never asked for; require: a missing or failing certificate
 * fails the handshake as refused on cert, unless its only fault is an
 * unknown issuer and the pin oracle accepts it); bytes the peer sent
 * before the handshake began are not a handshake (it fails); tls_recv
 * takes whole "records" from the socket and keeps what the caller's buffer
 * cannot hold (tls_pending); an interrupted tls_send must be retried with
 * the same bytes first (checked). */
#include "sim.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRV_MAGIC 0x53544c53u
#define CLI_MAGIC 0x53544c43u
#define SESS_MAGIC 0x53544c45u
#define RECORD_MAX 16384

struct tls_server {
	uint32_t magic;
	int (*pin_accept)(void *arg, const struct tls_peer *p);
	void *pin_arg;
};

struct tls_client {
	uint32_t magic;
};

enum hs { HS_PENDING, HS_RESOLVED, HS_READY, HS_FAILED };

struct sim_tls_state {
	uint32_t magic;
	struct tls_session *owner;
};

struct tls_session {
	uint32_t magic;
	struct sim_tls_state st;	/* what the socket points at */
	bool client;
	enum client_cert_mode mode;
	struct tls_server *srv;
	struct sim_sock *sock;
	enum hs hs;
	size_t pre_tls;		/* peer bytes already queued at creation */
	struct sim_tls_facts facts;	/* once resolved */
	struct tls_peer *peer;	/* presented and asked for */
	bool cert_failed, bye_sent, wipe;
	const char *reason;
	char *verify_name;	/* client sessions: the host asked for ("" none) */
	char sni[256], alpn[64];
	unsigned char *in;	/* decrypted, not yet returned (RECORD_MAX, on first use) */
	size_t in_off, in_len;
	unsigned char *out;	/* the record being sent (RECORD_MAX, on first use) */
	size_t out_len, out_off;
	bool out_pending;
};

static unsigned live_sessions, live_objects;
static size_t record_size = RECORD_MAX;

void sim_tls_reset(void)
{
	live_sessions = live_objects = 0;
	record_size = RECORD_MAX;
}

void sim_tls_set_record(size_t n)
{
	record_size = n < 1 ? 1 : n > RECORD_MAX ? RECORD_MAX : n;
}

unsigned sim_tls_live_sessions(void)
{
	return live_sessions;
}

unsigned sim_tls_live_servers(void)
{
	return live_objects;
}

static struct tls_session *S(const struct tls_session *s)
{
	if (!s || s->magic != SESS_MAGIC)
		sim_fail("bad tls_session %p (freed or never created)", (const void *)s);
	return (struct tls_session *)s;
}

static struct tls_session *of_sock(const struct sim_sock *sock)
{
	struct sim_tls_state *t = sim_net_tls(sock);
	if (!t)
		return NULL;
	if (t->magic != SESS_MAGIC)
		sim_fail("corrupt TLS state on fd %d", sim_sock_fd(sock));
	return S(t->owner);
}

size_t sim_tls_held(const struct sim_sock *sock)
{
	struct tls_session *s = of_sock(sock);
	return s ? s->in_len : 0;
}

size_t sim_tls_unsent_written(const struct sim_sock *sock)
{
	struct tls_session *s = of_sock(sock);
	return s && s->out_pending ? s->out_off : 0;
}

/* ---- objects ---- */

void tls_global_init(void)
{
}

const char *tls_lib_version(void)
{
	return "sim";
}

void tls_ticket_master_init(void)
{
}

struct tls_server *tls_server_new(const struct conf_tls *t, struct diag *d)
{
	struct tls_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		abort();
	srv->magic = SRV_MAGIC;
	live_objects++;
	return srv;
}

void tls_server_free(struct tls_server **sp)
{
	struct tls_server *srv = *sp;
	if (!srv)
		return;
	if (srv->magic != SRV_MAGIC)
		sim_fail("tls_server_free of a bad object");
	srv->magic = 0;
	free(srv);
	live_objects--;
	*sp = NULL;
}

void tls_server_set_pin_accept(struct tls_server *srv, int (*fn)(void *arg, const struct tls_peer *p),
			       void *arg)
{
	if (!srv || srv->magic != SRV_MAGIC)
		sim_fail("tls_server_set_pin_accept on a bad object");
	srv->pin_accept = fn;
	srv->pin_arg = arg;
}

struct tls_client *tls_client_new(const struct conf_tls_client *t, struct diag *d)
{
	struct tls_client *cli = calloc(1, sizeof(*cli));
	if (!cli)
		abort();
	cli->magic = CLI_MAGIC;
	live_objects++;
	return cli;
}

void tls_client_free(struct tls_client **cp)
{
	struct tls_client *cli = *cp;
	if (!cli)
		return;
	if (cli->magic != CLI_MAGIC)
		sim_fail("tls_client_free of a bad object");
	cli->magic = 0;
	free(cli);
	live_objects--;
	*cp = NULL;
}

/* No keys in the simulation, on a token or elsewhere: nothing to sign with. */
int tls_server_check_keys(struct tls_server *srv, char *err, size_t errsz)
{
	if (srv && srv->magic != SRV_MAGIC)
		sim_fail("tls_server_check_keys on a bad object");
	return 0;
}

/* No certificate files in the simulation: nothing for expiry metrics. */
size_t tls_server_certs(const struct tls_server *srv, const struct tls_cert_info **out)
{
	if (!srv || srv->magic != SRV_MAGIC)
		sim_fail("tls_server_certs on a bad object");
	*out = NULL;
	return 0;
}

size_t tls_client_certs(const struct tls_client *cli, const struct tls_cert_info **out)
{
	if (!cli || cli->magic != CLI_MAGIC)
		sim_fail("tls_client_certs on a bad object");
	*out = NULL;
	return 0;
}

void tls_check_conf(const struct conf *c, struct diag *d)
{
}

/* ---- sessions ---- */

static struct tls_session *new_session(int fd, bool client)
{
	struct sim_sock *sock = sim_sock_by_fd(fd);
	if (!sock)
		sim_fail("TLS session on fd %d, which is not an open simulated socket", fd);
	struct tls_session *s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->magic = SESS_MAGIC;
	s->st.magic = SESS_MAGIC;
	s->st.owner = s;
	s->client = client;
	s->sock = sock;
	s->pre_tls = sim_sock_unread(sock);
	live_sessions++;
	sim_net_attach_tls(sock, &s->st, client);
	return s;
}

struct tls_session *tls_session_server(struct tls_server *srv, int fd, enum client_cert_mode mode)
{
	if (!srv || srv->magic != SRV_MAGIC)
		sim_fail("tls_session_server with a bad tls_server");
	struct tls_session *s = new_session(fd, false);
	s->srv = srv;
	s->mode = mode == CLIENT_CERT_UNSET ? CLIENT_CERT_NONE : mode;
	return s;
}

struct tls_session *tls_session_client(struct tls_client *cli, int fd, const char *host)
{
	if (!cli || cli->magic != CLI_MAGIC)
		sim_fail("tls_session_client with a bad tls_client");
	struct tls_session *s = new_session(fd, true);
	s->verify_name = strdup(host ? host : "");
	if (!s->verify_name)
		abort();
	return s;
}

static void peer_free(struct tls_peer *p)
{
	if (!p)
		return;
	free(p->cn);
	for (size_t i = 0; i < p->ndns; i++)
		free(p->dns[i]);
	free(p->dns);
	for (size_t i = 0; i < p->nemail; i++)
		free(p->email[i]);
	free(p->email);
	free(p->issuer);
	free(p);
}

void tls_session_free(struct tls_session **sp)
{
	struct tls_session *s = *sp;
	if (!s)
		return;
	S(s);
	if (sim_net_tls(s->sock) == &s->st)
		sim_net_detach_tls(s->sock);
	peer_free(s->peer);
	free(s->verify_name);
	free(s->in);
	free(s->out);
	memset(s, 0, sizeof(*s));
	free(s);
	live_sessions--;
	*sp = NULL;
}

static char *memdup0(const char *p, size_t n)
{
	char *d = malloc(n + 1);
	if (!d)
		abort();
	memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

static char **copy_list(char *const *v, size_t n)
{
	if (!n)
		return NULL;
	char **c = calloc(n, sizeof(*c));
	if (!c)
		abort();
	for (size_t i = 0; i < n; i++)
		c[i] = memdup0(v[i], strlen(v[i]));
	return c;
}

static struct tls_peer *copy_peer(const struct tls_peer *p)
{
	struct tls_peer *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	*c = *p;
	c->cn = p->cn ? memdup0(p->cn, p->cn_len) : NULL;
	c->dns = copy_list(p->dns, p->ndns);
	c->email = copy_list(p->email, p->nemail);
	c->issuer = p->issuer ? memdup0(p->issuer, strlen(p->issuer)) : NULL;
	return c;
}

bool sim_tls_pending(const struct sim_sock *sock)
{
	struct tls_session *s = of_sock(sock);
	return s && s->hs != HS_READY;
}

bool sim_tls_resolve(struct sim_sock *sock, const struct sim_tls_facts *f)
{
	struct tls_session *s = of_sock(sock);
	if (!s || s->hs != HS_PENDING)
		return false;
	s->facts = *f;
	s->facts.peer = NULL;
	snprintf(s->sni, sizeof(s->sni), "%s", f->sni ? f->sni : "");
	snprintf(s->alpn, sizeof(s->alpn), "%s", f->alpn ? f->alpn : "");
	if (!s->client && f->peer && s->mode != CLIENT_CERT_NONE)
		s->peer = copy_peer(f->peer);
	s->hs = HS_RESOLVED;
	sim_net_poke(sock, true);	/* the peer's last flight arrived */
	return true;
}

static int hs_fail(struct tls_session *s, const char *why, bool on_cert)
{
	s->hs = HS_FAILED;
	s->reason = why;
	s->cert_failed = on_cert;
	sim_net_poke(s->sock, false);
	sim_net_tls_done(s->sock, false);
	return TLS_FAILED;
}

/* client_cert policy on the presented certificate (tls_identity.c). */
static int apply_policy(struct tls_session *s)
{
	if (s->client || s->mode != CLIENT_CERT_REQUIRE)
		return 0;
	if (!s->peer)
		return hs_fail(s, "client certificate required, none presented", true);
	if (s->peer->status == CERT_VERIFIED)
		return 0;
	if (s->peer->status == CERT_UNKNOWN_CA && s->peer->issuer_only && s->srv->pin_accept &&
	    s->srv->pin_accept(s->srv->pin_arg, s->peer))
		return 0;
	return hs_fail(s, "client certificate rejected", true);
}

int tls_handshake(struct tls_session *s)
{
	S(s);
	switch (s->hs) {
	case HS_READY:
		sim_fail("tls_handshake on fd %d after it completed", sim_sock_fd(s->sock));
	case HS_FAILED:
		return TLS_FAILED;
	case HS_PENDING:
		if (sim_net_peer_gone(s->sock))
			return hs_fail(s, "connection closed during the handshake", false);
		return TLS_WANT_READ;
	case HS_RESOLVED:
		break;
	}
	if (s->pre_tls)
		return hs_fail(s, "plaintext received before the handshake", false);
	if (!s->facts.ok)
		return hs_fail(s, s->facts.fail_on_cert ? "client certificate rejected" : "handshake failed",
			       s->facts.fail_on_cert && !s->client);
	if (apply_policy(s) < 0)
		return TLS_FAILED;
	s->hs = HS_READY;
	sim_net_poke(s->sock, false);
	sim_net_tls_done(s->sock, true);
	return TLS_OK;
}

static void need_ready(struct tls_session *s, const char *call)
{
	if (s->hs != HS_READY)
		sim_fail("%s on fd %d before the handshake completed", call, sim_sock_fd(s->sock));
}

/* A "record" from the socket into s->in when none is left: > 0, or TLS_*. */
static ssize_t fill_record(struct tls_session *s)
{
	if (!s->in_len) {
		if (!s->in && !(s->in = malloc(RECORD_MAX)))
			abort();
		ssize_t r = sim_net_raw_recv(s->sock, s->in, record_size);
		if (r == 0) {
			s->reason = "connection closed without close_notify";
			return TLS_CLOSED;
		}
		if (r < 0) {
			if (errno == EAGAIN)
				return TLS_WANT_READ;
			s->reason = "Error in the pull function.";
			return TLS_FAILED;
		}
		s->in_off = 0;
		s->in_len = (size_t)r;
	}
	return (ssize_t)s->in_len;
}

ssize_t tls_recv(struct tls_session *s, void *buf, size_t len)
{
	S(s);
	need_ready(s, "tls_recv");
	if (!len)
		sim_fail("tls_recv with an empty buffer");
	ssize_t r = fill_record(s);
	if (r < 0)
		return r;
	size_t n = len < s->in_len ? len : s->in_len;
	memcpy(buf, s->in + s->in_off, n);
	s->in_off += n;
	s->in_len -= n;
	return (ssize_t)n;
}

ssize_t tls_recv_view(struct tls_session *s, const char **p)
{
	S(s);
	need_ready(s, "tls_recv_view");
	ssize_t r = fill_record(s);
	if (r > 0)
		*p = (const char *)s->in + s->in_off;
	return r;
}

void tls_view_consume(struct tls_session *s, size_t n)
{
	S(s);
	if (n > s->in_len)
		sim_fail("tls_view_consume of %zu octets, %zu held", n, s->in_len);
	s->in_off += n;
	s->in_len -= n;
}

ssize_t tls_send(struct tls_session *s, const void *buf, size_t len)
{
	S(s);
	need_ready(s, "tls_send");
	if (s->bye_sent)
		sim_fail("tls_send on fd %d after close_notify", sim_sock_fd(s->sock));
	if (s->out_pending) {
		/* tls.h: after TLS_WANT_*, call again with the same bytes. */
		if (len < s->out_len || memcmp(buf, s->out, s->out_len) != 0)
			sim_fail("tls_send retry on fd %d with different bytes (%zu queued, %zu given)",
				 sim_sock_fd(s->sock), s->out_len, len);
	} else {
		if (!len)
			sim_fail("tls_send with nothing to send");
		if (!s->out && !(s->out = malloc(RECORD_MAX)))
			abort();
		s->out_len = len < RECORD_MAX ? len : RECORD_MAX;
		memcpy(s->out, buf, s->out_len);
		s->out_off = 0;
	}
	while (s->out_off < s->out_len) {
		ssize_t r = sim_net_raw_send(s->sock, s->out + s->out_off, s->out_len - s->out_off);
		if (r < 0) {
			if (errno == EAGAIN) {
				s->out_pending = true;
				return TLS_WANT_WRITE;
			}
			s->out_pending = false;
			s->reason = "Error in the push function.";
			return TLS_FAILED;
		}
		s->out_off += (size_t)r;
	}
	s->out_pending = false;
	return (ssize_t)s->out_len;
}

size_t tls_pending(struct tls_session *s)
{
	S(s);
	return s->hs == HS_READY ? s->in_len : 0;
}

/* close_notify takes room on the socket like any record: with a full
 * window it is "want write", to be called again. */
int tls_bye(struct tls_session *s)
{
	S(s);
	need_ready(s, "tls_bye");
	if (s->bye_sent)
		return TLS_OK;
	if (s->out_pending || !sim_net_ready(sim_sock_fd(s->sock), EV_WRITE))
		return TLS_WANT_WRITE;
	s->bye_sent = true;
	return TLS_OK;
}

void tls_set_wipe(struct tls_session *s, bool on)
{
	S(s)->wipe = on;
}

const char *tls_reason(const struct tls_session *s)
{
	S(s);
	return s->reason ? s->reason : "unknown TLS error";
}

bool tls_failed_on_cert(const struct tls_session *s)
{
	return S(s)->cert_failed;
}

const char *tls_version_name(struct tls_session *s)
{
	return S(s)->facts.tls12 ? "TLS1.2" : "TLS1.3";
}

const char *tls_cipher_name(struct tls_session *s)
{
	return S(s)->facts.tls12 ? "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" : "TLS_AES_128_GCM_SHA256";
}

void tls_sni(struct tls_session *s, char *out, size_t sz)
{
	snprintf(out, sz, "%s", S(s)->sni);
}

void tls_alpn(struct tls_session *s, char *out, size_t sz)
{
	snprintf(out, sz, "%s", S(s)->alpn);
}

const char *tls_verify_name(const struct tls_session *s)
{
	return S(s)->client && s->verify_name ? s->verify_name : "";
}

const struct tls_peer *tls_peer(const struct tls_session *s)
{
	S(s);
	return s->hs == HS_READY ? s->peer : NULL;
}

/* ---- pure helpers of tls_identity.c ---- */

static const char *const status_names[] = {
	[CERT_NONE] = "none",
	[CERT_VERIFIED] = "verified",
	[CERT_UNKNOWN_CA] = "unknown-ca",
	[CERT_EXPIRED] = "expired",
	[CERT_NOT_YET_VALID] = "not-yet-valid",
	[CERT_REVOKED] = "revoked",
	[CERT_BAD_SIGNATURE] = "bad-signature",
	[CERT_INSECURE_ALGORITHM] = "insecure-algorithm",
	[CERT_BAD_USAGE] = "bad-usage",
	[CERT_CHAIN_TOO_LONG] = "chain-too-long",
	[CERT_INVALID] = "invalid",
};

const char *tls_cert_status_name(enum cert_status st)
{
	if ((unsigned)st >= sizeof(status_names) / sizeof(status_names[0]))
		return "invalid";
	return status_names[st];
}

void tls_format_fp(const unsigned char fp[32], char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 7;
	if (outsz < 7 + 32 * 3)
		return;
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 32; i++) {
		if (i)
			out[o++] = ':';
		out[o++] = hex[fp[i] >> 4];
		out[o++] = hex[fp[i] & 15];
	}
	out[o] = '\0';
}
