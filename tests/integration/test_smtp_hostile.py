"""What a hostile review of mailgate-smtpd found, one test per defect, each
against the real daemon with a real upstream (smtp-sink, Postfix with
Dovecot SASL, or a scripted upstream for replies no real server sends):
the pre-auth MAIL/RCPT overflow (RFC 5321 path limits), AUTH LOGIN's user
name, sessions closed mid-handshake staying closed, peers_only refusals
counting and their 30 s deadline, upstream replies between the parser's
and the buffer's limits, max_line at its maximum, AUTH before EHLO, an
over-long SASL response, and tls section names of any length."""
import base64
import os
import signal
import socket
import ssl
import time

from mgtest import (GatewayTest, Postfix, ScriptedSmtp, Smtp, client_context, ehlo_until, free_port, listener,
                    main, message, need, send_message, smtpd_conf)

LONG_LOCAL = '"' + "a" * 1250 + '"'
CRITICAL_MAIL = "MAIL FROM:<%s@example.org>" % LONG_LOCAL + " BODY=8BITMIME" * 16
CRITICAL_RCPT = "RCPT TO:<%s@example.org> ORCPT=rfc822;x@example.org" % LONG_LOCAL



class PathOverflow(GatewayTest):
    """The critical one: a quoted local part of 1,250 octets plus 16
    forwarded parameters once wrote past a 1,200-byte stack buffer."""

    def test_long_quoted_paths_refused_on_every_listener(self):
        up = self.sink()
        p_tls, p_sub, p_local = free_port(), free_port(), free_port()
        conf = smtpd_conf(self.pki, up.port,
                          listener("smtps", p_tls, "implicit") +
                          listener("submission", p_sub, "starttls") +
                          listener("local", p_local, "none", 'relay_networks = "127.0.0.1/32"'))
        self.gateway(conf, [p_tls, p_sub, p_local])
        for name, port in (("smtps", p_tls), ("submission", p_sub), ("local", p_local)):
            c = Smtp(port, tls=(name == "smtps"))
            self.assertEqual(c.reply()[0], 220)
            if name == "submission":
                c.expect("EHLO x.test", 250)
                c.expect("STARTTLS", 220)
                c.starttls()
            lines = ehlo_until(c, "8BITMIME")
            self.assertIn("250-DSN", lines)    # so ORCPT would be forwarded
            self.assertEqual(c.cmd(CRITICAL_MAIL)[1], ["501 5.1.3 Path too long"], name)
            c.expect("MAIL FROM:<sender@test.example>", 250)
            self.assertEqual(c.cmd(CRITICAL_RCPT)[0], 501, name)
            # The quoted form is counted as sent: 64 octets pass, 65 do not.
            ok = '"' + "b" * 62 + '"'
            c.expect("RCPT TO:<%s@example.org>" % ok, 250)
            code, lines = c.cmd("RCPT TO:<\"%s\"@example.org>" % ("b" * 63))
            self.assertEqual((code, lines[0][:9]), (501, "501 5.1.3"), name)
            c.expect("RSET", 250)
            code, lines = send_message(c, message("after the attack via " + name))
            self.assertEqual(code, 250, lines)
            c.expect("QUIT", 221)
        msgs = up.wait_messages(3)
        self.assertEqual(len(msgs), 3)
        for m in msgs:
            self.assertNotIn("aaaa", m.mail or "")
            self.assertTrue(all("aaaa" not in r for r in m.rcpts))


class HandshakeClose(GatewayTest):
    def test_sigterm_during_handshake_closes_it(self):
        """shutdown_timeout ends a session whose handshake is running: it
        never comes back to life when the handshake would have finished."""
        up = self.sink()
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("smtps", p, "implicit"),
                                     extra="shutdown_timeout = 1"), [p])
        raw = socket.create_connection(("127.0.0.1", p))
        time.sleep(0.2)
        t0 = time.time()
        os.kill(gw.proc.pid, signal.SIGTERM)
        time.sleep(1.6)    # past shutdown_timeout
        greeting = None
        try:
            tls = client_context().wrap_socket(raw, server_hostname="localhost")
            tls.settimeout(3)
            greeting = tls.recv(100)
        except (ssl.SSLError, OSError):
            pass
        self.assertFalse(greeting, "a session closed at shutdown_timeout answered: %r" % greeting)
        gw.proc.p.wait(timeout=5)
        self.assertLess(time.time() - t0, 5)
        gw.check_sanitizers()
        self.assertRegex(gw.log(), r"result=shutdown")

    def test_upstream_loss_during_starttls_is_silent(self):
        """The upstream connection dies while the client does STARTTLS: the
        client's session goes on over TLS (that connection was to be
        dropped anyway), with no stray 421 queued before the handshake."""
        up = self.sink()
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("sub", p, "starttls",
                                                                 "require_tls = false")), [p])
        c = Smtp(p)
        c.reply()
        c.expect("EHLO x.test", 250)
        c.expect("MAIL FROM:<a@test.example>", 250)    # opens the upstream
        c.expect("RSET", 250)
        c.expect("STARTTLS", 220)
        up.stop()                                       # the upstream vanishes
        time.sleep(0.5)
        c.starttls()
        self.assertEqual(c.cmd("EHLO x.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 421)    # it is gone now
        gw.wait_log(r"result=upstream-failed")


class PeersOnlyRefusals(GatewayTest):
    def start(self, max_errors):
        up = self.sink()
        self.p = free_port()
        conf = smtpd_conf(self.pki, up.port,
                          listener("po", self.p, "implicit", 'client_cert = "optional"\n  peers_only = true'),
                          tls_extra='client_ca = "%s/ca.pem"' % self.pki,
                          extra='max_errors = %d\npeer "partner" {\n  name = "partner-mx.test"\n}\n'
                                % max_errors)
        self.gw = self.gateway(conf, [self.p])
        c = Smtp(self.p, tls=True)
        self.assertEqual(c.reply()[1], ["554 5.7.1 Certificate not accepted"])
        return c

    def test_refusals_count_toward_max_errors(self):
        c = self.start(3)
        self.assertEqual(c.cmd("EHLO x.test")[0], 503)
        self.assertEqual(c.cmd("NOOP")[0], 503)
        code, lines = c.cmd("NOOP")
        self.assertEqual(code, 503)
        self.assertEqual(c.reply()[1], ["421 4.7.0 Too many errors"])
        self.assertTrue(c.closed())
        self.gw.wait_log(r"listener=po .*result=cert-rejected")

    def test_thirty_seconds_is_a_deadline(self):
        """Talking does not extend the 30 s a refused client gets."""
        c = self.start(100)
        t0 = time.time()
        closed = False
        while time.time() - t0 < 45:
            try:
                code, lines = c.cmd("NOOP")
            except (EOFError, OSError):
                closed = True
                break
            if code == 421:
                closed = c.closed()
                break
            self.assertEqual(code, 503)
            time.sleep(2)
        self.assertTrue(closed)
        self.assertLess(time.time() - t0, 35)


class UpstreamReplies(GatewayTest):
    def gateway_to(self, replies):
        self.up = ScriptedSmtp(replies)
        self.addCleanup(self.up.stop)
        self.p = free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port,
                                          listener("local", self.p, "none",
                                                   'relay_networks = "127.0.0.1/32"'),
                                          extra="timeout_command = 300"), [self.p])
        c = Smtp(self.p, timeout=20)
        c.reply()
        c.expect("EHLO x.test", 250)
        return c

    def test_reply_over_the_line_count_is_relayed_shortened(self):
        """70 lines: RFC 5321 sets no line count, so the reply counts (its
        code is the upstream's answer) and reaches the client at once,
        shortened to the first 63 lines and the last."""
        many = b"".join(b"250-line %d\r\n" % i for i in range(69)) + b"250 ok\r\n"
        c = self.gateway_to({"MAIL": many})
        t0 = time.time()
        code, lines = c.cmd("MAIL FROM:<a@test.example>")
        self.assertEqual(code, 250, lines)
        self.assertEqual(lines, ["250-line %d" % i for i in range(63)] + ["250 ok"])
        self.assertLess(time.time() - t0, 10)
        self.assertEqual(c.cmd("RCPT TO:<u@example.org>")[0], 250)    # the session goes on

    def test_reply_over_the_byte_limit_fails_at_once(self):
        """Over SMTP_REPLY_MAX_BYTES (64 lines of 2,048 octets) without
        an end: the client gets its answer at once, not after
        timeout_reply."""
        line = b"250-" + b"y" * 2000 + b"\r\n"
        many = line * 70 + b"250 ok\r\n"
        c = self.gateway_to({"MAIL": many})
        t0 = time.time()
        code, lines = c.cmd("MAIL FROM:<a@test.example>")
        self.assertEqual(code, 421, lines)
        self.assertLess(time.time() - t0, 10)
        self.gw.wait_log(r"over-long reply|malformed")

    def test_long_but_valid_reply_relayed_whole(self):
        """40 lines of 2,000 octets (80 KB, more than the old 64 KiB
        buffer) are a valid reply: relayed line for line, not cut."""
        text = [b"x" * 1990 + b"%04d" % i for i in range(40)]
        reply = b"".join(b"250-" + t + b"\r\n" for t in text[:-1]) + b"250 " + text[-1] + b"\r\n"
        c = self.gateway_to({"MAIL": reply})
        code, lines = c.cmd("MAIL FROM:<a@test.example>")
        self.assertEqual(code, 250)
        self.assertEqual([l[4:] for l in lines], [t.decode() for t in text])


    def test_upstream_421_ends_the_session(self):
        """RFC 5321 §3.8: a 421 closes the channel. The upstream's 421 to a
        RCPT reaches the client as it was said, and the gateway closes the
        session then - even though this upstream keeps its connection open
        - rather than sending the next command on."""
        c = self.gateway_to({"RCPT": b"421 4.7.0 scripted.test Error: too many errors\r\n"})
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 250)
        c.send(b"RCPT TO:<u@example.org>\r\nRCPT TO:<v@example.org>\r\n")     # pipelined
        self.assertEqual(c.reply(), (421, ["421 4.7.0 scripted.test Error: too many errors"]))
        self.assertTrue(c.closed(), "more after the 421: %r" % c.buf)
        self.assertIn("RCPT TO:<u@example.org>", self.up.commands)
        self.assertNotIn("RCPT TO:<v@example.org>", self.up.commands)
        self.gw.wait_log(r"upstream-closing .*reply=.*too many errors")

    def test_upstream_421_during_data_ends_the_session(self):
        """A 421 said unasked while the client is sending its message: the
        message is lost (451 at its dot, never 250), then 421 and the close -
        the next MAIL does not reach a fresh upstream."""
        c = self.gateway_to({"DATA": b"354 go\r\n421 4.4.2 scripted.test Error: timeout exceeded\r\n"})
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<u@example.org>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.reply()[0], 451)
        self.assertEqual(c.reply()[0], 421)
        self.assertTrue(c.closed(), "more after the 421: %r" % c.buf)
        self.assertEqual(self.up.commands[-1], "DATA", self.up.commands)    # no fresh upstream

    def test_upstream_421_to_rset_is_not_turned_into_250(self):
        """A RSET the gateway answers itself when the upstream agrees: a 421
        from the upstream is the client's answer instead, and the end."""
        c = self.gateway_to({"RSET": b"421 4.3.0 scripted.test Server going down\r\n"})
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 250)
        self.assertEqual(c.cmd("RSET"), (421, ["421 4.3.0 scripted.test Server going down"]))
        self.assertTrue(c.closed(), "more after the 421: %r" % c.buf)


class CommandLimits(GatewayTest):
    def start(self, extra=""):
        self.up = self.sink()
        self.p = free_port()
        self.p_tls = free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port,
                                          listener("local", self.p, "none",
                                                   'relay_networks = "127.0.0.1/32"') +
                                          listener("smtps", self.p_tls, "implicit"), extra=extra),
                               [self.p, self.p_tls])

    def test_max_line_at_its_maximum(self):
        """max_line = 65536: a longer line gets 500 5.5.2 at once (the input
        buffer is derived from max_line), and the session goes on."""
        self.start("max_line = 65536")
        c = Smtp(self.p, timeout=10)
        c.reply()
        c.expect("EHLO x.test", 250)
        c.send(b"NOOP " + b"x" * 70000 + b"\r\n")
        self.assertEqual(c.reply()[1], ["500 5.5.2 Line too long"])
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.send(b"NOOP " + b"y" * 65000 + b"\r\n")     # within max_line
        self.assertEqual(c.reply()[0], 250)

    def test_auth_before_ehlo(self):
        self.start()
        c = Smtp(self.p_tls, tls=True)
        c.reply()
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")[1], ["503 5.5.1 Send EHLO or HELO first"])
        self.assertEqual(c.cmd("AUTH LOGIN")[0], 503)


class TicketLabel(GatewayTest):
    """The per-section ticket key is derived from the whole section name,
    whatever its length (its label was once cut at 300 octets and the HMAC
    read past it)."""

    def resumes(self, port_a, port_b):
        ctx = client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2    # a session object right after the handshake
        a = Smtp(port_a, tls=True, ctx=ctx)
        a.reply()
        sess = a.sock.session
        a.cmd("QUIT")
        b = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port_b)),
                            server_hostname="localhost", session=sess)
        reused = b.session_reused
        b.close()
        return reused

    def tls_section(self, name, key):
        return ('tls "%s" {\n  cert = { "%s/server-ecdsa.pem", "%s/server-rsa.pem" }\n'
                '  key = { "%s/server-ecdsa.key", "%s/server-rsa.key" }\n  ticket_key = "%s"\n}\n'
                % (name, self.pki, self.pki, self.pki, self.pki, key))

    def test_long_names_give_distinct_keys(self):
        """Two sections whose 290-character names differ in the last
        character never accept each other's tickets; one instance and
        another sharing ticket_key do, for the same long name."""
        key = self.tmp.file("ticket.key", os.urandom(64), mode=0o600)
        up = self.sink()
        names = ["t" * 290 + "A", "t" * 290 + "B"]
        pa, pb, pa2 = free_port(), free_port(), free_port()
        extra = self.tls_section(names[0], key) + self.tls_section(names[1], key)
        self.gateway(smtpd_conf(self.pki, up.port,
                                listener("a", pa, "implicit", 'tls = "%s"' % names[0]) +
                                listener("b", pb, "implicit", 'tls = "%s"' % names[1]), extra=extra),
                     [pa, pb])
        self.gateway(smtpd_conf(self.pki, up.port,
                                listener("a", pa2, "implicit", 'tls = "%s"' % names[0]),
                                extra=self.tls_section(names[0], key)), [pa2])
        self.assertTrue(self.resumes(pa, pa))
        self.assertTrue(self.resumes(pa, pa2))
        self.assertFalse(self.resumes(pa, pb))


class SaslLimits(GatewayTest):
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
                                          extra="max_message_size = 10000\nmax_line = 600"), [self.p])

    def session(self, source):
        c = Smtp(self.p, tls=True, source=source)
        c.reply()
        c.expect("EHLO sasl.test", 250)
        return c

    def test_login_initial_response_is_the_user(self):
        """AUTH LOGIN <user> then the password at the 334: the user name is
        logged and forwarded (XCLIENT LOGIN after a reconnect), never the
        password."""
        user = base64.b64encode(b"alice").decode()
        c = self.session("127.0.0.21")
        self.assertEqual(c.cmd("AUTH LOGIN " + user)[0], 334)
        self.assertEqual(c.cmd(base64.b64encode(b"hunter2").decode())[0], 535)
        self.gw.wait_log(r"auth-failed session=\S+ client=127\.0\.0\.21 user=alice mech=LOGIN")
        self.assertEqual(c.cmd("AUTH LOGIN " + user)[0], 334)
        self.assertEqual(c.cmd(base64.b64encode(b"secret").decode())[0], 235)
        # An oversize message drops the upstream; the next MAIL reconnects
        # with XCLIENT LOGIN=<the user>.
        c.expect("MAIL FROM:<alice@test.example>", 250)
        c.expect("RCPT TO:<x@remote.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: big\r\n\r\n" + b"y" * 20000 + b"\r\n.\r\n")
        self.assertEqual(c.reply()[0], 552)
        code, lines = send_message(c, message("small"), mail="alice@test.example",
                                   rcpts=("x@remote.example",))
        self.assertEqual(code, 250, lines)
        c.expect("QUIT", 221)
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.21\], sasl_method=XCLIENT, sasl_username=alice")
        self.gw.wait_log(r"helo=sasl\.test user=alice msgs=1")
        for secret in ("hunter2", "secret", "aHVudGVyMg", "c2VjcmV0"):
            self.assertNotIn(secret, self.gw.log())
            self.assertNotIn("sasl_username=" + secret, self.pf.log())

    def test_overlong_sasl_response_aborts_the_exchange(self):
        """A SASL line over max_line ends the exchange (501) and the session
        is back in the command state: the next command is a command."""
        c = self.session("127.0.0.22")
        self.assertEqual(c.cmd("AUTH PLAIN")[0], 334)
        c.send(b"QUFB" * 300 + b"\r\n")       # 1200 octets > max_line = 600
        self.assertEqual(c.reply()[1], ["501 5.5.2 Line too long, authentication aborted"])
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")[0], 235)


if __name__ == "__main__":
    main()
