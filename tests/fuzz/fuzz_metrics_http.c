/* fuzz_metrics_http: the metrics endpoint's request parser and the
 * exposition's escaping. The parser must decide within the buffer (never
 * "more" once it is full), answer only with its statuses, and say 200 only
 * for GET or HEAD of /metrics; every prefix needs more or already has the
 * final answer's class. The input is also rendered as a certificate name:
 * the exposition stays valid UTF-8 and line-structured. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parse(const char *p, size_t n, size_t cap)
{
	struct http_req r;
	int st = http_req_parse(p, n, cap, &r);
	if (st != 0 && st != 200 && st != 400 && st != 404 && st != 405 && st != 431 && st != 505)
		abort();
	if (st == 0 && n >= cap)
		abort();
	if (st == 200 && strncmp(p, "GET /metrics", 12) != 0 && strncmp(p, "HEAD /metrics", 13) != 0)
		abort();
	if (st == 200 && r.head != (p[0] == 'H'))
		abort();
	char head[256];
	if (st && !http_resp_head(head, sizeof(head), st, n))
		abort();
}

static bool utf8_ok(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t len = p[i] < 0x80 ? 1 : (p[i] & 0xe0) == 0xc0 ? 2 : (p[i] & 0xf0) == 0xe0 ? 3
			   : (p[i] & 0xf8) == 0xf0 ? 4 : 0;
		if (!len || i + len > n)
			return false;
		for (size_t k = 1; k < len; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

static void check_render(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		static struct conf c;
		c.metrics = "127.0.0.1:9465";
		if (metrics_init(&c) < 0)
			abort();
		ready = 1;
	}
	char *name = malloc(size + 1);
	memcpy(name, data, size);
	name[size] = '\0';
	struct metrics_cert cert = { name, 0 };
	static char out[64 * 1024];
	struct strbuf b;
	sb_init(&b, out, sizeof(out));
	metrics_render(&b, &cert, 1, 0);
	if (sb_ok(&b)) {
		if (!utf8_ok((const unsigned char *)out, sb_len(&b)))
			abort();
		for (const char *p = out; *p; p = strchr(p, '\n') + 1)
			if (strncmp(p, "# ", 2) && strncmp(p, "mailgate_", 9))
				abort();	/* a raw newline escaped the label */
	}
	free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	check_parse(p, size, 4096);
	if (size)
		check_parse(p, size, size);	/* the buffer is exactly full */
	check_render(data, size);
	return 0;
}
