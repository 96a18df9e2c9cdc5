/* imap_proxy: see imap_proxy.h. The upstream connection's events come to
 * up_cb(); the client's through the session hooks (imap_protocol.c). */
#include "imap_proxy.h"
#include "imap_conf.h"
#include "conn.h"
#include "log.h"

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
	else
		imap_bol_feed(&is->up_bol, p, n);
	conn_write(to, p, n);
	conn_in_consume(from, n);
	if (conn_out_len(to) > IMAP_RELAY_HIGH_WATER) {
		conn_read_stop(from);	/* resumed when `to` drains */
		conn_notify_drained(to);
	}
}

void imap_proxy_idle(struct imap_session *is)
{
	if (!is->watch.compress && is->up_bol.at_bol)
		imap_reply(is, "* BYE Autologout");
	imap_close(is, RESULT_TIMEOUT);
}

static void up_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct imap_session *is = arg;
	session_assert(&is->s);
	switch (ev) {
	case CONN_EV_READ:
		relay(c, is->s.conn, is, false);
		return;
	case CONN_EV_DRAINED:
		conn_read_start(is->s.conn);
		return;
	case CONN_EV_TIMEOUT:
		imap_proxy_idle(is);
		return;
	case CONN_EV_EOF:
	case CONN_EV_ERROR:
	case CONN_EV_HANDSHAKE:
		log_debug("session %s: upstream closed: %s", is->s.id,
			  ev == CONN_EV_EOF ? "EOF" : conn_error(c));
		imap_close(is, RESULT_OK);	/* frees c: nothing after this */
		return;
	}
}

void imap_proxy_from_client(struct imap_session *is)
{
	relay(is->s.conn, is->up, is, true);
}

void imap_proxy_client_drained(struct imap_session *is)
{
	conn_read_start(is->up);
}

void imap_proxy_client_eof(struct imap_session *is)
{
	/* Everything the client sent has been relayed: pass its FIN on and
	 * keep relaying the upstream's answers until it closes. */
	conn_shutdown_write(is->up);
}

void imap_proxy_start(struct imap_session *is)
{
	double idle = is->keys->timeout_idle;
	imap_enter(is, IMAP_RELAY);
	session_set_deadline(&is->s, 0);	/* logged in: no more pre-auth deadline */
	imap_bol_init(&is->up_bol);
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
