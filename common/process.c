/* process: see process.h. The readiness pipe carries one status byte and
 * an optional message that the parent prints before exiting 1. */
#include "process.h"
#include "strbuf.h"
#include "xmem.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int ready_fd = -1;

void process_detach(void)
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

int process_drop_privileges(const char *user, const char *group, char *err, size_t errsz)
{
	if (geteuid() != 0 || strcmp(user, "root") == 0)
		return 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errsz, "user '%s' does not exist", user);
		return -1;
	}
	gid_t gid = pw->pw_gid;
	if (group[0]) {
		struct group *gr = getgrnam(group);
		if (!gr) {
			snprintf(err, errsz, "group '%s' does not exist", group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	uid_t uid = pw->pw_uid;
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

unsigned long process_raise_nofile(unsigned long want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (rl.rlim_cur >= want)
		return rl.rlim_cur;
	if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) {
		/* Raising the hard limit needs CAP_SYS_RESOURCE, which a
		 * container's root often lacks: then the soft limit goes up to
		 * the hard one, never stays where it was. */
		struct rlimit both = { (rlim_t)want, (rlim_t)want };
		if (setrlimit(RLIMIT_NOFILE, &both) == 0)
			return want;
		rl.rlim_cur = rl.rlim_max;
	} else {
		rl.rlim_cur = want;
	}
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	return rl.rlim_cur;
}

static ev_signal sigw[PSIG_COUNT];
static process_signal_cb sig_cb;

static void sig_handler(struct ev_loop *loop, ev_signal *w, int revents)
{
	sig_cb((enum process_signal)(w - sigw));
}

void process_signals(process_signal_cb cb)
{
	static const int nums[PSIG_COUNT] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD };
	signal(SIGPIPE, SIG_IGN);
	sig_cb = cb;
	for (int i = 0; i < PSIG_COUNT; i++) {
		ev_signal_init(&sigw[i], sig_handler, nums[i]);
		ev_signal_start(EV_DEFAULT, &sigw[i]);
		ev_unref(EV_DEFAULT);	/* signal watchers alone do not keep the loop alive */
	}
}
