/* imap_session: one IMAP client session of mailgate-imapd - the struct
 * and what every IMAP file does with it: its state machine (one setter),
 * the lines the gateway writes (whole, through the session core's
 * builder), the BAD budget, the close, and the credentials' lifetime.
 * The life cycle around it is common/session.c; the hooks are in
 * imap_protocol.c.
 *
 * IMAP states (inside the core's ACTIVE state):
 *
 *	PREAUTH --AUTHENTICATE--> SASL --response--> LOGIN
 *	PREAUTH --LOGIN, AUTHENTICATE with SASL-IR--> LOGIN
 *	LOGIN --upstream NO/unavailable--> PREAUTH	LOGIN --OK--> RELAY
 */
#ifndef MG_IMAP_SESSION_H
#define MG_IMAP_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "imap_bol.h"
#include "imap_parser.h"
#include "imap_watch.h"
#include "sasl.h"
#include "session.h"

struct conn;
struct imap_login;
struct imap_server;
struct imapd_conf;

#define IMAP_RELAY_HIGH_WATER (256 * 1024)
#define IMAP_CAPS_MAX 256

enum imap_state {
	IMAP_PREAUTH,	/* reading commands */
	IMAP_SASL,	/* AUTHENTICATE: waiting for the client's response */
	IMAP_LOGIN,	/* upstream login running; client bytes are held */
	IMAP_RELAY,	/* logged in: bytes relayed both ways */
};

struct imap_session {
	struct session s;	/* first: the core's part */
	struct imap_server *server;	/* s.srv, typed */
	const struct imapd_conf *keys;	/* imapd's own configuration keys */
	enum imap_state state;
	unsigned auth_failures;
	size_t last_cont;		/* literal offset we sent "+" for, or SIZE_MAX */
	char tag[IMAP_TAG_MAX + 1];	/* the command waiting on SASL or the upstream */
	char mech[16];			/* "PLAIN", "LOGIN", "EXTERNAL" (logs) */
	char *user;			/* logged-in (or attempted) user, for logs */
	struct sasl_plain *cred;	/* during login only */
	struct imap_login *login;
	struct conn *up;		/* upstream connection after login */
	/* Last upstream address, for the log: points into the configuration,
	 * which outlives every session of the worker (NULL: none yet). */
	const char *up_addr;
	struct imap_watch watch;	/* client->upstream after login: COMPRESS seen? */
	struct imap_bol up_bol;		/* upstream->client after login: at a boundary? */
	unsigned sasl_external : 1,
	    client_eof : 1,		/* the client half-closed: it sends nothing more */
	    preauth_expired : 1;	/* timeout_preauth passed during a login */
	uint8_t ext;			/* enum ext_map of the client certificate */
	/* The user it names when ext == EXT_MAP_OK, else NULL: allocated
	 * only then (an idle session keeps no name buffer, DESIGN.md §8). */
	char *ext_user;
};

static inline struct imap_session *imap_of(struct session *s)
{
	return (struct imap_session *)s;
}

void imap_enter(struct imap_session *is, enum imap_state st);	/* the only state setter */
void imap_reply(struct imap_session *is, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A BAD: counts toward max_errors; the one reaching it is followed by
 * "* BYE Too many invalid commands" and the close. A malformed tag is
 * never echoed (cross-protocol guard). */
void imap_bad(struct imap_session *is, const char *tag, const char *text);
void imap_close(struct imap_session *is, enum session_result r);
/* Wipes and frees is->cred: every path that lets go of the client's
 * credentials (login outcome, close, free) goes through here. */
void imap_drop_credentials(struct imap_session *is);
/* The pre-login command loop (imap_protocol.c), for the login's outcome
 * to come back to the commands held during it. */
void imap_process(struct imap_session *is);
/* timeout_preauth has passed: "* BYE Disconnected for inactivity" and the
 * close (imap_protocol.c; also after a login that was in flight then and
 * failed). */
void imap_preauth_expired(struct imap_session *is);

#endif
