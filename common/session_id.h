/* session_id: session IDs - 12 upper-case hex digits, a per-process
 * random prefix (drawn again in each forked worker) and a counter. Also
 * for a connection refused before it became a session (server.c). The
 * generator lives in session_info.c. */
#ifndef MG_SESSION_ID_H
#define MG_SESSION_ID_H

void session_new_id(char out[16]);

#endif
