/* imap_auth: logging a client in (DESIGN.md §5.2): LOGIN and AUTHENTICATE
 * (PLAIN, with SASL-IR or a continuation; EXTERNAL through the master
 * user), the gateway's own refusals (malformed PLAIN, NUL or over-long
 * fields, the master user from outside, EXTERNAL without an identity),
 * which all count toward max_auth_failures like the upstream's NO, and the
 * login's outcome: OK starts the relay, NO and unavailable go back to the
 * commands held during the login. The login itself is imap_login.c's. */
#ifndef MG_IMAP_AUTH_H
#define MG_IMAP_AUTH_H

#include <stddef.h>

#include "imap_parser.h"
#include "imap_session.h"

/* AUTH=EXTERNAL is offered (and accepted): TLS, a certificate naming one
 * user (DESIGN.md §6), a master user to log in through. */
bool imap_auth_external_offered(const struct imap_session *is);
void imap_auth_login(struct imap_session *is, const struct imap_cmd *cmd);
void imap_auth_authenticate(struct imap_session *is, const struct imap_cmd *cmd);
/* The client's line in IMAP_SASL (CRLF included). */
void imap_auth_sasl_line(struct imap_session *is, const char *line, size_t len);
/* The login in flight gets no answer: NO [UNAVAILABLE] as for a lost
 * upstream (then the pre-auth BYE if the deadline has passed). */
void imap_auth_give_up(struct imap_session *is, const char *why);

#endif
