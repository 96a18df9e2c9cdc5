/* smtp_protocol: SMTP as a plug-in of the session core (common/session.h):
 * the hooks that make a session an SMTP one. */
#ifndef MG_SMTP_PROTOCOL_H
#define MG_SMTP_PROTOCOL_H

#include "session.h"

extern const struct session_ops smtp_session_ops;

#endif
