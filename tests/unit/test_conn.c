/* test_conn: common/conn.c on the deterministic simulation (tests/sim/):
 * input before EOF, back-pressure at in_max, output queued behind a full
 * peer window, conn_notify_drained, the lingering close, conn_kick, a TLS
 * handshake failure reported once, bytes held inside TLS (tls_pending),
 * the inactivity timeout (and under a minimum data rate), and the
 * half-close after queued output. Each test starts a fresh simulated world. */
#include "conn.h"
#include "cu_main.h"
#include "sim.h"
#include "tls.h"

#include <string.h>

#define MAX_EVENTS 64

static struct {
	enum conn_event ev[MAX_EVENTS];
	size_t in_len[MAX_EVENTS];	/* conn_in_len() at each event */
	double at[MAX_EVENTS];
	int n;
	bool consume;			/* READ: consume everything */
	size_t consume_max;		/* ... or at most this much, then kick */
	bool free_on_end;		/* EOF/ERROR/TIMEOUT: conn_free */
	char got[4096];
	size_t ngot;
	struct conn *c;
} rec;

static void record(struct conn *c, enum conn_event ev, void *arg)
{
	if (rec.n < MAX_EVENTS) {
		rec.ev[rec.n] = ev;
		rec.in_len[rec.n] = conn_in_len(c);
		rec.at[rec.n] = sim_now();
		rec.n++;
	}
	if (ev == CONN_EV_READ && rec.consume) {
		size_t n = conn_in_len(c);
		if (rec.consume_max && n > rec.consume_max)
			n = rec.consume_max;
		if (rec.ngot + n <= sizeof(rec.got)) {
			memcpy(rec.got + rec.ngot, conn_in_data(c), n);
			rec.ngot += n;
		}
		conn_in_consume(c, n);
		if (conn_in_len(c))
			conn_kick(c);
	}
	if (rec.free_on_end && (ev == CONN_EV_EOF || ev == CONN_EV_ERROR || ev == CONN_EV_TIMEOUT))
		conn_free(&rec.c);
}

static int count(enum conn_event ev)
{
	int n = 0;
	for (int i = 0; i < rec.n; i++)
		n += rec.ev[i] == ev;
	return n;
}

/* A fresh world with one accepted client socket and its conn. */
static struct sim_sock *setup(size_t in_max)
{
	int fd;
	sim_reset();
	conn_loop_init();
	memset(&rec, 0, sizeof(rec));
	rec.consume = true;
	struct sim_sock *s = sim_sock_accepted(&fd);
	rec.c = conn_new(fd, in_max, record, NULL);
	return s;
}

/* The world must end clean: nothing open, nothing watched. */
static void teardown(void)
{
	conn_free(&rec.c);
	for (int i = 0; i < 100 && (sim_open_fds() || sim_active_watchers()); i++)
		if (!sim_advance())
			break;
	CU_ASSERT_EQUAL(sim_open_fds(), 0);
	CU_ASSERT_EQUAL(sim_active_watchers(), 0);
	CU_ASSERT_EQUAL(sim_tls_live_sessions(), 0);
}

static void test_input_before_eof(void)
{
	struct sim_sock *s = setup(1024);
	sim_peer_send(s, "hello", 5);
	sim_peer_shutdown(s);
	conn_read_start(rec.c);
	CU_ASSERT_EQUAL(rec.n, 0);	/* never synchronously */
	sim_run_until_idle();
	CU_ASSERT_EQUAL(rec.ngot, 5);
	CU_ASSERT_NSTRING_EQUAL(rec.got, "hello", 5);
	CU_ASSERT_EQUAL(count(CONN_EV_READ), 1);
	CU_ASSERT_EQUAL(count(CONN_EV_EOF), 1);
	CU_ASSERT(rec.n == 2 && rec.ev[0] == CONN_EV_READ && rec.ev[1] == CONN_EV_EOF);
	teardown();
}

static void test_eof_waits_for_unconsumed_input(void)
{
	struct sim_sock *s = setup(1024);
	rec.consume = false;
	sim_peer_send(s, "abc", 3);
	sim_peer_shutdown(s);
	conn_read_start(rec.c);
	sim_run_until_idle();
	/* EOF is reported after the data was delivered (and again offered). */
	CU_ASSERT(rec.n >= 1 && rec.ev[0] == CONN_EV_READ && rec.in_len[0] == 3);
	for (int i = 0; i < rec.n; i++)
		if (rec.ev[i] == CONN_EV_EOF)
			CU_ASSERT(i > 0);
	teardown();
}

static void test_backpressure(void)
{
	struct sim_sock *s = setup(8);
	rec.consume = false;
	sim_peer_send(s, "0123456789abcdefghij", 20);
	conn_read_start(rec.c);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(conn_in_len(rec.c), 8);
	CU_ASSERT(conn_in_full(rec.c));
	CU_ASSERT_EQUAL(sim_sock_unread(s), 12);
	CU_ASSERT_FALSE(sim_sock_watched(s, 1));	/* EV_READ off while full */
	int reads = count(CONN_EV_READ);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_READ), reads);	/* no new bytes, no event */
	conn_in_consume(rec.c, 8);	/* reading resumes */
	sim_run_until_idle();
	CU_ASSERT_EQUAL(conn_in_len(rec.c), 8);
	CU_ASSERT_NSTRING_EQUAL(conn_in_data(rec.c), "89abcdef", 8);
	CU_ASSERT_EQUAL(sim_sock_unread(s), 4);
	conn_in_consume(rec.c, 8);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(conn_in_len(rec.c), 4);
	CU_ASSERT_EQUAL(sim_sock_unread(s), 0);
	teardown();
}

static void test_output_queued_then_flushed(void)
{
	struct sim_sock *s = setup(1024);
	sim_sock_set_window(s, 0);	/* the peer reads nothing */
	conn_write(rec.c, "0123456789", 10);
	CU_ASSERT_EQUAL(conn_out_len(rec.c), 10);
	CU_ASSERT_EQUAL(sim_sock_written(s), 0);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(conn_out_len(rec.c), 10);
	sim_sock_set_window(s, 4);	/* a small window: flushed in steps */
	sim_run_until_idle();
	CU_ASSERT_EQUAL(conn_out_len(rec.c), 0);
	CU_ASSERT_EQUAL(sim_sock_written(s), 10);
	/* Order kept across a queue that is only partly flushable. */
	sim_sock_set_window(s, 0);
	conn_write(rec.c, "AB", 2);
	conn_write(rec.c, "CD", 2);
	sim_sock_set_window(s, SIM_WINDOW_UNLIMITED);
	conn_write(rec.c, "EF", 2);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(sim_sock_written(s), 16);
	CU_ASSERT_EQUAL(conn_out_len(rec.c), 0);
	teardown();
}

static void test_notify_drained(void)
{
	struct sim_sock *s = setup(1024);
	conn_notify_drained(rec.c);	/* empty queue: still from the loop */
	CU_ASSERT_EQUAL(rec.n, 0);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_DRAINED), 1);
	sim_sock_set_window(s, 0);
	conn_write(rec.c, "xyz", 3);
	conn_notify_drained(rec.c);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_DRAINED), 1);	/* not while queued */
	sim_sock_set_window(s, SIM_WINDOW_UNLIMITED);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_DRAINED), 2);
	CU_ASSERT_EQUAL(conn_out_len(rec.c), 0);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_DRAINED), 2);	/* once per request */
	teardown();
}

static void test_lingering_close_eof(void)
{
	struct sim_sock *s = setup(1024);
	conn_read_start(rec.c);
	sim_peer_send(s, "pending", 7);
	conn_write(rec.c, "221 Bye\r\n", 9);
	conn_free(&rec.c);
	CU_ASSERT(sim_sock_gw_shut(s));		/* our FIN went out */
	CU_ASSERT(sim_sock_open(s));		/* but the fd lingers */
	CU_ASSERT_EQUAL(sim_sock_unread(s), 0);	/* input discarded */
	sim_peer_send(s, "more", 4);
	sim_run_until_idle();
	CU_ASSERT(sim_sock_open(s));
	CU_ASSERT_EQUAL(sim_sock_unread(s), 0);
	sim_peer_shutdown(s);			/* the peer's EOF ends it */
	sim_run_until_idle();
	CU_ASSERT_FALSE(sim_sock_open(s));
	CU_ASSERT_EQUAL(sim_active_watchers(), 0);
	CU_ASSERT_EQUAL(rec.n, 0);		/* the owner never hears of it */
	teardown();
}

static void test_lingering_close_timeout(void)
{
	struct sim_sock *s = setup(1024);
	double t0 = sim_now();
	conn_free(&rec.c);
	sim_run_until_idle();
	CU_ASSERT(sim_sock_open(s));
	CU_ASSERT(sim_advance());
	CU_ASSERT_FALSE(sim_sock_open(s));
	CU_ASSERT(sim_now() - t0 >= 1.0 && sim_now() - t0 <= 10.0);
	teardown();
}

static void test_close_after_peer_eof_is_immediate(void)
{
	struct sim_sock *s = setup(1024);
	sim_peer_shutdown(s);
	conn_free(&rec.c);
	CU_ASSERT_FALSE(sim_sock_open(s));
	teardown();
}

static void test_kick(void)
{
	struct sim_sock *s = setup(1024);
	rec.consume = false;
	sim_peer_send(s, "two\r\nlines\r\n", 12);
	conn_read_start(rec.c);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_READ), 1);
	conn_in_consume(rec.c, 5);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_READ), 1);	/* nothing new arrived */
	conn_kick(rec.c);
	CU_ASSERT_EQUAL(count(CONN_EV_READ), 1);	/* from the loop only */
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_READ), 2);
	CU_ASSERT_EQUAL(rec.in_len[rec.n - 1], 7);
	teardown();
}

static void test_tls_failure_reported_once(void)
{
	struct sim_sock *s = setup(1024);
	struct tls_server *srv = tls_server_new(NULL, NULL);
	conn_start_tls(rec.c, tls_session_server(srv, sim_sock_fd(s), CLIENT_CERT_NONE));
	sim_run_until_idle();
	CU_ASSERT_EQUAL(rec.n, 0);		/* waiting for the peer */
	CU_ASSERT(sim_tls_pending(s));
	struct sim_tls_facts f = { .ok = false };
	CU_ASSERT(sim_tls_resolve(s, &f));
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_ERROR), 1);
	CU_ASSERT_EQUAL(count(CONN_EV_HANDSHAKE), 0);
	sim_peer_send(s, "junk", 4);
	sim_peer_shutdown(s);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_ERROR), 1);
	CU_ASSERT_EQUAL(rec.n, 1);
	CU_ASSERT_PTR_NOT_NULL(conn_error(rec.c));
	teardown();
	tls_server_free(&srv);
}

static void test_tls_required_cert_missing(void)
{
	struct sim_sock *s = setup(1024);
	struct tls_server *srv = tls_server_new(NULL, NULL);
	struct tls_session *t = tls_session_server(srv, sim_sock_fd(s), CLIENT_CERT_REQUIRE);
	conn_start_tls(rec.c, t);
	struct sim_tls_facts f = { .ok = true };
	sim_tls_resolve(s, &f);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_ERROR), 1);
	CU_ASSERT(tls_failed_on_cert(conn_tls(rec.c)));
	teardown();
	tls_server_free(&srv);
}

static void test_tls_pending_bytes_delivered(void)
{
	struct sim_sock *s = setup(4);	/* smaller than one record */
	struct tls_server *srv = tls_server_new(NULL, NULL);
	conn_start_tls(rec.c, tls_session_server(srv, sim_sock_fd(s), CLIENT_CERT_NONE));
	struct sim_tls_facts f = { .ok = true };
	sim_tls_resolve(s, &f);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_HANDSHAKE), 1);
	conn_read_start(rec.c);
	sim_peer_send(s, "0123456789", 10);
	sim_run_until_idle();
	/* The socket is empty after the first record; the rest sits inside
	 * the TLS session and must still reach the owner. */
	CU_ASSERT_EQUAL(sim_sock_unread(s), 0);
	CU_ASSERT_EQUAL(rec.ngot, 10);
	CU_ASSERT_NSTRING_EQUAL(rec.got, "0123456789", 10);
	/* Output through TLS behind a closed window, then flushed in order. */
	sim_sock_set_window(s, 0);
	conn_write(rec.c, "abcdef", 6);
	conn_write(rec.c, "gh", 2);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(sim_sock_written(s), 0);
	sim_sock_set_window(s, 3);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(sim_sock_written(s), 8);
	teardown();
	tls_server_free(&srv);
}

/* A conn that is not sensitive hands out TLS records in place
 * (tls_recv_view): an owner that takes only part of each, or nothing
 * while its reading is paused, still gets every byte once, in order,
 * whether the rest of a record waits in the TLS layer or in the queue;
 * and a sensitive conn (the copying, wiping path) the same. */
static void tls_partial(bool sensitive)
{
	struct sim_sock *s = setup(64);
	struct tls_server *srv = tls_server_new(NULL, NULL);
	conn_start_tls(rec.c, tls_session_server(srv, sim_sock_fd(s), CLIENT_CERT_NONE));
	struct sim_tls_facts f = { .ok = true };
	sim_tls_resolve(s, &f);
	sim_run_until_idle();
	conn_set_sensitive(rec.c, sensitive);
	sim_tls_set_record(7);
	rec.consume_max = 3;
	conn_read_start(rec.c);
	sim_peer_send(s, "abcdefghijklmnopqrstuvwxyz", 26);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(rec.ngot, 26);
	CU_ASSERT_NSTRING_EQUAL(rec.got, "abcdefghijklmnopqrstuvwxyz", 26);
	/* Paused with part of a record unread: nothing lost at the restart. */
	rec.consume = false;
	sim_peer_send(s, "0123456789", 10);
	sim_run_until_idle();
	CU_ASSERT(conn_in_len(rec.c) > 0);
	conn_read_stop(rec.c);
	rec.consume = true;
	conn_read_start(rec.c);
	conn_kick(rec.c);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(rec.ngot, 36);
	CU_ASSERT_NSTRING_EQUAL(rec.got + 26, "0123456789", 10);
	CU_ASSERT_EQUAL(conn_in_len(rec.c), 0);
	teardown();
	tls_server_free(&srv);
}

static void test_tls_view_partial_consume(void)
{
	tls_partial(false);
}

static void test_tls_copy_partial_consume(void)
{
	tls_partial(true);
}

static void test_timeout_after_inactivity_only(void)
{
	struct sim_sock *s = setup(1024);
	double t0 = sim_now();
	conn_read_start(rec.c);
	conn_set_timeout(rec.c, 10);
	sim_advance_by(5);
	sim_peer_send(s, "x", 1);	/* activity at +5 */
	sim_run_until_idle();
	sim_advance_by(8);		/* +13: 8 s idle */
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 0);
	sim_advance_by(1.5);		/* +14.5 */
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 0);
	sim_advance_by(1);		/* +15.5 */
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 1);
	CU_ASSERT(rec.at[rec.n - 1] - t0 >= 15.0 && rec.at[rec.n - 1] - t0 < 15.5);
	conn_set_timeout(rec.c, 0);	/* off: nothing more */
	sim_advance_by(100);
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 1);
	teardown();
}

/* With line activity (a slowloris guard), bytes of a line that never ends
 * do not move the timeout; a byte that completes a line does. */
static void test_line_activity_counts_complete_lines_only(void)
{
	struct sim_sock *s = setup(1024);
	double t0 = sim_now();
	conn_read_start(rec.c);
	conn_set_line_activity(rec.c, true);
	conn_set_timeout(rec.c, 10);
	sim_advance_by(4);
	sim_peer_send(s, "MAIL", 4);	/* +4: no line yet */
	sim_run_until_idle();
	sim_advance_by(4);
	sim_peer_send(s, " FROM", 5);	/* +8: still none */
	sim_run_until_idle();
	sim_advance_by(2.5);		/* +10.5: cut at +10, the partial bytes ignored */
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 1);
	CU_ASSERT(rec.at[rec.n - 1] - t0 >= 10.0 && rec.at[rec.n - 1] - t0 < 10.5);
	teardown();

	s = setup(1024);
	t0 = sim_now();
	conn_read_start(rec.c);
	conn_set_line_activity(rec.c, true);
	conn_set_timeout(rec.c, 10);
	sim_advance_by(4);
	sim_peer_send(s, "NO", 2);
	sim_run_until_idle();
	sim_advance_by(4);
	sim_peer_send(s, "OP\r\nRS", 6);	/* +8: completes a line (and starts one) */
	sim_run_until_idle();
	sim_advance_by(9);		/* +17 */
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 0);
	sim_advance_by(1.5);		/* +18.5: cut at +18 */
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 1);
	teardown();
	(void)t0;
}

static void test_shutdown_write_after_output(void)
{
	struct sim_sock *s = setup(1024);
	conn_read_start(rec.c);
	sim_sock_set_window(s, 0);
	conn_write(rec.c, "last words\r\n", 12);
	conn_shutdown_write(rec.c);
	sim_run_until_idle();
	CU_ASSERT_FALSE(sim_sock_gw_shut(s));	/* not before the queue is out */
	sim_sock_set_window(s, SIM_WINDOW_UNLIMITED);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(sim_sock_written(s), 12);
	CU_ASSERT(sim_sock_gw_shut(s));		/* then our FIN */
	CU_ASSERT(sim_sock_open(s));
	conn_write(rec.c, "dropped", 7);		/* later writes go nowhere */
	sim_peer_send(s, "reply", 5);		/* reading goes on */
	sim_peer_shutdown(s);
	sim_run_until_idle();
	CU_ASSERT_EQUAL(rec.ngot, 5);
	CU_ASSERT_EQUAL(count(CONN_EV_EOF), 1);
	CU_ASSERT_EQUAL(sim_sock_written(s), 12);
	teardown();
}

static void test_peer_reset_is_an_error(void)
{
	struct sim_sock *s = setup(1024);
	rec.free_on_end = true;
	conn_read_start(rec.c);
	sim_peer_send(s, "data", 4);
	sim_peer_reset(s);	/* the RST discards the queued bytes */
	sim_run_until_idle();
	CU_ASSERT_EQUAL(count(CONN_EV_ERROR), 1);
	CU_ASSERT_EQUAL(count(CONN_EV_READ), 0);
	CU_ASSERT_PTR_NULL(rec.c);
	CU_ASSERT_FALSE(sim_sock_open(s));	/* failed: closed at once */
	teardown();
}

/* Under a minimum rate, input buys time at that rate instead of resetting
 * the timeout: a trickle falls behind and is cut; output buys nothing. */
static void test_min_rate_cuts_a_trickle(void)
{
	struct sim_sock *s = setup(1024);
	double t0 = sim_now();
	conn_read_start(rec.c);
	conn_set_min_rate(rec.c, 100);
	conn_set_timeout(rec.c, 2);
	for (int i = 0; i < 40 && !count(CONN_EV_TIMEOUT); i++) {
		sim_advance_by(0.1);
		sim_peer_send(s, "x", 1);	/* 10 bytes/s */
		conn_write(rec.c, "y", 1);	/* output is no progress */
		sim_run_until_idle();
	}
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 1);
	/* 2 s + 0.01 s per byte: cut between 2.2 and 2.3 s. */
	CU_ASSERT(rec.at[rec.n - 1] - t0 > 2.15 && rec.at[rec.n - 1] - t0 < 2.35);
	teardown();
}

static void test_min_rate_spares_a_fast_peer(void)
{
	struct sim_sock *s = setup(1 << 16);
	conn_read_start(rec.c);
	conn_set_min_rate(rec.c, 100);
	conn_set_timeout(rec.c, 2);
	char chunk[100];
	memset(chunk, 'z', sizeof(chunk));
	for (int i = 0; i < 20; i++) {	/* 10 s at 200 bytes/s (MAX_EVENTS) */
		sim_advance_by(0.5);
		sim_peer_send(s, chunk, sizeof(chunk));
		sim_run_until_idle();
	}
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 0);
	/* Then silence: cut at most one timeout later (the cap). */
	double t1 = sim_now();
	sim_advance_by(1.9);
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 0);
	sim_advance_by(0.2);
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 1);
	CU_ASSERT(rec.at[rec.n - 1] - t1 >= 2.0 - 1e-6);
	/* Off again: plain inactivity. */
	conn_set_min_rate(rec.c, 0);
	conn_set_timeout(rec.c, 2);
	for (int i = 0; i < 30; i++) {
		sim_advance_by(1);
		sim_peer_send(s, "x", 1);
		sim_run_until_idle();
	}
	CU_ASSERT_EQUAL(count(CONN_EV_TIMEOUT), 1);
	teardown();
}

void register_tests(void)
{
	CU_pSuite s = CU_add_suite("conn", NULL, NULL);
	CU_ADD(s, test_input_before_eof);
	CU_ADD(s, test_eof_waits_for_unconsumed_input);
	CU_ADD(s, test_backpressure);
	CU_ADD(s, test_output_queued_then_flushed);
	CU_ADD(s, test_notify_drained);
	CU_ADD(s, test_lingering_close_eof);
	CU_ADD(s, test_lingering_close_timeout);
	CU_ADD(s, test_close_after_peer_eof_is_immediate);
	CU_ADD(s, test_kick);
	CU_ADD(s, test_tls_failure_reported_once);
	CU_ADD(s, test_tls_required_cert_missing);
	CU_ADD(s, test_tls_pending_bytes_delivered);
	CU_ADD(s, test_tls_view_partial_consume);
	CU_ADD(s, test_tls_copy_partial_consume);
	CU_ADD(s, test_timeout_after_inactivity_only);
	CU_ADD(s, test_line_activity_counts_complete_lines_only);
	CU_ADD(s, test_min_rate_cuts_a_trickle);
	CU_ADD(s, test_min_rate_spares_a_fast_peer);
	CU_ADD(s, test_shutdown_write_after_output);
	CU_ADD(s, test_peer_reset_is_an_error);
}

CU_MAIN
