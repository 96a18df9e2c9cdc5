/* metrics_http: see metrics_http.h. A scrape's life: accepted (maybe
 * evicting the oldest scrape still silent), reading until http.c decides
 * (the conn's input queue is the bounded request buffer: once it holds
 * METRICS_HTTP_REQ_MAX bytes without the end of the header section,
 * that is a 431), then the response queued whole and, once it is out,
 * freed (conn_free closes with a lingering close, so the response is
 * never destroyed by a reset). Every path ends in scrape_free(), the
 * last statement of the callback that calls it. */
#include "metrics_http.h"
#include "conn.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "strbuf.h"
#include "timer.h"
#include "xmem.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SCRAPE_MAGIC 0x4d534352u
#define RESP_HEAD_MAX 256

struct scrape {
	uint32_t magic;
	struct metrics_http *m;
	struct conn *c;
	struct mg_timer *deadline;
	struct scrape *prev, *next;	/* oldest first */
	bool answered;
	char ip[48];
};

struct metrics_http {
	int fd;
	struct listener_watch *w;
	metrics_http_body body;
	void *arg;
	struct scrape *head, *tail;
	unsigned n;
};

int metrics_http_bind(const char *addr, char *err, size_t errsz)
{
	char host[64];
	uint16_t port;
	const char *why = NULL;
	struct mg_addr a;
	if (addr_split_hostport(addr, host, sizeof(host), &port, &why) < 0 ||
	    addr_from_literal(host, port, &a) < 0) {
		snprintf(err, errsz, "metrics: '%s' is not IP:PORT", addr);
		return -1;
	}
	int fd = listener_bind(&a, false, &why);
	if (fd < 0)
		snprintf(err, errsz, "metrics: cannot bind %s: %s", addr, why);
	return fd;
}

static void scrape_free_as(struct scrape *s, bool inherited)
{
	struct metrics_http *m = s->m;
	if (s->prev)
		s->prev->next = s->next;
	else
		m->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		m->tail = s->prev;
	m->n--;
	mg_timer_stop(&s->deadline);
	if (inherited)
		conn_abandon(&s->c);
	else
		conn_free(&s->c);
	s->magic = 0;
	free(s);
}

static void scrape_free(struct scrape *s)
{
	scrape_free_as(s, false);
}

static struct scrape *scrape_of(void *arg)
{
	struct scrape *s = arg;
	if (s->magic != SCRAPE_MAGIC)
		abort();
	return s;
}

/* The response, queued whole; the scrape is freed once it is out. */
static void answer(struct scrape *s, int status, bool head)
{
	char hd[RESP_HEAD_MAX], text[64];
	size_t len = 0;
	char *body = status == 200 ? s->m->body(s->m->arg, &len) : NULL;
	const char *out = body;
	if (status == 200 && !body)
		status = 500;
	if (status != 200) {
		struct strbuf b;
		sb_init(&b, text, sizeof(text));
		sb_adds(&b, http_status_text(status));
		sb_addc(&b, '\n');
		out = sb_str(&b);
		len = sb_len(&b);
	}
	size_t hl = http_resp_head(hd, sizeof(hd), status, len);
	log_debug("metrics: scrape from %s: %d (%zu bytes)", s->ip, status, len);
	s->answered = true;
	conn_read_stop(s->c);
	conn_in_clear(s->c);
	conn_cork(s->c);
	conn_write(s->c, hd, hl);
	if (!head)
		conn_write(s->c, out, len);
	conn_uncork(s->c);
	free(body);
	conn_notify_drained(s->c);
}

static void scrape_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct scrape *s = scrape_of(arg);
	struct http_req req;
	switch (ev) {
	case CONN_EV_READ: {
		int st = http_req_parse(conn_in_data(c), conn_in_len(c), METRICS_HTTP_REQ_MAX, &req);
		if (st)
			answer(s, st, req.head);
		return;
	}
	case CONN_EV_HANDSHAKE:
		return;
	case CONN_EV_DRAINED:	/* the response is out */
	case CONN_EV_EOF:	/* gone before its request was complete */
	case CONN_EV_ERROR:
	case CONN_EV_TIMEOUT:
		scrape_free(s);
		return;
	}
}

static void deadline_cb(void *arg)
{
	struct scrape *s = scrape_of(arg);
	log_debug("metrics: scrape from %s: closed after %.0f s", s->ip, METRICS_HTTP_DEADLINE);
	scrape_free(s);
}

/* At the cap: the oldest scrape that has not sent its request makes room
 * (a scraper holding connections open cannot lock the others out);
 * false when every one is being answered. */
static bool make_room(struct metrics_http *m)
{
	for (struct scrape *s = m->head; s; s = s->next)
		if (!s->answered) {
			log_debug("metrics: scrape from %s evicted (%u open)", s->ip, m->n);
			scrape_free(s);
			return true;
		}
	return false;
}

static void on_accept(void *arg, int fd, const struct mg_addr *peer, const struct mg_addr *local)
{
	struct metrics_http *m = arg;
	(void)local;
	if (m->n >= METRICS_HTTP_SCRAPES_MAX && !make_room(m)) {
		close(fd);
		return;
	}
	struct scrape *s = xcalloc(1, sizeof(*s));
	s->magic = SCRAPE_MAGIC;
	s->m = m;
	addr_ip_str(peer, s->ip, sizeof(s->ip));
	s->prev = m->tail;
	if (m->tail)
		m->tail->next = s;
	else
		m->head = s;
	m->tail = s;
	m->n++;
	s->c = conn_new(fd, METRICS_HTTP_REQ_MAX, scrape_cb, s);
	s->deadline = mg_timer_start(METRICS_HTTP_DEADLINE, 0, deadline_cb, s);
	conn_read_start(s->c);
}

struct metrics_http *metrics_http_start(int fd, metrics_http_body body, void *arg)
{
	struct metrics_http *m = xcalloc(1, sizeof(*m));
	m->fd = fd;
	m->body = body;
	m->arg = arg;
	m->w = listener_watch_new(fd, on_accept, m);
	return m;
}

void metrics_http_stop(struct metrics_http *m)
{
	if (!m)
		return;
	listener_watch_free(&m->w);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

void metrics_http_abandon(struct metrics_http **mp)
{
	struct metrics_http *m = *mp;
	if (!m)
		return;
	metrics_http_stop(m);
	while (m->head)
		scrape_free_as(m->head, true);
	free(m);
	*mp = NULL;
}

void metrics_http_free(struct metrics_http **mp)
{
	struct metrics_http *m = *mp;
	if (!m)
		return;
	metrics_http_stop(m);
	while (m->head)
		scrape_free(m->head);
	free(m);
	*mp = NULL;
}
