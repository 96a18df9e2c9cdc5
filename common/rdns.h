/* rdns: asynchronous reverse DNS with forward confirmation (FCrDNS) on the
 * worker's event loop, through c-ares: PTR lookup, then A/AAAA lookup of
 * the name, which must lead back to the client address. Never blocks. */
#ifndef MG_RDNS_H
#define MG_RDNS_H

#include "addr.h"

enum rdns_status {
	RDNS_OK,	/* forward-confirmed name */
	RDNS_NONE,	/* no PTR, or it does not lead back: "[UNAVAILABLE]" */
	RDNS_TEMP,	/* timeout or server failure: "[TEMPUNAVAIL]" */
};

struct rdns_query;
/* name is valid during the call only (NULL unless RDNS_OK). */
typedef void (*rdns_cb)(void *arg, enum rdns_status st, const char *name);

/* Once per process (after fork). Returns 0, or -1 if c-ares failed. */
int rdns_init(void);
void rdns_shutdown(void);
/* Starts a lookup; cb runs exactly once, from the loop, within timeout
 * seconds - unless cancelled first. */
struct rdns_query *rdns_lookup(const struct mg_addr *a, double timeout, rdns_cb cb, void *arg);
/* cb will not be called; safe while c-ares still works on the query. */
void rdns_cancel(struct rdns_query **q);
const char *rdns_lib_version(void);

#endif
