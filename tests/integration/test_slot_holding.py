"""Three ways a client could hold a session slot longer than an
administrator expects, and how each is closed (as Postfix does):

- smtpd junk commands: NOOP, RSET, VRFY and HELP beyond SMTP_JUNK_LIMIT
  (100) since the session began or its last delivered message each count
  toward max_errors (Postfix's smtpd_junk_command_limit), so a NOOP every
  timeout_command - 1 seconds no longer keeps a session forever;
- smtpd trickled DATA: min_data_rate (Postfix's smtpd_min_data_rate) -
  bytes buy time at that rate, timeout_data is the first deadline and the
  most ever ahead, so a byte every timeout_data - 1 seconds is cut while a
  client well above the rate is never cut, however long its message;
- imapd: a login the client sent before timeout_preauth gets the
  upstream's answer (Dovecot delays a failure by auth_failure_delay); a
  failure after the deadline is followed by the BYE and the close, a
  success goes on as a logged-in session."""
import select
import socket
import ssl
import time

from mgtest import (GatewayTest, Imap, LoopbackServer, Smtp, free_port, imapd_conf, listener, main, message,
                    send_message, smtpd_conf)

JUNK_LIMIT = 100     # SMTP_JUNK_LIMIT in smtpd/smtp_session.h
MAX_ERRORS = 3
TIMEOUT_DATA = 2
MIN_RATE = 100       # bytes/s
PREAUTH = 2          # timeout_preauth
SLACK = 2.5          # how late a cut may come on a loaded machine (ASan)


class Junk(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.port = free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("local", self.port, "none", 'relay_networks = "127.0.0.1/32"'),
                          extra="max_errors = %d" % MAX_ERRORS)
        self.gw = self.gateway(conf, [self.port])

    def session(self):
        c = Smtp(self.port, timeout=5)
        self.assertEqual(c.reply()[0], 220)
        c.expect("EHLO junk.test", 250)
        return c

    def junk(self, c, n, verbs=("NOOP",)):
        """n junk commands pipelined in one burst; all must be answered 2xx."""
        cmds = [verbs[i % len(verbs)] for i in range(n)]
        c.send("".join(v + "\r\n" for v in cmds))
        for v in cmds:
            code, text = c.reply()
            self.assertLess(code, 300, "%s answered %d %s" % (v, code, text))

    def assertCutAfter(self, c, verb, allowed):
        """allowed more verbs are answered as usual; the one that reaches
        max_errors too, then 421 4.7.0 and the close."""
        for _ in range(allowed):
            self.assertLess(c.cmd(verb)[0], 300)
        code, _ = c.cmd(verb)
        self.assertLess(code, 300, "the reply that reaches the limit is still the usual one")
        self.assertEqual(c.reply(), (421, ["421 4.7.0 Too many errors"]))
        self.assertTrue(c.closed(5))

    def test_noops_beyond_the_limit_count_as_errors(self):
        c = self.session()
        self.junk(c, JUNK_LIMIT)            # 100 are free
        self.assertCutAfter(c, "NOOP", MAX_ERRORS - 1)
        self.gw.wait_log(r"helo=junk\.test .*result=too-many-errors")

    def test_every_junk_verb_counts(self):
        c = self.session()
        self.junk(c, JUNK_LIMIT, ("NOOP", "RSET", "VRFY postmaster", "HELP"))
        self.assertLess(c.cmd("VRFY postmaster")[0], 300)
        self.assertLess(c.cmd("HELP")[0], 300)
        code, _ = c.cmd("RSET")
        self.assertEqual(code, 250)
        self.assertEqual(c.reply(), (421, ["421 4.7.0 Too many errors"]))
        self.assertTrue(c.closed(5))

    def test_real_errors_and_junk_share_the_budget(self):
        c = self.session()
        self.junk(c, JUNK_LIMIT)
        self.assertEqual(c.cmd("BOGUS")[0], 502)          # error 1
        self.assertEqual(c.cmd("NOOP")[0], 250)           # error 2
        self.assertEqual(c.cmd("NOOP")[0], 250)           # error 3: the limit
        self.assertEqual(c.reply(), (421, ["421 4.7.0 Too many errors"]))

    def test_pipelined_flood_ends_at_the_limit(self):
        # Hostile: 500 NOOPs in one burst. Exactly JUNK_LIMIT + MAX_ERRORS
        # are answered 250, then 421 4.7.0 and the close - no hang, no
        # reply for the rest.
        c = self.session()
        c.send("NOOP\r\n" * 500)
        c.sock.settimeout(5)
        lines = c.read_to_end().decode().split("\r\n")
        self.assertEqual(lines[-1], "")
        lines = lines[:-1]
        self.assertEqual(lines[:-1], ["250 2.0.0 OK"] * (JUNK_LIMIT + MAX_ERRORS))
        self.assertEqual(lines[-1], "421 4.7.0 Too many errors")

    def test_delivered_message_resets_the_count(self):
        # Postfix: "The junk command count is reset after mail is delivered."
        c = self.session()
        self.junk(c, JUNK_LIMIT)
        code, _ = send_message(c, message("between the noops"))
        self.assertEqual(code, 250)
        self.junk(c, JUNK_LIMIT)            # 100 free again
        self.assertCutAfter(c, "NOOP", MAX_ERRORS - 1)
        self.assertEqual(len(self.up.wait_messages(1)), 1)


class DataRate(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.port, self.p_tls = free_port(), free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("local", self.port, "none", 'relay_networks = "127.0.0.1/32"') +
                          listener("smtps", self.p_tls, "implicit", 'relay_networks = "127.0.0.1/32"'),
                          extra="timeout_data = %d\nmin_data_rate = %d" % (TIMEOUT_DATA, MIN_RATE))
        self.gw = self.gateway(conf, [self.port, self.p_tls])

    def start_data(self, tls=False):
        c = Smtp(self.p_tls if tls else self.port, tls=tls, timeout=5)
        self.assertEqual(c.reply()[0], 220)
        c.expect("EHLO rate.test", 250)
        c.expect("MAIL FROM:<s@test.example>", 250)
        c.expect("RCPT TO:<user@example.org>", 250)
        c.expect("DATA", 354)
        return c

    def test_trickle_below_the_rate_is_cut(self):
        # 10 bytes/s, a tenth of min_data_rate: each byte buys 10 ms, so
        # the 2 s deadline moves on by 0.1 s per second - cut at ~2.2 s.
        # (Before min_data_rate every byte reset timeout_data: never cut.)
        self.trickle(self.start_data())

    def test_trickle_over_tls_counts_plaintext(self):
        # Hostile: over TLS each byte is a record of ~23 octets on the
        # wire, above the rate if ciphertext counted; the rate is of
        # message bytes (after TLS), so this is cut as well.
        self.trickle(self.start_data(tls=True))

    def trickle(self, c):
        body = message("trickled", "x" * 200 + "\r\n")
        t0, cut, got, i = time.time(), None, b"", 0
        while time.time() - t0 < 15:
            r, _, _ = select.select([c.sock], [], [], 0.1)
            if r:
                try:
                    data = c.sock.recv(4096)
                except ssl.SSLWantReadError:
                    data = None
                except (ConnectionResetError, ssl.SSLError):
                    data = b""
            if r and data is not None:
                got += data
                if not data:
                    cut = time.time() - t0
                    break
            try:
                c.sock.sendall(body[i:i + 1])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                cut = time.time() - t0
                break
            i += 1
        self.assertIsNotNone(cut, "a 10 bytes/s trickle was never cut")
        print("trickle cut after %.2f s, %d bytes sent" % (cut, i))
        self.assertGreater(cut, TIMEOUT_DATA - 0.2)
        self.assertLess(cut, TIMEOUT_DATA * 1.2 + SLACK)
        self.assertTrue(got.startswith(b"421 4.4.2 "), got)
        self.assertIn(b"Timeout", got)
        self.gw.wait_log(r"DATA deadline passed \(timeout_data 2 s, min_data_rate 100 bytes/s\)")
        self.gw.wait_log(r"helo=rate\.test .*result=timeout")
        time.sleep(0.5)
        self.assertEqual(self.up.messages(), [], "a cut message was delivered")

    def test_fast_sender_longer_than_timeout_data_is_not_cut(self):
        # ~2 KB/s (20 x the rate) for ~5 s, more than twice timeout_data:
        # the deadline stays timeout_data ahead; the message arrives
        # byte for byte.
        c = self.start_data()
        lines = b"".join(b"line %04d %s\r\n" % (n, b"abcdefghij" * 18) for n in range(50))
        msg = message("steady", lines.decode())
        t0 = time.time()
        for k in range(0, len(msg), 200):
            c.send(msg[k:k + 200])
            time.sleep(0.1)
        took = time.time() - t0
        self.assertGreater(took, TIMEOUT_DATA * 2)
        c.send(b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        c.expect("QUIT", 221)
        msgs = self.up.wait_messages(1)
        self.assertEqual(len(msgs), 1)
        body, _ = msgs[0].without_our_received()
        self.assertEqual(body, msg.replace(b"\r\n", b"\n"))
        print("%d bytes over %.1f s delivered" % (len(msg), took))

    def test_rate_off_by_default_keeps_inactivity_semantics(self):
        # No min_data_rate key (default 0, off): timeout_data is plain
        # inactivity - 20 bytes/s (below any rate) is not cut.
        self.gw.stop()
        self.procs.remove(self.gw)
        port = free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("local", port, "none", 'relay_networks = "127.0.0.1/32"'),
                          extra="timeout_data = %d" % TIMEOUT_DATA)
        self.gw = self.gateway(conf, [port])
        self.port = port
        c = self.start_data()
        msg = message("slow but alive", "ok\r\n")
        for k in range(0, len(msg), 10):
            c.send(msg[k:k + 10])
            time.sleep(0.5)            # 20 bytes/s, for longer than timeout_data
        c.send(b".\r\n")
        self.assertEqual(c.reply()[0], 250)


class DelayLoginOk(LoopbackServer):
    """A TCP proxy in front of Dovecot that holds the upstream's chunk
    holding "Logged in" (the successful login's tagged OK) for delay
    seconds: a good login that finishes after timeout_preauth."""

    def __init__(self, backend_port, delay):
        self.backend, self.delay = backend_port, delay
        super().__init__(backlog=8)

    def handle(self, gw):
        with socket.create_connection(("127.0.0.1", self.backend)) as up:
            socks = [gw, up]
            while True:
                r, _, _ = select.select(socks, [], [], 30)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is up:
                        if b"Logged in" in data:
                            time.sleep(self.delay)
                        gw.sendall(data)
                    else:
                        up.sendall(data)


class PreauthLogin(GatewayTest):
    def start(self, upstream_port):
        self.port = free_port()
        conf = imapd_conf(self.pki, upstream_port, listener("imap", self.port, "none"),
                          extra="timeout_preauth = %d" % PREAUTH)
        self.gw = self.imap_gateway(conf, [self.port])

    def connect(self):
        t0 = time.time()
        c = Imap(self.port, timeout=15)
        self.assertTrue(c.line().startswith("* OK"))
        return c, t0

    def login_late(self, wait, password, label, answer):
        """Connects, waits `wait` seconds, sends a1 LOGIN alice password and
        reads to its tagged answer, which must come after the deadline (or
        the test proves nothing): the client and the lines read."""
        c, t0 = self.connect()
        time.sleep(wait)
        c.send("a1 LOGIN alice %s\r\n" % password)
        lines = c.until_tagged("a1")
        answered = time.time() - t0
        print("%s login answered %.2f s after connect (timeout_preauth %d s)" % (label, answered, PREAUTH))
        self.assertGreater(answered, PREAUTH, "the %s came before the deadline: nothing tested" % answer)
        return c, lines

    def test_failed_login_after_the_deadline_gets_its_no_then_bye(self):
        # Dovecot answers a failed login after auth_failure_delay (2 s;
        # its clock has whole seconds, so 1 to 2.5 s): sent at 1.5 s, its
        # NO comes after the 2 s deadline.
        dc_port = free_port()
        self.dovecot(imap_port=dc_port, users={"alice": "secret"})
        self.start(dc_port)
        c, lines = self.login_late(1.5, "wrong", "failed", "NO")
        self.assertTrue(lines[-1].startswith("a1 NO "), lines)
        self.assertEqual(c.line(), "* BYE Disconnected for inactivity")
        self.assertTrue(c.closed(5))
        self.gw.wait_log(r"auth-failed session=\S+ client=127\.0\.0\.1 user=alice")
        self.gw.wait_log(r"listener=imap .*result=timeout")

    def test_good_login_answered_after_the_deadline_continues(self):
        dc_port = free_port()
        self.dovecot(imap_port=dc_port, users={"alice": "secret"})
        proxy = DelayLoginOk(dc_port, 1.5)
        self.addCleanup(proxy.stop)
        self.start(proxy.port)
        c, lines = self.login_late(1.0, "secret", "good", "OK")
        self.assertTrue(lines[-1].startswith("a1 OK "), lines)
        self.assertNotIn("* BYE Disconnected for inactivity", lines)
        time.sleep(PREAUTH)                 # no pre-auth deadline any more
        self.assertTrue(c.cmd("a2", "SELECT INBOX")[-1].startswith("a2 OK"))
        self.assertTrue(c.cmd("a3", "NOOP")[-1].startswith("a3 OK"))
        c.cmd("a4", "LOGOUT")

    def test_idle_client_is_still_cut_at_the_deadline(self):
        # The other side: no login in flight, the deadline holds.
        dc_port = free_port()
        self.dovecot(imap_port=dc_port, users={"alice": "secret"})
        self.start(dc_port)
        c, t0 = self.connect()
        c.send("a1 NOOP\r\n")
        self.assertTrue(c.until_tagged("a1")[-1].startswith("a1 OK"))
        self.assertEqual(c.line(), "* BYE Disconnected for inactivity")
        self.assertLess(time.time() - t0, PREAUTH + SLACK)
        self.assertTrue(c.closed(5))


if __name__ == "__main__":
    main()
