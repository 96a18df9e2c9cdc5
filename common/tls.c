/* tls: per-connection sessions over non-blocking sockets.
 *
 * GnuTLS is driven directly on the fd: it sends with its own functions,
 * and receives through transport_pull(), which keeps a TCP half-close by
 * the peer from invalidating the session (see there). Every
 * call maps GNUTLS_E_AGAIN / INTERRUPTED to TLS_WANT_READ or WANT_WRITE
 * using gnutls_record_get_direction(); an interrupted record_send is
 * resumed with (NULL, 0) as the GnuTLS manual requires. Decrypted bytes can
 * sit inside GnuTLS without waking libev, so callers must drain
 * tls_pending(). TLS 1.2 renegotiation is refused (the connection fails),
 * early data is never enabled, tickets live at most TLS_TICKET_LIFETIME.
 * Credential loading is in tls_creds.c, peer identity in tls_identity.c. */
#include "tls_internal.h"
#include "domain.h"
#include "xmem.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

void tls_global_init(void)
{
	gnutls_global_init();
}

const char *tls_lib_version(void)
{
	return gnutls_check_version(NULL);
}

static void alpn_offered_note(struct tls_session *s, const unsigned char *data, unsigned size)
{
	/* ALPN extension body: 2-byte list length, then 1-byte-length names. */
	char list[200];
	size_t o = 0;
	if (size < 2)
		return;
	unsigned pos = 2;
	while (pos < size && o + 4 < sizeof(list)) {
		unsigned l = data[pos++];
		if (pos + l > size)
			break;
		if (o)
			list[o++] = ',';
		for (unsigned i = 0; i < l && o + 2 < sizeof(list); i++) {
			unsigned char c = data[pos + i];
			list[o++] = (c > 0x20 && c < 0x7f && c != ',') ? (char)c : '?';
		}
		pos += l;
	}
	list[o] = '\0';
	tls_set_reason(s, "no_application_protocol: client offered ALPN %s", list);
}

static int client_hello_ext(void *ctx, unsigned tls_id, const unsigned char *data, unsigned size)
{
	struct tls_session *s = ctx;
	if (tls_id != 16)	/* application_layer_protocol_negotiation */
		return 0;
	/* Only now: GnuTLS keeps ≈ 300 bytes per session for a protocol
	 * list, which a client offering no ALPN (every mail client) never
	 * needs (DESIGN.md §8). Set before GnuTLS parses the extensions. */
	gnutls_alpn_set_protocols(s->gs, s->srv->alpn, s->srv->nalpn,
				  GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE);
	unsigned pos = 2;
	while (pos < size) {
		unsigned l = data[pos++];
		if (pos + l > size)
			break;
		for (unsigned i = 0; i < s->srv->nalpn; i++)
			if (s->srv->alpn[i].size == l && memcmp(s->srv->alpn[i].data, data + pos, l) == 0)
				return 0;
		pos += l;
	}
	alpn_offered_note(s, data, size);
	return 0;
}

/* With alpn = true: arms ALPN when the client offers it, and notes the
 * client's list so that a refusal can be logged with it. */
static int client_hello_hook(gnutls_session_t gs, unsigned htype, unsigned when,
			     unsigned incoming, const gnutls_datum_t *msg)
{
	struct tls_session *s = gnutls_session_get_ptr(gs);
	if (htype == GNUTLS_HANDSHAKE_CLIENT_HELLO && when == GNUTLS_HOOK_PRE && incoming && s &&
	    s->srv->alpn_strict)
		gnutls_ext_raw_parse(s, client_hello_ext, msg, GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO);
	return 0;
}

/* The receiving half of the transport. A TCP FIN from the peer is noted
 * and reported to GnuTLS as "no data yet": to GnuTLS an EOF without
 * close_notify is a fatal error that invalidates the session, and after
 * that it refuses to send - so a peer that shuts down its write side
 * after its last commands (a half-close, as any TCP client may do) would
 * never get their replies. tls_recv() turns the note into TLS_CLOSED, a
 * handshake cut short fails (see starved()). */
static ssize_t transport_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct tls_session *s = ptr;
	if (!len)
		return 0;
	if (s->ahead_len) {
		size_t n = len < s->ahead_len ? len : s->ahead_len;
		memcpy(buf, s->ahead + s->ahead_off, n);
		s->ahead_off = (uint8_t)(s->ahead_off + n);
		s->ahead_len = (uint8_t)(s->ahead_len - n);
		return (ssize_t)n;	/* GnuTLS asks again for the rest */
	}
	/* What was asked for, and whatever follows up to a record header
	 * into ahead[] (see there): one recvmsg per record, not two. */
	struct iovec iov[2] = { { buf, len }, { s->ahead, sizeof(s->ahead) } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t r = recvmsg(s->fd, &m, 0);
	if (r > (ssize_t)len) {
		s->ahead_off = 0;
		s->ahead_len = (uint8_t)((size_t)r - len);
		r = (ssize_t)len;
	}
	if (r == 0) {
		s->peer_fin = 1;
		errno = EAGAIN;
		return -1;
	}
	if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		s->io_errno = errno;	/* for the words in transport_failure() */
	if (r > 0 && !s->got_first) {
		s->got_first = 1;
		s->first_byte = *(unsigned char *)buf;
	}
	return r;
}

/* The sending half: what GnuTLS would do (sendmsg, no SIGPIPE), with the
 * socket's error kept for the log. */
static ssize_t transport_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
	struct tls_session *s = ptr;
	struct msghdr m = { .msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t r = sendmsg(s->fd, &m, MSG_NOSIGNAL);
	if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		s->io_errno = errno;
	return r;
}

/* A peer that speaks a line protocol where TLS was expected: its first
 * byte is printable text, never a TLS record's content type (20-24). */
static bool plain_text(const struct tls_session *s)
{
	return s->got_first && s->first_byte >= 0x20 && s->first_byte < 0x7f;
}

/* An admin reads "connection reset by peer", not "Error in the pull
 * function.": GnuTLS's words for the transport's failures, replaced. */
static void transport_failure(struct tls_session *s, int err)
{
	const char *during = s->handshaking ? " during the handshake" : "";
	if (err == GNUTLS_E_PREMATURE_TERMINATION) {
		tls_set_reason(s, "peer closed the connection%s", during);
		return;
	}
	switch (s->io_errno) {
	case ECONNRESET:
		tls_set_reason(s, "connection reset by peer%s", during);
		return;
	case EPIPE:
		tls_set_reason(s, "peer closed the connection%s", during);
		return;
	case ETIMEDOUT:
		tls_set_reason(s, "connection timed out%s", during);
		return;
	case 0:
		tls_set_reason(s, "network error%s", during);
		return;
	default:
		tls_set_reason(s, "%s%s", strerror(s->io_errno), during);
	}
}

static bool transport_error(int err)
{
	return err == GNUTLS_E_PULL_ERROR || err == GNUTLS_E_PUSH_ERROR ||
	       err == GNUTLS_E_PREMATURE_TERMINATION;
}

/* GnuTLS's default would take the transport pointer for an fd. */
static int transport_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
	struct tls_session *s = ptr;
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	if (s->peer_fin || s->ahead_len)
		return 1;	/* readable: the EOF */
	return poll(&p, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
}

static void set_transport(struct tls_session *s, int fd)
{
	s->fd = fd;
	gnutls_transport_set_ptr(s->gs, s);
	gnutls_transport_set_pull_function(s->gs, transport_pull);
	gnutls_transport_set_vec_push_function(s->gs, transport_push);
	gnutls_transport_set_pull_timeout_function(s->gs, transport_pull_timeout);
}

struct tls_session *tls_session_server(struct tls_server *srv, int fd, enum client_cert_mode mode)
{
	struct tls_session *s = xcalloc(1, sizeof(*s));
	s->magic = TLS_SESSION_MAGIC;
	s->role = TLS_ROLE_SERVER;
	s->srv = srv;
	s->mode = (uint8_t)(mode == CLIENT_CERT_UNSET ? CLIENT_CERT_NONE : mode);
	if (gnutls_init(&s->gs, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
		free(s);
		return NULL;
	}
	gnutls_session_set_ptr(s->gs, s);
	gnutls_priority_set(s->gs, srv->prio);
	gnutls_credentials_set(s->gs, GNUTLS_CRD_CERTIFICATE, srv->cred);
	gnutls_certificate_server_set_request(s->gs, s->mode == CLIENT_CERT_NONE ? GNUTLS_CERT_IGNORE
						     : s->mode == CLIENT_CERT_OPTIONAL ? GNUTLS_CERT_REQUEST
						     : GNUTLS_CERT_REQUIRE);
	gnutls_session_ticket_enable_server(s->gs, &srv->ticket_key);
	gnutls_db_set_cache_expiration(s->gs, TLS_TICKET_LIFETIME);
	gnutls_handshake_set_timeout(s->gs, GNUTLS_INDEFINITE_TIMEOUT);
	if (srv->alpn_strict)	/* ALPN is armed by the hook, when offered */
		gnutls_handshake_set_hook_function(s->gs, GNUTLS_HANDSHAKE_CLIENT_HELLO,
						   GNUTLS_HOOK_PRE, client_hello_hook);
	set_transport(s, fd);
	return s;
}

struct tls_session *tls_session_client(struct tls_client *cli, int fd, const char *host)
{
	struct tls_session *s = xcalloc(1, sizeof(*s));
	s->magic = TLS_SESSION_MAGIC;
	s->role = TLS_ROLE_CLIENT;
	s->cli = cli;
	if (gnutls_init(&s->gs, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
		free(s);
		return NULL;
	}
	gnutls_session_set_ptr(s->gs, s);
	gnutls_priority_set(s->gs, cli->prio);
	gnutls_credentials_set(s->gs, GNUTLS_CRD_CERTIFICATE, cli->cred);
	gnutls_handshake_set_timeout(s->gs, GNUTLS_INDEFINITE_TIMEOUT);
	const char *name = cli->verify_name[0] ? cli->verify_name : host;
	/* SNI only for names, never for IP literals (RFC 6066 section 3). */
	if (name && name[0] && !strchr(name, ':') && strspn(name, "0123456789.") != strlen(name))
		gnutls_server_name_set(s->gs, GNUTLS_NAME_DNS, name, strlen(name));
	/* tls_creds.c's verify function checks pins, or the chain and this
	 * name (DNS-IDs only, RFC 6125/7817). */
	char ref[DOMAIN_BUFSZ];
	s->verify_host = xstrdup(name && domain_normalize(name, strlen(name), ref, sizeof(ref)) == 0 ? ref : "");
	if (cli->nalpn)
		gnutls_alpn_set_protocols(s->gs, cli->alpn, cli->nalpn, 0);
	set_transport(s, fd);
	return s;
}

static void drop_held(struct tls_session *s)
{
	gnutls_datum_t d;
	if (!s->held)
		return;
	if (s->wipe) {
		gnutls_packet_get(s->held, &d, NULL);
		explicit_bzero(d.data, d.size);
	}
	gnutls_packet_deinit(s->held);
	s->held = NULL;
	s->held_off = 0;
}

void tls_session_free(struct tls_session **sp)
{
	struct tls_session *s = *sp;
	if (!s)
		return;
	drop_held(s);
	gnutls_deinit(s->gs);
	tls_peer_free(s->peer);
	free(s->reason_owned);
	free(s->verify_host);
	s->magic = 0;
	free(s);
	*sp = NULL;
}

static int want(struct tls_session *s)
{
	return gnutls_record_get_direction(s->gs) ? TLS_WANT_WRITE : TLS_WANT_READ;
}

/* After GNUTLS_E_AGAIN: GnuTLS waits for bytes the peer will never send
 * (its FIN has been read), so waiting would only spin on a readable fd. */
static bool starved(struct tls_session *s)
{
	return s->peer_fin && !gnutls_record_get_direction(s->gs);
}

/* GnuTLS leaves alerting to the application when a handshake fails:
 * send the specific alert we chose (client certificates), or the one
 * GnuTLS maps to the error (no_application_protocol for ALPN, ...). */
static void send_failure_alert(struct tls_session *s, int err)
{
	if (s->alert)
		gnutls_alert_send(s->gs, GNUTLS_AL_FATAL, (gnutls_alert_description_t)s->alert);
	else if (err < 0 && err != GNUTLS_E_FATAL_ALERT_RECEIVED && err != GNUTLS_E_PREMATURE_TERMINATION &&
		 err != GNUTLS_E_PUSH_ERROR && err != GNUTLS_E_PULL_ERROR)
		gnutls_alert_send_appropriate(s->gs, err);
}

int tls_handshake(struct tls_session *s)
{
	s->handshaking = 1;
	for (;;) {
		int r = gnutls_handshake(s->gs);
		if (r == GNUTLS_E_SUCCESS)
			break;
		if ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && starved(s)) {
			transport_failure(s, GNUTLS_E_PREMATURE_TERMINATION);
			return TLS_FAILED;
		}
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			return want(s);
		if (!gnutls_error_is_fatal(r))
			continue;
		if (!s->reason) {
			if (r == GNUTLS_E_NO_APPLICATION_PROTOCOL)
				tls_set_reason(s, "no_application_protocol");
			else if (r == GNUTLS_E_NO_CERTIFICATE_FOUND && s->role == TLS_ROLE_SERVER) {
				s->cert_failed = 1;
				tls_set_reason(s, "client certificate required, none presented");
			} else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
				tls_set_reason(s, "peer sent alert %s",
					       gnutls_alert_get_name(gnutls_alert_get(s->gs)));
			else if (transport_error(r))
				transport_failure(s, r);
			else if (plain_text(s))
				tls_set_reason(s, "not a TLS handshake: the peer sent plain text (a "
					       "STARTTLS or plain port?): %s", gnutls_strerror(r));
			else
				tls_set_reason(s, "%s", gnutls_strerror(r));
		}
		send_failure_alert(s, r);
		return TLS_FAILED;
	}
	s->handshaking = 0;
	/* Resumed sessions skip the verify callback: apply the policy to the
	 * certificate stored in the ticket again (DESIGN.md §3). */
	if (s->role == TLS_ROLE_SERVER && s->mode != CLIENT_CERT_NONE &&
	    gnutls_session_is_resumed(s->gs) && tls_evaluate_peer(s) < 0) {
		send_failure_alert(s, 0);
		return TLS_FAILED;
	}
	if (s->role == TLS_ROLE_SERVER && s->mode == CLIENT_CERT_REQUIRE && !s->peer) {
		s->cert_failed = 1;
		tls_set_reason(s, "client certificate required, none presented");
		return TLS_FAILED;
	}
	return TLS_OK;
}

void tls_set_wipe(struct tls_session *s, bool on)
{
	if (s->wipe && !on && s->held) {	/* what was handed out of it */
		gnutls_datum_t d;
		gnutls_packet_get(s->held, &d, NULL);
		explicit_bzero(d.data, s->held_off);
	}
	s->wipe = on;
}

/* Copies from the held record; drops (wipes) it once handed out whole. */
static ssize_t take_held(struct tls_session *s, void *buf, size_t len)
{
	gnutls_datum_t d;
	gnutls_packet_get(s->held, &d, NULL);
	size_t n = d.size - s->held_off;
	if (n > len)
		n = len;
	memcpy(buf, d.data + s->held_off, n);
	s->held_off += n;
	if (s->held_off >= d.size)
		drop_held(s);
	return (ssize_t)n;
}

/* One record's plaintext as a packet, so that it can be wiped. */
static ssize_t recv_wiped(struct tls_session *s, void *buf, size_t len)
{
	gnutls_packet_t p = NULL;
	ssize_t r = gnutls_record_recv_packet(s->gs, &p);
	if (r <= 0 || !p) {
		if (p)
			gnutls_packet_deinit(p);
		return r;
	}
	s->held = p;
	s->held_off = 0;
	return take_held(s, buf, len);
}

/* What a failed or short gnutls_record_recv*() means: TLS_CLOSED,
 * TLS_WANT_*, TLS_FAILED, or 0 for "try again" (a non-fatal error). */
static ssize_t recv_result(struct tls_session *s, ssize_t r)
{
	if (r == 0)
		return TLS_CLOSED;
	if ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && starved(s))
		r = GNUTLS_E_PREMATURE_TERMINATION;	/* the FIN, at a record boundary or not */
	else if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return want(s);
	if (r == GNUTLS_E_PREMATURE_TERMINATION) {
		tls_set_reason(s, "connection closed without close_notify");
		return TLS_CLOSED;
	}
	if (r == GNUTLS_E_REHANDSHAKE) {
		tls_set_reason(s, "renegotiation refused");
		return TLS_FAILED;
	}
	if (!gnutls_error_is_fatal((int)r))
		return 0;
	if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
		tls_set_reason(s, "peer sent alert %s", gnutls_alert_get_name(gnutls_alert_get(s->gs)));
	else if (transport_error((int)r))
		transport_failure(s, (int)r);
	else
		tls_set_reason(s, "%s", gnutls_strerror((int)r));
	return TLS_FAILED;
}

ssize_t tls_recv(struct tls_session *s, void *buf, size_t len)
{
	if (s->held)
		return take_held(s, buf, len);
	for (;;) {
		ssize_t r = s->wipe ? recv_wiped(s, buf, len) : gnutls_record_recv(s->gs, buf, len);
		if (r > 0)
			return r;
		if ((r = recv_result(s, r)) != 0)
			return r;
	}
}

ssize_t tls_recv_view(struct tls_session *s, const char **p)
{
	gnutls_datum_t d;
	while (!s->held) {
		gnutls_packet_t pk = NULL;
		ssize_t r = gnutls_record_recv_packet(s->gs, &pk);
		if (r > 0 && pk) {
			s->held = pk;
			s->held_off = 0;
			break;
		}
		if (pk)
			gnutls_packet_deinit(pk);
		if ((r = recv_result(s, r)) != 0)
			return r;
	}
	gnutls_packet_get(s->held, &d, NULL);
	*p = (const char *)d.data + s->held_off;
	return (ssize_t)(d.size - s->held_off);
}

void tls_view_consume(struct tls_session *s, size_t n)
{
	gnutls_datum_t d;
	if (!s->held)
		return;
	gnutls_packet_get(s->held, &d, NULL);
	s->held_off += n;
	if (s->held_off >= d.size)
		drop_held(s);
}

ssize_t tls_send(struct tls_session *s, const void *buf, size_t len)
{
	ssize_t r = s->send_pending ? gnutls_record_send(s->gs, NULL, 0)
				    : gnutls_record_send(s->gs, buf, len);
	if (r > 0) {
		s->send_pending = 0;
		return r;
	}
	if ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && starved(s)) {
		transport_failure(s, GNUTLS_E_PREMATURE_TERMINATION);
		return TLS_FAILED;
	}
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
		s->send_pending = 1;
		return want(s);
	}
	if (transport_error((int)r))
		transport_failure(s, (int)r);
	else
		tls_set_reason(s, "%s", gnutls_strerror((int)r));
	return TLS_FAILED;
}

size_t tls_pending(struct tls_session *s)
{
	size_t held = 0;
	if (s->held) {
		gnutls_datum_t d;
		gnutls_packet_get(s->held, &d, NULL);
		held = d.size - s->held_off;
	}
	/* ahead[] is at most a record header, never a whole record with a
	 * body - but counted, so that no byte waits for the socket to stir. */
	return held + s->ahead_len + gnutls_record_check_pending(s->gs);
}

int tls_bye(struct tls_session *s)
{
	if (s->bye_sent)
		return TLS_OK;
	int r = gnutls_bye(s->gs, GNUTLS_SHUT_WR);
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return TLS_WANT_WRITE;	/* the alert is held: call again */
	s->bye_sent = 1;
	return r < 0 ? TLS_FAILED : TLS_OK;
}

const char *tls_reason(const struct tls_session *s)
{
	return s->reason ? s->reason : "unknown TLS error";
}

const char *tls_verify_name(const struct tls_session *s)
{
	return s->verify_host ? s->verify_host : "";
}

bool tls_failed_on_cert(const struct tls_session *s)
{
	return s->cert_failed;
}

const char *tls_version_name(struct tls_session *s)
{
	const char *n = gnutls_protocol_get_name(gnutls_protocol_get_version(s->gs));
	return n ? n : "unknown";
}

const char *tls_cipher_name(struct tls_session *s)
{
	const char *n = gnutls_ciphersuite_get(s->gs);
	return n ? n : "unknown";
}


const struct tls_peer *tls_peer(const struct tls_session *s)
{
	return s->peer;
}


void tls_sni(struct tls_session *s, char *out, size_t sz)
{
	unsigned type = 0;
	size_t n = sz;
	out[0] = '\0';
	if (gnutls_server_name_get(s->gs, out, &n, &type, 0) < 0 || type != GNUTLS_NAME_DNS)
		out[0] = '\0';
}

void tls_alpn(struct tls_session *s, char *out, size_t sz)
{
	gnutls_datum_t p = { NULL, 0 };
	out[0] = '\0';
	if (gnutls_alpn_get_selected_protocol(s->gs, &p) == 0 && p.size < sz) {
		memcpy(out, p.data, p.size);
		out[p.size] = '\0';
	}
}
