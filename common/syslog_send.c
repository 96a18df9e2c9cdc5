/* syslog_send: the syslog sink, without glibc's syslog(). glibc's syslog()
 * sends on a blocking socket: when the receiver (rsyslog, journald) stops
 * reading and its queue (net.unix.max_dgram_qlen datagrams) is full, the
 * worker's event loop stops with it and every session of that worker
 * waits. Here the datagram socket to /dev/log is non-blocking: a line
 * that finds the queue full is dropped and counted, and the next line
 * that gets through is preceded by one saying how many were lost.
 *
 * The wire format is glibc's (RFC 3164 as rsyslog and journald read it):
 * "<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE", local time, facility mail.
 * Like glibc, a /dev/log that is a stream socket (syslog-ng's
 * unix-stream) is connected as one, each line ended by a NUL byte; a line
 * only partly sent closes that stream (the receiver sees the cut line end
 * there, not run into the next one) and counts as dropped.
 * A receiver that went away (restarted) is reconnected, at most once a
 * second, so a missing /dev/log costs one failed call per second. */
#include "syslog_send.h"

#include <errno.h>
#include <fcntl.h>
#include <paths.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "strbuf.h"

/* Room for "<PRI>Mmm dd hh:mm:ss TAG[PID]: " in front of a line. */
#define SYSLOG_HEADER_MAX 160
/* Seconds between two attempts to reach a receiver that was not there. */
#define SYSLOG_RETRY_SECONDS 1

static int sl_fd = -1;
static bool sl_stream;	/* sl_fd is a SOCK_STREAM: frames end with a NUL */
static const char *sl_tag = "mailgate";
static unsigned long long sl_dropped;	/* lines lost since the last one sent */
static time_t sl_last_try;

static int sl_connect_type(int type)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, _PATH_LOG, sizeof(_PATH_LOG));	/* a short constant */
	int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* A datagram socket, or a stream one when /dev/log is that (EPROTOTYPE). */
static int sl_connect(void)
{
	sl_stream = false;
	int fd = sl_connect_type(SOCK_DGRAM);
	if (fd < 0 && errno == EPROTOTYPE) {
		fd = sl_connect_type(SOCK_STREAM);
		sl_stream = fd >= 0;
	}
	return fd;
}

void syslog_send_open(const char *tag)
{
	sl_tag = tag;
	tzset();	/* localtime_r() below then needs no file access */
	if (sl_fd < 0) {
		sl_last_try = time(NULL);
		sl_fd = sl_connect();
	}
}

static void header(struct strbuf *b, int prio)
{
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	sb_addc(b, '<');
	sb_addu(b, (unsigned long long)(LOG_MAIL | prio));
	sb_addc(b, '>');
	sb_adds(b, mon[tm.tm_mon]);
	sb_addc(b, ' ');
	if (tm.tm_mday < 10)
		sb_addc(b, ' ');
	sb_addu(b, (unsigned long long)tm.tm_mday);
	sb_addc(b, ' ');
	const int hms[3] = { tm.tm_hour, tm.tm_min, tm.tm_sec };
	for (int i = 0; i < 3; i++) {
		if (i)
			sb_addc(b, ':');
		if (hms[i] < 10)
			sb_addc(b, '0');
		sb_addu(b, (unsigned long long)hms[i]);
	}
	sb_addc(b, ' ');
	sb_adds(b, sl_tag);
	sb_addc(b, '[');
	sb_addu(b, (unsigned long long)getpid());
	sb_adds(b, "]: ");
}

/* One datagram; reconnects once when the receiver went away. Returns
 * whether the line was sent. */
static bool send_line(int prio, const char *line)
{
	char out[SYSLOG_LINE_MAX + SYSLOG_HEADER_MAX];
	struct strbuf b;
	sb_init(&b, out, sizeof(out));
	header(&b, prio);
	sb_adds(&b, line);
	if (!sb_ok(&b))
		return false;	/* callers build lines shorter than SYSLOG_LINE_MAX */
	for (int attempt = 0; attempt < 2; attempt++) {
		if (sl_fd < 0) {
			time_t now = time(NULL);
			if (attempt == 0 && now - sl_last_try < SYSLOG_RETRY_SECONDS)
				return false;
			sl_last_try = now;
			sl_fd = sl_connect();
			if (sl_fd < 0)
				return false;
		}
		/* sb_str() is NUL-terminated: a stream's frame ends with it. */
		size_t n = sb_len(&b) + (sl_stream ? 1 : 0);
		ssize_t w = send(sl_fd, sb_str(&b), n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w == (ssize_t)n)
			return true;
		if (w >= 0) {	/* part of a stream frame: end it there */
			close(sl_fd);
			sl_fd = -1;
			return false;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
			return false;	/* the receiver is behind: dropped, not waited for */
		/* ECONNREFUSED, ENOTCONN...: the receiver restarted. */
		close(sl_fd);
		sl_fd = -1;
	}
	return false;
}

void syslog_send(int prio, const char *line)
{
	if (sl_dropped) {
		char note[96];
		struct strbuf b;
		sb_init(&b, note, sizeof(note));
		sb_adds(&b, "warning: ");
		sb_addu(&b, sl_dropped);
		sb_adds(&b, " log lines dropped: the syslog receiver was not reading");
		if (!send_line(LOG_WARNING, sb_str(&b))) {
			sl_dropped++;
			return;
		}
		sl_dropped = 0;
	}
	if (!send_line(prio, line))
		sl_dropped++;
}

unsigned long long syslog_send_dropped(void)
{
	return sl_dropped;
}
