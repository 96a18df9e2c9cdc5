/* imap_proxy: after login, bytes flow both ways untouched (IDLE, APPEND
 * literals, large FETCHes, COMPRESS=DEFLATE) with back-pressure on both
 * sides. The gateway writes into the client stream only a
 * "* BYE Autologout" on timeout_idle, and only while no COMPRESS command
 * was relayed and the upstream stream sits at a line boundary; otherwise
 * idle timeout, shutdown and upstream loss close both sides and write
 * nothing (DESIGN.md §5.3). */
#include "imap_session_int.h"
#include "conn.h"
#include "log.h"
#include "timer.h"

#include <stdlib.h>
#include <string.h>

static void relay(struct conn *from, struct conn *to, struct imap_session *is, bool from_client)
{
	size_t n = conn_in_len(from);
	if (!n)
		return;
	const char *p = conn_in_data(from);
	if (from_client)	/* once COMPRESS has gone by, the stream is not ours */
		imap_watch_feed(&is->watch, p, n);
	if (!from_client)
		is->up_bol = p[n - 1] == '\n';
	conn_write(to, p, n);
	conn_in_consume(from, n);
	if (conn_out_len(to) > IMAP_RELAY_HIGH_WATER) {
		conn_read_stop(from);	/* resumed when `to` drains */
		conn_notify_drained(to);
	}
}

static void idle_timeout(struct imap_session *is)
{
	if (!is->watch.compress && is->up_bol)
		imap_reply(is, "* BYE Autologout; idle for too long");	/* no hand-counted length */
	imap_close(is, "timeout");
}

static void up_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct imap_session *is = arg;
	if (is->magic != IMAP_SESSION_MAGIC)
		abort();
	switch (ev) {
	case CONN_EV_READ:
		relay(c, is->s.conn, is, false);
		return;
	case CONN_EV_DRAINED:
		conn_read_start(is->s.conn);
		return;
	case CONN_EV_TIMEOUT:
		idle_timeout(is);
		return;
	case CONN_EV_EOF:
	case CONN_EV_ERROR:
	case CONN_EV_HANDSHAKE:
		log_debug("session %s: upstream closed: %s", is->s.id,
			  ev == CONN_EV_EOF ? "EOF" : conn_error(c));
		imap_close(is, "ok");
		return;
	}
}

void imap_proxy_client_event(struct imap_session *is, int ev)
{
	struct conn *c = is->s.conn;
	switch ((enum conn_event)ev) {
	case CONN_EV_READ:
		relay(c, is->up, is, true);
		return;
	case CONN_EV_DRAINED:
		conn_read_start(is->up);
		return;
	case CONN_EV_TIMEOUT:
		idle_timeout(is);
		return;
	case CONN_EV_EOF:
		/* The client half-closed (everything it sent has been relayed):
		 * pass its FIN on, as a TCP proxy does, and keep relaying the
		 * upstream's answers until the upstream closes or timeout_idle. */
		is->client_eof = 1;
		conn_shutdown_write(is->up);
		return;
	case CONN_EV_ERROR:
	case CONN_EV_HANDSHAKE:
		imap_close(is, ev == CONN_EV_ERROR ? "error" : "ok");
		return;
	}
}

void imap_proxy_start(struct imap_session *is)
{
	double idle = imap_conf(is)->timeout_idle;
	imap_enter(is, IS_PROXY);
	mg_timer_stop(&is->deadline);	/* logged in: no more pre-auth deadline */
	is->up_bol = 1;
	imap_watch_init(&is->watch);	/* the next client byte starts a command */
	conn_set_sensitive(is->s.conn, false);	/* the login line is wiped from it */
	conn_set_cb(is->up, up_cb, is);
	conn_set_timeout(is->up, idle);
	conn_set_timeout(is->s.conn, idle);
	conn_read_start(is->up);
	/* Client bytes held during the login go first, then anything the
	 * upstream already sent after its OK. */
	relay(is->s.conn, is->up, is, true);
	if (is->client_eof)	/* half-closed during the login */
		conn_shutdown_write(is->up);
	if (conn_in_len(is->up))
		conn_kick(is->up);
}
