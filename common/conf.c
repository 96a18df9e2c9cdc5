/* conf: libconfuse option tables (the only file that includes confuse.h),
 * conversion of the parsed tree into struct conf, and the structural and
 * cross-field rules of DESIGN.md §3. All problems are collected in a diag
 * as FILE:LINE: message. Key locations come from a validate callback that
 * libconfuse calls while parsing each option.
 *
 * libconfuse never reads a configuration file itself: we read each one
 * (the main file and every include()) and hand it the text with its
 * comments blanked (conf_strip.h: libconfuse 3.3 miscounts lines after
 * comments and refuses comments inside lists), through cfg_parse_fp() on
 * an in-memory stream. An include() is parsed the same way, into the same
 * tree, from inside the include function - nested exactly like the
 * default values libconfuse itself parses while a section is being read -
 * with cfg->filename set to the name given in include() and the including
 * file's name and line restored afterwards. libconfuse's own include stack
 * is never used: it is not unwound when an included file has an error
 * (stale entries, leaked lexer buffers), and it would report the resolved
 * path rather than the name the user wrote. */
#include "conf.h"
#include "admission.h"
#include "conf_strip.h"
#include "conf_value.h"
#include "domain.h"
#include "log.h"
#include "xmem.h"

#include <confuse.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define DEFAULT_PRIORITY CONF_TLS_PRIORITY ":%SERVER_PRECEDENCE"
#define DEFAULT_CLIENT_PRIORITY CONF_TLS_PRIORITY

/* ---- parse context: where each key was set ---- */

struct keyloc {
	const cfg_t *sec;
	const char *opt;
	struct conf_where where;
};

/* Bytes in one configuration file; include() nesting (a loop ends here). */
#define CONF_FILE_MAX (16u << 20)
#define CONF_INCLUDE_DEPTH_MAX 8

struct parse_ctx {
	struct conf *conf;
	cfg_t *top;		/* the top-level section, while converting */
	struct diag *diag;
	struct keyloc *locs;
	size_t nlocs, caplocs;
	int include_depth;
};

static struct parse_ctx *pctx;	/* config parsing is single-threaded */

static const char *intern(struct conf *c, const char *s)
{
	for (size_t i = 0; i < c->files_.n; i++)
		if (strcmp(c->files_.v[i], s) == 0)
			return c->files_.v[i];
	c->files_.v = xreallocarray(c->files_.v, c->files_.n + 1, sizeof(char *));
	c->files_.v[c->files_.n] = xstrdup(s);
	return c->files_.v[c->files_.n++];
}

/* The file name as the user wrote it: libconfuse reports what we set as
 * cfg->filename - the path given on the command line or the argument of
 * include() - and copies it into each section it opens. */
static const char *given_name(const char *libname)
{
	return libname ? intern(pctx->conf, libname) : pctx->conf->path;
}

static struct keyloc *find_loc(const cfg_t *sec, const char *opt)
{
	for (size_t i = pctx->nlocs; i-- > 0;)
		if (pctx->locs[i].sec == sec && strcmp(pctx->locs[i].opt, opt) == 0)
			return &pctx->locs[i];
	return NULL;
}

static int record_loc(cfg_t *cfg, cfg_opt_t *opt)
{
	struct keyloc *l = find_loc(cfg, opt->name);
	/* A list spanning lines calls us once per value: keep its first line. */
	if (l && opt->type != CFGT_SEC && opt->nvalues > 1 && (opt->flags & CFGF_LIST))
		return 0;
	if (!l) {
		if (pctx->nlocs == pctx->caplocs) {
			pctx->caplocs = pctx->caplocs ? pctx->caplocs * 2 : 64;
			pctx->locs = xreallocarray(pctx->locs, pctx->caplocs, sizeof(*pctx->locs));
		}
		l = &pctx->locs[pctx->nlocs++];
		l->sec = cfg;
		l->opt = opt->name;
	}
	l->where.file = given_name(cfg->filename);
	l->where.line = cfg->line;
	return 0;
}

static void conf_errfunc(cfg_t *cfg, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void conf_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	diag_verror(pctx->diag, cfg ? given_name(cfg->filename) : pctx->conf->path,
		    cfg ? cfg->line : 0, fmt, ap);
}

/* Where a key of a section was set; for a key left at its default, the
 * first key recorded in that section (or the section's closing line). */
static struct conf_where where_of(const cfg_t *sec, const char *opt)
{
	struct keyloc *l = find_loc(sec, opt);
	if (l)
		return l->where;
	struct conf_where w = { given_name(sec->filename), sec->line };
	for (size_t i = 0; i < pctx->nlocs; i++)
		if (pctx->locs[i].sec == sec && pctx->locs[i].where.line < w.line) {
			w = pctx->locs[i].where;
		}
	if (!sec->filename)
		w.file = pctx->conf->path;
	return w;
}

static int key_set(const cfg_t *sec, const char *opt)
{
	return find_loc(sec, opt) != NULL;
}

static void err_at(struct conf_where w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_at(struct conf_where w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_verror(pctx->diag, w.file, w.line, fmt, ap);
	va_end(ap);
}

static void warn_at(struct conf_where w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn_at(struct conf_where w, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	diag_warn(pctx->diag, w.file, w.line, "%s", msg);
}

/* ---- reading files: every configuration file goes through here ---- */

/* Reads a whole file (at most CONF_FILE_MAX bytes) into a NUL-terminated
 * buffer. Returns 0, or -1 with errno set. */
static int read_text(const char *path, char **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0, cap = 4096;
	char *buf = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			if (cap >= CONF_FILE_MAX) {
				free(buf);
				close(fd);
				errno = EFBIG;
				return -1;
			}
			cap = cap * 2 > CONF_FILE_MAX ? CONF_FILE_MAX : cap * 2;
			buf = xreallocarray(buf, cap + 1, 1);
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

/* Blanks the comments of a file's text in place (conf_strip.h). A NUL
 * byte is refused: libconfuse would end the text there and silently drop
 * the rest. So is a string left open at the end: a "..." one would
 * silently swallow the rest of the file. An unterminated block comment is
 * reported (it would silently hide the rest) but the text still parsed.
 * Returns -1 if the text must not be parsed. */
static int clean_text(const char *given, char *text, size_t len)
{
	const char *nul = memchr(text, '\0', len);
	if (nul) {
		int line = 1;
		for (const char *p = text; p < nul; p++)
			line += *p == '\n';
		diag_error(pctx->diag, given, line, "NUL byte: a configuration file is text");
		return -1;
	}
	struct conf_strip_result r;
	conf_strip_comments(text, len, text, &r);
	if (r.open_comment_line)
		diag_error(pctx->diag, given, r.open_comment_line,
			   "unterminated /* comment: it would hide the rest of the file");
	if (r.open_string_line) {
		diag_error(pctx->diag, given, r.open_string_line,
			   "unterminated string: its quote is never closed");
		return -1;
	}
	return 0;
}

/* Reads, cleans and parses one file into cfg, reporting problems as
 * given:LINE: the main file (included = false) or an include()d one, in
 * which case the including file's name and line are restored afterwards.
 * Returns 0 or -1 (problems reported). */
static int parse_file(cfg_t *cfg, const char *resolved, const char *given, bool included)
{
	char *text;
	size_t len;
	if (read_text(resolved, &text, &len) < 0) {
		if (included)
			cfg_error(cfg, "include(\"%s\"): cannot read '%s': %s", given, resolved,
				  strerror(errno));
		else
			diag_error(pctx->diag, given, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	int rc = clean_text(given, text, len) == 0 ? 0 : -1;
	if (rc == 0 && len > 0) {
		FILE *fp = fmemopen(text, len, "r");
		if (!fp) {
			diag_error(pctx->diag, given, 0, "cannot read: %s", strerror(errno));
			rc = -1;
		} else {
			char *saved_name = cfg->filename;
			int saved_line = cfg->line;
			cfg->filename = xstrdup(given);	/* cfg_free() frees it */
			rc = cfg_parse_fp(cfg, fp) == CFG_SUCCESS ? 0 : -1;
			fclose(fp);
			if (included) {
				free(cfg->filename);
				cfg->filename = saved_name;
				cfg->line = saved_line;
			} else {
				free(saved_name);
			}
		}
	}
	free(text);
	return rc;
}

/* include("x.conf"): relative to the folder of the main configuration;
 * parsed into the same tree, its problems named "x.conf":LINE. */
static int conf_include(cfg_t *cfg, cfg_opt_t *opt, int argc, const char **argv)
{
	if (argc != 1) {
		cfg_error(cfg, "include() takes exactly one file name");
		return 1;
	}
	const char *given = argv[0];
	if (pctx->include_depth >= CONF_INCLUDE_DEPTH_MAX) {
		cfg_error(cfg, "include(\"%s\"): nested more than %d deep (does a file include itself?)",
			  given, CONF_INCLUDE_DEPTH_MAX);
		return 1;
	}
	char *resolved;
	if (given[0] == '/' || !pctx->conf->dir[0]) {
		resolved = xstrdup(given);
	} else {
		size_t n = strlen(pctx->conf->dir) + strlen(given) + 2;
		resolved = xmalloc(n);
		snprintf(resolved, n, "%s/%s", pctx->conf->dir, given);
	}
	pctx->include_depth++;
	int rc = parse_file(cfg, resolved, given, true);
	pctx->include_depth--;
	free(resolved);
	return rc < 0 ? 1 : 0;
}

/* ---- option tables ---- */

static cfg_opt_t tls_opts[] = {
	CFG_STR_LIST("cert", "{}", CFGF_NONE),
	CFG_STR_LIST("key", "{}", CFGF_NONE),
	CFG_STR("priority", DEFAULT_PRIORITY, CFGF_NONE),
	CFG_STR("client_ca", "", CFGF_NONE),
	CFG_STR_LIST("crl", "{}", CFGF_NONE),
	CFG_STR("client_cert", "none", CFGF_NONE),
	CFG_STR("client_eku", "any", CFGF_NONE),
	CFG_STR_LIST("ocsp_staple", "{}", CFGF_NONE),
	CFG_STR("ticket_key", "", CFGF_NONE),
	CFG_BOOL("alpn", cfg_true, CFGF_NONE),
	CFG_STR_LIST("alpn_ids", "{}", CFGF_NONE),
	CFG_END()
};

static cfg_opt_t tls_client_opts[] = {
	CFG_STR("cert", "", CFGF_NONE),
	CFG_STR("key", "", CFGF_NONE),
	CFG_STR("ca", "", CFGF_NONE),
	CFG_STR("verify_name", "", CFGF_NONE),
	CFG_STR_LIST("fingerprint", "{}", CFGF_NONE),
	CFG_STR_LIST("spki", "{}", CFGF_NONE),
	CFG_STR("priority", DEFAULT_CLIENT_PRIORITY, CFGF_NONE),
	CFG_STR_LIST("alpn_ids", "{}", CFGF_NONE),
	CFG_END()
};

static cfg_opt_t peer_opts[] = {
	CFG_STR_LIST("fingerprint", "{}", CFGF_NONE),
	CFG_STR_LIST("spki", "{}", CFGF_NONE),
	CFG_STR_LIST("name", "{}", CFGF_NONE),
	CFG_BOOL("relay", cfg_true, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t upstream_opts[] = {
	CFG_STR_LIST("address", "{}", CFGF_NONE),
	CFG_STR("tls", "none", CFGF_NONE),
	CFG_STR("tls_client", "", CFGF_NONE),
	CFG_BOOL("xclient", cfg_true, CFGF_NONE),
	CFG_BOOL("forward_id", cfg_true, CFGF_NONE),
	CFG_STR("proxy_protocol", "off", CFGF_NONE),
	CFG_INT("connect_timeout", 10, CFGF_NONE),
	CFG_INT("timeout_reply", 300, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t listener_opts[] = {
	CFG_STR_LIST("address", "{}", CFGF_NONE),
	CFG_STR("tls_mode", "implicit", CFGF_NONE),
	CFG_STR("tls", "default", CFGF_NONE),
	CFG_STR("client_cert", "", CFGF_NONE),
	CFG_BOOL("require_tls", cfg_true, CFGF_NONE),
	CFG_BOOL("auth", cfg_true, CFGF_NONE),
	CFG_BOOL("peers_only", cfg_false, CFGF_NONE),
	CFG_STR_LIST("relay_networks", "{}", CFGF_NONE),
	CFG_BOOL("proxy_protocol", cfg_false, CFGF_NONE),
	CFG_STR_LIST("trusted_proxies", "{127.0.0.1}", CFGF_NONE),
	CFG_STR("upstream", "", CFGF_NONE),
	CFG_INT("max_connections", 10000, CFGF_NONE),
	CFG_INT("max_per_ip", 50, CFGF_NONE),
	CFG_INT("rate_per_ip", 0, CFGF_NONE),
	CFG_END()
};

/* The keys of both daemons; a daemon's own come from its conf_schema. */
static cfg_opt_t top_opts[] = {
	CFG_STR("hostname", "", CFGF_NONE),
	CFG_STR("user", "nobody", CFGF_NONE),
	CFG_STR("group", "", CFGF_NONE),
	CFG_STR("pidfile", "", CFGF_NONE),
	CFG_INT("workers", 1, CFGF_NONE),
	CFG_BOOL("reuseport", cfg_false, CFGF_NONE),
	CFG_STR("log_level", "info", CFGF_NONE),
	CFG_STR("log_target", "syslog", CFGF_NONE),
	CFG_STR("log_format", "text", CFGF_NONE),
	CFG_STR("metrics", "", CFGF_NONE),
	CFG_INT("shutdown_timeout", 30, CFGF_NONE),
	CFG_INT("timeout_handshake", 30, CFGF_NONE),
	CFG_INT("max_errors", 10, CFGF_NONE),
	CFG_FUNC("include", conf_include),
	CFG_SEC("tls", tls_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("tls_client", tls_client_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("peer", peer_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("upstream", upstream_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("listener", listener_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_END()
};

/* A libconfuse option for one schema key (name and default live as long
 * as the schema: static data). */
static cfg_opt_t key_opt(const struct conf_key *k)
{
	switch (k->type) {
	case CK_INT:
	case CK_U64: {
		cfg_opt_t o = CFG_INT(k->name, 0, CFGF_NONE);
		o.def.number = strtol(k->dflt, NULL, 10);
		return o;
	}
	case CK_BOOL: {
		cfg_opt_t o = CFG_BOOL(k->name, cfg_false, CFGF_NONE);
		o.def.boolean = strcmp(k->dflt, "true") == 0 ? cfg_true : cfg_false;
		return o;
	}
	case CK_STRLIST: {
		cfg_opt_t o = CFG_STR_LIST(k->name, NULL, CFGF_NONE);
		o.def.parsed = (char *)(uintptr_t)k->dflt;
		return o;
	}
	default: {
		cfg_opt_t o = CFG_STR(k->name, NULL, CFGF_NONE);
		o.def.string = k->dflt;
		return o;
	}
	}
}

/* top_opts and the schema's keys, CFG_END-terminated (freed by the caller
 * after cfg_free). */
static cfg_opt_t *build_opts(const struct conf_schema *sch)
{
	size_t ntop = sizeof(top_opts) / sizeof(top_opts[0]) - 1, nkeys = 0;
	while (sch->keys[nkeys].name)
		nkeys++;
	cfg_opt_t *opts = xcalloc(ntop + nkeys + 1, sizeof(*opts));
	memcpy(opts, top_opts, ntop * sizeof(*opts));
	for (size_t i = 0; i < nkeys; i++)
		opts[ntop + i] = key_opt(&sch->keys[i]);
	cfg_opt_t end = CFG_END();
	opts[ntop + nkeys] = end;
	return opts;
}

static void set_recorders(cfg_opt_t *opts)
{
	for (; opts->name; opts++) {
		if (opts->type == CFGT_FUNC)
			continue;
		opts->validcb = record_loc;
		if (opts->type == CFGT_SEC)
			set_recorders(opts->subopts);
	}
}

/* ---- conversion helpers ---- */

static char *resolve_path(const struct conf *c, const char *p)
{
	if (!p[0] || p[0] == '/' || strncmp(p, "pkcs11:", 7) == 0 || !c->dir[0])
		return xstrdup(p);
	size_t n = strlen(c->dir) + strlen(p) + 2;
	char *r = xmalloc(n);
	snprintf(r, n, "%s/%s", c->dir, p);
	return r;
}

static void get_strlist(cfg_t *sec, const char *name, struct strlist *out, int paths)
{
	out->n = cfg_size(sec, name);
	out->v = out->n ? xcalloc(out->n, sizeof(char *)) : NULL;
	for (size_t i = 0; i < out->n; i++) {
		const char *v = cfg_getnstr(sec, name, (unsigned)i);
		out->v[i] = paths ? resolve_path(pctx->conf, v) : xstrdup(v);
	}
}

static char *get_path(cfg_t *sec, const char *name)
{
	return resolve_path(pctx->conf, cfg_getstr(sec, name));
}

static int get_keyword(cfg_t *sec, const char *name, const char *const *words, int dflt)
{
	const char *v = cfg_getstr(sec, name);
	int k = conf_parse_keyword(v, words);
	if (k < 0) {
		char allowed[256] = "";
		for (int i = 0; words[i]; i++) {
			strncat(allowed, i ? " | " : "", sizeof(allowed) - strlen(allowed) - 1);
			strncat(allowed, words[i], sizeof(allowed) - strlen(allowed) - 1);
		}
		err_at(where_of(sec, name), "%s: bad value '%s' (expected %s)", name, v, allowed);
		return dflt;
	}
	return k;
}

static int get_int(cfg_t *sec, const char *name, long lo, long hi)
{
	long v = cfg_getint(sec, name);
	if (v < lo || v > hi) {
		err_at(where_of(sec, name), "%s: %ld out of range (%ld-%ld)", name, v, lo, hi);
		return (int)(v < lo ? lo : hi);
	}
	return (int)v;
}

static void get_pins(cfg_t *sec, const char *name, struct pinlist *out, int allow_b64)
{
	size_t n = cfg_size(sec, name);
	out->v = n ? xcalloc(n, PIN_LEN) : NULL;
	out->n = 0;
	for (size_t i = 0; i < n; i++) {
		const char *err = NULL;
		const char *v = cfg_getnstr(sec, name, (unsigned)i);
		if (conf_parse_pin(v, out->v[out->n], allow_b64, &err) < 0)
			err_at(where_of(sec, name), "%s: %s: '%s'", name, err, v);
		else
			out->n++;
	}
}

static void get_cidrs(cfg_t *sec, const char *name, struct cidrlist *out)
{
	size_t n = cfg_size(sec, name);
	out->v = n ? xcalloc(n, sizeof(*out->v)) : NULL;
	out->n = 0;
	for (size_t i = 0; i < n; i++) {
		const char *err = NULL;
		const char *v = cfg_getnstr(sec, name, (unsigned)i);
		if (addr_parse_cidr(v, &out->v[out->n], &err) < 0)
			err_at(where_of(sec, name), "%s: '%s': %s", name, v, err);
		else
			out->n++;
	}
}

static const char *const tls_mode_words[] = { "none", "starttls", "implicit", NULL };
static const char *const cc_words[] = { "none", "optional", "require", NULL };

static void conv_tls(cfg_t *sec, struct conf_tls *t, const struct conf_schema *sch)
{
	static const char *const eku_words[] = { "any", "client", NULL };
	t->name = xstrdup(cfg_title(sec));
	t->where = where_of(sec, "cert");
	get_strlist(sec, "cert", &t->cert, 1);
	get_strlist(sec, "key", &t->key, 1);
	get_strlist(sec, "crl", &t->crl, 1);
	get_strlist(sec, "ocsp_staple", &t->ocsp_staple, 1);
	get_strlist(sec, "alpn_ids", &t->alpn_ids, 0);
	t->cert_where = where_of(sec, "cert");
	t->key_where = where_of(sec, "key");
	t->crl_where = where_of(sec, "crl");
	t->client_ca_where = where_of(sec, "client_ca");
	t->ocsp_where = where_of(sec, "ocsp_staple");
	t->ticket_where = where_of(sec, "ticket_key");
	t->priority_where = where_of(sec, "priority");
	t->priority = xstrdup(cfg_getstr(sec, "priority"));
	t->client_ca = get_path(sec, "client_ca");
	t->ticket_key = get_path(sec, "ticket_key");
	t->client_cert = get_keyword(sec, "client_cert", cc_words, CLIENT_CERT_NONE);
	t->client_eku_client = get_keyword(sec, "client_eku", eku_words, 0) == 1;
	t->alpn = cfg_getbool(sec, "alpn");
	if (t->alpn_ids.n == 0) {
		t->alpn_ids.v = xcalloc(1, sizeof(char *));
		t->alpn_ids.v[0] = xstrdup(sch->alpn_id);
		t->alpn_ids.n = 1;
	}
	for (size_t i = 0; i < t->alpn_ids.n; i++) {
		size_t l = strlen(t->alpn_ids.v[i]);
		if (l == 0 || l > 255)
			err_at(where_of(sec, "alpn_ids"), "alpn_ids: protocol ids must be 1-255 bytes");
	}
	if (t->cert.n != t->key.n)
		err_at(t->key_where, "tls \"%s\": %zu cert(s) but %zu key(s); give one key per cert, in the same order",
		       t->name, t->cert.n, t->key.n);
	if (t->ocsp_staple.n > t->cert.n)
		err_at(t->ocsp_where, "tls \"%s\": %zu ocsp_staple response(s) for %zu cert(s); give one per cert, "
		       "in the same order (\"\" for none)", t->name, t->ocsp_staple.n, t->cert.n);
	if (t->client_cert != CLIENT_CERT_NONE && !t->client_ca[0])
		warn_at(where_of(sec, "client_cert"),
			"tls \"%s\": client_cert = %s without client_ca: only pinned peers can ever verify",
			t->name, cc_words[t->client_cert]);
}

static void conv_tls_client(cfg_t *sec, struct conf_tls_client *t)
{
	t->name = xstrdup(cfg_title(sec));
	t->where = where_of(sec, "ca");
	t->cert = get_path(sec, "cert");
	t->key = get_path(sec, "key");
	t->ca = get_path(sec, "ca");
	t->cert_where = where_of(sec, "cert");
	t->key_where = where_of(sec, "key");
	t->ca_where = where_of(sec, "ca");
	t->verify_name = xstrdup(cfg_getstr(sec, "verify_name"));
	t->priority = xstrdup(cfg_getstr(sec, "priority"));
	get_pins(sec, "fingerprint", &t->fingerprint, 0);
	get_pins(sec, "spki", &t->spki, 1);
	get_strlist(sec, "alpn_ids", &t->alpn_ids, 0);
	if (!t->cert[0] != !t->key[0])
		err_at(t->key_where, "tls_client \"%s\": cert and key go together", t->name);
	if (t->verify_name[0]) {
		char norm[DOMAIN_BUFSZ];
		if (domain_normalize(t->verify_name, strlen(t->verify_name), norm, sizeof(norm)) < 0)
			err_at(where_of(sec, "verify_name"), "verify_name: '%s' is not a valid DNS name",
			       t->verify_name);
	}
}

static void conv_peer(cfg_t *sec, struct conf_peer *p)
{
	struct strlist raw;
	p->name = xstrdup(cfg_title(sec));
	p->where = where_of(sec, "relay");
	get_pins(sec, "fingerprint", &p->fingerprint, 0);
	get_pins(sec, "spki", &p->spki, 1);
	get_strlist(sec, "name", &raw, 0);
	p->names.v = raw.n ? xcalloc(raw.n, sizeof(char *)) : NULL;
	p->names.n = 0;
	for (size_t i = 0; i < raw.n; i++) {
		char norm[DOMAIN_BUFSZ];
		if (domain_normalize(raw.v[i], strlen(raw.v[i]), norm, sizeof(norm)) < 0)
			err_at(where_of(sec, "name"), "name: '%s' is not a valid DNS name", raw.v[i]);
		else
			p->names.v[p->names.n++] = xstrdup(norm);
		free(raw.v[i]);
	}
	free(raw.v);
	p->relay = cfg_getbool(sec, "relay");
	if (!p->fingerprint.n && !p->spki.n && !p->names.n)
		err_at(p->where, "peer \"%s\": needs at least one fingerprint, spki or name", p->name);
}

static void resolve_upstream_addr(cfg_t *sec, struct conf_upstream_addr *a, const char *text)
{
	const char *err = NULL;
	char host[DOMAIN_BUFSZ];
	snprintf(a->text, sizeof(a->text), "%s", text);
	if (addr_split_hostport(text, host, sizeof(host), &a->port, &err) < 0) {
		err_at(where_of(sec, "address"), "address '%s': %s", text, err);
		a->host = xstrdup("");
		return;
	}
	a->host = xstrdup(host);
	if (addr_from_literal(host, a->port, &a->addr) == 0)
		return;
	/* A host name: resolved once here, at load time (nginx does the
	 * same); workers never block on DNS. */
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	char port[8];
	snprintf(port, sizeof(port), "%u", a->port);
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || !res) {
		err_at(where_of(sec, "address"), "address '%s': cannot resolve: %s", text,
		       gai_strerror(rc));
		return;
	}
	addr_from_sockaddr(&a->addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
}

static void conv_upstream(cfg_t *sec, struct conf_upstream *u)
{
	static const char *const pp_words[] = { "off", "v1", "v2", NULL };
	u->name = xstrdup(cfg_title(sec));
	u->where = where_of(sec, "address");
	u->naddrs = cfg_size(sec, "address");
	u->addrs = u->naddrs ? xcalloc(u->naddrs, sizeof(*u->addrs)) : NULL;
	for (size_t i = 0; i < u->naddrs; i++)
		resolve_upstream_addr(sec, &u->addrs[i], cfg_getnstr(sec, "address", (unsigned)i));
	if (!u->naddrs)
		err_at(u->where, "upstream \"%s\": address is required", u->name);
	u->tls = get_keyword(sec, "tls", tls_mode_words, TLS_MODE_NONE);
	u->tls_client_name = xstrdup(cfg_getstr(sec, "tls_client"));
	u->xclient = cfg_getbool(sec, "xclient");
	u->forward_id = cfg_getbool(sec, "forward_id");
	u->proxy_protocol = get_keyword(sec, "proxy_protocol", pp_words, PROXY_OUT_OFF);
	u->connect_timeout = get_int(sec, "connect_timeout", 1, 3600);
	u->timeout_reply = get_int(sec, "timeout_reply", 1, 86400);
}

static void conv_listener(cfg_t *sec, struct conf_listener *l)
{
	l->name = xstrdup(cfg_title(sec));
	l->where = where_of(sec, "address");
	l->naddrs = cfg_size(sec, "address");
	l->addrs = l->naddrs ? xcalloc(l->naddrs, sizeof(*l->addrs)) : NULL;
	for (size_t i = 0; i < l->naddrs; i++) {
		const char *text = cfg_getnstr(sec, "address", (unsigned)i), *err = NULL;
		char host[64];
		uint16_t port;
		if (addr_split_hostport(text, host, sizeof(host), &port, &err) < 0)
			err_at(where_of(sec, "address"), "address '%s': %s", text, err);
		else if (addr_from_literal(host, port, &l->addrs[i]) < 0)
			err_at(where_of(sec, "address"),
			       "address '%s': listeners take IPv4 or [IPv6] literals", text);
	}
	if (!l->naddrs)
		err_at(l->where, "listener \"%s\": address is required", l->name);
	l->tls_mode = get_keyword(sec, "tls_mode", tls_mode_words, TLS_MODE_IMPLICIT);
	const char *cc = cfg_getstr(sec, "client_cert");
	l->client_cert = cc[0] ? get_keyword(sec, "client_cert", cc_words, CLIENT_CERT_NONE)
			       : CLIENT_CERT_UNSET;
	l->require_tls = cfg_getbool(sec, "require_tls");
	l->auth = cfg_getbool(sec, "auth");
	l->peers_only = cfg_getbool(sec, "peers_only");
	get_cidrs(sec, "relay_networks", &l->relay_networks);
	l->proxy_protocol = cfg_getbool(sec, "proxy_protocol");
	get_cidrs(sec, "trusted_proxies", &l->trusted_proxies);
	l->max_connections = get_int(sec, "max_connections", 1, 1000000);
	l->max_per_ip = get_int(sec, "max_per_ip", 1, 1000000);
	l->rate_per_ip = get_int(sec, "rate_per_ip", 0, 1000000);
}

/* Listener rules that need the other sections (DESIGN.md §3). */
static void check_listener(cfg_t *sec, struct conf_listener *l, struct conf *c)
{
	const char *tlsname = cfg_getstr(sec, "tls");
	const char *upname = cfg_getstr(sec, "upstream");
	int all_loopback = 1, any_loopback_net = 0;

	if (l->tls_mode != TLS_MODE_NONE) {
		l->tls = conf_find_tls(c, tlsname);
		if (!l->tls)
			err_at(where_of(sec, "tls"), "listener \"%s\": no tls section \"%s\"", l->name,
			       tlsname);
		else if (l->tls->cert.n == 0)
			err_at(l->tls->cert_where, "tls \"%s\": cert is required (used by listener \"%s\")",
			       l->tls->name, l->name);
	}
	if (l->client_cert == CLIENT_CERT_UNSET)
		l->client_cert = l->tls ? l->tls->client_cert : CLIENT_CERT_NONE;

	if (upname[0]) {
		l->upstream = conf_find_upstream(c, upname);
		if (!l->upstream)
			err_at(where_of(sec, "upstream"), "listener \"%s\": no upstream section \"%s\"",
			       l->name, upname);
	} else if (c->nupstreams == 1) {
		l->upstream = &c->upstreams[0];
	} else {
		err_at(l->where, "listener \"%s\": upstream is required (%zu upstream sections)",
		       l->name, c->nupstreams);
	}

	for (size_t i = 0; i < l->naddrs; i++)
		if (!addr_is_loopback(&l->addrs[i]))
			all_loopback = 0;
	if (l->tls_mode == TLS_MODE_NONE && !all_loopback)
		err_at(where_of(sec, "tls_mode"),
		       "listener \"%s\": tls_mode = none is only allowed on loopback addresses", l->name);
	if (l->tls_mode == TLS_MODE_NONE && (l->client_cert != CLIENT_CERT_NONE || l->peers_only))
		err_at(where_of(sec, "tls_mode"),
		       "listener \"%s\": client certificates need TLS (tls_mode = none)", l->name);

	int forced = l->client_cert == CLIENT_CERT_REQUIRE || l->peers_only;
	if (l->tls_mode == TLS_MODE_STARTTLS && forced) {
		if (key_set(sec, "require_tls") && !l->require_tls)
			err_at(where_of(sec, "require_tls"),
			       "listener \"%s\": require_tls = false conflicts with %s", l->name,
			       l->peers_only ? "peers_only" : "client_cert = require");
		l->require_tls = true;
	}
	if (l->peers_only && l->client_cert == CLIENT_CERT_NONE)
		err_at(where_of(sec, "peers_only"),
		       "listener \"%s\": peers_only needs client_cert = optional or require", l->name);
	if (l->tls_mode == TLS_MODE_STARTTLS && l->require_tls && c->schema->mx_warnings)
		for (size_t i = 0; i < l->naddrs; i++)
			if (addr_port(&l->addrs[i]) == 25)
				warn_at(where_of(sec, "require_tls"),
					"listener \"%s\": require_tls = true on port 25: public MX "
					"servers must not require TLS (RFC 3207 section 4)", l->name);
	for (size_t i = 0; i < l->relay_networks.n; i++)
		if (addr_cidr_is_loopback(&l->relay_networks.v[i]))
			any_loopback_net = 1;
	if (any_loopback_net && !all_loopback)
		warn_at(where_of(sec, "relay_networks"),
			"listener \"%s\": relay_networks holds a loopback prefix on a non-loopback "
			"listener (a local proxy would turn every client into a relay)", l->name);
}

static void check_upstream_tls(cfg_t *sec, struct conf_upstream *u, struct conf *c)
{
	if (u->tls_client_name[0]) {
		for (size_t i = 0; i < c->ntls_clients; i++)
			if (strcmp(c->tls_clients[i].name, u->tls_client_name) == 0)
				u->tls_client = &c->tls_clients[i];
		if (!u->tls_client) {
			err_at(where_of(sec, "tls_client"), "upstream \"%s\": no tls_client section \"%s\"",
			       u->name, u->tls_client_name);
			return;
		}
	}
	if (u->tls == TLS_MODE_NONE)
		return;
	const struct conf_tls_client *tc = u->tls_client;
	int pinned = tc && (tc->fingerprint.n || tc->spki.n);
	int named = tc && tc->verify_name[0];
	if (pinned || named)
		return;
	for (size_t i = 0; i < u->naddrs; i++) {
		struct mg_addr tmp;
		if (addr_from_literal(u->addrs[i].host, 1, &tmp) == 0)
			err_at(where_of(sec, tc ? "tls_client" : "tls"),
			       "upstream \"%s\": TLS to the IP literal %s needs verify_name or pins "
			       "in a tls_client section", u->name, u->addrs[i].host);
	}
}

/* log_target: syslog | stderr | an absolute path, a file (DESIGN.md §3). */
static int get_log_target(cfg_t *cfg, struct conf *c)
{
	static const char *const tgt_words[] = { "syslog", "stderr", NULL };
	const char *v = cfg_getstr(cfg, "log_target");
	int k = conf_parse_keyword(v, tgt_words);
	c->log_target_where = where_of(cfg, "log_target");
	c->log_file = xstrdup(k < 0 && v[0] == '/' ? v : "");
	if (k >= 0)
		return k;
	if (v[0] == '/')
		return LOG_TARGET_FILE;
	err_at(c->log_target_where, "log_target: bad value '%s' (expected syslog | stderr | "
	       "/path/to/file)", v);
	return LOG_TARGET_SYSLOG;
}

static void conv_top(cfg_t *cfg, struct conf *c)
{
	static const char *const lvl_words[] = { "error", "warning", "notice", "info", "debug", NULL };
	static const char *const fmt_words[] = { "text", "json", NULL };
	const char *hn = cfg_getstr(cfg, "hostname");
	char buf[256];

	if (hn[0]) {
		c->hostname = xstrdup(hn);
	} else {
		if (gethostname(buf, sizeof(buf)) < 0)
			snprintf(buf, sizeof(buf), "localhost");
		buf[sizeof(buf) - 1] = '\0';
		c->hostname = xstrdup(buf);
	}
	if (domain_normalize(c->hostname, strlen(c->hostname), buf, sizeof(buf)) < 0)
		err_at(where_of(cfg, "hostname"), "hostname: '%s' is not a valid host name", c->hostname);
	else if (!domain_has_dot(buf))
		err_at(where_of(cfg, "hostname"), "hostname: '%s' has no dot; set a fully qualified "
		       "name (it appears in greetings and Received headers)", c->hostname);
	c->user = xstrdup(cfg_getstr(cfg, "user"));
	c->group = xstrdup(cfg_getstr(cfg, "group"));
	c->pidfile = get_path(cfg, "pidfile");
	c->workers = get_int(cfg, "workers", 0, ADMISSION_WORKERS_MAX);
	c->reuseport = cfg_getbool(cfg, "reuseport");
	c->log_level = get_keyword(cfg, "log_level", lvl_words, LOG_LVL_INFO);
	c->log_target = get_log_target(cfg, c);
	c->log_format = get_keyword(cfg, "log_format", fmt_words, LOG_FORMAT_TEXT);
	c->metrics = xstrdup(cfg_getstr(cfg, "metrics"));
	if (c->metrics[0]) {
		char host[64];
		uint16_t port;
		const char *err = NULL;
		struct mg_addr tmp;
		if (addr_split_hostport(c->metrics, host, sizeof(host), &port, &err) < 0 ||
		    addr_from_literal(host, port, &tmp) < 0)
			err_at(where_of(cfg, "metrics"), "metrics: '%s' is not IP:PORT", c->metrics);
	}
	c->shutdown_timeout = get_int(cfg, "shutdown_timeout", 0, 86400);
	c->timeout_handshake = get_int(cfg, "timeout_handshake", 1, 3600);
	c->max_errors = get_int(cfg, "max_errors", 1, 1000);
}

static void *field(void *base, size_t offset)
{
	return (char *)base + offset;
}

/* The schema's keys into the daemon's struct. */
static void conv_keys(cfg_t *cfg, struct conf *c)
{
	const struct conf_schema *sch = c->schema;
	c->daemon = xcalloc(1, sch->size);
	for (const struct conf_key *k = sch->keys; k->name; k++) {
		void *f = field(c->daemon, k->offset);
		switch (k->type) {
		case CK_INT:
			*(int *)f = get_int(cfg, k->name, k->min, k->max);
			break;
		case CK_U64: {
			long v = cfg_getint(cfg, k->name);
			if (v < k->min || v > k->max) {
				err_at(where_of(cfg, k->name), "%s: %ld out of range (%ld-%ld)", k->name, v,
				       k->min, k->max);
				v = v < k->min ? k->min : k->max;
			}
			*(uint64_t *)f = (uint64_t)v;
			break;
		}
		case CK_BOOL:
			*(bool *)f = cfg_getbool(cfg, k->name);
			break;
		case CK_STR:
			*(char **)f = xstrdup(cfg_getstr(cfg, k->name));
			break;
		case CK_PATH:
			*(char **)f = get_path(cfg, k->name);
			break;
		case CK_STRLIST:
			get_strlist(cfg, k->name, f, 0);
			break;
		case CK_KEYWORD:
			*(int *)f = get_keyword(cfg, k->name, k->words, 0);
			break;
		}
		if (k->where != CK_NO_WHERE)
			*(struct conf_where *)field(c->daemon, k->where) = where_of(cfg, k->name);
	}
	if (sch->check)
		sch->check(c, c->daemon);
}

void conf_key_error(const char *key, const char *fmt, ...)
{
	va_list ap;
	struct conf_where w = where_of(pctx->top, key);
	va_start(ap, fmt);
	diag_verror(pctx->diag, w.file, w.line, fmt, ap);
	va_end(ap);
}

void conf_key_warn(const char *key, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	warn_at(where_of(pctx->top, key), "%s", msg);
}

static void convert(cfg_t *cfg, struct conf *c)
{
	pctx->top = cfg;
	conv_top(cfg, c);
	conv_keys(cfg, c);

	c->ntls = cfg_size(cfg, "tls");
	c->tls = c->ntls ? xcalloc(c->ntls, sizeof(*c->tls)) : NULL;
	for (size_t i = 0; i < c->ntls; i++)
		conv_tls(cfg_getnsec(cfg, "tls", (unsigned)i), &c->tls[i], c->schema);
	c->ntls_clients = cfg_size(cfg, "tls_client");
	c->tls_clients = c->ntls_clients ? xcalloc(c->ntls_clients, sizeof(*c->tls_clients)) : NULL;
	for (size_t i = 0; i < c->ntls_clients; i++)
		conv_tls_client(cfg_getnsec(cfg, "tls_client", (unsigned)i), &c->tls_clients[i]);
	c->npeers = cfg_size(cfg, "peer");
	c->peers = c->npeers ? xcalloc(c->npeers, sizeof(*c->peers)) : NULL;
	for (size_t i = 0; i < c->npeers; i++)
		conv_peer(cfg_getnsec(cfg, "peer", (unsigned)i), &c->peers[i]);
	c->nupstreams = cfg_size(cfg, "upstream");
	c->upstreams = c->nupstreams ? xcalloc(c->nupstreams, sizeof(*c->upstreams)) : NULL;
	for (size_t i = 0; i < c->nupstreams; i++) {
		cfg_t *sec = cfg_getnsec(cfg, "upstream", (unsigned)i);
		conv_upstream(sec, &c->upstreams[i]);
		c->upstreams[i].index = (int)i;
		check_upstream_tls(sec, &c->upstreams[i], c);
	}
	c->nlisteners = cfg_size(cfg, "listener");
	c->listeners = c->nlisteners ? xcalloc(c->nlisteners, sizeof(*c->listeners)) : NULL;
	for (size_t i = 0; i < c->nlisteners; i++) {
		cfg_t *sec = cfg_getnsec(cfg, "listener", (unsigned)i);
		conv_listener(sec, &c->listeners[i]);
		c->listeners[i].index = (int)i;
		check_listener(sec, &c->listeners[i], c);
	}
	if (c->nlisteners == 0)
		diag_error(pctx->diag, c->path, 0, "no listener section: nothing to serve");
	if (c->nlisteners > ADMISSION_CONF_LISTENERS_MAX)
		err_at(c->listeners[ADMISSION_CONF_LISTENERS_MAX].where,
		       "listener \"%s\": more than %d listener sections (the shared connection counts "
		       "tell apart at most that many)", c->listeners[ADMISSION_CONF_LISTENERS_MAX].name,
		       ADMISSION_CONF_LISTENERS_MAX);
}

struct conf *conf_load(const char *path, const struct conf_schema *schema, struct diag *d)
{
	struct parse_ctx ctx;
	struct conf *c = xcalloc(1, sizeof(*c));
	cfg_opt_t *opts = build_opts(schema);
	int errors_before = d->errors;

	memset(&ctx, 0, sizeof(ctx));
	ctx.conf = c;
	ctx.diag = d;
	pctx = &ctx;
	c->schema = schema;
	c->path = xstrdup(path);
	const char *slash = strrchr(path, '/');
	c->dir = slash ? xstrndup(path, (size_t)(slash - path == 0 ? 1 : slash - path)) : xstrdup("");

	set_recorders(opts);
	cfg_t *cfg = cfg_init(opts, CFGF_NONE);
	cfg_set_error_function(cfg, conf_errfunc);
	int parsed = 0;
	if (parse_file(cfg, path, c->path, false) == 0) {
		convert(cfg, c);
		parsed = 1;
	} else if (d->errors == errors_before) {
		diag_error(d, path, 0, "cannot parse");
	}
	cfg_free(cfg);
	free(opts);
	free(ctx.locs);
	pctx = NULL;
	if (!parsed) {
		conf_free(&c);
		return NULL;
	}
	return c;
}

static void strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* What conv_keys() allocated. */
static void free_keys(struct conf *c)
{
	if (!c->daemon)
		return;
	for (const struct conf_key *k = c->schema->keys; k->name; k++) {
		void *f = field(c->daemon, k->offset);
		if (k->type == CK_STR || k->type == CK_PATH)
			free(*(char **)f);
		else if (k->type == CK_STRLIST)
			strlist_free(f);
	}
	free(c->daemon);
}

void conf_free(struct conf **cp)
{
	struct conf *c = *cp;
	if (!c)
		return;
	for (size_t i = 0; i < c->ntls; i++) {
		struct conf_tls *t = &c->tls[i];
		free(t->name);
		strlist_free(&t->cert);
		strlist_free(&t->key);
		strlist_free(&t->crl);
		strlist_free(&t->alpn_ids);
		free(t->priority);
		free(t->client_ca);
		strlist_free(&t->ocsp_staple);
		free(t->ticket_key);
	}
	free(c->tls);
	for (size_t i = 0; i < c->ntls_clients; i++) {
		struct conf_tls_client *t = &c->tls_clients[i];
		free(t->name);
		free(t->cert);
		free(t->key);
		free(t->ca);
		free(t->verify_name);
		free(t->priority);
		free(t->fingerprint.v);
		free(t->spki.v);
		strlist_free(&t->alpn_ids);
	}
	free(c->tls_clients);
	for (size_t i = 0; i < c->npeers; i++) {
		free(c->peers[i].name);
		free(c->peers[i].fingerprint.v);
		free(c->peers[i].spki.v);
		strlist_free(&c->peers[i].names);
	}
	free(c->peers);
	for (size_t i = 0; i < c->nupstreams; i++) {
		struct conf_upstream *u = &c->upstreams[i];
		free(u->name);
		for (size_t j = 0; j < u->naddrs; j++)
			free(u->addrs[j].host);
		free(u->addrs);
		free(u->tls_client_name);
	}
	free(c->upstreams);
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct conf_listener *l = &c->listeners[i];
		free(l->name);
		free(l->addrs);
		free(l->relay_networks.v);
		free(l->trusted_proxies.v);
	}
	free(c->listeners);
	free_keys(c);
	free(c->path);
	free(c->dir);
	free(c->hostname);
	free(c->user);
	free(c->group);
	free(c->pidfile);
	free(c->log_file);
	free(c->metrics);
	strlist_free(&c->files_);
	free(c);
	*cp = NULL;
}

const struct conf_tls *conf_find_tls(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->ntls; i++)
		if (strcmp(c->tls[i].name, name) == 0)
			return &c->tls[i];
	return NULL;
}

const struct conf_upstream *conf_find_upstream(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->nupstreams; i++)
		if (strcmp(c->upstreams[i].name, name) == 0)
			return &c->upstreams[i];
	return NULL;
}

const char *conf_lib_version(void)
{
	return confuse_version;
}

void conf_default_path(const struct conf_schema *schema, char *out, size_t sz)
{
	snprintf(out, sz, "%s/mailgate/%s.conf", SYSCONFDIR, schema->name);
}
