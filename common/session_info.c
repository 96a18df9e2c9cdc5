/* session_info: what a session says about itself - its id (a random
 * per-process prefix plus a counter, unique across workers and restarts
 * without coordination), the client certificate's identity (peer
 * matching, DESIGN.md §6), the session-end line and the auth-failed line
 * (§7) with the metrics that go with them (handshake, client certificate,
 * peer expiry, connection result, bytes, failed logins), and the PROXY
 * header describing the client to an upstream (§3). */
#include "session.h"
#include "domain.h"
#include "session_int.h"
#include "session_id.h"
#include "conn.h"
#include "metrics.h"
#include "peer.h"
#include "proxyproto.h"
#include "tls.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint32_t id_prefix;
static uint32_t id_counter;
static bool id_seeded;	/* in this process: a fork clears it (ids_forked) */

static void reseed(void)
{
	uint32_t r = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &r, sizeof(r)) != sizeof(r))
			r = 0;
		close(fd);
	}
	if (!r)
		r = (uint32_t)time(NULL) ^ (uint32_t)getpid() << 16;
	id_prefix = r & 0xffffff;
	id_counter = 0;
	id_seeded = true;
}

/* A child (a worker) draws its own prefix: told by fork itself, not by a
 * getpid() per session. */
static void ids_forked(void)
{
	id_seeded = false;
}

void session_new_id(char out[16])
{
	static bool hooked;
	if (!hooked) {
		pthread_atfork(NULL, NULL, ids_forked);
		hooked = true;
	}
	if (!id_seeded || id_counter >= 0xffffff)
		reseed();
	id_counter++;
	snprintf(out, 16, "%06X%06X", (unsigned)id_prefix, (unsigned)id_counter);
}

static void log_begin(struct session *s, struct logkv *kv)
{
	char buf[128];
	logkv_begin(kv, "session", 0);
	logkv_raw(kv, "session", s->id);
	logkv_str(kv, "listener", s->listener->name);
	addr_str(&s->client, buf, sizeof(buf));
	logkv_raw(kv, "client", buf);
	struct tls_session *t = s->conn ? conn_tls(s->conn) : NULL;
	if (t && conn_tls_ready(s->conn)) {
		logkv_raw(kv, "tls", tls_version_name(t));
		logkv_raw(kv, "cipher", tls_cipher_name(t));
		const struct tls_peer *p = tls_peer(t);
		/* cert=verified pin=yes when a pin made it acceptable (§6); the
		 * CN only for a chain that verified, as in Received (§4.5). */
		logkv_raw(kv, "cert", tls_cert_status_name(peer_cert_status(p, s->pin)));
		if (p) {
			if (s->pin)
				logkv_raw(kv, "pin", "yes");
			if (p->cn && p->status == CERT_VERIFIED)
				logkv_mem(kv, "cn", p->cn, p->cn_len);
			tls_format_fp(p->fp, buf, sizeof(buf));
			logkv_raw(kv, "fp", buf);
			if (s->peer) {
				logkv_str(kv, "peer", s->peer->name);
			} else {
				logkv_raw(kv, "peer", "none");
				logkv_raw(kv, "reason", s->peer_reason);
			}
		}
	}
}

void session_identify(struct session *s)
{
	const struct conf *c = session_conf(s);
	struct peer_result r;
	const struct tls_peer *p = session_cert(s);
	peer_match(c->peers, c->npeers, p, &r);
	s->peer = r.peer;
	s->pin = r.pin;
	s->peer_reason = r.reason;
	if (r.peer && p && p->not_after != (time_t)-1)
		metrics_peer_cert(r.peer->name, p->not_after);
}

void session_count_handshake(struct session *s, bool ok)
{
	struct tls_session *t = conn_tls(s->conn);
	const struct tls_peer *p = t ? tls_peer(t) : NULL;
	s->handshaking = 0;
	metrics_handshake(s->listener->name, ok);
	/* As logged (cert=): a pin match reports verified. A handshake that
	 * failed may still have read the certificate it refused. */
	if (p)
		metrics_client_cert(ok ? peer_cert_status(p, s->pin) : p->status);
	else if (ok)
		metrics_client_cert(CERT_NONE);	/* logged as cert=none */
}

void session_log_end(struct session *s)
{
	struct logkv kv;
	char dur[32];
	enum session_result r = s->ops->result ? s->ops->result(s, s->result) : s->result;
	bool check = session_is_null_check(s);
	enum log_level lvl = check ? LOG_LVL_DEBUG : LOG_LVL_INFO;
	/* A line below log_level is not built at all (a per-session cost:
	 * escaping, number formatting). */
	if (log_enabled(lvl)) {
		log_begin(s, &kv);
		if (s->ops->log)
			s->ops->log(s, &kv);
		logkv_u64(&kv, "bytes_in", conn_bytes_in(s->conn));
		logkv_u64(&kv, "bytes_out", conn_bytes_out(s->conn));
		const char *up = s->ops->upstream ? s->ops->upstream(s) : NULL;
		if (up && up[0])
			logkv_str(&kv, "upstream", up);
		snprintf(dur, sizeof(dur), "%.3f", conn_now() - s->start);
		logkv_raw(&kv, "duration", dur);
		logkv_raw(&kv, "result", session_result_name(r));
		logkv_end(&kv, lvl);
	}
	if (!check)	/* a balancer's check is no client connection */
		metrics_connection(s->listener->name, r);
	metrics_bytes(conn_bytes_in(s->conn), conn_bytes_out(s->conn));
}

bool session_is_null_check(const struct session *s)
{
	return s->lb_local && conn_bytes_in(s->conn) == 0;
}

void session_log_auth_failed(const struct session *s, const char *user, const char *mech)
{
	struct logkv kv;
	logkv_begin(&kv, "auth-failed", 1);
	logkv_raw(&kv, "session", s->id);
	logkv_raw(&kv, "client", s->ip);
	if (user)
		logkv_str(&kv, "user", user);
	logkv_str(&kv, "mech", mech);
	logkv_end(&kv, LOG_LVL_NOTICE);
	metrics_auth(false);	/* one per auth-failed line */
}

size_t session_proxy_header(const struct session *s, enum proxy_out v, unsigned char *out, size_t sz)
{
	if (v == PROXY_OUT_V1)
		return pp_build_v1((char *)out, sz, &s->client, &s->local);
	if (v != PROXY_OUT_V2)
		return 0;
	struct pp_tls t;
	char sni[DOMAIN_BUFSZ], alpn[64];
	memset(&t, 0, sizeof(t));
	struct tls_session *ts = s->conn && conn_tls_ready(s->conn) ? conn_tls(s->conn) : NULL;
	if (ts) {
		const struct tls_peer *p = tls_peer(ts);
		t.tls = true;
		t.version = pp_openssl_version(tls_version_name(ts));
		t.cipher = pp_openssl_cipher(tls_cipher_name(ts));
		tls_sni(ts, sni, sizeof(sni));
		tls_alpn(ts, alpn, sizeof(alpn));
		t.sni = sni[0] ? sni : NULL;
		t.alpn = alpn[0] ? alpn : NULL;
		if (p) {
			t.cert = true;
			/* "verified" means the chain: a pin-only match counts as
			 * failed here, and only then is the CN sent (Dovecot
			 * would take it as the EXTERNAL login name) - and only
			 * a CN that is the subject's one CN, read exactly. */
			t.verified = p->status == CERT_VERIFIED;
			t.cn = peer_single_cn(p);
			t.sig_alg = p->sig_alg;
			t.key_alg = p->key_alg;
		}
	}
	return pp_build_v2(out, sz, &s->client, &s->local, &t);
}
