/* log: the process's log sink (syslog facility mail, stderr, or a file
 * appended to and reopened on SIGUSR1) in text or JSON, with levels, plus a
 * key=value line builder that applies DESIGN.md §7 escaping. Every line
 * carries an RFC 3339 timestamp (text: in front, on stderr and in files;
 * JSON: the first key, "ts"). Client bytes only ever reach the log through
 * logkv_* or log_escape_value(), which escape and cap them. */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "strbuf.h"

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARNING, LOG_LVL_NOTICE, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum log_target { LOG_TARGET_SYSLOG, LOG_TARGET_STDERR, LOG_TARGET_FILE };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

#define LOG_VALUE_MAX 256	/* input bytes of one value that are logged */

void log_init(const char *progname);
/* LOG_TARGET_FILE writes to the file log_open_file() opened. */
void log_configure(enum log_target target, enum log_format format, enum log_level level);
/* Opens path for appending (O_APPEND: whole lines, whatever else writes
 * there). A file this call creates gets mode 0640 and, when running as
 * root, the owner uid:gid - the user privileges are dropped to - so that
 * the unprivileged process can reopen it later (log_reopen). Call it
 * before dropping privileges. Returns 0, or -1 with err filled. */
int log_open_file(const char *path, uid_t uid, gid_t gid, char *err, size_t errsz);
/* SIGUSR1 (logrotate): opens the log file's path again and writes there
 * from now on; the old file is closed. Failing (the directory is not
 * writable, ...), it keeps the old file and logs why. Without a log file,
 * nothing happens. Returns 0 or -1. */
int log_reopen(void);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#define LOG_LINE_MAX 3072
/* "2026-11-30T04:05:06.123Z": RFC 3339, UTC, milliseconds. */
#define LOG_TS_LEN 24
/* Writes the current time so into b. */
void log_timestamp(struct strbuf *b);

/* One structured line. Text: "[event ]k=v k=v"; JSON: {"event":..,"k":"v"}.
 * Built with the bounded builder: a pair that does not fit is left out
 * whole (the line then ends in "truncated=yes"). */
struct logkv {
	char buf[LOG_LINE_MAX];
	struct strbuf b;
	int json;
};

/* show_event: whether the event word starts the text line (JSON always has it). */
void logkv_begin(struct logkv *kv, const char *event, int show_event);
void logkv_str(struct logkv *kv, const char *key, const char *val);	/* NULL: omitted */
void logkv_mem(struct logkv *kv, const char *key, const void *val, size_t len);
void logkv_u64(struct logkv *kv, const char *key, uint64_t v);
void logkv_raw(struct logkv *kv, const char *key, const char *val);	/* trusted token */
void logkv_end(struct logkv *kv, enum log_level level);

/* Pure escaping helpers (unit-tested). Both write a NUL-terminated result,
 * truncating to fit out; they return the length written. Input is capped at
 * LOG_VALUE_MAX bytes. */
size_t log_escape_value(char *out, size_t outsz, const void *in, size_t inlen);
size_t log_escape_json(char *out, size_t outsz, const void *in, size_t inlen);

#endif
