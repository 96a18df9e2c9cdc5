/* session_int: what the two files of the session core (session.c, the
 * life cycle; session_info.c, what a session says about itself) share.
 * Not for protocol code. */
#ifndef MG_SESSION_INT_H
#define MG_SESSION_INT_H

#include "session.h"

/* After a handshake: matches the client certificate against the peer
 * sections (DESIGN.md §6) and records the result in s. */
void session_identify(struct session *s);
/* A handshake ended (ok, or the session ended before it did): the
 * metrics of the handshake and of the client certificate it carried. */
void session_count_handshake(struct session *s, bool ok);
/* The session-end line: core keys, the protocol's, then counters and
 * the result (ops->result may refine it); the same result and byte
 * counts go to the metrics. */
void session_log_end(struct session *s);
/* A balancer's own connection (PROXY v2 LOCAL: a health check) that has
 * carried no data from the client (conn_bytes_in counts data, not the
 * TLS handshake): its lines are logged at debug only, and it counts
 * neither as a connection nor as a failed handshake in the metrics. */
bool session_is_null_check(const struct session *s);

#endif
