/* datarate: the arithmetic of a minimum data rate on top of an inactivity
 * timeout (Postfix's smtpd_min_data_rate): the deadline is not reset by
 * each read but moved on by the time the bytes read buy at the rate, and
 * never to more than one timeout ahead. A client that trickles below the
 * rate falls behind its deadline and is cut; one at or above it never is.
 * Pure: no I/O, no clock of its own. */
#ifndef MG_DATARATE_H
#define MG_DATARATE_H

#include <stdint.h>

/* A timeout of length T fires at last + T. After n bytes arrived at time
 * now, the new reference point: last + n / rate (the deadline extended by
 * what the bytes buy), but at most now (the deadline at most T ahead).
 * rate <= 0: every read is activity (now), as without a rate. */
double datarate_last(double last, double now, uint64_t n, double rate);

#endif
