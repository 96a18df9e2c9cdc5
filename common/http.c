/* http: see http.h. The request line is checked as a prefix while it
 * arrives (a TLS ClientHello or other binary sent to the endpoint is a
 * 400 at its first byte, not a wait for a line end that never comes);
 * header fields are checked line by line and otherwise ignored. */
#include "http.h"
#include "strbuf.h"

#include <string.h>

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_vchar(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

struct line {
	const char *method, *target;
	size_t method_len, target_len;
	char major, minor;
};

/* The request line p[0..n) without its line end; complete: n is all of
 * it. 400 on a byte the grammar does not allow there (or a complete line
 * that stops short), else 0 (*out filled once complete). */
static int check_line(const char *p, size_t n, bool complete, struct line *out)
{
	static const char version[] = "HTTP/d.d";
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == n)
		return complete ? 400 : 0;
	if (i == 0 || p[i] != ' ')
		return 400;
	out->method = p;
	out->method_len = i++;
	size_t t0 = i;
	while (i < n && is_vchar((unsigned char)p[i]))
		i++;
	if (i == n)
		return complete ? 400 : 0;
	if (i == t0 || p[i] != ' ')
		return 400;
	out->target = p + t0;
	out->target_len = i++ - t0;
	size_t v0 = i;
	for (size_t k = 0; i < n; i++, k++) {
		unsigned char c = (unsigned char)p[i];
		if (k >= sizeof(version) - 1 || (version[k] == 'd' ? !is_digit(c) : c != version[k]))
			return 400;
	}
	if (i - v0 < sizeof(version) - 1)
		return complete ? 400 : 0;
	out->major = p[v0 + 5];
	out->minor = p[v0 + 7];
	return 0;
}

/* field-name ":" field-value, RFC 9112 §5: no space before the colon;
 * values of SP, HTAB, VCHAR and obs-text. */
static bool header_ok(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ':')
		return false;
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c != ' ' && c != '\t' && !is_vchar(c) && c < 0x80)
			return false;
	}
	return true;
}

/* The line starting at p (n bytes left): its length without the line
 * end into *ll, the offset after the line end returned; 0 if no LF yet. */
static size_t next_line(const char *p, size_t n, size_t *ll)
{
	const char *lf = memchr(p, '\n', n);
	if (!lf)
		return 0;
	*ll = (size_t)(lf - p);
	if (*ll && p[*ll - 1] == '\r')
		(*ll)--;
	return (size_t)(lf - p) + 1;
}

static int decide(const struct line *l, struct http_req *r)
{
	if (l->major != '1' || l->minor > '1')
		return 505;
	size_t path = l->target_len;
	const char *q = memchr(l->target, '?', l->target_len);
	if (q)
		path = (size_t)(q - l->target);
	if (path != sizeof(HTTP_METRICS_PATH) - 1 || memcmp(l->target, HTTP_METRICS_PATH, path) != 0)
		return 404;
	if (l->method_len == 3 && !memcmp(l->method, "GET", 3))
		return 200;
	if (l->method_len == 4 && !memcmp(l->method, "HEAD", 4)) {
		r->head = true;
		return 200;
	}
	return 405;
}

int http_req_parse(const char *buf, size_t len, size_t cap, struct http_req *r)
{
	struct line l;
	size_t ll, pos = next_line(buf, len, &ll);
	r->head = false;
	if (!pos) {
		size_t n = len && buf[len - 1] == '\r' ? len - 1 : len;	/* its LF may follow */
		if (check_line(buf, n, false, &l))
			return 400;
		return len >= cap ? 431 : 0;
	}
	if (check_line(buf, ll, true, &l))
		return 400;
	for (;;) {
		size_t used = next_line(buf + pos, len - pos, &ll);
		if (!used)
			return len >= cap ? 431 : 0;
		if (ll == 0)
			return decide(&l, r);
		if (buf[pos] == ' ' || buf[pos] == '\t' || !header_ok(buf + pos, ll))
			return 400;	/* obs-fold (RFC 9112 §5.2) or not a field line */
		pos += used;
	}
}

const char *http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 505: return "HTTP Version Not Supported";
	default: return "Internal Server Error";
	}
}

size_t http_resp_head(char *out, size_t sz, int status, size_t body_len)
{
	struct strbuf b;
	sb_init(&b, out, sz);
	sb_adds(&b, "HTTP/1.1 ");
	sb_addu(&b, (unsigned long long)(status == 200 || status == 400 || status == 404 ||
					 status == 405 || status == 431 || status == 505 ? status : 500));
	sb_addc(&b, ' ');
	sb_adds(&b, http_status_text(status));
	sb_adds(&b, status == 200 ? "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
				  : "\r\nContent-Type: text/plain; charset=utf-8\r\n");
	if (status == 405)
		sb_adds(&b, "Allow: GET, HEAD\r\n");
	sb_adds(&b, "Content-Length: ");
	sb_addu(&b, body_len);
	sb_adds(&b, "\r\nConnection: close\r\n\r\n");
	return sb_ok(&b) ? sb_len(&b) : 0;
}
