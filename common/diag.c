/* diag: an append-only list of distinct formatted diagnostic lines. */
#include "diag.h"
#include "xmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void diag_init(struct diag *d)
{
	memset(d, 0, sizeof(*d));
}

void diag_free(struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->lines[i]);
	free(d->lines);
	memset(d, 0, sizeof(*d));
}

static void add(struct diag *d, const char *file, int line, const char *kind, const char *fmt,
		va_list ap) __attribute__((format(printf, 5, 0)));
static void add(struct diag *d, const char *file, int line, const char *kind,
		const char *fmt, va_list ap)
{
	char msg[1024], out[1400];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (file && line > 0)
		snprintf(out, sizeof(out), "%s:%d: %s%s", file, line, kind, msg);
	else if (file)
		snprintf(out, sizeof(out), "%s: %s%s", file, kind, msg);
	else
		snprintf(out, sizeof(out), "%s%s", kind, msg);
	/* The same problem met twice (conf_check_files() and the TLS loader
	 * both check a file, a list names one file twice) is shown once. */
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->lines[i], out) == 0)
			return;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->lines = xreallocarray(d->lines, d->cap, sizeof(*d->lines));
	}
	d->lines[d->n++] = xstrdup(out);
}

void diag_verror(struct diag *d, const char *file, int line, const char *fmt, va_list ap)
{
	add(d, file, line, "", fmt, ap);
	d->errors++;
}

void diag_error(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_verror(d, file, line, fmt, ap);
	va_end(ap);
}

void diag_warn(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add(d, file, line, "warning: ", fmt, ap);
	va_end(ap);
	d->warnings++;
}

int diag_contains(const struct diag *d, const char *needle)
{
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->lines[i], needle))
			return 1;
	return 0;
}
