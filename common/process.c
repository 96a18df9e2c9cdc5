/* process: see process.h. The readiness pipe carries one status byte and
 * an optional message that the parent prints before exiting 1. */
#include "process.h"
#include "log.h"
#include "strbuf.h"
#include "xmem.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int ready_fd = -1;

void process_detach(bool keep_stderr)
{
	int p[2];
	if (pipe(p) < 0) {
		perror("pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid > 0) {
		char buf[2048];
		ssize_t n, got = 0;
		close(p[1]);
		while ((n = read(p[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
			got += n;
		buf[got] = '\0';
		if (got > 0 && buf[0] == '0')
			_exit(0);
		if (got > 1)
			fprintf(stderr, "%s\n", buf + 1);
		else
			fprintf(stderr, "start-up failed (see the log)\n");
		_exit(1);
	}
	close(p[0]);
	ready_fd = p[1];
	setsid();
	int nul = open("/dev/null", O_RDWR);
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		if (!keep_stderr)
			dup2(nul, 2);
		if (nul > 2)
			close(nul);
	}
}

static void report(char status, const char *msg)
{
	if (ready_fd < 0)
		return;
	if (write(ready_fd, &status, 1) < 0) {
		/* parent gone: nothing to tell */
	}
	if (msg && write(ready_fd, msg, strlen(msg)) < 0) {
	}
	close(ready_fd);
	ready_fd = -1;
}

void process_forget_parent(void)
{
	if (ready_fd >= 0)
		close(ready_fd);
	ready_fd = -1;
}

void process_ready(void)
{
	report('0', NULL);
}

void process_failed(const char *msg)
{
	report('1', msg);
}

int process_write_pidfile(const char *path, char *err, size_t errsz)
{
	if (!path[0])
		return 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errsz, "pidfile '%s': %s", path, strerror(errno));
		return -1;
	}
	char line[32];
	struct strbuf b;
	sb_init(&b, line, sizeof(line));
	sb_addu(&b, (unsigned long long)getpid());
	sb_addc(&b, '\n');
	if (write(fd, sb_str(&b), sb_len(&b)) != (ssize_t)sb_len(&b)) {
		snprintf(err, errsz, "pidfile '%s': %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

void process_remove_pidfile(const char *path)
{
	if (path[0])
		unlink(path);
}

int process_user_ids(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
		     size_t errsz)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errsz, "user '%s' does not exist", user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (group[0]) {
		struct group *gr = getgrnam(group);
		if (!gr) {
			snprintf(err, errsz, "group '%s' does not exist", group);
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

int process_drop_privileges(const char *user, const char *group, char *err, size_t errsz)
{
	uid_t uid;
	gid_t gid;
	if (geteuid() != 0 || strcmp(user, "root") == 0)
		return 0;
	if (process_user_ids(user, group, &uid, &gid, err, errsz) < 0)
		return -1;
	if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
		snprintf(err, errsz, "dropping privileges to %s: %s", user, strerror(errno));
		return -1;
	}
	/* Paranoia: regaining root must be impossible. */
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		snprintf(err, errsz, "privileges could be regained after dropping them");
		return -1;
	}
	return 0;
}

unsigned long process_raise_nofile(unsigned long want, unsigned long *hard)
{
	struct rlimit rl;
	*hard = 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (rl.rlim_cur < want) {
		rlim_t target = want;
		struct rlimit both = { target, target };
		if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= target)
			both.rlim_max = rl.rlim_max;	/* the soft limit alone */
		if (setrlimit(RLIMIT_NOFILE, &both) < 0 && rl.rlim_cur < rl.rlim_max) {
			/* Raising the hard limit was refused: all it allows. */
			rl.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
				/* keep what we had */
			}
		}
		if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
			return 0;
	}
	*hard = rl.rlim_max == RLIM_INFINITY ? (unsigned long)-1 : (unsigned long)rl.rlim_max;
	return rl.rlim_cur == RLIM_INFINITY ? (unsigned long)-1 : (unsigned long)rl.rlim_cur;
}

static ev_signal sigw[PSIG_COUNT];
static process_signal_cb sig_cb;

static void sig_handler(struct ev_loop *loop, ev_signal *w, int revents)
{
	sig_cb((enum process_signal)(w - sigw));
}

void process_signals(process_signal_cb cb)
{
	static const int nums[PSIG_COUNT] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1 };
	bool started = sig_cb != NULL;
	sig_cb = cb;
	if (started)
		return;
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < PSIG_COUNT; i++) {
		ev_signal_init(&sigw[i], sig_handler, nums[i]);
		ev_signal_start(EV_DEFAULT, &sigw[i]);
		ev_unref(EV_DEFAULT);	/* signal watchers alone do not keep the loop alive */
	}
}

void process_kill(pid_t pid, int sig)
{
	if (pid > 0 && kill(pid, sig) < 0 && errno != ESRCH)
		log_warn("kill(%ld, %d): %s", (long)pid, sig, strerror(errno));
}
