/* process: daemon life-cycle helpers - detaching so that the parent exits
 * only once listeners are bound (exit status tells whether start-up
 * worked), the pidfile, the privilege drop (setgroups, setresgid,
 * setresuid; any failure is fatal), RLIMIT_NOFILE and signal watchers. */
#ifndef MG_PROCESS_H
#define MG_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Forks. The parent waits for process_ready() or process_failed() from
 * the child and exits 0 or 1; only the child returns, in a new session
 * with stdin and stdout on /dev/null - and stderr too, unless keep_stderr
 * (log_target = stderr started by systemd: the journal's stream). */
void process_detach(bool keep_stderr);
void process_ready(void);
/* In a child forked after process_detach(): the waiting parent is the
 * master's to answer (closes this copy of the readiness pipe). */
void process_forget_parent(void);
void process_failed(const char *msg);

int process_write_pidfile(const char *path, char *err, size_t errsz);
void process_remove_pidfile(const char *path);
/* The uid and gid privileges are dropped to: user's, and group's (""
 * = the user's primary group). Returns 0, or -1 with err filled. */
int process_user_ids(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
		     size_t errsz);
/* Started as root: switch to user/group (group "" = the user's primary
 * group). user "root" keeps root (the caller warns). Otherwise no change.
 * Returns 0, or -1 with err filled. */
int process_drop_privileges(const char *user, const char *group, char *err, size_t errsz);
/* Raises RLIMIT_NOFILE to want: the hard limit too when it is lower (as
 * root); when raising the hard limit is refused (no CAP_SYS_RESOURCE,
 * or want above fs.nr_open), the soft limit goes up to the hard one.
 * Returns the soft limit now in force (0 if it cannot be read) and the
 * hard one in *hard. */
unsigned long process_raise_nofile(unsigned long want, unsigned long *hard);

/* PSIG_USR1: reopen the log file (logrotate). */
enum process_signal { PSIG_TERM, PSIG_INT, PSIG_HUP, PSIG_CHLD, PSIG_USR1, PSIG_COUNT };
typedef void (*process_signal_cb)(enum process_signal sig);
/* libev signal watchers on the default loop; SIGPIPE is ignored. A
 * second call (a forked worker) only changes the callback. */
void process_signals(process_signal_cb cb);
/* Sends sig to pid, logging a failure other than "no such process". */
void process_kill(pid_t pid, int sig);

#endif
