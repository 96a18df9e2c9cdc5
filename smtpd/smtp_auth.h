/* smtp_auth: AUTH relayed to the upstream (DESIGN.md §4.4): mechanisms
 * offered = auth_mechanisms ∩ the upstream's AUTH list; client responses
 * must be base64 or "*"; the user name is PLAIN's authcid or LOGIN's first
 * answer (never a later response: that is the password); the session is
 * authenticated only on the upstream's 235; each 535 counts. */
#ifndef MG_SMTP_AUTH_H
#define MG_SMTP_AUTH_H

#include <stddef.h>

#include "smtp_session.h"

/* RFC 4954 §4: an AUTH command line may be 12288 octets (+ CRLF, NUL). */
#define SMTP_AUTH_LINE_MAX (12288 + 3)

void smtp_auth(struct smtp_session *ss, const char *args, size_t len);
/* A client line in SMTP_AUTH (CRLF included). */
void smtp_auth_line(struct smtp_session *ss, const char *line, size_t len);
/* Ends a running exchange ("*" upstream); its reply is replaced by ours. */
void smtp_auth_abort(struct smtp_session *ss, enum auth_abort why);

#endif
