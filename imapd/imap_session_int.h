/* imap_session_int: the session struct and the functions shared by
 * imap_session.c (life cycle, input loop, replies), imap_cmd.c (pre-auth
 * commands and login) and imap_proxy.c (the relay after login). */
#ifndef MG_IMAP_SESSION_INT_H
#define MG_IMAP_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "imap_login.h"
#include "imap_parser.h"
#include "imap_session.h"
#include "imap_watch.h"
#include "session.h"

struct mg_timer;
struct strbuf;

#define IMAP_SESSION_MAGIC 0x494d4150u
#define IMAP_RELAY_HIGH_WATER (256 * 1024)
/* The longest line the gateway itself writes: a tag, a code and a text
 * (or "* OK [CAPABILITY ...] hostname ready"). */
#define IMAP_REPLY_LINE_MAX 1024
#define IMAP_CAPS_MAX 256

enum imap_state {
	IS_HANDSHAKE,	/* implicit TLS, before the greeting */
	IS_PREAUTH,	/* reading commands */
	IS_SASL,	/* AUTHENTICATE PLAIN: waiting for the client's response */
	IS_LOGIN,	/* upstream login running; client bytes are held */
	IS_TLS,		/* STARTTLS handshake */
	IS_PROXY,	/* logged in: bytes relayed both ways */
	IS_CLOSING,	/* last words queued; freed once flushed */
};

struct imap_session {
	uint32_t magic;
	struct session s;
	struct imap_server *srv;
	enum imap_state state;
	int errors;
	unsigned auth_failures;
	size_t last_cont;		/* literal offset we sent "+" for, or SIZE_MAX */
	char tag[IMAP_TAG_MAX + 1];	/* the command waiting on SASL or the upstream */
	char mech[16];			/* "PLAIN", "LOGIN", "EXTERNAL" (logs) */
	char *user;			/* logged-in (or attempted) user, for logs */
	struct sasl_plain *cred;	/* during login only */
	struct imap_login *login;
	struct conn *up;		/* upstream connection after login */
	struct mg_timer *deadline;	/* timeout_preauth */
	char up_addr[300];
	struct imap_watch watch;	/* client->upstream after login: COMPRESS seen? */
	unsigned up_bol : 1, logged_in : 1, sasl_external : 1,
	    client_eof : 1;		/* the client half-closed: it sends nothing more */
	uint8_t ext;			/* enum ext_map of the client certificate */
	char ext_user[256];		/* the user it names when ext == EXT_MAP_OK */
};

/* imap_session.c */
void imap_enter(struct imap_session *is, enum imap_state st);	/* the only state setter */
void imap_reply(struct imap_session *is, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A BAD: counts toward max_errors; the one reaching it is followed by
 * "* BYE Too many invalid commands" and close. */
void imap_bad(struct imap_session *is, const char *tag, const char *text);
void imap_close(struct imap_session *is, const char *result);
/* Wipes and frees is->cred: every path that lets go of the client's
 * credentials (login outcome, close, free) goes through here. */
void imap_drop_credentials(struct imap_session *is);
void imap_process(struct imap_session *is);
bool imap_secure(const struct imap_session *is);
const struct conf *imap_conf(const struct imap_session *is);

/* imap_cmd.c */
void imap_cmd_dispatch(struct imap_session *is, const struct imap_cmd *cmd);
void imap_cmd_sasl_line(struct imap_session *is, const char *line, size_t len);
/* true when this command must get NO [PRIVACYREQUIRED] (before TLS on a
 * starttls listener). */
bool imap_cmd_needs_privacy(const struct imap_session *is, const char *name);
void imap_cmd_privacy_refusal(struct imap_session *is, const char *tag);
void imap_capability_line(const struct imap_session *is, struct strbuf *out);

/* imap_proxy.c */
void imap_proxy_start(struct imap_session *is);
void imap_proxy_client_event(struct imap_session *is, int ev);

#endif
