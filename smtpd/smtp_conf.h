/* smtp_conf: mailgate-smtpd's own configuration keys (DESIGN.md §3,
 * "smtpd top-level keys"), registered with the configuration loader as a
 * schema: accept_domains, max_message_size, max_recipients, max_line,
 * received_header, reverse_dns, auth_mechanisms, timeout_command,
 * timeout_data, and min_data_rate (an extension: Postfix's
 * smtpd_min_data_rate) - with their defaults, ranges and normalisation. */
#ifndef MG_SMTP_CONF_H
#define MG_SMTP_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"

/* Range of max_line: RFC 5321 §4.5.3.1.4's 512 up to 64 KiB. */
#define SMTP_MAX_LINE_MIN 512
#define SMTP_MAX_LINE_LIMIT 65536

/* Upper bound of min_data_rate (bytes/s): 1 GiB/s, more than any link. */
#define SMTP_MIN_DATA_RATE_MAX (1 << 30)

struct smtpd_conf {
	struct strlist accept_domains;	/* lower-case A-labels; ".x" kept as is */
	uint64_t max_message_size;
	int max_recipients;
	int max_line;			/* SMTP_MAX_LINE_MIN..SMTP_MAX_LINE_LIMIT */
	bool received_header;
	bool reverse_dns;
	struct strlist auth_mechanisms;	/* upper case */
	int timeout_command;
	int timeout_data;
	int min_data_rate;		/* bytes/s during DATA; 0 = off */
};

extern const struct conf_schema smtpd_schema;

static inline const struct smtpd_conf *smtpd_conf(const struct conf *c)
{
	return c->daemon;
}

#endif
