/* smtp_relay: the session's use of its upstream (DESIGN.md §4.4) - the one
 * way into the WAIT state (a command goes to the upstream, which is
 * connected lazily at the first AUTH or MAIL, after the reverse lookup it
 * needs for XCLIENT NAME), the one place that leaves it (the upstream's
 * reply, handed to the command's reply handler) and then resumes command
 * processing, and what each upstream failure means for the client. */
#ifndef MG_SMTP_RELAY_H
#define MG_SMTP_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp_session.h"

/* Sends line (CRLF included) for op, connecting first if needed; the
 * session waits (SMTP_WAIT) until on_reply gets the upstream's reply. */
void smtp_relay_command(struct smtp_session *ss, enum smtp_op op, const char *line, size_t len,
			smtp_reply_fn on_reply);
/* After the client's final dot: waits for the upstream's final reply
 * (600 s, DESIGN.md §4.4). */
void smtp_relay_expect_dot(struct smtp_session *ss, smtp_reply_fn on_reply);
/* Hidden RSET upstream (RSET, repeated EHLO), then local_reply (CRLF
 * included) to the client; without an upstream, local_reply at once. */
void smtp_relay_rset_then(struct smtp_session *ss, const char *local_reply);
/* Message bytes while streaming DATA; false when the upstream's queue is
 * over its high-water mark (the caller stops reading until
 * smtp_relay_data_resumed). */
bool smtp_relay_data(struct smtp_session *ss, const char *p, size_t len);
/* Drops the upstream (polite: QUIT first). Without XCLIENT a new upstream
 * connection would not know the client authenticated: such sessions end
 * after the current reply (reconnect_closes). */
void smtp_relay_drop(struct smtp_session *ss, bool polite);
/* The session closes: the upstream is told goodbye, or - a message in
 * flight - dropped without its final dot, so nothing is delivered. */
void smtp_relay_end(struct smtp_session *ss);
/* The reverse lookup the upstream connection waited for has finished. */
void smtp_relay_rdns_done(struct smtp_session *ss);

#endif
