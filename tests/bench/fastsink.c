/* fastsink: the benchmark's SMTP backend - a minimal, fast smtp-sink.
 *
 * One thread, epoll, non-blocking sockets, any number of connections. It
 * answers 220 on connect; EHLO (PIPELINING, SIZE, 8BITMIME), HELO, MAIL,
 * RCPT, RSET, NOOP with 250; DATA with 354, then reads the message in big
 * chunks (READ_CHUNK) and finds the CRLF.CRLF that ends it with memmem,
 * across read boundaries too, and answers 250; QUIT with 221 and a close;
 * any other command with 250, a line that is not printable ASCII with 500.
 * Pipelined commands are answered in order. Nothing is stored: it counts
 * connections, messages and message octets (the end-of-data dot line not
 * included), answers "XSTATS" with them (for the bench's sanity check) and
 * prints them on exit (SIGTERM, SIGINT).
 *
 * Usage: fastsink [--addr A] [--port P]   (port 0 or none: any free port)
 * Prints "PORT n" on stdout once it listens. Postfix's smtp-sink reads line
 * by line through VSTREAM and saturated its core before the servers under
 * test did; this one should not. Not a product: a benchmark instrument. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* memmem, accept4 (config.h may define it already) */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)	/* one read(); at least 64 KiB */
#define LINE_MAX_LEN 4096	/* a command line (RFC 5321: 512); longer: 500 and close */
#define MAX_EVENTS 256
#define BACKLOG 4096

static const char EOD[] = "\r\n.\r\n";

struct conn {
	int fd;
	int data;		/* in DATA: reading the message */
	int closing;		/* close once the output is written */
	char tail[4];		/* DATA: the last octets seen (at most 4) */
	size_t tlen;
	uint64_t msg_bytes;	/* DATA: octets of this message so far */
	char line[LINE_MAX_LEN];	/* an incomplete command line */
	size_t llen;
	char *out;		/* replies not yet written */
	size_t olen, ocap, ooff;
	struct conn *prev, *next;	/* all connections, freed on exit */
};

static struct {
	uint64_t conns, messages, bytes;
} st;
static struct conn *conns;
static volatile sig_atomic_t stop_sig;
static int ep;
static char rbuf[READ_CHUNK];

static void on_signal(int sig)
{
	stop_sig = sig;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void reply(struct conn *c, const char *s, size_t n)
{
	if (c->olen + n > c->ocap) {
		size_t cap = c->ocap ? c->ocap : 1024;
		while (cap < c->olen + n)
			cap *= 2;
		char *p = realloc(c->out, cap);
		if (!p)
			die("realloc");
		c->out = p;
		c->ocap = cap;
	}
	memcpy(c->out + c->olen, s, n);
	c->olen += n;
}

#define REPLY(c, lit) reply((c), lit, sizeof(lit) - 1)

static int verb_is(const char *l, size_t n, const char *v)
{
	size_t k = strlen(v);
	if (n < k || strncasecmp(l, v, k) != 0)
		return 0;
	return n == k || l[k] == ' ' || l[k] == ':';
}

/* One command line (CRLF or LF stripped). */
static void command(struct conn *c, const char *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)l[i] < 0x20 || (unsigned char)l[i] > 0x7e) {
			REPLY(c, "500 5.5.2 Garbage\r\n");
			return;
		}
	if (verb_is(l, n, "EHLO"))
		REPLY(c, "250-fastsink\r\n250-PIPELINING\r\n250-SIZE\r\n250 8BITMIME\r\n");
	else if (verb_is(l, n, "HELO"))
		REPLY(c, "250 fastsink\r\n");
	else if (verb_is(l, n, "DATA")) {
		REPLY(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		c->data = 1;
		memcpy(c->tail, "\r\n", 2);	/* the DATA line's CRLF: "." at once ends it */
		c->tlen = 2;
		c->msg_bytes = 0;
	} else if (verb_is(l, n, "QUIT")) {
		REPLY(c, "221 2.0.0 Bye\r\n");
		c->closing = 1;
	} else if (verb_is(l, n, "XSTATS")) {
		char b[160];
		snprintf(b, sizeof(b), "250 connections=%llu messages=%llu bytes=%llu\r\n",
			 (unsigned long long)st.conns, (unsigned long long)st.messages,
			 (unsigned long long)st.bytes);	/* fits: 3 x 20 digits */
		reply(c, b, strlen(b));
	} else if (n == 0)
		REPLY(c, "500 5.5.2 Empty command\r\n");
	else	/* MAIL, RCPT, RSET, NOOP and anything else */
		REPLY(c, "250 2.0.0 Ok\r\n");
}

/* DATA: consume message octets from p[0..n); returns how many were the
 * message (terminator included) and sets *end when CRLF.CRLF was found. */
static size_t data_scan(struct conn *c, const char *p, size_t n, int *end)
{
	char joint[8];
	size_t head = n < 4 ? n : 4, used;
	const char *hit;
	*end = 0;
	/* a terminator straddling the previous read and this one */
	memcpy(joint, c->tail, c->tlen);
	memcpy(joint + c->tlen, p, head);
	hit = memmem(joint, c->tlen + head, EOD, 5);
	if (hit) {
		used = (size_t)(hit - joint) + 5 - c->tlen;
		*end = 1;
	} else if ((hit = memmem(p, n, EOD, 5))) {
		used = (size_t)(hit - p) + 5;
		*end = 1;
	} else {
		used = n;
	}
	/* keep the last 4 octets of everything seen so far */
	if (used >= 4) {
		memcpy(c->tail, p + used - 4, 4);
		c->tlen = 4;
	} else {
		size_t keep = c->tlen + used > 4 ? 4 - used : c->tlen;
		memmove(c->tail, c->tail + c->tlen - keep, keep);
		memcpy(c->tail + keep, p, used);
		c->tlen = keep + used;
	}
	c->msg_bytes += used;
	return used;
}

static void input(struct conn *c, const char *p, size_t n)
{
	while (n > 0 && !c->closing) {
		if (c->data) {
			int end;
			size_t k = data_scan(c, p, n, &end);
			p += k;
			n -= k;
			if (end) {
				/* the message: everything before the final ".\r\n" */
				st.bytes += c->msg_bytes - 3;
				st.messages++;
				c->data = 0;
				REPLY(c, "250 2.0.0 Ok: queued\r\n");
			}
			continue;
		}
		const char *nl = memchr(p, '\n', n);
		size_t k = nl ? (size_t)(nl - p) + 1 : n;
		if (c->llen + k > LINE_MAX_LEN) {
			REPLY(c, "500 5.5.2 Line too long\r\n");
			c->closing = 1;
			return;
		}
		memcpy(c->line + c->llen, p, k);
		c->llen += k;
		p += k;
		n -= k;
		if (!nl)
			return;
		size_t ln = c->llen - 1;
		if (ln > 0 && c->line[ln - 1] == '\r')
			ln--;
		c->llen = 0;
		command(c, c->line, ln);
	}
}

static void conn_free(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	free(c->out);
	free(c);
}

/* Write what is queued; returns 0 when all is out, 1 when the socket is
 * full (wait for EPOLLOUT), -1 on error. */
static int flush(struct conn *c)
{
	while (c->ooff < c->olen) {
		ssize_t w = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
		}
		c->ooff += (size_t)w;
	}
	c->olen = c->ooff = 0;
	return 0;
}

static void watch(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl");
}

/* Flush, then read on (EPOLLIN) or wait until the output drains (EPOLLOUT,
 * no reading meanwhile: a flood of pipelined commands cannot grow the
 * output without bound). Returns 0 when the connection was closed. */
static int settle(struct conn *c, int was_out)
{
	int r = flush(c);
	if (r < 0 || (r == 0 && c->closing)) {
		conn_free(c);
		return 0;
	}
	if (r == 1 && !was_out)
		watch(c, EPOLLOUT);
	else if (r == 0 && was_out)
		watch(c, EPOLLIN);
	return 1;
}

static void on_readable(struct conn *c)
{
	for (int i = 0; i < 16; i++) {	/* then let the others have a turn */
		ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			conn_free(c);
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		input(c, rbuf, (size_t)r);
		if (c->olen || c->closing) {
			if (!settle(c, 0) || c->olen)
				return;	/* closed, or waiting for EPOLLOUT */
		}
		if ((size_t)r < sizeof(rbuf))
			break;
	}
}

static void on_accept(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				perror("fastsink: accept");	/* EMFILE etc.: try again later */
			return;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c)
			die("calloc");
		c->fd = fd;
		c->next = conns;
		if (conns)
			conns->prev = c;
		conns = c;
		st.conns++;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
		REPLY(c, "220 fastsink ESMTP\r\n");
		settle(c, 0);
	}
}

static long arg_num(const char *s, long max)
{
	char *e;
	long v = strtol(s, &e, 10);
	if (*s == '\0' || *e != '\0' || v < 0 || v > max) {
		fprintf(stderr, "fastsink: bad number %s\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1";
	long port = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--addr") && i + 1 < argc)
			addr = argv[++i];
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = arg_num(argv[++i], 65535);
		else {
			fprintf(stderr, "usage: fastsink [--addr IPv4] [--port P]\n");
			return 2;
		}
	}

	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "fastsink: bad address %s\n", addr);
		return 2;
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(lfd, BACKLOG) < 0)
		die("listen");
	socklen_t sl = sizeof(sa);
	if (getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
		die("getsockname");

	sigset_t block, orig;
	struct sigaction act = { .sa_handler = on_signal };	/* no SA_RESTART */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &orig);	/* delivered only inside epoll_pwait */
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
		die("epoll_ctl");
	printf("PORT %u\n", ntohs(sa.sin_port));
	fflush(stdout);

	struct epoll_event evs[MAX_EVENTS];
	while (!stop_sig) {
		int n = epoll_pwait(ep, evs, MAX_EVENTS, -1, &orig);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c)
				on_accept(lfd);
			else if (evs[i].events & EPOLLOUT)
				settle(c, 1);
			else
				on_readable(c);
		}
	}
	while (conns)
		conn_free(conns);
	close(lfd);
	close(ep);
	printf("fastsink: %llu connections, %llu messages, %llu bytes\n", (unsigned long long)st.conns,
	       (unsigned long long)st.messages, (unsigned long long)st.bytes);
	return 0;
}
