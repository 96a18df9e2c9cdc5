"""mailgate-imapd in front of a real Dovecot (private instance: passwd-file
users, maildir, login_trusted_networks 127.0.0.0/8): Python imaplib over
IMAP4_SSL and STARTTLS, raw clients for literals and hostile input,
Dovecot's log for forwarded client addresses; failover past an upstream
address that misbehaves before the login command went out."""
import imaplib
import ssl
import time

from mgtest import (GatewayTest, Imap, LoopbackServer, client_context, free_port, imapd_conf, listener, main)


class WithDovecot(GatewayTest):
    def setUp(self):
        super().setUp()
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret", "bob": "hunter2"})
        self.p_imaps, self.p_imap = free_port(), free_port()
        self.gw = self.imap_gateway(imapd_conf(self.pki, self.dc_port,
                                               listener("imaps", self.p_imaps, "implicit") +
                                               listener("imap", self.p_imap, "starttls"),
                                               extra="max_literal = 1024"),
                                    [self.p_imaps, self.p_imap])

    def imaps(self):
        return imaplib.IMAP4_SSL("localhost", self.p_imaps, ssl_context=client_context(), timeout=30)

    def test_imaps_login_select_logout(self):
        m = self.imaps()
        self.assertIn(b"AUTH=PLAIN", m.capabilities and b" ".join(
            c.encode() if isinstance(c, str) else c for c in m.capabilities) or b"")
        typ, data = m.login("alice", "secret")
        self.assertEqual(typ, "OK")
        typ, data = m.select("INBOX")
        self.assertEqual(typ, "OK")
        m.logout()
        self.gw.wait_log(r"session=\S+ listener=imaps .*user=alice bytes_in=\d+ bytes_out=\d+ upstream=127\.0\.0\.1:%d duration=" % self.dc_port)
        self.dc.wait_log(r"Login: user=<alice>")

    def test_wrong_password_then_retry(self):
        m = self.imaps()
        with self.assertRaises(imaplib.IMAP4.error):
            m.login("alice", "wrong")
        typ, _ = m.login("alice", "secret")
        self.assertEqual(typ, "OK")
        m.logout()
        self.gw.wait_log(r"auth-failed session=\S+ client=127\.0\.0\.1 user=alice mech=LOGIN")

    def test_starttls_imaplib(self):
        m = imaplib.IMAP4("127.0.0.1", self.p_imap, timeout=30)
        caps = [c.upper() for c in m.capabilities]
        self.assertIn("STARTTLS", caps)
        self.assertIn("LOGINDISABLED", caps)
        self.assertNotIn("AUTH=PLAIN", caps)
        m.starttls(ssl_context=client_context())
        typ, _ = m.login("bob", "hunter2")
        self.assertEqual(typ, "OK")
        m.logout()

    def test_greeting_and_capability(self):
        c = Imap(self.p_imap)
        self.assertEqual(c.line(), "* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ STARTTLS LOGINDISABLED] "
                                   "imap.test.example ready")
        self.assertEqual(c.cmd("a", "CAPABILITY"),
                         ["* CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ STARTTLS LOGINDISABLED",
                          "a OK Capability completed"])
        self.assertEqual(c.cmd("b", 'ID ("name" "test")'), ["* ID NIL", "b OK ID completed"])
        self.assertEqual(c.cmd("c", "NOOP"), ["c OK NOOP completed"])
        self.assertEqual(c.cmd("d", "SELECT INBOX")[-1][:6], "d BAD ")
        self.assertEqual(c.cmd("e", "LOGOUT"), ["* BYE Logging out", "e OK Logout completed"])
        self.assertTrue(c.closed())

    def test_privacy_required_without_continuation(self):
        c = Imap(self.p_imap)
        c.line()
        self.assertEqual(c.cmd("a", "LOGIN alice secret"), ["a NO [PRIVACYREQUIRED] Use STARTTLS first"])
        self.assertEqual(c.cmd("b", "AUTHENTICATE PLAIN"), ["b NO [PRIVACYREQUIRED] Use STARTTLS first"])
        # A synchronising literal is refused without any "+".
        c.send("c LOGIN {5}\r\n")
        self.assertEqual(c.line(), "c NO [PRIVACYREQUIRED] Use STARTTLS first")
        self.assertEqual(c.cmd("d", "NOOP"), ["d OK NOOP completed"])

    def test_literal_login(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.send("a LOGIN {5}\r\n")
        self.assertEqual(c.line(), "+ Ready for literal data")
        c.send("alice {6}\r\n")
        self.assertEqual(c.line(), "+ Ready for literal data")
        c.send("secret\r\n")
        lines = c.until_tagged("a")
        self.assertRegex(lines[-1], r"^a OK \[CAPABILITY IMAP4rev1 .*\] Logged in")
        self.assertEqual(c.cmd("b", "SELECT INBOX")[-1][:4], "b OK")
        # LITERAL+ without waiting, after a logout/login cycle on a new session.
        d = Imap(self.p_imaps, tls=True)
        d.line()
        d.send("x LOGIN {3+}\r\nbob {7+}\r\nhunter2\r\n")
        self.assertRegex(d.until_tagged("x")[-1], r"^x OK ")

    def test_authenticate_plain_forms(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        # SASL-IR
        self.assertRegex(c.cmd("a", "AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")[-1], r"^a OK ")
        d = Imap(self.p_imaps, tls=True)
        d.line()
        d.send("b AUTHENTICATE PLAIN\r\n")
        self.assertEqual(d.line(), "+ ")
        d.send("AGJvYgBodW50ZXIy\r\n")
        self.assertRegex(d.until_tagged("b")[-1], r"^b OK ")
        e = Imap(self.p_imaps, tls=True)
        e.line()
        e.send("c AUTHENTICATE PLAIN\r\n")
        e.line()
        e.send("*\r\n")
        self.assertEqual(e.line(), "c BAD Authentication cancelled")
        self.assertEqual(e.cmd("d", "AUTHENTICATE PLAIN not-base64!")[-1], "d BAD Invalid base64")
        self.assertEqual(e.cmd("e", "AUTHENTICATE CRAM-MD5")[-1][:7], "e NO [C")

    def test_forward_id(self):
        c = Imap(self.p_imaps, tls=True, source="127.0.0.5")
        c.line()
        self.assertRegex(c.cmd("a", "LOGIN alice secret")[-1], r"^a OK ")
        c.cmd("b", "LOGOUT")
        self.dc.wait_log(r"Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.5, lip=127\.0\.0\.1")


class UpstreamTls(GatewayTest):
    """The link from the gateway to Dovecot over TLS, verified by name."""

    def start(self, mode, verify_name):
        self.dc_port, self.dc_tls = free_port(), free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, imaps_port=self.dc_tls, users={"alice": "secret"},
                               tls_cert=self.pki + "/upstream.pem", tls_key=self.pki + "/upstream.key")
        self.p_imaps = free_port()
        port = self.dc_tls if mode == "implicit" else self.dc_port
        conf = imapd_conf(self.pki, port, listener("imaps", self.p_imaps, "implicit"),
                          upstream_extra='tls = "%s"\n  tls_client = "dc"' % mode,
                          extra='tls_client "dc" {\n  ca = "%s/ca.pem"\n  verify_name = "%s"\n}\n'
                                % (self.pki, verify_name))
        self.gw = self.imap_gateway(conf, [self.p_imaps])

    def login(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        return c.cmd("a", "LOGIN alice secret")[-1]

    def test_starttls_upstream(self):
        self.start("starttls", "upstream.test")
        self.assertRegex(self.login(), r"^a OK ")
        self.dc.wait_log(r"Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1.*TLS")

    def test_implicit_upstream(self):
        self.start("implicit", "upstream.test")
        self.assertRegex(self.login(), r"^a OK ")
        self.dc.wait_log(r"Login: user=<alice>.*TLS")

    def test_wrong_name_never_sends_credentials(self):
        self.start("starttls", "somebody-else.test")
        self.assertEqual(self.login()[:19], "a NO [UNAVAILABLE] ")
        self.gw.wait_log(r"server certificate rejected")
        self.assertNotIn("user=<alice>", self.dc.log())


class BadUpstream(LoopbackServer):
    """A fake IMAP server that fails the gateway before its login command:
    mode says how (set it before each attempt); connections are served
    one at a time, each until the gateway hangs up."""

    def __init__(self):
        self.mode = None
        super().__init__(serial=True, backlog=8)

    def handle(self, conn):
        conn.settimeout(10)
        big = b"x" * 70000              # over the gateway's IMAP_RESP_MAX (64 KiB)
        if self.mode == "oversized-greeting":
            conn.sendall(b"* OK " + big + b"\r\n")
        elif self.mode == "preauth-greeting":
            conn.sendall(b"* PREAUTH [CAPABILITY IMAP4rev1 AUTH=PLAIN] logged in already\r\n")
        else:
            conn.sendall(b"* OK fake server ready\r\n")
            tag = self.read_line(conn).split(b" ")[0]
            if self.mode == "oversized-capability":
                conn.sendall(b"* CAPABILITY IMAP4rev1 " + big + b"\r\n" + tag + b" OK done\r\n")
            elif self.mode == "continuation":
                conn.sendall(b"+ what now\r\n")
        self.wait_hangup(conn)


class Failover(GatewayTest):
    """DESIGN.md §3: anything wrong before our login command went out - a
    greeting other than * OK (PREAUTH, oversized), an oversized or
    unexpected response to CAPABILITY - moves on to the next address; the
    client just logs in."""

    def test_next_address_after_failure_before_login(self):
        bad = BadUpstream()
        self.addCleanup(bad.stop)
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret"})
        self.p_imaps = free_port()
        conf = imapd_conf(self.pki, self.dc_port,
                          listener("imaps", self.p_imaps, "implicit", 'upstream = "two"'),
                          extra='upstream "two" {\n  address = { "127.0.0.1:%d", "127.0.0.1:%d" }\n}\n'
                                % (bad.port, self.dc_port))
        self.gw = self.imap_gateway(conf, [self.p_imaps])
        for mode, why in (("oversized-greeting", "oversized response from upstream"),
                          ("preauth-greeting", "upstream sent PREAUTH"),
                          ("oversized-capability", "oversized response from upstream"),
                          ("continuation", "unexpected continuation from upstream")):
            with self.subTest(mode=mode):
                bad.mode = mode
                c = Imap(self.p_imaps, tls=True)
                c.line()
                self.assertRegex(c.cmd("a", "LOGIN alice secret")[-1], r"^a OK \[CAPABILITY ")
                self.assertRegex(c.cmd("b", "SELECT INBOX")[-1], r"^b OK ")
                c.close()
                self.gw.wait_log(r"imap upstream two 127\.0\.0\.1:%d: %s" % (bad.port, why))



class NoPlainUpstream(GatewayTest):
    """An upstream without AUTH=PLAIN (Dovecot with auth_mechanisms =
    login): a login with an authorization identity cannot be passed on, and
    the gateway answers the NO itself - a whole line, CRLF included, with
    the next command's reply on a line of its own. A plain LOGIN goes up
    as LOGIN with literals and Dovecot's answer comes back intact."""

    def setUp(self):
        super().setUp()
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret"},
                               extra="auth_mechanisms = login\n")
        self.p_imaps = free_port()
        self.gw = self.imap_gateway(imapd_conf(self.pki, self.dc_port, listener("imaps", self.p_imaps, "implicit"),
                                               extra="max_auth_failures = 5"), [self.p_imaps])

    def test_authzid_refused_with_a_whole_line(self):
        import base64
        c = Imap(self.p_imaps, tls=True)
        c.line()
        blob = base64.b64encode(b"bob\0alice\0secret").decode()
        c.send("a AUTHENTICATE PLAIN %s\r\nb NOOP\r\n" % blob)
        self.assertEqual(c.line(), "a NO [AUTHENTICATIONFAILED] Upstream cannot log in as another user")
        self.assertEqual(c.line(), "b OK NOOP completed")
        self.assertEqual(c.cmd("c", "NOOP"), ["c OK NOOP completed"])
        self.gw.wait_log(r"auth-failed session=\S+ client=127\.0\.0\.1 user=bob mech=PLAIN")

    def test_login_literals_answer_intact(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.send("a LOGIN alice secret\r\nb NOOP\r\n")
        self.assertEqual(c.line(), "a NO [ALERT] Unsupported authentication mechanism.")
        self.assertEqual(c.line(), "b OK NOOP completed")
        self.gw.wait_log(r"imap upstream dovecot: login-literal1 -> login-literal2")


if __name__ == "__main__":
    main()
