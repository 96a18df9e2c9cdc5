/* smtp_body: see smtp_body.h. */
#include "smtp_body.h"
#include "smtp_conf.h"
#include "conn.h"
#include "metrics.h"
#include "peer.h"
#include "rdns.h"
#include "smtp_received.h"
#include "smtp_relay.h"
#include "smtp_server.h"
#include "smtp_upstream.h"
#include "upstream.h"
#include "tls.h"

#include <string.h>
#include <time.h>

/* Received (§4.5): sized for its longest form (HELO, name and hostname
 * of up to 255 octets each, the CN escaped, the peer's name). */
#define RECEIVED_MAX 2048

static void send_received(struct smtp_session *ss)
{
	struct smtp_received_info in;
	char hdr[RECEIVED_MAX];
	const struct tls_peer *peer = session_cert(&ss->s);
	memset(&in, 0, sizeof(in));
	in.helo = ss->helo_arg;
	in.ip = ss->s.ip;
	in.rdns = ss->rdns_status == RDNS_OK ? ss->rdns_name : NULL;
	in.ipv6 = ss->s.client.u.sa.sa_family == AF_INET6;
	in.hostname = session_conf(&ss->s)->hostname;
	in.suite = session_cipher(&ss->s);
	in.proto = smtp_received_proto(ss->esmtp, in.suite != NULL, ss->authed, ss->utf8);
	if (in.suite) {
		in.cert_status = tls_cert_status_name(peer_cert_status(peer, ss->s.pin));
		if (peer && peer->status == CERT_VERIFIED && peer->cn) {
			in.cn = peer->cn;
			in.cn_len = peer->cn_len;
		}
		if (ss->s.peer)
			in.peer = ss->s.peer->name;
	}
	in.id = ss->s.id;
	in.msgno = ss->msgs;
	in.when = time(NULL);
	size_t n = smtp_received_build(&in, hdr, sizeof(hdr));
	if (n)
		smtp_relay_data(ss, hdr, n);
}

/* Buffers of the command phase are wiped on release (AUTH). */
static void sensitive(struct smtp_session *ss, bool on)
{
	conn_set_sensitive(ss->s.conn, on);
	if (ss->up)
		upstream_set_sensitive(smtp_up_link(ss->up), on);
}

static void begin_data(struct smtp_session *ss)
{
	ss->msgs++;
	smtp_data_init(&ss->scan, smtp_server_size(ss->server, ss->s.listener->upstream));
	ss->data_fail = DF_NONE;
	smtp_enter(ss, SMTP_DATA);
	sensitive(ss, false);	/* a message is not a secret to wipe byte by byte */
	conn_set_line_activity(ss->s.conn, false);	/* body bytes are progress */
	/* ... at min_data_rate: bytes buy time, a trickle falls behind
	 * (timeout_data is the first deadline and the most ever ahead). */
	conn_set_min_rate(ss->s.conn, ss->keys->min_data_rate);
	conn_set_timeout(ss->s.conn, ss->keys->timeout_data);
	if (ss->keys->received_header)
		send_received(ss);
}

static void data_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	smtp_reply_relay(ss, r);
	if (r->code == 354)
		begin_data(ss);
}

void smtp_data_cmd(struct smtp_session *ss, const char *args, size_t len)
{
	static const char data[] = "DATA\r\n";
	if (!ss->in_tx) {
		smtp_reply_err(ss, "503 5.5.1 Need MAIL command");
		return;
	}
	if (len) {
		smtp_reply_err(ss, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (ss->rcpts == 0) {
		smtp_reply_err(ss, "554 5.5.1 No valid recipients");
		return;
	}
	smtp_relay_command(ss, OP_DATA, data, sizeof(data) - 1, data_reply);
}

/* The upstream's reply to the final dot: the client's answer, always. */
static void dot_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	smtp_reply_relay(ss, r);
	if (r->code >= 200 && r->code < 300) {
		ss->delivered++;
		ss->junk = 0;	/* as Postfix: a delivered message earns new junk commands */
		metrics_message();
	}
	smtp_reset_tx(ss);
}

static void end_of_data(struct smtp_session *ss)
{
	smtp_enter(ss, SMTP_CMD);
	sensitive(ss, true);
	conn_set_min_rate(ss->s.conn, 0);
	conn_set_line_activity(ss->s.conn, true);
	conn_set_timeout(ss->s.conn, ss->keys->timeout_command);
	if (ss->data_fail == DF_NONE && ss->up) {
		smtp_relay_expect_dot(ss, dot_reply);
		return;
	}
	smtp_reset_tx(ss);
	switch (ss->data_fail) {
	case DF_SIZE:
		smtp_reply_err(ss, "552 5.3.4 Message size exceeds fixed maximum message size");
		break;
	case DF_BARE:
		smtp_reply_err(ss, "550 5.6.0 Message contains bare CR or LF");
		break;
	default:
		smtp_reply_err(ss, "451 4.4.2 Upstream connection lost");
		break;
	}
	if (ss->reconnect_closes && ss->s.state == SESSION_ACTIVE) {
		smtp_reply(ss, "421 4.4.2 Upstream connection lost, closing");
		smtp_close(ss, RESULT_UPSTREAM_FAILED);
	}
}

void smtp_body_input(struct smtp_session *ss)
{
	struct conn *c = ss->s.conn;
	while (conn_in_len(c)) {
		struct smtp_data_result r = smtp_data_feed(&ss->scan, conn_in_data(c), conn_in_len(c));
		bool room = true;
		if (ss->data_fail == DF_NONE && r.clean)
			room = smtp_relay_data(ss, conn_in_data(c), r.clean);
		if (ss->data_fail == DF_NONE && (ss->scan.bare || ss->scan.oversize)) {
			ss->data_fail = ss->scan.bare ? DF_BARE : DF_SIZE;
			/* Close without the final dot: nothing is delivered. */
			smtp_relay_drop(ss, false);
		}
		conn_in_consume(c, r.consumed);
		if (ss->scan.done) {
			end_of_data(ss);
			return;
		}
		if (!room && ss->up) {	/* (a drop above ended the upstream: no drain will come) */
			ss->data_paused = 1;	/* the gateway's stall, not the client's */
			conn_read_stop(c);	/* until the upstream drains */
			return;
		}
	}
}
