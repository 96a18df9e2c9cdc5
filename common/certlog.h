/* certlog: a peer certificate as log keys an administrator can act on -
 * the fingerprint to pin or look up, the subject CN and SANs it names,
 * who issued it and until when it is valid - for the lines that say a
 * certificate was refused (a client's on a require listener, an
 * upstream's) or, at debug level, which upstream certificate was
 * accepted and why. Every value comes from the peer: the log layer
 * escapes and caps it (LOG_VALUE_MAX), and the SAN list is bounded. */
#ifndef MG_CERTLOG_H
#define MG_CERTLOG_H

#include "log.h"
#include "tls.h"

/* fp=sha256:.. subject_cn=.. san="DNS:a,email:b" issuer=".." not_after=RFC3339
 * (keys without a value are left out). */
void certlog_add(struct logkv *kv, const struct tls_peer *p);

/* "pin", "name" or "none". */
const char *certlog_match_name(enum tls_match m);

#endif
