/* session_int: what the two files of the session core (session.c, the
 * life cycle; session_info.c, what a session says about itself) share.
 * Not for protocol code. */
#ifndef MG_SESSION_INT_H
#define MG_SESSION_INT_H

#include "session.h"

void session_new_id(char out[16]);
/* After a handshake: matches the client certificate against the peer
 * sections (DESIGN.md §6) and records the result in s. */
void session_identify(struct session *s);
/* The session-end line: core keys, the protocol's, then counters and
 * the result (ops->result may refine it). */
void session_log_end(struct session *s);

#endif
