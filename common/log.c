/* log: sink selection and formatting. Text values are written bare when they
 * use only bytes 0x21-0x7E other than '"', '\\' and '='; otherwise they are
 * double-quoted with \" \\ and \xHH (DESIGN.md §7). JSON strings follow RFC
 * 8259 with invalid UTF-8 bytes written as \u00XX.
 *
 * Every line is built whole with the bounded builder and handed to the
 * sink in one write(2): on stderr and in a log file "TIMESTAMP
 * PROG[PID]: LEVEL: LINE" (text) or the JSON object, each with its
 * newline; syslog gets the line alone (syslog_send stamps it, and drops
 * rather than blocks when the receiver is not reading; so does a stderr
 * that is a socket, the journal's). A log file is
 * opened O_APPEND, so lines from several processes (the workers, later)
 * never overwrite each other. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "syslog_send.h"

static const char *log_prog = "mailgate";
static enum log_target log_tgt = LOG_TARGET_STDERR;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
static enum log_level log_lvl = LOG_LVL_INFO;
static int syslog_open;
/* stderr is a socket (systemd's journal stream): written without waiting. */
static bool stderr_socket;
/* Lines dropped on that socket and not yet reported. */
static unsigned long long stderr_dropped;

/* LOG_TARGET_FILE: the open file, its path and the owner a file created
 * by a privileged reopen gets. */
static int log_fd = -1;
static char log_path[4096];
static uid_t log_uid;
static gid_t log_gid;

static const char *const level_names[] = { "error", "warning", "notice", "info", "debug" };
static const int level_prio[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };

/* Room for the text prefix: timestamp, program name, pid, level. */
#define LOG_PREFIX_MAX 128

_Static_assert(SYSLOG_LINE_MAX >= LOG_LINE_MAX, "syslog_send takes every line the log builds");

void log_init(const char *progname)
{
	log_prog = progname;
}

void log_configure(enum log_target target, enum log_format format, enum log_level level)
{
	log_tgt = target;
	log_fmt = format;
	log_lvl = level;
	if (target == LOG_TARGET_FILE && log_fd < 0)
		log_tgt = LOG_TARGET_STDERR;	/* not opened: say it somewhere */
	struct stat st;
	stderr_socket = log_tgt == LOG_TARGET_STDERR && fstat(STDERR_FILENO, &st) == 0 && S_ISSOCK(st.st_mode);
	if (target == LOG_TARGET_SYSLOG && !syslog_open) {
		syslog_send_open(log_prog);
		syslog_open = 1;
	}
}

int log_enabled(enum log_level level)
{
	return level <= log_lvl;
}

void log_timestamp(struct strbuf *b)
{
	struct timespec ts;
	struct tm tm;
	char s[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	time_t t = ts.tv_sec;
	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	sb_adds(b, s);
	sb_addf(b, ".%03ldZ", (long)(ts.tv_nsec / 1000000));
}

/* One line, one write: a short write (a full pipe, a signal) continues;
 * an error drops the line (there is nowhere left to say so). */
static void write_line(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* A line to a stderr that is a stream socket (the journal): when the
 * reader is so far behind that nothing of the line fits, the line is
 * dropped and counted rather than the event loop stopped; once part of it
 * went out, the rest follows (a line is never cut). Returns whether the
 * line was written. */
static bool send_line(const char *p, size_t n)
{
	ssize_t w = send(STDERR_FILENO, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (w < 0 && errno == ENOTSOCK) {
		stderr_socket = false;
		write_line(STDERR_FILENO, p, n);
		return true;
	}
	if (w <= 0)
		return false;
	write_line(STDERR_FILENO, p + w, n - (size_t)w);
	return true;
}

static void write_stderr(const char *p, size_t n)
{
	if (!stderr_socket) {
		write_line(STDERR_FILENO, p, n);
		return;
	}
	if (stderr_dropped) {
		char note[128 + LOG_PREFIX_MAX];
		struct strbuf b;
		sb_init(&b, note, sizeof(note));
		if (log_fmt == LOG_FORMAT_TEXT) {
			log_timestamp(&b);
			sb_adds(&b, " ");
			sb_adds(&b, log_prog);
			sb_addc(&b, '[');
			sb_addu(&b, (unsigned long long)getpid());
			sb_adds(&b, "]: warning: ");
		} else {
			sb_adds(&b, "{\"ts\":\"");
			log_timestamp(&b);
			sb_adds(&b, "\",\"level\":\"warning\",\"msg\":\"");
		}
		sb_addu(&b, stderr_dropped);
		sb_adds(&b, " log lines dropped: the reader of standard error was not reading");
		sb_adds(&b, log_fmt == LOG_FORMAT_TEXT ? "\n" : "\"}\n");
		if (!send_line(sb_str(&b), sb_len(&b))) {
			stderr_dropped++;
			return;
		}
		stderr_dropped = 0;
	}
	if (!send_line(p, n))
		stderr_dropped++;
}

static void emit(enum log_level level, const char *line)
{
	if (log_tgt == LOG_TARGET_SYSLOG) {
		syslog_send(level_prio[level], line);	/* never blocks the loop */
		return;
	}
	char out[LOG_LINE_MAX + LOG_PREFIX_MAX];
	struct strbuf b;
	sb_init(&b, out, sizeof(out));
	if (log_fmt == LOG_FORMAT_TEXT) {
		log_timestamp(&b);
		sb_addc(&b, ' ');
		sb_adds(&b, log_prog);
		sb_addc(&b, '[');
		sb_addu(&b, (unsigned long long)getpid());
		sb_adds(&b, "]: ");
		sb_adds(&b, level_names[level]);
		sb_adds(&b, ": ");
	}
	size_t keep = sb_len(&b);
	sb_adds(&b, line);
	if (!sb_ok(&b)) {	/* longer than any line we build: cut, marked */
		sb_truncate(&b, keep);
		sb_add(&b, line, sb_room(&b) > 16 ? sb_room(&b) - 16 : 0);
		sb_adds(&b, " [truncated]");
	}
	sb_addc(&b, '\n');
	if (log_tgt == LOG_TARGET_FILE)
		write_line(log_fd, sb_str(&b), sb_len(&b));
	else
		write_stderr(sb_str(&b), sb_len(&b));
}

/* Opens path for appending; *created says whether this call made it. */
static int open_append(const char *path, bool *created)
{
	/* O_NONBLOCK: a FIFO put in the file's place fails (ENXIO) instead of
	 * blocking the master until something reads it; the S_ISREG check
	 * refuses what else opens. No effect on a regular file's writes. */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0640);
	*created = fd >= 0;
	if (fd < 0 && errno == EEXIST)	/* never through a symbolic link */
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	return fd;
}

/* A new file: 0640 whatever the umask, owned by the unprivileged user
 * when we are root (the master, later: a worker reopens it as that user). */
static int adopt_new_file(int fd, const char **why)
{
	if (fchmod(fd, 0640) < 0) {
		*why = strerror(errno);
		return -1;
	}
	if (geteuid() == 0 && (log_uid != 0 || log_gid != 0) && fchown(fd, log_uid, log_gid) < 0) {
		*why = strerror(errno);
		return -1;
	}
	return 0;
}

static int open_log_file(const char *path, const char **why)
{
	bool created;
	struct stat st;
	int fd = open_append(path, &created);
	if (fd < 0) {
		*why = strerror(errno);
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		close(fd);
		return -1;
	}
	/* The folder may be the unprivileged user's (so that it can create
	 * the file after logrotate): root appends only to a file of root's or
	 * of that user, with one name - not to a file planted there. */
	if (!created && geteuid() == 0 && ((st.st_uid != 0 && st.st_uid != log_uid) || st.st_nlink != 1)) {
		*why = "owned by another user or hard-linked (refused)";
		close(fd);
		return -1;
	}
	if (created && adopt_new_file(fd, why) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int log_open_file(const char *path, uid_t uid, gid_t gid, char *err, size_t errsz)
{
	const char *why = NULL;
	struct strbuf b;
	sb_init(&b, log_path, sizeof(log_path));
	sb_adds(&b, path);
	if (!sb_ok(&b)) {
		snprintf(err, errsz, "log_target: path too long");
		return -1;
	}
	log_uid = uid;
	log_gid = gid;
	int fd = open_log_file(path, &why);
	if (fd < 0) {
		snprintf(err, errsz, "log_target: cannot open '%s': %s", path, why);
		return -1;
	}
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	return 0;
}

int log_reopen(void)
{
	const char *why = NULL;
	if (log_fd < 0)
		return 0;
	int fd = open_log_file(log_path, &why);
	if (fd < 0) {
		log_error("SIGUSR1: cannot reopen log file '%s': %s; still writing to the file "
			  "that was open (let logrotate create the new file for the user mailgate "
			  "runs as, or make its folder writable for that user)", log_path, why);
		return -1;
	}
	/* Same descriptor number, new file: nothing else holds the old one. */
	if (dup3(fd, log_fd, O_CLOEXEC) < 0) {
		log_error("SIGUSR1: cannot reopen log file '%s': %s", log_path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	log_notice("SIGUSR1: log file '%s' reopened", log_path);
	return 0;
}

/* JSON string content for p[0..n) into out (outsz), escaping whole
 * sequences only; *used says how many input bytes made it. */
static size_t json_escape(char *out, size_t outsz, const unsigned char *p, size_t n, size_t *used);

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_fmt != LOG_FORMAT_JSON) {
		emit(level, msg);
		return;
	}
	/* {"ts":"...","level":"...","msg":"..."[,"truncated":"yes"]} */
	char line[LOG_LINE_MAX], esc[LOG_LINE_MAX - LOG_PREFIX_MAX];
	struct strbuf b;
	size_t n = strlen(msg), used = 0;
	json_escape(esc, sizeof(esc), (const unsigned char *)msg, n, &used);
	sb_init(&b, line, sizeof(line));
	sb_adds(&b, "{\"ts\":\"");
	log_timestamp(&b);
	sb_adds(&b, "\",\"level\":\"");
	sb_adds(&b, level_names[level]);
	sb_adds(&b, "\",\"msg\":\"");
	sb_adds(&b, esc);
	sb_adds(&b, used < n ? "\",\"truncated\":\"yes\"}" : "\"}");
	emit(level, sb_str(&b));	/* fits: esc leaves LOG_PREFIX_MAX for the rest */
}

static int bare_ok(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && c != '"' && c != '\\' && c != '=';
}

size_t log_escape_value(char *out, size_t outsz, const void *in, size_t inlen)
{
	const unsigned char *p = in;
	size_t o = 0, i;
	int bare = inlen > 0;
	if (outsz == 0)
		return 0;
	if (inlen > LOG_VALUE_MAX)
		inlen = LOG_VALUE_MAX;
	for (i = 0; i < inlen && bare; i++)
		bare = bare_ok(p[i]);
	if (bare) {
		size_t n = inlen < outsz - 1 ? inlen : outsz - 1;
		memcpy(out, p, n);
		out[n] = '\0';
		return n;
	}
#define PUT(c) do { if (o + 1 < outsz) out[o++] = (c); } while (0)
	PUT('"');
	for (i = 0; i < inlen; i++) {
		unsigned char c = p[i];
		if (o + 6 >= outsz)
			break;
		if (c == '"' || c == '\\') {
			PUT('\\');
			PUT((char)c);
		} else if (c < 0x20 || c > 0x7e) {
			static const char hex[] = "0123456789abcdef";
			PUT('\\');
			PUT('x');
			PUT(hex[c >> 4]);
			PUT(hex[c & 15]);
		} else {
			PUT((char)c);
		}
	}
	PUT('"');
#undef PUT
	out[o] = '\0';
	return o;
}

/* Length of a valid UTF-8 sequence at p (max n bytes), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned min;
	if (p[0] < 0x80)
		return 1;
	else if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		min = 0x80;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		min = 0x800;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		min = 0x10000;
	} else
		return 0;
	if (n < len)
		return 0;
	unsigned cp = p[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static size_t json_escape(char *out, size_t outsz, const unsigned char *p, size_t inlen, size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i = 0;
	*used = 0;
	if (outsz == 0)
		return 0;
	while (i < inlen) {
		unsigned char c = p[i];
		size_t n = utf8_seq(p + i, inlen - i);
		if (o + 7 >= outsz)
			break;
		if (n == 0 || c < 0x20 || c == 0x7f) {
			const char *e = NULL;
			switch (c) {
			case '\n': e = "\\n"; break;
			case '\r': e = "\\r"; break;
			case '\t': e = "\\t"; break;
			default: break;
			}
			if (e) {
				memcpy(out + o, e, 2);
				o += 2;
			} else {
				memcpy(out + o, "\\u00", 4);
				out[o + 4] = hex[c >> 4];
				out[o + 5] = hex[c & 15];
				o += 6;
			}
			i++;
		} else if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
			i++;
		} else {
			memcpy(out + o, p + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	*used = i;
	return o;
}

size_t log_escape_json(char *out, size_t outsz, const void *in, size_t inlen)
{
	size_t used;
	return json_escape(out, outsz, in, inlen > LOG_VALUE_MAX ? LOG_VALUE_MAX : inlen, &used);
}

/* Room kept at the end of every line for the longest ending. */
#define KV_TRUNCATED_JSON ",\"truncated\":\"yes\"}"
#define KV_RESERVE sizeof(KV_TRUNCATED_JSON)

static void kv_append(struct logkv *kv, const char *s, size_t n)
{
	if (n > sb_room(&kv->b) || sb_room(&kv->b) - n < KV_RESERVE)
		sb_fail(&kv->b);
	sb_add(&kv->b, s, n);
}

static void kv_key(struct logkv *kv, const char *key)
{
	if (kv->json) {
		if (sb_len(&kv->b) > 1)
			kv_append(kv, ",", 1);
		kv_append(kv, "\"", 1);
		kv_append(kv, key, strlen(key));
		kv_append(kv, "\":", 2);
	} else {
		if (sb_len(&kv->b))
			kv_append(kv, " ", 1);
		kv_append(kv, key, strlen(key));
		kv_append(kv, "=", 1);
	}
}

void logkv_begin(struct logkv *kv, const char *event, int show_event)
{
	sb_init(&kv->b, kv->buf, sizeof(kv->buf));
	kv->json = log_fmt == LOG_FORMAT_JSON;
	if (kv->json) {
		char ts[LOG_TS_LEN + 1];
		struct strbuf t;
		sb_init(&t, ts, sizeof(ts));
		log_timestamp(&t);
		kv_append(kv, "{", 1);
		logkv_raw(kv, "ts", sb_str(&t));	/* the first key (RFC 3339) */
		logkv_raw(kv, "event", event);
	} else if (show_event) {
		kv_append(kv, event, strlen(event));
	}
}

/* A pair is added whole or not at all. */
void logkv_mem(struct logkv *kv, const char *key, const void *val, size_t len)
{
	char esc[LOG_VALUE_MAX * 6 + 8];
	size_t keep = sb_len(&kv->b);
	if (!sb_ok(&kv->b))
		return;
	kv_key(kv, key);
	if (kv->json) {
		kv_append(kv, "\"", 1);
		kv_append(kv, esc, log_escape_json(esc, sizeof(esc), val, len));
		kv_append(kv, "\"", 1);
	} else {
		kv_append(kv, esc, log_escape_value(esc, sizeof(esc), val, len));
	}
	if (!sb_ok(&kv->b)) {
		sb_truncate(&kv->b, keep);
		sb_fail(&kv->b);	/* later pairs are dropped too, in order */
	}
}

void logkv_str(struct logkv *kv, const char *key, const char *val)
{
	if (val)
		logkv_mem(kv, key, val, strlen(val));
}

void logkv_raw(struct logkv *kv, const char *key, const char *val)
{
	logkv_str(kv, key, val);
}

/* A number, bare in both formats (a JSON number). */
void logkv_u64(struct logkv *kv, const char *key, uint64_t v)
{
	char num[24];
	struct strbuf b;
	size_t keep = sb_len(&kv->b);
	if (!sb_ok(&kv->b))
		return;
	sb_init(&b, num, sizeof(num));
	sb_addu(&b, v);
	kv_key(kv, key);
	kv_append(kv, num, sb_len(&b));
	if (!sb_ok(&kv->b)) {
		sb_truncate(&kv->b, keep);
		sb_fail(&kv->b);
	}
}

void logkv_end(struct logkv *kv, enum log_level level)
{
	if (!log_enabled(level))
		return;
	bool truncated = !sb_ok(&kv->b);
	sb_truncate(&kv->b, sb_len(&kv->b));	/* the reserve is ours now */
	if (truncated)
		sb_adds(&kv->b, kv->json ? KV_TRUNCATED_JSON : " truncated=yes");
	else if (kv->json)
		sb_addc(&kv->b, '}');
	emit(level, sb_str(&kv->b));
}
