/* smtp_body: DATA (DESIGN.md §4.5): the command, our Received header, the
 * message streamed to the upstream through the end-of-data scanner (only
 * its clean prefix is ever forwarded: the smuggling defence is a property
 * of smtp_data.c), back-pressure, and the reply to the final dot - the
 * upstream's own, or ours when the message was refused (size, bare CR/LF)
 * or the upstream was lost. */
#ifndef MG_SMTP_BODY_H
#define MG_SMTP_BODY_H

#include <stddef.h>

#include "smtp_session.h"

void smtp_data_cmd(struct smtp_session *ss, const char *args, size_t len);
/* Client bytes in SMTP_DATA. */
void smtp_body_input(struct smtp_session *ss);

#endif
