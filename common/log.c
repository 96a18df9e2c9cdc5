/* log: sink selection and formatting. Text values are written bare when they
 * use only bytes 0x21-0x7E other than '"', '\\' and '='; otherwise they are
 * double-quoted with \" \\ and \xHH (DESIGN.md §7). JSON strings follow RFC
 * 8259 with invalid UTF-8 bytes written as \u00XX. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "mailgate";
static enum log_target log_tgt = LOG_TARGET_STDERR;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
static enum log_level log_lvl = LOG_LVL_INFO;
static int syslog_open;

static const char *const level_names[] = { "error", "warning", "notice", "info", "debug" };
static const int level_prio[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };

void log_init(const char *progname)
{
	log_prog = progname;
}

void log_configure(enum log_target target, enum log_format format, enum log_level level)
{
	log_tgt = target;
	log_fmt = format;
	log_lvl = level;
	if (target == LOG_TARGET_SYSLOG && !syslog_open) {
		openlog(log_prog, LOG_PID | LOG_NDELAY, LOG_MAIL);
		syslog_open = 1;
	}
}


int log_enabled(enum log_level level)
{
	return level <= log_lvl;
}

static void emit(enum log_level level, const char *line)
{
	if (log_tgt == LOG_TARGET_SYSLOG) {
		syslog(level_prio[level], "%s", line);
		return;
	}
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (log_fmt == LOG_FORMAT_JSON)
		fprintf(stderr, "%s\n", line);
	else
		fprintf(stderr, "%s %s[%ld]: %s: %s\n", ts, log_prog, (long)getpid(),
			level_names[level], line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_fmt == LOG_FORMAT_JSON) {
		char esc[2048 * 6 / 4];
		char line[sizeof(esc) + 64];
		log_escape_json(esc, sizeof(esc), msg, strnlen(msg, 1024));
		snprintf(line, sizeof(line), "{\"level\":\"%s\",\"msg\":\"%s\"}",
			 level_names[level], esc);
		emit(level, line);
	} else {
		emit(level, msg);
	}
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

size_t log_escape_json(char *out, size_t outsz, const void *in, size_t inlen)
{
	const unsigned char *p = in;
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i = 0;
	if (outsz == 0)
		return 0;
	if (inlen > LOG_VALUE_MAX)
		inlen = LOG_VALUE_MAX;
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
	return o;
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
		kv_append(kv, "{", 1);
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
