/* logsetup: see logsetup.h. Only stat(2) and access(2) here, and the file
 * opened through log.c: the daemon decides where its lines go, log.c
 * writes them. */
#include "logsetup.h"
#include "log.h"
#include "process.h"
#include "strbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#ifndef _PATH_LOG
#define _PATH_LOG "/dev/log"
#endif

enum stderr_kind { STDERR_CLOSED, STDERR_NULL, STDERR_TERMINAL, STDERR_JOURNAL, STDERR_OTHER };

/* What fd 2 is: systemd tells its journal stream by JOURNAL_STREAM
 * ("DEVICE:INODE" of the socket it gave us). */
static enum stderr_kind stderr_kind(void)
{
	struct stat st, nul;
	if (fstat(STDERR_FILENO, &st) < 0)
		return STDERR_CLOSED;
	if (isatty(STDERR_FILENO))
		return STDERR_TERMINAL;
	if (S_ISCHR(st.st_mode) && stat("/dev/null", &nul) == 0 && st.st_rdev == nul.st_rdev)
		return STDERR_NULL;
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && dev == (unsigned long long)st.st_dev &&
	    ino == (unsigned long long)st.st_ino)
		return STDERR_JOURNAL;
	return STDERR_OTHER;
}

int logsetup_target(const struct conf *c, bool foreground)
{
	return foreground ? LOG_TARGET_STDERR : c->log_target;
}

bool logsetup_keep_stderr(const struct conf *c, bool foreground)
{
	return !foreground && c->log_target == LOG_TARGET_STDERR && stderr_kind() != STDERR_TERMINAL;
}

static void check_stderr(const struct conf *c, struct diag *d)
{
	struct conf_where w = c->log_target_where;
	enum stderr_kind k = stderr_kind();
	if (k == STDERR_TERMINAL)
		diag_warn(d, w.file, w.line, "log_target = stderr without -f: stderr is this "
			  "terminal, which the daemon leaves when it detaches, so its logs would be "
			  "lost; use -f, syslog or a file (under systemd stderr is the journal)");
	else if (k == STDERR_NULL || k == STDERR_CLOSED)
		diag_warn(d, w.file, w.line, "log_target = stderr without -f: stderr is %s, so "
			  "the logs would be lost; use syslog or a file",
			  k == STDERR_NULL ? "/dev/null" : "closed");
}

static void check_syslog(const struct conf *c, struct diag *d)
{
	struct stat st;
	struct conf_where w = c->log_target_where;
	int r = stat(_PATH_LOG, &st);
	if (r == 0 && S_ISSOCK(st.st_mode))
		return;
	diag_warn(d, w.file ? w.file : c->path, w.line, "log_target = syslog, but %s: %s: no "
		  "syslog daemon (or journald) takes the lines, so the logs would be lost; start "
		  "one, or set log_target to stderr (under systemd) or a file", _PATH_LOG,
		  r < 0 ? strerror(errno) : "not a socket");
}

/* Whether uid:gid (one group: setgroups() leaves just that one) may
 * create files in a folder with this mode and owner. */
static bool may_create(const struct stat *st, uid_t uid, gid_t gid)
{
	if (st->st_uid == uid)
		return (st->st_mode & (S_IWUSR | S_IXUSR)) == (S_IWUSR | S_IXUSR);
	if (st->st_gid == gid)
		return (st->st_mode & (S_IWGRP | S_IXGRP)) == (S_IWGRP | S_IXGRP);
	return (st->st_mode & (S_IWOTH | S_IXOTH)) == (S_IWOTH | S_IXOTH);
}

/* After a privilege drop the daemon reopens the file as user: logrotate
 * either creates the new file for it, or the folder lets it do so. */
static void check_file_owner(const struct conf *c, const char *dir, const struct stat *dst,
			     struct diag *d)
{
	uid_t uid;
	gid_t gid;
	char err[256];
	struct conf_where w = c->log_target_where;
	if (geteuid() != 0 || strcmp(c->user, "root") == 0 ||
	    process_user_ids(c->user, c->group, &uid, &gid, err, sizeof(err)) < 0)
		return;	/* no drop, or the user problem is reported elsewhere */
	if (may_create(dst, uid, gid))
		return;
	diag_warn(d, w.file, w.line, "log_target: user %s cannot create files in '%s': after "
		  "logrotate renames '%s', SIGUSR1 can only reopen a new file that logrotate "
		  "created for that user (create 0640 %s ...)", c->user, dir, c->log_file, c->user);
}

static void check_file(const struct conf *c, struct diag *d)
{
	char dir[4096];
	struct stat st;
	struct strbuf b;
	struct conf_where w = c->log_target_where;
	const char *slash = strrchr(c->log_file, '/');
	sb_init(&b, dir, sizeof(dir));
	sb_add(&b, c->log_file, slash == c->log_file ? 1 : (size_t)(slash - c->log_file));
	if (!sb_ok(&b) || !slash[1]) {
		diag_error(d, w.file, w.line, "log_target: '%s' is not a file name", c->log_file);
		return;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		diag_error(d, w.file, w.line, "log_target: folder '%s' does not exist (mkdir it, "
			   "e.g. mkdir -p %s)", dir, dir);
		return;
	}
	if (access(dir, W_OK | X_OK) < 0) {
		diag_error(d, w.file, w.line, "log_target: folder '%s' is not writable: %s", dir,
			   strerror(errno));
		return;
	}
	struct stat fst;
	if (lstat(c->log_file, &fst) == 0) {
		if (!S_ISREG(fst.st_mode)) {
			diag_error(d, w.file, w.line, "log_target: '%s' is not a regular file",
				   c->log_file);
			return;
		}
		if (access(c->log_file, W_OK) < 0) {
			diag_error(d, w.file, w.line, "log_target: '%s' is not writable: %s",
				   c->log_file, strerror(errno));
			return;
		}
	}
	check_file_owner(c, dir, &st, d);
}

void logsetup_check(const struct conf *c, bool foreground, struct diag *d)
{
	if (c->log_target == LOG_TARGET_FILE)
		check_file(c, d);	/* named by the configuration: checked even with -f */
	if (foreground)
		return;			/* -f: stderr, whatever log_target says */
	if (c->log_target == LOG_TARGET_STDERR)
		check_stderr(c, d);
	else if (c->log_target == LOG_TARGET_SYSLOG)
		check_syslog(c, d);
}

static const char *stderr_words(void)
{
	switch (stderr_kind()) {
	case STDERR_JOURNAL: return "standard error (the systemd journal)";
	case STDERR_TERMINAL: return NULL;
	case STDERR_NULL: return "standard error, which is /dev/null (lost)";
	case STDERR_CLOSED: return "standard error, which is closed (lost)";
	default: return "standard error (inherited)";
	}
}

int logsetup_open(const struct conf *c, const char *progname, bool foreground, char *err,
		  size_t errsz)
{
	if (foreground)
		return 0;
	if (c->log_target == LOG_TARGET_FILE) {
		uid_t uid = 0;
		gid_t gid = 0;
		char why[256];
		if (geteuid() == 0 && strcmp(c->user, "root") != 0 &&
		    process_user_ids(c->user, c->group, &uid, &gid, why, sizeof(why)) < 0) {
			snprintf(err, errsz, "%s", why);
			return -1;
		}
		if (log_open_file(c->log_file, uid, gid, err, errsz) < 0)
			return -1;
		fprintf(stderr, "%s: logging to %s\n", progname, c->log_file);
	} else if (c->log_target == LOG_TARGET_SYSLOG) {
		fprintf(stderr, "%s: logging to syslog (facility mail)\n", progname);
	} else if (stderr_words()) {
		fprintf(stderr, "%s: logging to %s\n", progname, stderr_words());
	} else {
		fprintf(stderr, "%s: not logging: log_target = stderr is this terminal, which the "
			"daemon leaves; use -f, syslog or a file\n", progname);
	}
	return 0;
}
