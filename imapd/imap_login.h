/* imap_login: logs a user in at the upstream IMAP server on the client's
 * behalf (DESIGN.md §5.2) - the dialogue on top of common/upstream.c,
 * which dials with failover, sends the PROXY header and runs TLS: greeting (* PREAUTH is a
 * configuration error, * BYE a failure), STARTTLS + CAPABILITY when
 * tls = starttls (implicit TLS right after connect), ID with
 * x-originating-ip/port, x-connected-ip/port, x-session-ext-id when
 * forward_id, then AUTHENTICATE PLAIN (with SASL-IR when offered) - or
 * LOGIN with literals when the upstream lacks AUTH=PLAIN. Credentials are
 * only ever sent base64-encoded or as literals: client bytes are never
 * spliced into a command line. */
#ifndef MG_IMAP_LOGIN_H
#define MG_IMAP_LOGIN_H

#include <stddef.h>

#include "addr.h"
#include "conf.h"
#include "imap_parser.h"
#include "sasl.h"

/* Our longest command: ID with two addresses, two ports and a session
 * id, or AUTHENTICATE PLAIN with the base64 of a struct sasl_plain. */
#define IMAP_LOGIN_CMD_MAX (128 + 4 * (sizeof(struct sasl_plain) / 3 + 1))

struct imap_server;
struct imap_login;
struct conn;

enum login_event {
	LOGIN_UNTAGGED,		/* an untagged response after our login command: relay it */
	LOGIN_OK,		/* data = the tagged line after our tag ("OK [CAPABILITY ...] ...") */
	LOGIN_NO,		/* data = the tagged line after our tag ("NO [...] ...") */
	LOGIN_UNAVAILABLE,	/* no usable upstream; why says what */
};

typedef void (*login_cb)(void *owner, enum login_event ev, const char *data, size_t len,
			 const char *why);

struct login_params {
	struct imap_server *srv;
	const struct conf_upstream *cu;
	const char *session_id;
	const struct mg_addr *client;
	const struct mg_addr *local;
	const struct sasl_plain *cred;	/* copied */
	const unsigned char *pp;	/* PROXY header for every attempt (copied) */
	size_t pp_len;
};

struct imap_login *imap_login_start(const struct login_params *p, login_cb cb, void *owner);
/* After LOGIN_OK: the upstream connection (with any bytes already queued
 * from it), now owned by the caller; the login is freed (*l = NULL). */
struct conn *imap_login_take_conn(struct imap_login **l);
void imap_login_free(struct imap_login **l);
const char *imap_login_addr(const struct imap_login *l);

#endif
