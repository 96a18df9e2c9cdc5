/* imap_proxy: after login, bytes flow both ways untouched (IDLE, APPEND
 * literals, large FETCHes, COMPRESS=DEFLATE) with back-pressure on both
 * sides (DESIGN.md §5.3). The gateway writes into the client stream only
 * a "* BYE Autologout" on timeout_idle, and only while no COMPRESS command
 * was relayed and the upstream stream sits at a line boundary; otherwise
 * idle timeout, shutdown and upstream loss close both sides and write
 * nothing. A client's half-close is passed on, as a TCP proxy does. */
#ifndef MG_IMAP_PROXY_H
#define MG_IMAP_PROXY_H

#include "imap_session.h"

/* is->up holds the logged-in upstream connection. */
void imap_proxy_start(struct imap_session *is);
void imap_proxy_from_client(struct imap_session *is);
void imap_proxy_client_drained(struct imap_session *is);
void imap_proxy_client_eof(struct imap_session *is);
/* timeout_idle on the client side. */
void imap_proxy_idle(struct imap_session *is);

#endif
