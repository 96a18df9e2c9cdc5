/* diag: collects configuration diagnostics as "FILE:LINE: message" and
 * "FILE:LINE: warning: message" so every error is reported before failing
 * once (OpenSMTPD parse.y style). Used by conf, conf_check and the TLS
 * credential loader; printed by -t and at start-up. */
#ifndef MG_DIAG_H
#define MG_DIAG_H

#include <stdarg.h>
#include <stddef.h>

/* lines holds each distinct line once, in the order first reported: a
 * problem reported again (the same FILE:LINE: message) is not repeated.
 * errors and warnings count reports, repeats included, so a step can tell
 * that it failed by comparing d->errors before and after it. */
struct diag {
	char **lines;
	size_t n, cap;
	int errors;
	int warnings;
};

void diag_init(struct diag *d);
void diag_free(struct diag *d);
void diag_error(struct diag *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_warn(struct diag *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_verror(struct diag *d, const char *file, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
/* Returns 1 if any diagnostic line contains needle (tests). */
int diag_contains(const struct diag *d, const char *needle);

#endif
