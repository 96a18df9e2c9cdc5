/* smtp_mail: MAIL and RCPT (DESIGN.md §4.2-4.3): path syntax and the
 * RFC 5321 limits, the ESMTP parameters the gateway forwards (only those
 * of extensions the upstream offers; SIZE and AUTH= judged here), relay
 * control, max_recipients; the command built for the upstream whole or
 * not at all; the transaction state the upstream's replies set. */
#ifndef MG_SMTP_MAIL_H
#define MG_SMTP_MAIL_H

#include <stddef.h>

#include "smtp_session.h"

void smtp_mail(struct smtp_session *ss, const char *args, size_t len);
void smtp_rcpt(struct smtp_session *ss, const char *args, size_t len);

#endif
