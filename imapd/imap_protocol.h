/* imap_protocol: IMAP as a plug-in of the session core (common/session.h):
 * the hooks that make a session an IMAP one. */
#ifndef MG_IMAP_PROTOCOL_H
#define MG_IMAP_PROTOCOL_H

#include "session.h"

extern const struct session_ops imap_session_ops;

#endif
