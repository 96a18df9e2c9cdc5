/* http: the least of HTTP/1.x a metrics endpoint needs (RFC 9110/9112),
 * pure - no I/O, no state: the decision on a request received so far,
 * and the head of the response. One request per connection, answered
 * with "Connection: close"; request bodies are never read. Fuzzed
 * (tests/fuzz/fuzz_metrics_http.c) and unit-tested byte by byte. */
#ifndef MG_HTTP_H
#define MG_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* The one resource served. */
#define HTTP_METRICS_PATH "/metrics"

struct http_req {
	bool head;	/* HEAD: the response has no body */
};

/* Looks at the bytes of a request received so far (buf, len), in a
 * receive buffer of cap bytes. Returns 0 when more bytes are needed
 * (never once len >= cap), else the status to answer:
 *   200  GET or HEAD of /metrics (a query string is ignored), HTTP/1.0 or 1.1
 *   400  anything that is not a request line and header fields
 *   404  another path
 *   405  another method (answer with "Allow: GET, HEAD")
 *   431  no end of the header section within cap bytes
 *   505  another HTTP version
 * A malformed request line is answered as soon as it is complete; every
 * other decision waits for the end of the header section. Lines end in
 * CRLF or a bare LF; obsolete line folding is a 400. */
int http_req_parse(const char *buf, size_t len, size_t cap, struct http_req *r);

/* The response head for status (a code http_req_parse returns, or 500)
 * with a body of body_len bytes (Content-Length, also for HEAD), into
 * out; returns its length, 0 if it does not fit. */
size_t http_resp_head(char *out, size_t sz, int status, size_t body_len);
/* The short text body of an error status ("Not Found\n"). */
const char *http_status_text(int status);

#endif
