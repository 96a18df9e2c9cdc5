/* session_harness: what the whole-session fuzzers (fuzz_smtp_session.c,
 * fuzz_imap_session.c) share - one input is one scenario in the simulated
 * world of tests/sim/: a configuration variant, the daemon's real
 * daemon_ops (server_new, server_start) and session hooks, each client
 * handed to the session core's session_accept() as a worker does
 * (worker.c; through proxyin.c first on a PROXY-protocol listener), then
 * a stream of operations by the client(s) and the upstream server(s),
 * then virtual time until every session has ended. The protocol plugs in
 * its configurations and its stream checks through struct hx_proto.
 *
 * Input format (tests/fuzz/mkseeds.py writes it):
 *   byte 0   configuration variant (modulo the protocol's list)
 *   byte 1   world flags: bits 0-1 client address (192.0.2.10, 127.0.0.1,
 *            2001:db8::10, 198.51.100.7); bits 2-3 TLS record size (16384,
 *            1, 7, 512)
 *   then operations, one letter each (unknown bytes are skipped):
 *   C<bytes through LF>  client sends a line     U<...>  upstream sends a line
 *   c<len16be><bytes>    client sends raw bytes  u<...>  upstream raw bytes
 *                        (a chunk cut short by the end of input is dropped)
 *   h x r   client half-closes / closes / resets (H X R: the upstream)
 *   K F     the oldest pending connect succeeds / is refused
 *   P<b>    dial policy from now on: b%3 = pending, refused at once, no socket
 *   T<a><i> the client's pending TLS handshake finishes: a bits 0-3 cert
 *           status (0 = no certificate), bit 4 TLS 1.2, bit 5 fails, bit 6
 *           fails on the certificate; i = identity (CN, SANs, fingerprint)
 *   t<b>    the upstream's pending handshake: b bit 0 = fails
 *   w<s><n> window of side s (0 client, 1 upstream) = table[n % 8]
 *   +       advance the clock to the next timer   ~<b>  advance b seconds
 *   S       SIGTERM (session_shutdown_all)        Z     shutdown_timeout (session_kill_all)
 *   D<b>    the reverse DNS answer: b%3 OK (name b/3), NONE, TEMP
 *   N       a new client connection (at most 4); later client ops use it
 *
 * After every operation the loop runs until idle. At the end the clock
 * runs until everything is over, then the invariants below must hold;
 * any violation abort()s (sim_fail) so libFuzzer reports it. */
#ifndef MG_SESSION_HARNESS_H
#define MG_SESSION_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "daemon.h"
#include "session.h"
#include "sim.h"

#define HX_MAX_CLIENTS 4
#define HX_MAX_UPS 32

struct hx_client {
	struct sim_sock *sock;
	int index;
	struct mg_addr addr;
	bool closing_seen;	/* its session entered the closing state */
	uint64_t allowed;	/* ... and may write at most this many bytes in all */
	bool login_seen;	/* imapd: the session logged in */
	uint64_t boundary;	/* ... after this many bytes of pre-login output */
	bool ended;		/* the gateway shut its side */
	bool hung_up;		/* the client closed or reset first: it reads no more */
	int cert_status;	/* last handshake: enum cert_status presented, -1 none */
	int ident;		/* ... and the identity index */
	bool tls_ok;
	void *proto;		/* the protocol checker's state */
};

struct hx_up {
	struct sim_sock *sock;
	const struct conf_upstream *cu;	/* the section its address belongs to */
	bool probe;		/* smtpd's start-up probe */
	bool tls_started, tls_up;
	bool ended;
	void *proto;
};

struct hx_proto {
	const char *name;
	const struct daemon_ops *ops;
	const char *const *configs;	/* configuration texts */
	size_t nconfigs;
	const char *const *files;	/* pairs: name, content (written beside them) */
	size_t nfiles;
	/* State of a live session beyond the core's (closing is the core's
	 * SESSION_CLOSING): logged in (imapd); NULL: no such thing. */
	bool (*logged_in)(const struct session *s);
	/* Stream checks: bytes the gateway wrote, bytes the peer sent, ends. */
	void (*client_new)(struct hx_client *c);
	void (*client_in)(struct hx_client *c, const unsigned char *p, size_t n);	/* the client sent */
	void (*client_out)(struct hx_client *c, const unsigned char *p, size_t n);
	void (*client_end)(struct hx_client *c);	/* not after the client hung up */
	void (*up_new)(struct hx_up *u);
	void (*up_out)(struct hx_up *u, const unsigned char *p, size_t n);
	void (*up_in)(struct hx_up *u, const unsigned char *p, size_t n);
	void (*up_tls)(struct hx_up *u);	/* a TLS session was attached */
	void (*up_end)(struct hx_up *u);
	/* Each live session after every callback (its client is c). */
	void (*session_seen)(const struct session *s, struct hx_client *c);
	void (*world_end)(void);		/* after every session ended */
	void (*free_up)(void *proto);		/* an upstream's state (default: free()) */
	void (*free_client)(void *proto);	/* a client's state (default: free()) */
};

/* The world being run (read-only for the protocol checks). */
struct hx_world {
	const struct hx_proto *proto;
	const struct conf *conf;
	int variant;
	struct server *srv;
	struct hx_client clients[HX_MAX_CLIENTS];
	int nclients;
	struct hx_up ups[HX_MAX_UPS];
	int nups;
	bool starting;		/* inside server_start (probe dials) */
};
extern struct hx_world hx;

int hx_run(const struct hx_proto *p, const uint8_t *data, size_t size);

/* A violated invariant: abort()s with the message, unless its id is listed
 * in MG_SIM_IGNORE (comma-separated) - a way to keep fuzzing past a finding
 * that is already known and being fixed. */
void hx_violation(const char *id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define HX_CHECK(cond, id, ...) do { if (!(cond)) hx_violation(id, __VA_ARGS__); } while (0)

/* The client certificate identities 'T' can present. */
#define HX_NIDENT 8
const struct tls_peer *hx_identity(int ident, int status);
/* The EXTERNAL user a certificate names (DESIGN.md §6), computed here
 * independently of peer.c; false when it names nobody. */
bool hx_external_user(int ident, int status, enum ext_identity field, char out[256]);
struct hx_client *hx_client_of(const struct session *s);

#endif
