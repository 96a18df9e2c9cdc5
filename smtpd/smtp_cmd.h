/* smtp_cmd: the SMTP command table and dispatcher (Postfix's and
 * OpenSMTPD's shape: {verb, handler, flags}) with the rules common to all
 * commands - line hygiene, unknown verbs, peers_only refusals, shutdown
 * notices, require_tls, HELO first - and the commands the gateway answers
 * itself (DESIGN.md §4.1-4.2): EHLO/HELO, NOOP, RSET, QUIT, VRFY, HELP,
 * STARTTLS, BDAT, XCLIENT/XFORWARD. MAIL/RCPT, DATA and AUTH have files of
 * their own. */
#ifndef MG_SMTP_CMD_H
#define MG_SMTP_CMD_H

#include <stddef.h>

#include "smtp_session.h"

/* Our EHLO reply: hostname (<= 255) and at most 10 more keyword lines,
 * the AUTH one at most SMTP_EHLO_AUTH_MAX. */
#define SMTP_EHLO_AUTH_MAX 200
#define SMTP_EHLO_REPLY_MAX 1024

/* One command line, CRLF included. */
void smtp_cmd_dispatch(struct smtp_session *ss, const char *line, size_t len);

#endif
