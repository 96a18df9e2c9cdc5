/* loadgen: the benchmark's TLS load generator for SMTP and IMAP servers.
 *
 * One process, T threads (optionally pinned to CPUs), each with its own
 * epoll loop driving its share of N concurrent sessions of one script,
 * over and over, for a duration or a count:
 *   greet       connect, TLS handshake, greeting, QUIT / LOGOUT, close
 *   smtp-data   greet + EHLO + K x (MAIL, RCPT, DATA, one B-octet message)
 *   imap-fetch  greeting, LOGIN, SELECT, K x FETCH 1 BODY[] (counted), LOGOUT
 *   idle        handshake + greeting (IMAP with --login: and LOGIN), then
 *               hold (prints "READY ..." when all
 *               N are up; holds until SIGTERM/SIGINT or --hold seconds)
 * with implicit TLS or --starttls, optional ticket resumption (--resume),
 * client certificate, CA check, SNI, ALPN and a GnuTLS priority string.
 *
 * Everything is non-blocking (edge-triggered epoll; every step retries
 * until EAGAIN), each step has a timeout, a server's refusal, reset or
 * garbage ends only that session (counted by kind), and memory is bounded:
 * fixed per-session state, fixed-size histograms, one shared message.
 *
 * Reports: sessions/s, latency percentiles (connect -> handshake done,
 * handshake done -> first byte, handshake done -> first reply, whole
 * session), MB/s of message payload, errors by kind, and its own CPU
 * share (getrusage against wall time, per thread too) and the busy share
 * of the CPUs it was pinned to, so a harness can tell a client-bound
 * figure from a server-bound one. Human table on stderr, and with --json
 * one JSON line on stdout. */
#include "lg_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PRIORITY \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-X25519:-CIPHER-ALL:+AES-128-GCM"
#define LINE_HEAD 128		/* first octets of a reply line kept for classifying it */
#define LINE_TAIL 24		/* last octets kept: an IMAP literal "{n}" */
#define SCRATCH (64 * 1024)	/* per-thread read buffer */
#define MAX_ACTS 8192
#define MAX_CPUS 256
#define TICK_NS 10000000ull	/* timer scan period: 10 ms */

enum script { SC_GREET, SC_DATA, SC_FETCH, SC_IDLE };
static const char *const script_names[] = { "greet", "smtp-data", "imap-fetch", "idle" };

enum err { E_NONE, E_CONNECT, E_TLS, E_EOF, E_RESET, E_TIMEOUT, E_REPLY, E_PROTO, E_OTHER, E_N };
static const char *const err_names[] = { "none", "connect", "tls", "eof", "reset",
					 "timeout", "reply", "proto", "other" };

enum act_kind { A_CONNECT, A_HANDSHAKE, A_SEND, A_SEND_MSG, A_SMTP, A_IMAP_GREETING,
		A_IMAP_TAGGED, A_HOLD, A_END };

#define F_FIRST 1	/* the first reply after the handshake */
#define F_MSG 2		/* the reply to a message's end of data */
#define F_FETCH 4	/* literal bytes in this response are payload */

struct act {
	enum act_kind kind;
	const char *text;	/* A_SEND: the line; A_IMAP_TAGGED: the tag */
	size_t len;
	int want;		/* A_SMTP: the reply class (2, 3) */
	unsigned flags;
};

static struct {
	enum script script;
	int imap, starttls, resume, json, quiet, quickack, login;
	long trace;		/* print the read timeline of the first N sessions */
	long concurrency, threads, ramp, messages, max_errors;
	unsigned long long count;
	double duration, hold, timeout;
	size_t size;
	const char *target, *user, *pass, *mailbox, *ehlo, *from, *rcpt;
	const char *cert, *key, *ca, *sni, *priority, *alpn;
	int cpus[MAX_CPUS], ncpus;
} O = {
	.script = SC_GREET, .concurrency = 1, .threads = 1, .ramp = 256, .messages = 1,
	.max_errors = 100000, .duration = 0, .hold = 3600, .timeout = 10, .size = 1048576,
	.user = "bench", .pass = "bench", .mailbox = "INBOX", .ehlo = "loadgen.bench.example",
	.from = "loadgen@bench.example", .rcpt = "user@example.org", .priority = DEFAULT_PRIORITY,
};

static struct act prog[MAX_ACTS];
static unsigned nprog;
static char *owned[MAX_ACTS];	/* the script's formatted lines, freed at exit */
static unsigned nowned;
static char *msg;		/* the message followed by ".\r\n" */
static size_t msg_len;		/* message octets (payload), without ".\r\n" */
static struct sockaddr_storage dst;
static socklen_t dst_len;
static gnutls_certificate_credentials_t cred;
static gnutls_priority_t prio;
static gnutls_datum_t alpn_ids[8];
static unsigned nalpn;

static atomic_int g_stop;		/* 1: start nothing new; 2: abort everything */
static atomic_ullong g_started;
static atomic_long g_traced;
static atomic_long g_errors;
static volatile sig_atomic_t g_signal;
static uint64_t g_end_ns;		/* duration end (0: none) */

struct sess {
	struct thr *t;
	int fd;
	uint32_t gen;
	enum { S_FREE, S_WAIT, S_ACTIVE, S_BACKOFF, S_DONE } st;
	unsigned pc;
	uint32_t ev;		/* epoll events seen since the last step */
	int connected, tls_up, opening, held;
	int blocked;		/* the transport said EAGAIN since GnuTLS was called */
	int traced;
	enum err err;
	gnutls_session_t gs;
	size_t out_off;
	/* input */
	char head[LINE_HEAD];
	size_t head_len;
	char tail[LINE_TAIL];
	size_t tail_len;
	uint64_t lit_left;
	char *left;
	size_t left_len, left_off;
	/* timing (CLOCK_MONOTONIC ns) */
	uint64_t t0, t_conn, t_hs, t_first_byte, t_msg_sent, deadline;
	gnutls_datum_t ticket;
};

struct stats {
	uint64_t ok, aborted, resumed, full, messages, payload, bytes_in, bytes_out;
	uint64_t err[E_N];
	struct lg_hist connect, handshake, first_byte, first_reply, msg_reply, session;
};

struct thr {
	int id, cpu, ep;
	pthread_t tid;
	struct sess *slots;
	long nslots, live, opening, open_limit;
	long *waitq;
	long nwait;
	char *scratch;
	struct stats st;
	atomic_long held, failed;	/* idle: sessions up / given up */
	atomic_int done;
	double cpu_s;
	char first_error[200];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

__attribute__((format(printf, 3, 4))) static void note_error(struct sess *s, enum err e,
							     const char *fmt, ...)
{
	s->err = e;
	if (!s->t->first_error[0]) {
		/* (as in the product, snprintf's return value is never used) */
		char *b = s->t->first_error;
		va_list ap;
		va_start(ap, fmt);
		snprintf(b, sizeof(s->t->first_error), "%s: ", err_names[e]);
		size_t n = strlen(b);
		vsnprintf(b + n, sizeof(s->t->first_error) - n, fmt, ap);
		va_end(ap);
	}
}

/* ---- the script ---- */

static void add(enum act_kind k, const char *text, int want, unsigned flags)
{
	if (nprog >= MAX_ACTS)
		die("script too long (lower --messages)");
	prog[nprog++] = (struct act){ .kind = k, .text = text, .len = text ? strlen(text) : 0,
				      .want = want, .flags = flags };
}

static char *fmt_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_line(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (strlen(buf) >= sizeof(buf) - 1)	/* arguments are limited to 255 octets */
		die("command line too long");
	char *p = strdup(buf);
	if (!p || nowned >= MAX_ACTS)
		die("out of memory");
	owned[nowned++] = p;
	return p;
}

static void build_script(void)
{
	int ehlo_done = 0;
	char *ehlo = fmt_line("EHLO %s\r\n", O.ehlo);
	add(A_CONNECT, NULL, 0, 0);
	if (O.starttls && !O.imap) {
		add(A_SMTP, NULL, 2, 0);
		add(A_SEND, ehlo, 0, 0);
		add(A_SMTP, NULL, 2, 0);
		add(A_SEND, "STARTTLS\r\n", 0, 0);
		add(A_SMTP, NULL, 2, 0);
		add(A_HANDSHAKE, NULL, 0, 0);
		add(A_SEND, ehlo, 0, 0);
		add(A_SMTP, NULL, 2, F_FIRST);
		ehlo_done = 1;
	} else if (O.starttls) {
		add(A_IMAP_GREETING, NULL, 0, 0);
		add(A_SEND, "S STARTTLS\r\n", 0, 0);
		add(A_IMAP_TAGGED, "S", 0, 0);
		add(A_HANDSHAKE, NULL, 0, 0);
		add(A_SEND, "C CAPABILITY\r\n", 0, 0);
		add(A_IMAP_TAGGED, "C", 0, F_FIRST);
	} else {
		add(A_HANDSHAKE, NULL, 0, 0);
		add(O.imap ? A_IMAP_GREETING : A_SMTP, NULL, 2, F_FIRST);
	}
	switch (O.script) {
	case SC_IDLE:
		if (O.login) {	/* a logged-in IMAP session, upstream connection included */
			add(A_SEND, fmt_line("L LOGIN \"%s\" \"%s\"\r\n", O.user, O.pass), 0, 0);
			add(A_IMAP_TAGGED, "L", 0, 0);
		}
		add(A_HOLD, NULL, 0, 0);
		break;
	case SC_GREET:
		break;
	case SC_DATA:
		if (!ehlo_done) {
			add(A_SEND, ehlo, 0, 0);
			add(A_SMTP, NULL, 2, 0);
		}
		for (long k = 0; k < O.messages; k++) {
			add(A_SEND, fmt_line("MAIL FROM:<%s> SIZE=%zu\r\n", O.from, msg_len), 0, 0);
			add(A_SMTP, NULL, 2, 0);
			add(A_SEND, fmt_line("RCPT TO:<%s>\r\n", O.rcpt), 0, 0);
			add(A_SMTP, NULL, 2, 0);
			add(A_SEND, "DATA\r\n", 0, 0);
			add(A_SMTP, NULL, 3, 0);
			add(A_SEND_MSG, NULL, 0, 0);
			add(A_SMTP, NULL, 2, F_MSG);
		}
		break;
	case SC_FETCH:
		add(A_SEND, fmt_line("L LOGIN \"%s\" \"%s\"\r\n", O.user, O.pass), 0, 0);
		add(A_IMAP_TAGGED, "L", 0, 0);
		add(A_SEND, fmt_line("X SELECT \"%s\"\r\n", O.mailbox), 0, 0);
		add(A_IMAP_TAGGED, "X", 0, 0);
		for (long k = 0; k < O.messages; k++) {
			add(A_SEND, "F FETCH 1 BODY[]\r\n", 0, 0);
			add(A_IMAP_TAGGED, "F", 0, F_FETCH | F_MSG);
		}
		break;
	}
	if (O.script != SC_IDLE) {
		if (O.imap) {
			add(A_SEND, "Z LOGOUT\r\n", 0, 0);
			add(A_IMAP_TAGGED, "Z", 0, 0);
		} else {
			add(A_SEND, "QUIT\r\n", 0, 0);
			add(A_SMTP, NULL, 2, 0);
		}
	}
	add(A_END, NULL, 0, 0);
}

/* ---- transport ---- */

static ssize_t pull(gnutls_transport_ptr_t p, void *buf, size_t n)
{
	struct sess *s = p;
	ssize_t r = recv(s->fd, buf, n, 0);
	if (O.quickack) {
		int one = 1;	/* diagnostic: ACK at once, never delayed */
		setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	}
	if (r > 0) {
		if (s->traced)
			fprintf(stderr, "trace %u: %9.3f ms %s TLS read %zd octets\n", s->gen,
				(now_ns() - (s->t_hs ? s->t_hs : s->t0)) / 1e6,
				s->t_hs ? "after handshake" : "since connect ", r);
		s->t->st.bytes_in += (uint64_t)r;
		if (s->tls_up && !s->t_first_byte)
			s->t_first_byte = now_ns();
	} else if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			s->blocked = 1;
		gnutls_transport_set_errno(s->gs, errno);
	}
	return r;
}

static ssize_t push(gnutls_transport_ptr_t p, const void *buf, size_t n)
{
	struct sess *s = p;
	ssize_t r = send(s->fd, buf, n, MSG_NOSIGNAL);
	if (r > 0) {
		s->t->st.bytes_out += (uint64_t)r;
	} else if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			s->blocked = 1;
		gnutls_transport_set_errno(s->gs, errno);
	}
	return r;
}

/* GnuTLS returns GNUTLS_E_AGAIN also after it handled a record that held
 * no application data (a TLS 1.3 NewSessionTicket) without the socket
 * having said EAGAIN: with edge-triggered epoll no event would ever come
 * for the octets still queued. So AGAIN means "wait" only when the
 * transport blocked (or a bounded number of retries found nothing). */
#define GNUTLS_RETRIES 64

#define IO_AGAIN (-1000)
#define IO_FAIL (-1001)

static enum err errno_kind(int e)
{
	return e == ECONNRESET || e == EPIPE ? E_RESET : E_OTHER;
}

/* Octets read (> 0), 0 at EOF, IO_AGAIN, or IO_FAIL (s->err set). */
static ssize_t rd(struct sess *s, char *buf, size_t cap)
{
	if (s->tls_up) {
		ssize_t r;
		int tries = 0;
		do {
			s->blocked = 0;
			r = gnutls_record_recv(s->gs, buf, cap);
		} while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && !s->blocked &&
			 ++tries < GNUTLS_RETRIES);
		if (r >= 0)
			return r;
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			return IO_AGAIN;
		if (r == GNUTLS_E_PREMATURE_TERMINATION)
			return 0;
		if (r == GNUTLS_E_PULL_ERROR) {
			int e = errno;
			note_error(s, errno_kind(e), "read: %s", strerror(e));
		} else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
			note_error(s, E_TLS, "read: alert %s", gnutls_alert_get_name(gnutls_alert_get(s->gs)));
		} else {
			note_error(s, E_TLS, "read: %s", gnutls_strerror((int)r));
		}
		return IO_FAIL;
	}
	ssize_t r = recv(s->fd, buf, cap, 0);
	if (r >= 0) {
		if (s->traced)
			fprintf(stderr, "trace %u: %9.3f ms since connect  plain read %zd octets\n",
				s->gen, (now_ns() - s->t0) / 1e6, r);
		s->t->st.bytes_in += (uint64_t)r;
		return r;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return IO_AGAIN;
	int e = errno;
	note_error(s, errno_kind(e), "read: %s", strerror(e));
	return IO_FAIL;
}

/* Sends p[0..n) from s->out_off on: 1 when all is sent, 0 to wait, -1 on error. */
static int wr(struct sess *s, const char *p, size_t n)
{
	while (s->out_off < n) {
		size_t k = n - s->out_off;
		ssize_t r;
		if (s->tls_up) {
			if (k > 16384)
				k = 16384;
			int tries = 0;
			do {
				s->blocked = 0;
				r = gnutls_record_send(s->gs, p + s->out_off, k);
			} while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && !s->blocked &&
				 ++tries < GNUTLS_RETRIES);
			if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
				return 0;	/* retried with the same data, as GnuTLS asks */
			if (r < 0) {
				if (r == GNUTLS_E_PUSH_ERROR) {
					int e = errno;
					note_error(s, errno_kind(e), "write: %s", strerror(e));
				} else {
					note_error(s, E_TLS, "write: %s", gnutls_strerror((int)r));
				}
				return -1;
			}
		} else {
			r = send(s->fd, p + s->out_off, k, MSG_NOSIGNAL);
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return 0;
				int e = errno;
				note_error(s, errno_kind(e), "write: %s", strerror(e));
				return -1;
			}
			s->t->st.bytes_out += (uint64_t)r;
		}
		s->out_off += (size_t)r;
	}
	s->out_off = 0;
	return 1;
}

/* ---- replies ---- */

static void line_add(struct sess *s, const char *p, size_t k)
{
	size_t room = sizeof(s->head) - s->head_len, c = k < room ? k : room;
	memcpy(s->head + s->head_len, p, c);
	s->head_len += c;
	if (k >= LINE_TAIL) {
		memcpy(s->tail, p + k - LINE_TAIL, LINE_TAIL);
		s->tail_len = LINE_TAIL;
	} else {
		size_t keep = s->tail_len < LINE_TAIL - k ? s->tail_len : LINE_TAIL - k;
		memmove(s->tail, s->tail + s->tail_len - keep, keep);
		memcpy(s->tail + keep, p, k);
		s->tail_len = keep + k;
	}
}

static void show(char *out, size_t cap, const char *p, size_t n)
{
	size_t j = 0;
	for (size_t i = 0; i < n && j + 1 < cap; i++)
		out[j++] = (p[i] >= 32 && p[i] < 127) ? p[i] : '?';
	out[j] = 0;
}

/* One complete line (in head/tail, CRLF stripped) against the action:
 * 1 = the reply is complete, 0 = more lines, -1 = error. */
static int on_line(struct sess *s, const struct act *a)
{
	const char *l = s->head;
	size_t n = s->head_len;
	char txt[80];
	if (a->kind == A_HOLD)
		return 0;
	if (a->kind == A_SMTP) {
		int last;
		int code = lg_smtp_line(l, n, &last);
		if (code < 0) {
			show(txt, sizeof(txt), l, n);
			note_error(s, E_PROTO, "not an SMTP reply: %s", txt);
			return -1;
		}
		if (!last)
			return 0;
		if (code / 100 != a->want) {
			show(txt, sizeof(txt), l, n);
			note_error(s, E_REPLY, "%s", txt);
			return -1;
		}
		return 1;
	}
	/* IMAP */
	long long lit = lg_imap_literal(s->tail, s->tail_len);
	if (lit >= 0)
		s->lit_left = (uint64_t)lit;
	if (a->kind == A_IMAP_GREETING) {
		if (n >= 4 && (!memcmp(l, "* OK", 4) || (n >= 9 && !memcmp(l, "* PREAUTH", 9))))
			return 1;
		show(txt, sizeof(txt), l, n);
		note_error(s, n >= 5 && !memcmp(l, "* BYE", 5) ? E_REPLY : E_PROTO, "%s", txt);
		return -1;
	}
	int st = lg_imap_tagged(l, n, a->text);
	if (st == 'O')
		return 1;
	if (st || (n >= 1 && l[0] == '+')) {
		show(txt, sizeof(txt), l, n);
		note_error(s, st ? E_REPLY : E_PROTO, "%s", txt);
		return -1;
	}
	return 0;
}

/* Feeds received octets to the reply parser: 1 = reply complete (*used
 * octets consumed), 0 = all consumed and more needed, -1 = error. */
static int feed(struct sess *s, const struct act *a, const char *p, size_t n, size_t *used)
{
	size_t i = 0;
	while (i < n) {
		if (s->lit_left) {
			size_t k = n - i < s->lit_left ? n - i : (size_t)s->lit_left;
			s->lit_left -= k;
			if (a->flags & F_FETCH)
				s->t->st.payload += k;
			i += k;
			continue;
		}
		const char *nl = memchr(p + i, '\n', n - i);
		size_t k = nl ? (size_t)(nl - (p + i)) : n - i;
		line_add(s, p + i, k);
		i += k;
		if (!nl)
			break;
		i++;	/* the LF */
		if (s->head_len && s->head[s->head_len - 1] == '\r' && s->head_len < sizeof(s->head))
			s->head_len--;
		if (s->tail_len && s->tail[s->tail_len - 1] == '\r')
			s->tail_len--;
		int r = on_line(s, a);
		s->head_len = s->tail_len = 0;
		if (r) {
			*used = i;
			return r;
		}
	}
	*used = n;
	return 0;
}

static void keep_leftover(struct sess *s, const char *p, size_t n)
{
	if (!n)
		return;
	char *b = malloc(n);
	if (!b)
		return;	/* out of memory: the next reply will time out */
	memcpy(b, p, n);
	free(s->left);
	s->left = b;
	s->left_len = n;
	s->left_off = 0;
}

/* 1 = expected reply received, 0 = wait, -1 = error. */
static int expect(struct sess *s, const struct act *a)
{
	size_t used;
	if (s->left) {
		int r = feed(s, a, s->left + s->left_off, s->left_len - s->left_off, &used);
		s->left_off += used;
		if (s->left_off >= s->left_len) {
			free(s->left);
			s->left = NULL;
			s->left_len = s->left_off = 0;
		}
		if (r)
			return r;
	}
	for (;;) {
		ssize_t n = rd(s, s->t->scratch, SCRATCH);
		if (n == IO_AGAIN)
			return 0;
		if (n == IO_FAIL)
			return -1;
		if (n == 0) {
			note_error(s, E_EOF, "connection closed by the server (action %u)", s->pc);
			return -1;
		}
		int r = feed(s, a, s->t->scratch, (size_t)n, &used);
		if (r) {
			if (r > 0)
				keep_leftover(s, s->t->scratch + used, (size_t)n - used);
			return r;
		}
	}
}

/* ---- sessions ---- */

static void opening_done(struct sess *s)
{
	if (s->opening) {
		s->opening = 0;
		s->t->opening--;
	}
}

static int tls_start(struct sess *s)
{
	int r = gnutls_init(&s->gs, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
	if (r < 0) {
		note_error(s, E_TLS, "gnutls_init: %s", gnutls_strerror(r));
		return -1;
	}
	if ((r = gnutls_priority_set(s->gs, prio)) < 0 ||
	    (r = gnutls_credentials_set(s->gs, GNUTLS_CRD_CERTIFICATE, cred)) < 0) {
		note_error(s, E_TLS, "session set-up: %s", gnutls_strerror(r));
		return -1;
	}
	if (O.sni)
		gnutls_server_name_set(s->gs, GNUTLS_NAME_DNS, O.sni, strlen(O.sni));
	if (O.ca)
		gnutls_session_set_verify_cert(s->gs, O.sni, 0);
	if (nalpn)
		gnutls_alpn_set_protocols(s->gs, alpn_ids, nalpn, 0);
	if (O.resume && s->ticket.size)
		gnutls_session_set_data(s->gs, s->ticket.data, s->ticket.size);
	gnutls_transport_set_ptr(s->gs, s);
	gnutls_transport_set_pull_function(s->gs, pull);
	gnutls_transport_set_push_function(s->gs, push);
	return 0;
}

/* One step of the session's script: 1 = progressed, 0 = wait for I/O,
 * -1 = the session is over (s->err says how). */
static int step(struct sess *s)
{
	const struct act *a = &prog[s->pc];
	int r;
	switch (a->kind) {
	case A_CONNECT:
		if (!s->connected) {
			if (!(s->ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
				return 0;
			int e = 0;
			socklen_t el = sizeof(e);
			if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
				e = errno;
			if (e) {
				note_error(s, E_CONNECT, "connect: %s", strerror(e));
				return -1;
			}
			if (!(s->ev & EPOLLOUT))
				return 0;
			s->connected = 1;
		}
		s->t_conn = now_ns();
		lg_hist_add(&s->t->st.connect, s->t_conn - s->t0);
		break;
	case A_HANDSHAKE:
		if (!s->gs && tls_start(s) < 0)
			return -1;
		{
			int tries = 0;
			do {
				s->blocked = 0;
				r = gnutls_handshake(s->gs);
			} while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && !s->blocked &&
				 ++tries < GNUTLS_RETRIES);
		}
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			return 0;
		if (r < 0) {
			if (r == GNUTLS_E_PREMATURE_TERMINATION)
				note_error(s, E_EOF, "closed during the handshake");
			else if (r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR)
				note_error(s, errno_kind(errno), "handshake: %s", strerror(errno));
			else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
				note_error(s, E_TLS, "handshake: alert %s",
					   gnutls_alert_get_name(gnutls_alert_get(s->gs)));
			else
				note_error(s, E_TLS, "handshake: %s", gnutls_strerror(r));
			return -1;
		}
		s->t_hs = now_ns();
		s->tls_up = 1;
		if (s->traced)
			fprintf(stderr, "trace %u: %9.3f ms since connect  handshake done%s\n", s->gen,
				(s->t_hs - s->t0) / 1e6,
				gnutls_session_is_resumed(s->gs) ? " (resumed)" : "");
		s->t_first_byte = 0;
		if (gnutls_session_is_resumed(s->gs))
			s->t->st.resumed++;
		else
			s->t->st.full++;
		lg_hist_add(&s->t->st.handshake, s->t_hs - s->t0);
		break;
	case A_SEND:
		if ((r = wr(s, a->text, a->len)) <= 0)
			return r;
		break;
	case A_SEND_MSG:
		if ((r = wr(s, msg, msg_len + 3)) <= 0)
			return r;
		s->t_msg_sent = now_ns();
		break;
	case A_SMTP:
	case A_IMAP_GREETING:
	case A_IMAP_TAGGED:
		if ((r = expect(s, a)) <= 0)
			return r;
		if (a->flags & F_FIRST) {
			uint64_t t = now_ns();
			if (s->traced)
				fprintf(stderr, "trace %u: %9.3f ms after handshake first reply\n",
					s->gen, (t - s->t_hs) / 1e6);
			lg_hist_add(&s->t->st.first_reply, t - s->t_hs);
			if (s->t_first_byte)
				lg_hist_add(&s->t->st.first_byte, s->t_first_byte - s->t_hs);
			opening_done(s);
		}
		if (a->flags & F_MSG) {
			s->t->st.messages++;
			if (!(a->flags & F_FETCH)) {
				s->t->st.payload += msg_len;
				lg_hist_add(&s->t->st.msg_reply, now_ns() - s->t_msg_sent);
			}
		}
		break;
	case A_HOLD:
		if (!s->held) {
			s->held = 1;
			atomic_fetch_add(&s->t->held, 1);
		}
		for (;;) {	/* whatever the server sends now (a ticket) is drained */
			ssize_t n = rd(s, s->t->scratch, SCRATCH);
			if (n == IO_AGAIN)
				return 0;
			if (n == IO_FAIL)
				return -1;
			if (n == 0) {
				note_error(s, E_EOF, "held session closed by the server");
				return -1;
			}
		}
	case A_END:
		s->err = E_NONE;
		return -1;
	}
	s->pc++;
	s->ev = 0;
	s->deadline = prog[s->pc].kind == A_HOLD ? 0 : now_ns() + (uint64_t)(O.timeout * 1e9);
	return 1;
}

static void session_end(struct sess *s, int aborted)
{
	struct thr *t = s->t;
	if (aborted && !s->held)
		t->st.aborted++;
	else if (s->err == E_NONE) {	/* done, or an idle session held to the end */
		t->st.ok++;
		lg_hist_add(&t->st.session, now_ns() - s->t0);
		if (O.resume && s->gs &&
		    (gnutls_session_get_flags(s->gs) & GNUTLS_SFLAGS_SESSION_TICKET)) {
			gnutls_datum_t d;
			if (gnutls_session_get_data2(s->gs, &d) == 0) {
				gnutls_free(s->ticket.data);
				s->ticket = d;
			}
		}
	} else {
		t->st.err[s->err]++;
		atomic_fetch_add(&g_errors, 1);
		if (s->held)
			atomic_fetch_sub(&t->held, 1);
		if (O.script == SC_IDLE)
			atomic_fetch_add(&t->failed, 1);
	}
	opening_done(s);
	if (s->gs) {
		gnutls_deinit(s->gs);
		s->gs = NULL;
	}
	if (s->fd >= 0) {
		/* unread octets (a close_notify) at close() would make the
		 * kernel send a reset instead of a FIN: read them first */
		while (recv(s->fd, t->scratch, SCRATCH, MSG_DONTWAIT) > 0)
			;
		close(s->fd);
		s->fd = -1;
	}
	free(s->left);
	s->left = NULL;
	s->left_len = s->left_off = 0;
	s->lit_left = 0;
	s->head_len = s->tail_len = 0;
	t->live--;
	s->st = S_DONE;
}

/* May a new session start now? */
static int allowed(void)
{
	if (atomic_load(&g_stop))
		return 0;
	if (O.max_errors && atomic_load(&g_errors) >= O.max_errors) {
		atomic_store(&g_stop, 1);
		return 0;
	}
	return !g_end_ns || now_ns() < g_end_ns;
}

/* allowed(), and one more of --count claimed */
static int claim(void)
{
	if (!allowed())
		return 0;
	return !O.count || atomic_fetch_add(&g_started, 1) < O.count;
}

/* Opens the connection; the session is then live. -1 when it failed at
 * once (counted; the slot backs off). */
static int session_start(struct sess *s)
{
	struct thr *t = s->t;
	s->gen++;
	s->pc = 0;
	s->ev = 0;
	s->connected = s->tls_up = s->held = 0;
	s->err = E_NONE;
	s->t0 = now_ns();
	s->t_first_byte = s->t_hs = 0;
	s->traced = O.trace && atomic_fetch_add(&g_traced, 1) < O.trace;
	s->deadline = s->t0 + (uint64_t)(O.timeout * 1e9);
	s->st = S_ACTIVE;
	s->opening = 1;
	t->opening++;
	t->live++;
	s->fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		note_error(s, E_CONNECT, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (O.quickack)
		setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				  .data.u64 = ((uint64_t)(s - t->slots) << 32) | s->gen };
	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
		note_error(s, E_OTHER, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	if (connect(s->fd, (struct sockaddr *)&dst, dst_len) == 0) {
		s->connected = 1;
	} else if (errno != EINPROGRESS) {
		note_error(s, E_CONNECT, "connect: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void backoff(struct sess *s)
{
	s->st = S_BACKOFF;
	s->deadline = now_ns() + 20000000ull;	/* 20 ms: a refusing server is not hammered */
	s->t->live++;
}

static void wait_start(struct sess *s)
{
	s->st = S_WAIT;
	s->t->waitq[s->t->nwait++] = s - s->t->slots;
	s->t->live++;
}

/* After a session ended: the slot's next session, if any. */
static void next(struct sess *s)
{
	if (O.script == SC_IDLE || !claim())
		return;	/* idle: each slot opens one session */
	if (s->err != E_NONE)
		backoff(s);
	else
		wait_start(s);
}

/* Nothing new starts: slots waiting to start or backing off are done. */
static void drop_pending(struct thr *t)
{
	for (long i = 0; i < t->nslots; i++) {
		struct sess *s = &t->slots[i];
		if (s->st == S_WAIT || s->st == S_BACKOFF) {
			s->st = S_DONE;
			t->live--;
		}
	}
	t->nwait = 0;
}

/* Runs the session until it waits for I/O or is over. */
static void run(struct sess *s)
{
	for (;;) {
		int r = step(s);
		if (r > 0)
			continue;
		if (r == 0)
			return;
		session_end(s, 0);
		next(s);
		return;
	}
}

static void start_waiting(struct thr *t)
{
	if (t->nwait && !allowed()) {
		drop_pending(t);
		return;
	}
	while (t->nwait && t->opening < t->open_limit) {
		struct sess *s = &t->slots[t->waitq[--t->nwait]];
		t->live--;	/* S_WAIT counted as live; session_start counts again */
		if (session_start(s) < 0) {
			session_end(s, 0);
			next(s);
			continue;
		}
		run(s);
	}
}

static void scan_timers(struct thr *t, uint64_t now)
{
	for (long i = 0; i < t->nslots; i++) {
		struct sess *s = &t->slots[i];
		if (s->st == S_ACTIVE && s->deadline && now >= s->deadline) {
			note_error(s, E_TIMEOUT, "no progress in %.1f s (action %u)", O.timeout, s->pc);
			session_end(s, 0);
			next(s);
		} else if (s->st == S_BACKOFF && now >= s->deadline) {
			t->live--;
			s->st = S_DONE;
			if (allowed())
				wait_start(s);	/* its --count share was claimed already */
		}
	}
}

static void abort_all(struct thr *t)
{
	drop_pending(t);
	for (long i = 0; i < t->nslots; i++)
		if (t->slots[i].st == S_ACTIVE)
			session_end(&t->slots[i], 1);
}

static void pin(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		fprintf(stderr, "loadgen: cannot pin to CPU %d\n", cpu);
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	pin(t->cpu);
	t->ep = epoll_create1(EPOLL_CLOEXEC);
	if (t->ep < 0)
		die("epoll_create1: %s", strerror(errno));
	for (long i = 0; i < t->nslots; i++) {
		t->slots[i].t = t;
		t->slots[i].fd = -1;
		t->slots[i].st = S_DONE;
		if (O.script == SC_IDLE ? allowed() : claim())
			wait_start(&t->slots[i]);
	}
	struct epoll_event evs[256];
	uint64_t next_scan = now_ns() + TICK_NS;
	while (t->live > 0) {
		start_waiting(t);
		if (t->live <= 0)
			break;
		int n = epoll_wait(t->ep, evs, 256, 10);
		for (int i = 0; i < n; i++) {
			long idx = (long)(evs[i].data.u64 >> 32);
			struct sess *s = &t->slots[idx];
			if (s->st != S_ACTIVE || (uint32_t)evs[i].data.u64 != s->gen)
				continue;	/* an event of a closed predecessor */
			s->ev |= evs[i].events;
			run(s);
		}
		uint64_t now = now_ns();
		if (now >= next_scan) {
			next_scan = now + TICK_NS;
			int stop = atomic_load(&g_stop);
			if (stop >= 2)
				abort_all(t);
			else if (stop)
				drop_pending(t);
			scan_timers(t, now);
		}
	}
	close(t->ep);
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) == 0)
		t->cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
			   (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	atomic_store(&t->done, 1);
	return NULL;
}

/* ---- set-up and report ---- */

static void parse_target(const char *s)
{
	char host[256];
	const char *port;
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof(host))
			die("bad target '%s' (HOST:PORT or [V6]:PORT)", s);
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = 0;
		port = e + 2;
	} else {
		const char *c = strrchr(s, ':');
		if (!c || (size_t)(c - s) >= sizeof(host))
			die("bad target '%s' (HOST:PORT or [V6]:PORT)", s);
		memcpy(host, s, (size_t)(c - s));
		host[c - s] = 0;
		port = c + 1;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	int r = getaddrinfo(host, port, &hints, &res);
	if (r != 0)
		die("%s: %s", s, gai_strerror(r));
	memcpy(&dst, res->ai_addr, res->ai_addrlen);
	dst_len = res->ai_addrlen;
	freeaddrinfo(res);
}

static void parse_cpus(const char *s)
{
	const char *p = s;
	while (*p) {
		char *e;
		long a = strtol(p, &e, 10), b = a;
		if (e == p || a < 0)
			die("bad --cpus '%s'", s);
		if (*e == '-') {
			p = e + 1;
			b = strtol(p, &e, 10);
			if (e == p || b < a)
				die("bad --cpus '%s'", s);
		}
		for (long c = a; c <= b && O.ncpus < MAX_CPUS; c++)
			O.cpus[O.ncpus++] = (int)c;
		p = e;
		if (*p == ',')
			p++;
		else if (*p)
			die("bad --cpus '%s'", s);
	}
}

/* busy and total jiffies of the listed CPUs, from /proc/stat */
static void cpu_jiffies(unsigned long long *busy, unsigned long long *total)
{
	*busy = *total = 0;
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		int cpu;
		unsigned long long v[8] = { 0 };
		if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1],
			   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 5)
			continue;
		for (int i = 0; i < O.ncpus; i++)
			if (O.cpus[i] == cpu) {
				unsigned long long tot = 0;
				for (int k = 0; k < 8; k++)
					tot += v[k];
				*total += tot;
				*busy += tot - v[3] - v[4];	/* minus idle, iowait */
				break;
			}
	}
	fclose(f);
}

static double cpu_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void on_signal(int sig)
{
	g_signal = sig;
}

static void usage(void)
{
	fputs("usage: loadgen [options] HOST:PORT\n"
	      "  -s, --script S      greet | smtp-data | imap-fetch | idle (default greet)\n"
	      "      --imap          IMAP instead of SMTP (imap-fetch implies it)\n"
	      "      --login         idle: LOGIN (--user/--pass) before holding (implies --imap)\n"
	      "  -c, --concurrency N sessions in flight (idle: sessions to hold) (default 1)\n"
	      "  -n, --count N       sessions in all (default: run for --duration)\n"
	      "  -d, --duration S    seconds to start sessions for (default 10 without -n)\n"
	      "  -t, --threads N     threads, each with its own event loop (default 1)\n"
	      "      --cpus LIST     pin the threads to these CPUs in turn (\"0\", \"0,1\", \"0-3\")\n"
	      "  -b, --size B        smtp-data: message size in octets (default 1048576)\n"
	      "  -k, --messages K    smtp-data / imap-fetch: messages per session (default 1)\n"
	      "      --user U --pass P --mailbox M   imap-fetch login (bench/bench, INBOX)\n"
	      "      --ehlo NAME --from ADDR --rcpt ADDR   SMTP arguments\n"
	      "      --hold S        idle: hold this long once all are up (default: until\n"
	      "                      SIGTERM/SIGINT, at most 3600 s)\n"
	      "      --ramp N        at most N sessions opening at once (default 256)\n"
	      "      --timeout S     limit for every step (default 10)\n"
	      "      --max-errors N  start nothing new after N errors (default 100000; 0: no limit)\n"
	      "      --resume        TLS session tickets: a full handshake, then resumed ones\n"
	      "      --starttls      SMTP EHLO/STARTTLS/EHLO, IMAP STARTTLS/CAPABILITY\n"
	      "      --cert F --key F  client certificate; --ca F: verify the server\n"
	      "      --sni NAME --alpn ID[,ID] --priority STRING (default TLS 1.3, X25519,\n"
	      "                      AES-128-GCM)\n"
	      "      --json          one JSON line on stdout;  -q  no human report\n"
	      "      --trace N       print when octets arrive, for the first N sessions\n"
	      "      --quickack      diagnostic: TCP_QUICKACK on every read, so the client\n"
	      "                      never delays an ACK (a server's Nagle wait then vanishes)\n",
	      stderr);
	exit(2);
}

static double num(const char *s, const char *what)
{
	char *e;
	double v = strtod(s, &e);
	if (e == s || *e || v < 0)
		die("bad %s '%s'", what, s);
	return v;
}

static void parse_args(int argc, char **argv)
{
	enum { O_CPUS = 256, O_USER, O_PASS, O_MAILBOX, O_HOLD, O_RAMP, O_TIMEOUT, O_RESUME,
	       O_STARTTLS, O_CERT, O_KEY, O_CA, O_SNI, O_ALPN, O_PRIORITY, O_JSON, O_IMAP,
	       O_EHLO, O_FROM, O_RCPT, O_MAXERR, O_TRACE, O_QUICKACK, O_LOGIN };
	static const struct option lo[] = {
		{ "script", 1, 0, 's' }, { "concurrency", 1, 0, 'c' }, { "count", 1, 0, 'n' },
		{ "duration", 1, 0, 'd' }, { "threads", 1, 0, 't' }, { "size", 1, 0, 'b' },
		{ "messages", 1, 0, 'k' }, { "cpus", 1, 0, O_CPUS }, { "user", 1, 0, O_USER },
		{ "pass", 1, 0, O_PASS }, { "mailbox", 1, 0, O_MAILBOX }, { "hold", 1, 0, O_HOLD },
		{ "ramp", 1, 0, O_RAMP }, { "timeout", 1, 0, O_TIMEOUT }, { "resume", 0, 0, O_RESUME },
		{ "starttls", 0, 0, O_STARTTLS }, { "cert", 1, 0, O_CERT }, { "key", 1, 0, O_KEY },
		{ "ca", 1, 0, O_CA }, { "sni", 1, 0, O_SNI }, { "alpn", 1, 0, O_ALPN },
		{ "priority", 1, 0, O_PRIORITY }, { "json", 0, 0, O_JSON }, { "imap", 0, 0, O_IMAP }, { "login", 0, 0, O_LOGIN },
		{ "ehlo", 1, 0, O_EHLO }, { "from", 1, 0, O_FROM }, { "rcpt", 1, 0, O_RCPT },
		{ "max-errors", 1, 0, O_MAXERR }, { "trace", 1, 0, O_TRACE },
		{ "quickack", 0, 0, O_QUICKACK }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' },
		{ 0, 0, 0, 0 }
	};
	int c;
	while ((c = getopt_long(argc, argv, "s:c:n:d:t:b:k:qh", lo, NULL)) != -1) {
		switch (c) {
		case 's': {
			unsigned i;
			for (i = 0; i < 4 && strcmp(optarg, script_names[i]); i++)
				;
			if (i == 4)
				die("unknown script '%s'", optarg);
			O.script = (enum script)i;
			break;
		}
		case 'c': O.concurrency = (long)num(optarg, "concurrency"); break;
		case 'n': O.count = (unsigned long long)num(optarg, "count"); break;
		case 'd': O.duration = num(optarg, "duration"); break;
		case 't': O.threads = (long)num(optarg, "threads"); break;
		case 'b': O.size = (size_t)num(optarg, "size"); break;
		case 'k': O.messages = (long)num(optarg, "messages"); break;
		case 'q': O.quiet = 1; break;
		case O_CPUS: parse_cpus(optarg); break;
		case O_USER: O.user = optarg; break;
		case O_PASS: O.pass = optarg; break;
		case O_MAILBOX: O.mailbox = optarg; break;
		case O_HOLD: O.hold = num(optarg, "hold"); break;
		case O_RAMP: O.ramp = (long)num(optarg, "ramp"); break;
		case O_TIMEOUT: O.timeout = num(optarg, "timeout"); break;
		case O_MAXERR: O.max_errors = (long)num(optarg, "max-errors"); break;
		case O_TRACE: O.trace = (long)num(optarg, "trace"); break;
		case O_QUICKACK: O.quickack = 1; break;
		case O_RESUME: O.resume = 1; break;
		case O_STARTTLS: O.starttls = 1; break;
		case O_CERT: O.cert = optarg; break;
		case O_KEY: O.key = optarg; break;
		case O_CA: O.ca = optarg; break;
		case O_SNI: O.sni = optarg; break;
		case O_ALPN: O.alpn = optarg; break;
		case O_PRIORITY: O.priority = optarg; break;
		case O_JSON: O.json = 1; break;
		case O_IMAP: O.imap = 1; break;
		case O_LOGIN: O.login = O.imap = 1; break;
		case O_EHLO: O.ehlo = optarg; break;
		case O_FROM: O.from = optarg; break;
		case O_RCPT: O.rcpt = optarg; break;
		default: usage();
		}
	}
	if (optind != argc - 1)
		usage();
	O.target = argv[optind];
	if (O.script == SC_FETCH)
		O.imap = 1;
	if (O.script == SC_DATA && O.imap)
		die("smtp-data is an SMTP script");
	if (O.login && O.script != SC_IDLE)
		die("--login goes with the idle script");
	if (O.concurrency < 1 || O.threads < 1 || O.messages < 1 || O.ramp < 1)
		die("concurrency, threads, messages and ramp must be at least 1");
	if (O.threads > O.concurrency)
		O.threads = O.concurrency;
	if (!O.count && !O.duration)
		O.duration = 10;
	if ((O.cert == NULL) != (O.key == NULL))
		die("--cert and --key go together");
	const char *args[] = { O.user, O.pass, O.mailbox, O.ehlo, O.from, O.rcpt };
	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
		if (strlen(args[i]) > 255 || strpbrk(args[i], "\r\n"))
			die("'%.40s...': protocol arguments are one line of at most 255 octets", args[i]);
	for (unsigned i = 0; O.user[i]; i++)
		if (O.user[i] == '"' || O.user[i] == '\\' || (unsigned char)O.user[i] < 32)
			die("--user: no quotes, backslashes or controls");
	for (unsigned i = 0; O.pass[i]; i++)
		if (O.pass[i] == '"' || O.pass[i] == '\\' || (unsigned char)O.pass[i] < 32)
			die("--pass: no quotes, backslashes or controls");
}

static void setup_tls(void)
{
	int r;
	const char *errpos = NULL;
	if ((r = gnutls_certificate_allocate_credentials(&cred)) < 0)
		die("gnutls: %s", gnutls_strerror(r));
	if (O.cert && (r = gnutls_certificate_set_x509_key_file(cred, O.cert, O.key,
								  GNUTLS_X509_FMT_PEM)) < 0)
		die("%s / %s: %s", O.cert, O.key, gnutls_strerror(r));
	if (O.ca && (r = gnutls_certificate_set_x509_trust_file(cred, O.ca, GNUTLS_X509_FMT_PEM)) < 0)
		die("%s: %s", O.ca, gnutls_strerror(r));
	if ((r = gnutls_priority_init2(&prio, O.priority, &errpos, 0)) < 0)
		die("priority '%s': %s at '%s'", O.priority, gnutls_strerror(r), errpos ? errpos : "?");
	if (O.alpn) {
		char *list = strdup(O.alpn), *save = NULL;
		if (!list || nowned >= MAX_ACTS)
			die("out of memory");
		owned[nowned++] = list;
		for (char *tok = strtok_r(list, ",", &save); tok && nalpn < 8;
		     tok = strtok_r(NULL, ",", &save)) {
			alpn_ids[nalpn].data = (unsigned char *)tok;
			alpn_ids[nalpn++].size = (unsigned)strlen(tok);
		}
	}
}

static void json_hist(FILE *f, const char *name, const struct lg_hist *h, int comma)
{
	fprintf(f, "\"%s\":{\"n\":%llu,\"mean\":%.4f,\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,"
		   "\"max\":%.4f}%s",
		name, (unsigned long long)h->n, lg_hist_mean(h) / 1e6,
		lg_hist_percentile(h, 50) / 1e6, lg_hist_percentile(h, 90) / 1e6,
		lg_hist_percentile(h, 99) / 1e6, lg_hist_percentile(h, 100) / 1e6, comma ? "," : "");
}

static void human_hist(const char *name, const struct lg_hist *h)
{
	if (!h->n)
		return;
	fprintf(stderr, "  %-24s %9llu %9.3f %9.3f %9.3f %9.3f\n", name, (unsigned long long)h->n,
		lg_hist_percentile(h, 50) / 1e6, lg_hist_percentile(h, 90) / 1e6,
		lg_hist_percentile(h, 99) / 1e6, lg_hist_percentile(h, 100) / 1e6);
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 32 || c >= 127)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	parse_target(O.target);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (O.script == SC_DATA) {
		size_t n;
		char *m = lg_message(O.size, &n);
		if (!m || !(msg = realloc(m, n + 3)))
			die("out of memory");
		memcpy(msg + n, ".\r\n", 3);
		msg_len = n;
	}
	build_script();
	setup_tls();

	struct thr *th = calloc((size_t)O.threads, sizeof(*th));
	if (!th)
		die("out of memory");
	long per = O.concurrency / O.threads, extra = O.concurrency % O.threads;
	for (long i = 0; i < O.threads; i++) {
		struct thr *t = &th[i];
		t->id = (int)i;
		t->cpu = O.ncpus ? O.cpus[i % O.ncpus] : -1;
		t->nslots = per + (i < extra);
		t->slots = calloc((size_t)t->nslots, sizeof(struct sess));
		t->waitq = calloc((size_t)t->nslots, sizeof(long));
		t->scratch = malloc(SCRATCH);
		t->open_limit = O.ramp / O.threads > 0 ? O.ramp / O.threads : 1;
		if (!t->slots || !t->waitq || !t->scratch)
			die("out of memory");
		lg_hist_init(&t->st.connect);
		lg_hist_init(&t->st.handshake);
		lg_hist_init(&t->st.first_byte);
		lg_hist_init(&t->st.first_reply);
		lg_hist_init(&t->st.msg_reply);
		lg_hist_init(&t->st.session);
	}
	if (O.ncpus)
		pin(O.cpus[0]);
	unsigned long long jb0, jt0, jb1, jt1;
	cpu_jiffies(&jb0, &jt0);
	double cpu0 = cpu_self();
	uint64_t w0 = now_ns();
	if (O.duration && O.script != SC_IDLE)
		g_end_ns = w0 + (uint64_t)(O.duration * 1e9);
	for (long i = 0; i < O.threads; i++)
		if (pthread_create(&th[i].tid, NULL, thr_main, &th[i]) != 0)
			die("pthread_create failed");

	/* idle: tell the harness when all sessions are up, then hold */
	int ready = 0;
	uint64_t t_ready = 0;
	double cpu_ready = 0;
	for (;;) {
		struct timespec ts = { 0, 20000000 };
		nanosleep(&ts, NULL);
		if (g_signal && atomic_load(&g_stop) < 2) {
			/* idle: release the sessions; else finish those in flight
			 * (a second signal aborts them) */
			atomic_store(&g_stop, O.script == SC_IDLE || atomic_load(&g_stop) ? 2 : 1);
			g_signal = 0;
		}
		if (O.script == SC_IDLE && !ready) {
			long held = 0, failed = 0;
			for (long i = 0; i < O.threads; i++) {
				held += atomic_load(&th[i].held);
				failed += atomic_load(&th[i].failed);
			}
			if (held + failed >= O.concurrency) {
				ready = 1;
				t_ready = now_ns();
				cpu_ready = cpu_self();
				printf("READY held=%ld failed=%ld seconds=%.3f\n", held, failed,
				       (t_ready - w0) / 1e9);
				fflush(stdout);
			}
		}
		if (O.script == SC_IDLE && ready && !atomic_load(&g_stop) &&
		    now_ns() - t_ready >= (uint64_t)(O.hold * 1e9))
			atomic_store(&g_stop, 2);
		int alive = 0;
		for (long i = 0; i < O.threads; i++)
			alive |= !atomic_load(&th[i].done);
		if (!alive)
			break;
	}
	for (long i = 0; i < O.threads; i++)
		pthread_join(th[i].tid, NULL);
	uint64_t w1 = now_ns();
	double cpu1 = cpu_self();
	cpu_jiffies(&jb1, &jt1);

	/* merge */
	struct stats all = { 0 };
	lg_hist_init(&all.connect);
	lg_hist_init(&all.handshake);
	lg_hist_init(&all.first_byte);
	lg_hist_init(&all.first_reply);
	lg_hist_init(&all.msg_reply);
	lg_hist_init(&all.session);
	double thr_max = 0;
	const char *first_error = "";
	uint64_t errors = 0;
	for (long i = 0; i < O.threads; i++) {
		struct stats *s = &th[i].st;
		all.ok += s->ok;
		all.aborted += s->aborted;
		all.resumed += s->resumed;
		all.full += s->full;
		all.messages += s->messages;
		all.payload += s->payload;
		all.bytes_in += s->bytes_in;
		all.bytes_out += s->bytes_out;
		for (int e = 0; e < E_N; e++) {
			all.err[e] += s->err[e];
			errors += s->err[e];
		}
		lg_hist_merge(&all.connect, &s->connect);
		lg_hist_merge(&all.handshake, &s->handshake);
		lg_hist_merge(&all.first_byte, &s->first_byte);
		lg_hist_merge(&all.first_reply, &s->first_reply);
		lg_hist_merge(&all.msg_reply, &s->msg_reply);
		lg_hist_merge(&all.session, &s->session);
		if (!first_error[0] && th[i].first_error[0])
			first_error = th[i].first_error;
	}
	/* the load phase: for idle, until all were up */
	double wall = ((O.script == SC_IDLE && ready ? t_ready : w1) - w0) / 1e9;
	double cpu = (O.script == SC_IDLE && ready ? cpu_ready : cpu1) - cpu0;
	for (long i = 0; i < O.threads; i++) {
		double share = w1 > w0 ? th[i].cpu_s / ((w1 - w0) / 1e9) : 0;
		if (share > thr_max)
			thr_max = share;
	}
	double share = wall > 0 ? cpu / (wall * (double)O.threads) : 0;
	if (O.script == SC_IDLE)
		thr_max = share;	/* per-thread times include the hold */
	double core_busy = jt1 > jt0 ? (double)(jb1 - jb0) / (double)(jt1 - jt0) : -1;
	double rate = wall > 0 ? (double)all.ok / wall : 0;
	double mbps = wall > 0 ? (double)all.payload / 1e6 / wall : 0;
	uint64_t handshakes = all.resumed + all.full;
	double resumed_share = handshakes ? (double)all.resumed / (double)handshakes : 0;
	int client_bound = thr_max >= 0.90 || share >= 0.90;

	if (!O.quiet) {
		fprintf(stderr, "loadgen: %s %s %s, %s, concurrency %ld, %ld thread(s)", script_names[O.script],
			O.imap ? "IMAP" : "SMTP", O.target, O.starttls ? "STARTTLS" : "implicit TLS",
			O.concurrency, O.threads);
		if (O.ncpus) {
			fprintf(stderr, " on CPU");
			for (int i = 0; i < O.ncpus; i++)
				fprintf(stderr, "%s%d", i ? "," : " ", O.cpus[i]);
		}
		fprintf(stderr, "\n  sessions: %llu ok, %llu errors, %llu aborted in %.2f s = %.1f/s",
			(unsigned long long)all.ok, (unsigned long long)errors,
			(unsigned long long)all.aborted, wall, rate);
		if (O.resume)
			fprintf(stderr, "; resumed %.1f %% of %llu handshakes", resumed_share * 100,
				(unsigned long long)handshakes);
		fputc('\n', stderr);
		if (errors) {
			fprintf(stderr, "  errors:");
			for (int e = 1; e < E_N; e++)
				if (all.err[e])
					fprintf(stderr, " %s %llu", err_names[e],
						(unsigned long long)all.err[e]);
			fprintf(stderr, "\n  first error: %s\n", first_error);
		}
		fprintf(stderr, "  latency (ms)                     n       p50       p90       p99       max\n");
		human_hist("connect -> TCP up", &all.connect);
		human_hist("connect -> handshake done", &all.handshake);
		human_hist("handshake -> first byte", &all.first_byte);
		human_hist("handshake -> first reply", &all.first_reply);
		if (all.msg_reply.n)
			human_hist("end of data -> its reply", &all.msg_reply);
		human_hist("whole session", &all.session);
		if (all.messages)
			fprintf(stderr, "  payload: %llu messages, %.1f MB, %.1f MB/s\n",
				(unsigned long long)all.messages, all.payload / 1e6, mbps);
		fprintf(stderr, "  client CPU: %.2f s = %.1f %% of %ld thread(s) (busiest %.1f %%)",
			cpu, share * 100, O.threads, thr_max * 100);
		if (core_busy >= 0)
			fprintf(stderr, "; pinned CPU(s) busy %.1f %%", core_busy * 100);
		fprintf(stderr, "%s\n", client_bound ? "  => CLIENT-BOUND" : "");
	}
	if (O.json) {
		printf("{\"script\":\"%s\",\"proto\":\"%s\",\"target\":", script_names[O.script],
		       O.imap ? "imap" : "smtp");
		json_str(stdout, O.target);
		printf(",\"starttls\":%s,\"resume\":%s,\"concurrency\":%ld,\"threads\":%ld,"
		       "\"sessions\":%llu,\"aborted\":%llu,\"errors\":%llu,\"error_kinds\":{",
		       O.starttls ? "true" : "false", O.resume ? "true" : "false", O.concurrency,
		       O.threads, (unsigned long long)all.ok, (unsigned long long)all.aborted,
		       (unsigned long long)errors);
		for (int e = 1; e < E_N; e++)
			printf("\"%s\":%llu%s", err_names[e], (unsigned long long)all.err[e],
			       e + 1 < E_N ? "," : "");
		printf("},\"first_error\":");
		json_str(stdout, first_error);
		printf(",\"wall_s\":%.6f,\"sessions_per_s\":%.3f,\"handshakes\":%llu,\"resumed\":%llu,"
		       "\"resumed_share\":%.4f,\"messages\":%llu,\"payload_bytes\":%llu,"
		       "\"mb_per_s\":%.3f,\"bytes_in\":%llu,\"bytes_out\":%llu,",
		       wall, rate, (unsigned long long)handshakes, (unsigned long long)all.resumed,
		       resumed_share, (unsigned long long)all.messages,
		       (unsigned long long)all.payload, mbps, (unsigned long long)all.bytes_in,
		       (unsigned long long)all.bytes_out);
		json_hist(stdout, "connect_ms", &all.connect, 1);
		json_hist(stdout, "handshake_ms", &all.handshake, 1);
		json_hist(stdout, "first_byte_ms", &all.first_byte, 1);
		json_hist(stdout, "first_reply_ms", &all.first_reply, 1);
		json_hist(stdout, "msg_reply_ms", &all.msg_reply, 1);
		json_hist(stdout, "session_ms", &all.session, 1);
		printf("\"cpu_s\":%.4f,\"cpu_share\":%.4f,\"thread_cpu_share_max\":%.4f,"
		       "\"pinned_cpu_busy\":%.4f,\"client_bound\":%s}\n",
		       cpu, share, thr_max, core_busy, client_bound ? "true" : "false");
		fflush(stdout);
	}
	for (long i = 0; i < O.threads; i++) {
		for (long k = 0; k < th[i].nslots; k++)
			gnutls_free(th[i].slots[k].ticket.data);
		free(th[i].slots);
		free(th[i].waitq);
		free(th[i].scratch);
	}
	free(th);
	free(msg);
	while (nowned)
		free(owned[--nowned]);
	gnutls_priority_deinit(prio);
	gnutls_certificate_free_credentials(cred);
	return all.ok || (O.script == SC_IDLE && ready) ? 0 : 1;
}
