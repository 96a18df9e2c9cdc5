"""Reproducers from the hostile review of mailgate-smtpd's relay paths (what
sits between the client and the upstream), each against the real daemon
with a real peer: Postfix with Dovecot SASL, or a scripted upstream for
timing no real server offers on demand.

  1. LoginEmptyInitialResponse (a finding): RFC 4954 lets a client send
     "AUTH LOGIN =" (an empty initial response). Postfix/Dovecot then ask
     "Username:" and the user name comes in the FIRST 334 answer - but the
     gateway took the empty "=" as the first response: the session is
     authenticated with no user recorded (session line without user=), and
     a later reconnect sends XCLIENT LOGIN= (empty), which Postfix refuses:
     the client's next MAIL gets "421 4.3.0 Upstream configuration error"
     and an error-level "configuration" line is logged for a client's
     perfectly valid exchange.
  2. ResetAfterFinalDot (a finding): a client whose connection is reset
     right after its final dot (the dot is already at the upstream) makes
     the gateway free the upstream connection without waiting for its
     verdict. A real MTA has the message by then (Postfix queues it before
     it answers), so it is delivered - yet the gateway logs msgs=0
     result=error and never counts it in its metrics.
  3. LongReplyToDot (a finding, low): an upstream that accepts a message
     with a reply of more lines than the gateway's reply parser keeps (64)
     is treated as lost: the client gets "451 4.4.2 Upstream connection
     lost" for a message the upstream accepted, and its retry delivers it
     twice."""
import base64
import socket
import struct
import time

from mgtest import (GatewayTest, ScriptedSmtp, Smtp, ehlo_until, free_port, listener, main, message,
                    need, send_message, smtpd_conf)


class LoginEmptyInitialResponse(GatewayTest):
    """Against a real Postfix whose SASL is a real Dovecot."""

    def setUp(self):
        super().setUp()
        need("dovecot", "postfix")
        auth_port = free_port()
        self.dc = self.dovecot(auth_port=auth_port, users={"alice": "secret"})
        pf_port = free_port()
        self.pf = self.postfix(pf_port,
                               main_extra="smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
                                          "smtpd_sasl_path = inet:127.0.0.1:%d\nmynetworks = 127.0.0.1/32"
                                          % auth_port)
        self.p = free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, pf_port, listener("smtps", self.p, "implicit"),
                                          upstream_extra="xclient = true",
                                          extra="max_message_size = 10000"), [self.p])

    def test_user_from_the_answer_to_username(self):
        """AUTH LOGIN = (RFC 4954 §4: an empty initial response): the user
        name is the answer to the first 334 (Dovecot's "Username:"). The
        gateway must record it (session line user=alice) and, after a
        reconnect, forward it (XCLIENT LOGIN=alice: Postfix logs
        sasl_method=XCLIENT, sasl_username=alice), so the next message is
        accepted - not refused with 421 4.3.0."""
        c = Smtp(self.p, tls=True, source="127.0.0.23")
        c.reply()
        c.expect("EHLO sasl.test", 250)
        self.assertEqual(c.cmd("AUTH LOGIN ="), (334, ["334 " + base64.b64encode(b"Username:").decode()]))
        self.assertEqual(c.cmd(base64.b64encode(b"alice").decode())[0], 334)
        self.assertEqual(c.cmd(base64.b64encode(b"secret").decode())[0], 235)
        # An oversize message drops the upstream; the next MAIL reconnects
        # with XCLIENT LOGIN=<the user>.
        c.expect("MAIL FROM:<alice@test.example>", 250)
        c.expect("RCPT TO:<x@remote.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: big\r\n\r\n" + b"y" * 20000 + b"\r\n.\r\n")
        self.assertEqual(c.reply()[0], 552)
        code, lines = c.cmd("MAIL FROM:<alice@test.example>")
        self.assertEqual(code, 250, lines)
        c.expect("RCPT TO:<x@remote.example>", 250)
        c.expect("DATA", 354)
        c.send(message("small") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.expect("QUIT", 221)
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.23\], sasl_method=XCLIENT, sasl_username=alice")
        self.gw.wait_log(r"client=127\.0\.0\.23:\d+ .*helo=sasl\.test user=alice msgs=1")


class LoginEqualsThenPassword(GatewayTest):
    """Review 11 of the fix above: after "AUTH LOGIN =" Exim takes the
    "=" as an empty user name and asks for the PASSWORD next ("334
    UGFzc3dvcmQ6"). The answer to that must never be taken for a user name:
    not logged (auth-failed user=...), not kept, not forwarded."""

    def test_password_after_equals_is_never_a_user_name(self):
        password = "Hunter2Exim"
        b64 = base64.b64encode(password.encode()).decode()
        up = ScriptedSmtp({"EHLO": b"250-scripted.test\r\n250 AUTH PLAIN LOGIN\r\n",
                           "AUTH": b"334 UGFzc3dvcmQ6\r\n",
                           b64.upper(): b"535 5.7.8 Incorrect authentication data\r\n"})
        self.addCleanup(up.stop)
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none",
                                                                 'relay_networks = "127.0.0.1/32"')), [p],
                          extra_args=["-d"])
        c = Smtp(p)
        c.reply()
        ehlo_until(c, "AUTH", "exim.test")
        self.assertEqual(c.cmd("AUTH LOGIN =")[0], 334)
        self.assertEqual(c.cmd(b64)[0], 535)
        c.expect("QUIT", 221)
        line = gw.wait_log(r"auth-failed session=\S+ client=127\.0\.0\.1.*").group(0)
        self.assertNotIn("user=", line)
        self.assertIn(b64, up.commands)         # it did reach the upstream, as a SASL line
        gw.wait_log(r"result=")
        self.assertNotIn(password, gw.log())
        self.assertNotIn(b64, gw.log())


class SlowDot(ScriptedSmtp):
    """Answers the final dot only after `delay` seconds (a before-queue
    content filter or milter at work); counts the dots it received."""

    def __init__(self, delay):
        self.delay = delay
        self.dots = 0
        super().__init__({"DATA": b"354 go\r\n", "DOT": b"250 2.0.0 Ok: queued as 4XYZ\r\n"})

    def dot(self, conn):
        self.dots += 1
        time.sleep(self.delay)
        super().dot(conn)


class ResetAfterFinalDot(GatewayTest):
    def test_message_accepted_after_the_reset_is_counted(self):
        """The final dot is at the upstream when the client's connection is
        reset (RST): the message is the upstream's now. The gateway must wait
        for its verdict (timeout_reply bounds it) and log it: the session
        line says msgs=1 once the upstream's 250 arrives - not msgs=0
        result=error for a message that was delivered."""
        up = SlowDot(1.5)
        self.addCleanup(up.stop)
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port,
                                     listener("local", p, "none", 'relay_networks = "127.0.0.1/32"')), [p])
        c = Smtp(p, timeout=20)
        c.reply()
        c.expect("EHLO reset.test", 250)
        c.expect("MAIL FROM:<a@test.example>", 250)
        c.expect("RCPT TO:<u@example.org>", 250)
        c.expect("DATA", 354)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.send(message("reset") + b".\r\n")
        deadline = time.time() + 5
        while not up.dots and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(up.dots, 1)
        c.sock.close()      # RST: the upstream is still thinking
        m = gw.wait_log(r"helo=reset\.test msgs=\d+ .*result=\S+")
        self.assertIn("msgs=1", m.group(0))


class LongReplyToDot(GatewayTest):
    def test_accepted_with_a_long_reply_is_not_451(self):
        """RFC 5321 sets no limit on a reply's lines. An upstream that
        accepts the message with an 81-line 250 has it: the client must get
        that 250 (the gateway may shorten the text it relays), never a 451
        that makes it send the message again."""
        reply = b"".join(b"250-2.0.0 line %d\r\n" % i for i in range(80)) + b"250 2.0.0 Ok: queued\r\n"
        up = ScriptedSmtp({"DATA": b"354 go\r\n", "DOT": reply})
        self.addCleanup(up.stop)
        p = free_port()
        self.gateway(smtpd_conf(self.pki, up.port,
                                listener("local", p, "none", 'relay_networks = "127.0.0.1/32"')), [p])
        c = Smtp(p, timeout=20)
        c.reply()
        c.expect("EHLO long.test", 250)
        code, lines = send_message(c, message("long reply"))
        self.assertEqual(code, 250, lines)


if __name__ == "__main__":
    main()
