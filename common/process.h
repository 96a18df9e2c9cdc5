/* process: daemon life-cycle helpers - detaching so that the parent exits
 * only once listeners are bound (exit status tells whether start-up
 * worked), the pidfile, the privilege drop (setgroups, setresgid,
 * setresuid; any failure is fatal), RLIMIT_NOFILE and signal watchers. */
#ifndef MG_PROCESS_H
#define MG_PROCESS_H

#include <stddef.h>

/* Forks. The parent waits for process_ready() or process_failed() from
 * the child and exits 0 or 1; only the child returns. */
void process_detach(void);
void process_ready(void);
void process_failed(const char *msg);

int process_write_pidfile(const char *path, char *err, size_t errsz);
void process_remove_pidfile(const char *path);

/* Started as root: switch to user/group (group "" = the user's primary
 * group). user "root" keeps root (the caller warns). Otherwise no change.
 * Returns 0, or -1 with err filled. */
int process_drop_privileges(const char *user, const char *group, char *err, size_t errsz);
/* Raises RLIMIT_NOFILE towards want (the soft limit at least up to the
 * hard one when the hard one cannot be raised); returns the soft limit
 * now in force (0 if it cannot be read). */
unsigned long process_raise_nofile(unsigned long want);

enum process_signal { PSIG_TERM, PSIG_INT, PSIG_HUP, PSIG_CHLD, PSIG_COUNT };
typedef void (*process_signal_cb)(enum process_signal sig);
/* libev signal watchers on the default loop; SIGPIPE is ignored. */
void process_signals(process_signal_cb cb);

#endif
