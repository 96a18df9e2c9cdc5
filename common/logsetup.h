/* logsetup: where a daemon's logs go, settled before it detaches, so that
 * logs never vanish without a word (nginx and Postfix habits):
 *
 *   - syslog: facility mail; -t and start-up warn when /dev/log is
 *     missing (no syslog daemon or journald to take the lines);
 *   - stderr: with -f, the terminal; without -f the daemon keeps the
 *     stderr it inherited unless that is a terminal (which it leaves when
 *     it detaches) - so under systemd the lines reach the journal; -t and
 *     start-up warn when they would be lost (a terminal, /dev/null);
 *   - /path/to/file: appended to, opened before privileges are dropped,
 *     reopened on SIGUSR1; -t checks that its folder exists and is
 *     writable, and warns when the user the daemon drops to could not
 *     create the file again after logrotate renamed it.
 *
 * -f sends the logs to stderr whatever log_target says. */
#ifndef MG_LOGSETUP_H
#define MG_LOGSETUP_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "diag.h"

/* The checks above, as FILE:LINE: errors and warnings in d. */
void logsetup_check(const struct conf *c, bool foreground, struct diag *d);
/* At start-up, before detaching: opens a log file, and without -f says
 * on stderr where the logs go ("PROG: logging to ..."). Returns 0, or -1
 * with err filled. */
int logsetup_open(const struct conf *c, const char *progname, bool foreground, char *err,
		  size_t errsz);
/* Whether the detached daemon keeps its inherited stderr for logging. */
bool logsetup_keep_stderr(const struct conf *c, bool foreground);
/* The target log_configure() gets. */
int logsetup_target(const struct conf *c, bool foreground);

#endif
