"""Hostile input against mailgate-imapd (real Dovecot behind it): STARTTLS
injection, oversize literals (BAD and close, never a "+"), overlong lines,
bad tags (never echoed), the BAD budget, max_auth_failures, garbage
instead of a TLS handshake; none of it crashes the worker or leaves an
upstream session behind. A client's password is wiped from the gateway's
memory once its login has ended, whatever the outcome."""
import base64
import re
import secrets
import socket
import time

from mgtest import (GatewayTest, Imap, free_port, imapd_conf, listener, main, memory_find)


class ImapSecurity(GatewayTest):
    def setUp(self):
        super().setUp()
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret"})
        self.p_imaps, self.p_imap = free_port(), free_port()
        self.gw = self.imap_gateway(imapd_conf(self.pki, self.dc_port,
                                               listener("imaps", self.p_imaps, "implicit") +
                                               listener("imap", self.p_imap, "starttls"),
                                               extra="max_literal = 1024\nmax_errors = 4\n"
                                                     "max_auth_failures = 2"),
                                    [self.p_imaps, self.p_imap])

    def test_starttls_injection(self):
        c = Imap(self.p_imap)
        c.line()
        c.send("a STARTTLS\r\nb LOGIN alice secret\r\nc CAPABILITY\r\n")
        self.assertEqual(c.line(), "a OK Begin TLS negotiation now")
        c.starttls()
        # The pipelined commands were discarded: nothing is pending, and
        # a fresh CAPABILITY is the first answer we get.
        self.assertEqual(c.cmd("d", "CAPABILITY"),
                         ["* CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=PLAIN", "d OK Capability completed"])
        self.assertNotIn("Login: user=<alice>", self.dc.log())

    def test_oversize_literal(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.send("a LOGIN {1025}\r\n")
        self.assertEqual(c.line(), "a BAD Literal too big")
        self.assertTrue(c.closed())
        self.assertNotIn("+", c.buf.decode(errors="replace"))
        d = Imap(self.p_imaps, tls=True)
        d.line()
        d.send("b LOGIN {1024}\r\n")
        self.assertEqual(d.line(), "+ Ready for literal data")

    def test_line_too_long(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.send("a NOOP " + "x" * 9000 + "\r\n")
        self.assertEqual(c.line(), "* BAD Line too long")
        self.assertTrue(c.closed())

    def test_bad_tag_not_echoed_and_budget(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.send("GET / HTTP/1.1\r\n")
        self.assertEqual(c.line(), "GET BAD Unknown command or not allowed before login")
        c.send("+evil NOOP\r\n")
        self.assertEqual(c.line(), "* BAD Syntax error")
        c.send("a SELECT INBOX\r\n")
        self.assertEqual(c.line(), "a BAD Unknown command or not allowed before login")
        c.send("b FETCH 1 BODY[]\r\n")
        self.assertEqual(c.line(), "b BAD Unknown command or not allowed before login")
        self.assertEqual(c.line(), "* BYE Too many invalid commands")
        self.assertTrue(c.closed())
        self.gw.wait_log(r"result=too-many-errors")

    def test_auth_failures_then_bye(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        self.assertRegex(c.cmd("a", "LOGIN alice wrong")[-1], r"^a NO \[AUTHENTICATIONFAILED\]")
        self.assertRegex(c.cmd("b", "LOGIN alice wrong2")[-1], r"^b NO ")
        self.assertEqual(c.line(), "* BYE Too many authentication failures")
        self.assertTrue(c.closed())
        self.gw.wait_log(r"result=auth-failures")

    def test_every_refused_login_counts(self):
        """Logins the gateway refuses itself - a malformed PLAIN blob, a NUL
        or an over-long field - count toward max_auth_failures (2 here)
        exactly like a wrong password, and log auth-failed."""
        blob = base64.b64encode(b"alice\0secret").decode()          # one NUL: malformed
        kinds = (("malformed PLAIN", "AUTHENTICATE PLAIN " + blob, None, "PLAIN"),
                 ("NUL in the password", "LOGIN alice {7+}\r\nsec\0ret", "alice", "LOGIN"),
                 ("over-long password", 'LOGIN alice "%s"' % ("p" * 1100), "alice", "LOGIN"),
                 ("over-long name", 'LOGIN "%s" secret' % ("u" * 300), None, "LOGIN"))
        for label, command, user, mech in kinds:
            with self.subTest(kind=label):
                c = Imap(self.p_imaps, tls=True)
                c.line()
                self.assertRegex(c.cmd("a", command)[-1], r"^a NO \[AUTHENTICATIONFAILED\] ")
                c.send("b %s\r\n" % command)
                self.assertRegex(c.line(), r"^b NO \[AUTHENTICATIONFAILED\] ")
                self.assertEqual(c.line(), "* BYE Too many authentication failures")
                self.assertTrue(c.closed())
        log = self.gw.wait_log(r"(?s)(?:result=auth-failures.*){4}").string
        self.assertEqual(len(re.findall(r"auth-failed session=\S+ client=127\.0\.0\.1 user=alice mech=LOGIN\n",
                                        log)), 4)
        self.assertEqual(len(re.findall(r"auth-failed session=\S+ client=127\.0\.0\.1 mech=(PLAIN|LOGIN)\n",
                                        log)), 4)
        self.assertNotIn("Login: user=<alice>", self.dc.log())

    def test_held_bytes_after_failed_login_are_commands(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.send("a LOGIN alice wrong\r\nb NOOP\r\n")
        self.assertRegex(c.line(), r"^a NO ")
        self.assertEqual(c.line(), "b OK NOOP completed")

    def test_held_bytes_after_login_go_upstream(self):
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.send("a LOGIN alice secret\r\nb SELECT INBOX\r\n")
        self.assertRegex(c.until_tagged("a")[-1], r"^a OK ")
        self.assertRegex(c.until_tagged("b")[-1], r"^b OK \[READ-WRITE\]")

    def test_garbage_and_probes(self):
        s = socket.create_connection(("127.0.0.1", self.p_imaps))
        s.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 100)
        s.settimeout(5)
        try:
            s.recv(100)
        except ConnectionResetError:
            pass
        s.close()
        c = Imap(self.p_imap)
        c.line()
        c.send(b"a LOGIN {3}\r\n\x00\x01\x02\r\n")      # refused before TLS, bytes then parsed
        time.sleep(0.3)
        self.assertEqual(c.cmd("z", "NOOP")[-1], "z OK NOOP completed")
        self.assertIsNone(self.gw.proc.p.poll())



class MasterUser(GatewayTest):
    """DESIGN.md §5.2: the master user (EXTERNAL's way in) is never a login
    name from outside, or its password would be open to guessing: a LOGIN
    name or PLAIN authcid equal to it in any case - or naming it the way
    Dovecot's auth_master_user_separator does, "user*master" - is refused
    like a wrong password, never reaches the upstream, and counts toward
    max_auth_failures."""

    def setUp(self):
        super().setUp()
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret", "it-gatewaymaster": "pw"},
                               master_users={"gatewaymaster": "m4ster"})
        pwfile = self.tmp.file("master.pw", "m4ster\n", mode=0o600)
        self.p_imaps = free_port()
        self.gw = self.imap_gateway(imapd_conf(self.pki, self.dc_port, listener("imaps", self.p_imaps, "implicit"),
                                               extra='master_user = "gatewaymaster"\nmaster_password_file = "%s"\n'
                                                     "max_auth_failures = 2" % pwfile), [self.p_imaps])

    def test_master_user_refused_and_counted(self):
        b64 = lambda raw: base64.b64encode(raw).decode()
        attempts = (("PLAIN authcid", "AUTHENTICATE PLAIN " + b64(b"alice\0gatewaymaster\0m4ster"), "PLAIN"),
                    ("LOGIN, other case", "LOGIN GatewayMaster m4ster", "LOGIN"),
                    ("LOGIN user*master", 'LOGIN "alice*gatewaymaster" m4ster', "LOGIN"),
                    ("PLAIN user*master", "AUTHENTICATE PLAIN " + b64(b"\0alice*GATEWAYMASTER\0m4ster"), "PLAIN"))
        for label, command, mech in attempts:
            with self.subTest(attempt=label):
                c = Imap(self.p_imaps, tls=True)
                c.line()
                self.assertEqual(c.cmd("a", command), ["a NO [AUTHENTICATIONFAILED] Authentication failed."])
                c.send("b %s\r\n" % command)
                self.assertEqual(c.line(), "b NO [AUTHENTICATIONFAILED] Authentication failed.")
                self.assertEqual(c.line(), "* BYE Too many authentication failures")
                self.assertTrue(c.closed())
                self.gw.wait_log(r"auth-failed session=\S+ client=127\.0\.0\.1 user=\S*(?i:gatewaymaster) "
                                 r"mech=%s" % mech)
        log = self.gw.wait_log(r"(?s)(?:result=auth-failures.*){4}").string
        self.assertNotIn("dial -> greeting", log)          # no upstream ever heard of them
        self.assertNotIn("Login: user=<alice>", self.dc.log())
        # Real users are not affected, a name merely ending in it included.
        for user, pw in (("alice", "secret"), ("it-gatewaymaster", "pw")):
            c = Imap(self.p_imaps, tls=True)
            c.line()
            self.assertRegex(c.cmd("a", "LOGIN %s %s" % (user, pw))[-1], r"^a OK ")


class PasswordWiped(GatewayTest):
    """After a login ends - upstream NO, upstream unavailable, or OK - no
    copy of the client's password is left anywhere in the gateway's
    writable memory (heap, stack, static data): each form of login sends a
    fresh random password, and the test reads /proc/PID/mem."""

    def setUp(self):
        super().setUp()
        self.good = "Ok" + secrets.token_hex(12)
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret", "carol": self.good})
        self.p_imaps = free_port()
        self.gw = self.imap_gateway(imapd_conf(self.pki, self.dc_port, listener("imaps", self.p_imaps, "implicit"),
                                               extra="max_auth_failures = 10"), [self.p_imaps])
        self.source = 20

    def login(self, form, user, pw):
        """One login attempt in the given form; returns (client, tagged reply).
        Each attempt comes from its own address (Dovecot delays repeated
        failures from one address)."""
        self.source += 1
        c = Imap(self.p_imaps, tls=True, source="127.0.0.%d" % self.source, timeout=30)
        c.line()
        blob = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
        if form == "plain-ir":
            c.send("a AUTHENTICATE PLAIN %s\r\n" % blob)
        elif form == "plain-continuation":
            c.send("a AUTHENTICATE PLAIN\r\n")
            self.assertEqual(c.line(), "+ ")
            c.send(blob + "\r\n")
        elif form == "login-atom":
            c.send("a LOGIN %s %s\r\n" % (user, pw))
        elif form == "login-quoted":
            c.send('a LOGIN "%s" "%s"\r\n' % (user, pw))
        else:
            c.send("a LOGIN %s {%d+}\r\n%s\r\n" % (user, len(pw), pw))
        reply = c.until_tagged("a")[-1]
        # The login's end is handled before the next command is read.
        self.assertRegex(c.cmd("z", "NOOP")[-1], r"^z (OK|BAD)")
        return c, reply

    def assert_wiped(self, pw, what):
        self.assertEqual(memory_find(self.gw.worker_pid(), pw.encode()), [], what)

    FORMS = ("plain-ir", "plain-continuation", "login-atom", "login-quoted", "login-literal")

    def test_after_upstream_no(self):
        for form in self.FORMS:
            pw = "No" + secrets.token_hex(12)
            c, reply = self.login(form, "alice", pw)
            self.assertRegex(reply, r"^a NO \[AUTHENTICATIONFAILED\]", form)
            self.assert_wiped(pw, form)
            c.close()

    def test_after_login_ok(self):
        for form in self.FORMS:
            c, reply = self.login(form, "carol", self.good)
            self.assertRegex(reply, r"^a OK ", form)
            self.assert_wiped(self.good, form)
            c.close()

    def test_after_upstream_unavailable(self):
        self.dc.stop()
        for form in self.FORMS:
            pw = "Un" + secrets.token_hex(12)
            c, reply = self.login(form, "alice", pw)
            self.assertRegex(reply, r"^a NO \[UNAVAILABLE\]", form)
            self.assert_wiped(pw, form)
            c.close()


if __name__ == "__main__":
    main()
