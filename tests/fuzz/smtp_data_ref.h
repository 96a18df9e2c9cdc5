/* smtp_data_ref: the end-of-data scanner's reference model - one byte at
 * a time, no fast path - that fuzz_smtp_data holds smtpd/smtp_data.c to:
 * every chunk's consumed/clean and the state after it must be the same. */
#ifndef MG_SMTP_DATA_REF_H
#define MG_SMTP_DATA_REF_H

#include "smtp_data.h"

struct smtp_data_result smtp_data_ref_feed(struct smtp_data_scan *s, const char *p, size_t len);

#endif
