/* imap_cmd: the IMAP pre-login command table and dispatcher
 * ({name, arity, handler, flags}, DESIGN.md §5.1) and the commands the
 * gateway answers itself: CAPABILITY, NOOP, LOGOUT, ID (answered "* ID
 * NIL"; the client's is never forwarded) and STARTTLS. LOGIN and
 * AUTHENTICATE are imap_auth.c's. Anything else gets BAD. */
#ifndef MG_IMAP_CMD_H
#define MG_IMAP_CMD_H

#include <stdbool.h>

#include "imap_parser.h"
#include "imap_session.h"

struct strbuf;

void imap_cmd_dispatch(struct imap_session *is, const struct imap_cmd *cmd);
/* The capability list for the greeting and CAPABILITY (§5.1). */
void imap_capability_line(const struct imap_session *is, struct strbuf *out);
/* true when this command must get NO [PRIVACYREQUIRED] (before TLS on a
 * starttls listener). */
bool imap_cmd_needs_privacy(const struct imap_session *is, const char *name);
void imap_cmd_privacy_refusal(struct imap_session *is, const char *tag);

#endif
