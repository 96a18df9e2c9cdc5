/* certlog: see certlog.h. */
#include "certlog.h"
#include "strbuf.h"

#include <string.h>
#include <time.h>

/* "DNS:a.example,DNS:b.example,email:x@example" - as many whole entries
 * as fit in one log value, then ",..."; names that could not be read
 * exactly are counted ("+2 unreadable"). */
static void add_sans(struct logkv *kv, const struct tls_peer *p)
{
	static const char more[] = ",...";
	char buf[LOG_VALUE_MAX + 1];
	struct strbuf b;
	sb_init(&b, buf, sizeof(buf));
	bool cut = false;
	for (int type = 0; type < 2 && !cut; type++) {
		char *const *v = type ? p->email : p->dns;
		size_t n = type ? p->nemail : p->ndns;
		const char *tag = type ? "email:" : "DNS:";
		for (size_t i = 0; i < n && !cut; i++) {
			size_t need = (sb_len(&b) ? 1 : 0) + strlen(tag) + strlen(v[i]) + sizeof(more) - 1;
			if (need > sb_room(&b)) {
				cut = true;
				break;
			}
			if (sb_len(&b))
				sb_addc(&b, ',');
			sb_adds(&b, tag);
			sb_adds(&b, v[i]);
		}
	}
	if (cut)
		sb_adds(&b, more);
	if (sb_len(&b))
		logkv_mem(kv, "san", sb_str(&b), sb_len(&b));
	if (p->dns_bad + p->email_bad)
		logkv_u64(kv, "san_unreadable", p->dns_bad + p->email_bad);
}

static void add_time(struct logkv *kv, const char *key, long long t)
{
	char buf[32];
	struct tm tm;
	time_t tt = (time_t)t;
	if (t < 0 || !gmtime_r(&tt, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return;
	logkv_raw(kv, key, buf);
}

void certlog_add(struct logkv *kv, const struct tls_peer *p)
{
	char fp[7 + 32 * 3 + 1];
	tls_format_fp(p->fp, fp, sizeof(fp));
	logkv_raw(kv, "fp", fp);
	if (p->cn)
		logkv_mem(kv, "subject_cn", p->cn, p->cn_len);
	add_sans(kv, p);
	if (p->issuer)
		logkv_str(kv, "issuer", p->issuer);
	if (p->names_read)
		add_time(kv, "not_after", p->not_after == (time_t)-1 ? -1 : (long long)p->not_after);
}

const char *certlog_match_name(enum tls_match m)
{
	return m == TLS_MATCH_PIN ? "pin" : m == TLS_MATCH_NAME ? "name" : "none";
}
