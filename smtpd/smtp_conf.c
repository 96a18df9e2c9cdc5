/* smtp_conf: see smtp_conf.h. */
#include "smtp_conf.h"
#include "domain.h"
#include "xmem.h"

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define KEY(n, t, d, lo, hi, f) { n, t, d, lo, hi, NULL, offsetof(struct smtpd_conf, f), CK_NO_WHERE }

static const struct conf_key keys[] = {
	KEY("accept_domains", CK_STRLIST, "{}", 0, 0, accept_domains),
	KEY("max_message_size", CK_U64, "52428800", 0, LONG_MAX, max_message_size),
	KEY("max_recipients", CK_INT, "1000", INT_MIN, INT_MAX, max_recipients),
	KEY("max_line", CK_INT, "2048", SMTP_MAX_LINE_MIN, SMTP_MAX_LINE_LIMIT, max_line),
	KEY("received_header", CK_BOOL, "true", 0, 0, received_header),
	KEY("reverse_dns", CK_BOOL, "false", 0, 0, reverse_dns),
	KEY("auth_mechanisms", CK_STRLIST, "{PLAIN, LOGIN}", 0, 0, auth_mechanisms),
	KEY("timeout_command", CK_INT, "300", 1, 86400, timeout_command),
	KEY("timeout_data", CK_INT, "600", 1, 86400, timeout_data),
	KEY("min_data_rate", CK_INT, "0", 0, SMTP_MIN_DATA_RATE_MAX, min_data_rate),
	{ NULL, CK_INT, NULL, 0, 0, NULL, 0, 0 },
};

/* Mechanism names: upper case, letters, digits, '-', '_', 1-20 octets. */
static void check_mechanisms(struct strlist *m)
{
	for (size_t i = 0; i < m->n; i++) {
		char *v = m->v[i];
		bool ok = v[0] && strlen(v) <= 20;
		for (char *p = v; *p; p++) {
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 'a' + 'A');
			if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
				ok = false;
		}
		if (!ok)
			conf_key_error("auth_mechanisms", "auth_mechanisms: bad mechanism '%s'", v);
	}
}

/* "example.org" and ".example.org" (subdomains) as lower-case A-labels. */
static void normalise_domains(struct strlist *l)
{
	size_t n = 0;
	for (size_t i = 0; i < l->n; i++) {
		char *d = l->v[i], norm[257];
		int sub = d[0] == '.';
		if (domain_normalize(d + sub, strlen(d + sub), norm + sub, sizeof(norm) - 1) < 0) {
			conf_key_error("accept_domains", "accept_domains: '%s' is not a domain", d);
			free(d);
			continue;
		}
		if (sub)
			norm[0] = '.';
		free(d);
		l->v[n++] = xstrdup(norm);
	}
	l->n = n;
}

static void check(struct conf *c, void *daemon)
{
	struct smtpd_conf *s = daemon;
	if (s->max_message_size < 1024) {
		conf_key_error("max_message_size", "max_message_size: %llu is below 1024",
			       (unsigned long long)s->max_message_size);
		s->max_message_size = 1024;
	}
	if (s->max_recipients < 100) {
		conf_key_error("max_recipients", "max_recipients: %d is below 100 (RFC 5321 section 4.5.3.1.8)",
			       s->max_recipients);
		s->max_recipients = 100;
	}
	if (s->max_recipients > 1000000)
		s->max_recipients = 1000000;
	check_mechanisms(&s->auth_mechanisms);
	normalise_domains(&s->accept_domains);
}

const struct conf_schema smtpd_schema = {
	.name = "smtpd",
	.alpn_id = "smtp",
	.mx_warnings = true,
	.size = sizeof(struct smtpd_conf),
	.keys = keys,
	.check = check,
};
