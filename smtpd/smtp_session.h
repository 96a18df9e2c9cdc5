/* smtp_session: one SMTP client session of mailgate-smtpd - the struct
 * and the things every SMTP file does with it: its state machine (one
 * setter), the replies the gateway writes (whole lines through the
 * session's builder, errors counted toward max_errors), the transaction
 * reset, and the questions policy asks (TLS up? AUTH allowed? may this
 * client relay?). The life cycle around it is common/session.c; the
 * protocol's hooks are in smtp_protocol.c.
 *
 * SMTP states (inside the core's ACTIVE state):
 *
 *	CMD  --MAIL/RCPT/RSET/AUTH/DATA/EHLO--> WAIT --reply--> CMD | AUTH | DATA
 *	AUTH --response--> WAIT		DATA --final dot--> WAIT (the dot's reply)
 *
 * WAIT means one command is with the upstream (or waits for it to be set
 * up); smtp_relay.c owns entering and leaving it. */
#ifndef MG_SMTP_SESSION_H
#define MG_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"
#include "smtp_data.h"
#include "smtp_reply.h"

struct rdns_query;
struct smtp_server;
struct smtpd_conf;
struct smtp_upstream;

enum smtp_state {
	SMTP_CMD,	/* reading commands */
	SMTP_AUTH,	/* reading a SASL response */
	SMTP_DATA,	/* streaming a message */
	SMTP_WAIT,	/* a command is with the upstream (smtp_relay.c) */
};

/* What a waiting command is (for the failure policy and the logs). */
enum smtp_op {
	OP_NONE,
	OP_MAIL,
	OP_RCPT,
	OP_DATA,	/* waiting for 354 */
	OP_DOT,		/* waiting for the final reply */
	OP_RSET,	/* hidden RSET; then a local reply */
	OP_AUTH,	/* AUTH exchange */
};

enum data_fail { DF_NONE, DF_SIZE, DF_BARE, DF_LOST };

/* Why the gateway ended an AUTH exchange itself (its reply replaces the
 * upstream's answer to "*"). */
enum auth_abort { AUTH_ABORT_NONE, AUTH_ABORT_BASE64, AUTH_ABORT_TOO_LONG };

/* The reverse lookup's progress: enum rdns_status values, or these. */
enum { SMTP_RDNS_PENDING = 10, SMTP_RDNS_OFF };

/* DESIGN.md §4.1 peers_only: implicit listeners greet 554 and answer 503
 * to all but QUIT for PEER_REFUSED_GRACE seconds; starttls listeners
 * answer the first command 421. */
enum { PEER_ACCEPTED, PEER_REFUSED_GREETED, PEER_REFUSED_NEXT };
#define PEER_REFUSED_GRACE 30.0

/* Postfix's smtpd_junk_command_limit: NOOP, RSET, VRFY and HELP (answered
 * by the gateway, no work done) beyond this many since the session began
 * or its last delivered message each count toward max_errors, so a client
 * cannot hold its slot forever by sending one every timeout_command - 1
 * seconds. */
#define SMTP_JUNK_LIMIT 100

/* The command input buffer holds a line of max_line (+ CRLF) plus this
 * much pipelined input behind it, so an over-long line is always seen
 * (500 5.5.2) before the buffer is full; DATA reads use the same room. */
#define SMTP_PIPELINE_WINDOW (64 * 1024)

struct smtp_session;
/* Called with the upstream's reply to a waiting command (the session is
 * back in SMTP_CMD; the handler may move it on). */
typedef void (*smtp_reply_fn)(struct smtp_session *ss, const struct smtp_reply *r);

struct smtp_wait {
	enum smtp_op op;
	smtp_reply_fn on_reply;
	char *line;		/* to send once the upstream is ready (NULL: sent) */
	size_t len;
};

struct smtp_session {
	struct session s;	/* first: the core's part */
	struct smtp_server *server;	/* s.srv, typed */
	const struct smtpd_conf *keys;	/* smtpd's own configuration keys */
	enum smtp_state state;
	struct smtp_wait wait;
	unsigned helo : 1, esmtp : 1, authed : 1, in_tx : 1, utf8 : 1, skip_line : 1,
	    relay_denied : 1, quit_seen : 1, reconnect_closes : 1, wait_rdns : 1,
	    auth_first_seen : 1,	/* the running AUTH exchange had its first response */
	    auth_need_prompt : 1,	/* LOGIN began with "=": a name only after "Username:" */
	    auth_cancel : 1,		/* a "*" went upstream: the exchange must end */
	    client_eof : 1,		/* the client half-closed: it sends nothing more */
	    data_paused : 1;		/* DATA reading stopped: the upstream is behind */
	uint8_t auth_abort;	/* enum auth_abort */
	uint8_t rdns_status;	/* enum rdns_status, or SMTP_RDNS_* */
	uint8_t data_fail;	/* enum data_fail */
	uint8_t peer_refused;	/* PEER_* */
	struct rdns_query *rdns;
	char *rdns_name;	/* forward-confirmed name when rdns_status == RDNS_OK */
	char *helo_arg;
	char *user;		/* SASL user, on the upstream's 235 */
	char *auth_user;	/* user named in the running AUTH exchange */
	char auth_mech[24];
	char *local_reply;	/* reply to send after a hidden upstream RSET */
	unsigned auth_failures;
	unsigned junk;		/* NOOP/RSET/VRFY/HELP/EHLO/HELO since the last delivery, up to SMTP_JUNK_LIMIT */
	unsigned rcpts;		/* accepted recipients in this transaction */
	unsigned msgs;		/* DATA transactions started */
	unsigned delivered;	/* messages the upstream accepted */
	struct smtp_upstream *up;
	/* Last upstream address, for the log: points into the configuration,
	 * which outlives every session of the worker (NULL: none yet). */
	const char *up_addr;
	struct smtp_data_scan scan;
};

static inline struct smtp_session *smtp_of(struct session *s)
{
	return (struct smtp_session *)s;
}

void smtp_enter(struct smtp_session *ss, enum smtp_state st);	/* the only state setter */
void smtp_reply(struct smtp_session *ss, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A reply generated by the gateway with code >= 400: counts toward
 * max_errors; the one reaching it is followed by 421 and the close. */
void smtp_reply_err(struct smtp_session *ss, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* An upstream reply, relayed line by line. */
void smtp_reply_relay(struct smtp_session *ss, const struct smtp_reply *r);
/* The error budget is spent: "421 4.7.0 Too many errors" and the close. */
void smtp_too_many_errors(struct smtp_session *ss);
/* A junk command (SMTP_JUNK_LIMIT): counted; true when this one spent
 * the error budget - the caller sends its normal reply, then
 * smtp_too_many_errors(). */
bool smtp_junk(struct smtp_session *ss);
void smtp_close(struct smtp_session *ss, enum session_result r);
bool smtp_auth_allowed(const struct smtp_session *ss);
bool smtp_may_relay(const struct smtp_session *ss);
void smtp_reset_tx(struct smtp_session *ss);

#endif
