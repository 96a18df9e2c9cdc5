"""Hostile input against mailgate-smtpd: STARTTLS command injection, SMTP
smuggling, bare CR/LF and NUL in commands, overlong lines, the error
budget, client-sent XCLIENT/XFORWARD, require_tls, relay control (%-hack,
bang paths, quoted local parts, address literals). Each test asserts what
reached the upstream (smtp-sink's dump) as well as the replies."""
import time

from mgtest import (GatewayTest, Smtp, free_port, listener, main, message, send_message,
                    smtpd_conf)


class Security(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p_sub, self.p_local, self.p_mx = free_port(), free_port(), free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("submission", self.p_sub, "starttls") +
                          listener("local", self.p_local, "none", 'relay_networks = "127.0.0.1/32"') +
                          listener("mx", self.p_mx, "starttls", "require_tls = false\n  auth = false"),
                          extra="max_errors = 5\nmax_line = 600")
        self.gw = self.gateway(conf, [self.p_sub, self.p_local, self.p_mx])

    def mx(self):
        c = Smtp(self.p_mx)
        self.assertEqual(c.reply()[0], 220)
        c.expect("EHLO client.test", 250)
        return c

    def test_starttls_injection_discarded(self):
        """Commands pipelined after STARTTLS are never executed (CVE-2011-0411)."""
        c = Smtp(self.p_sub)
        c.reply()
        c.expect("EHLO inj.test", 250)
        c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<evil@test.example>\r\n")
        self.assertEqual(c.reply()[0], 220)
        c.starttls()
        # Nothing of the injected commands runs: no replies are pending,
        # and the session needs EHLO again.
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 503)
        c.expect("EHLO inj.test", 250)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.expect("QUIT", 221)
        self.assertEqual(self.up.messages(), [])

    def test_starttls_rules(self):
        c = self.mx()
        self.assertEqual(c.cmd("STARTTLS now")[1], ["501 5.5.4 Syntax: STARTTLS"])
        c.expect("MAIL FROM:<a@test.example>", 250)
        self.assertEqual(c.cmd("STARTTLS")[0], 503)    # inside a transaction
        c.expect("RSET", 250)
        lo = Smtp(self.p_local)
        lo.reply()
        self.assertEqual(lo.cmd("STARTTLS")[1], ["502 5.5.1 STARTTLS not offered"])

    def test_require_tls(self):
        c = Smtp(self.p_sub)
        c.reply()
        c.expect("EHLO a.test", 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[1],
                         ["530 5.7.0 Must issue a STARTTLS command first"])
        self.assertEqual(c.cmd("AUTH PLAIN AGEAYg==")[0], 530)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)

    def test_no_auth_before_tls_on_mx(self):
        c = self.mx()
        self.assertEqual(c.cmd("AUTH PLAIN AGEAYg==")[0], 503)

    def test_smuggling(self):
        """Each smuggling variant: the message is refused with 550 5.6.0,
        nothing is delivered, and the smuggled MAIL/RCPT never reach the
        upstream (smtp-sink would have dumped a second transaction)."""
        for ending in (b"\n.\r\n", b"\n.\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"):
            c = self.mx()
            c.expect("MAIL FROM:<a@test.example>", 250)
            c.expect("RCPT TO:<user@example.org>", 250)
            c.expect("DATA", 354)
            c.send(b"Subject: smuggle\r\n\r\nhello" + ending +
                   b"MAIL FROM:<evil@test.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
                   b"Subject: smuggled\r\n\r\nowned\r\n.\r\n")
            self.assertEqual(c.reply(), (550, ["550 5.6.0 Message contains bare CR or LF"]), ending)
            # The session continues and the next message goes through.
            code, _ = send_message(c, message("clean after %r" % ending))
            self.assertEqual(code, 250)
            c.expect("QUIT", 221)
        time.sleep(0.3)
        msgs = self.up.messages()
        self.assertEqual(len(msgs), 5)
        for m in msgs:
            self.assertNotIn(b"smuggle", m.message)
            self.assertNotIn(b"owned", m.message)
            self.assertEqual(m.rcpts, ["<user@example.org>"])

    def test_bare_cr_lf_nul_in_commands(self):
        c = self.mx()
        c.send(b"NOOP\n")
        self.assertEqual(c.reply()[1], ["500 5.5.2 Bare CR or LF in command"])
        c.send(b"NO\rOP\r\n")
        self.assertEqual(c.reply()[0], 500)
        c.send(b"NO\x00OP\r\n")
        self.assertEqual(c.reply()[1], ["500 5.5.2 NUL character in command"])
        self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_overlong_line(self):
        c = self.mx()
        c.send(b"NOOP " + b"x" * 5000 + b"\r\n")
        self.assertEqual(c.reply()[1], ["500 5.5.2 Line too long"])
        # The tail of the line is discarded, not executed.
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.send(b"MAIL FROM:<" + b"a" * 590 + b"@test.example>\r\n")
        self.assertEqual(c.reply()[1], ["500 5.5.2 Line too long"])
        self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_error_budget(self):
        c = self.mx()
        for i in range(4):
            self.assertEqual(c.cmd("BOGUS")[0], 502)
        c.send("BOGUS\r\n")
        self.assertEqual(c.reply()[0], 502)            # the 5th error is still answered
        self.assertEqual(c.reply()[1], ["421 4.7.0 Too many errors"])
        self.assertTrue(c.closed())
        self.gw.wait_log(r"result=too-many-errors")

    def test_client_xclient_refused(self):
        c = self.mx()
        self.assertEqual(c.cmd("XCLIENT ADDR=6.6.6.6 NAME=evil.example")[1],
                         ["502 5.5.1 Command not permitted"])
        self.assertEqual(c.cmd("XFORWARD ADDR=6.6.6.6")[0], 502)
        code, _ = send_message(c, message("after xclient"))
        self.assertEqual(code, 250)
        m = self.up.wait_messages(1)
        self.assertEqual(m[0].client_addr, "127.0.0.1")

    def test_relay_denied(self):
        denied = ["user@elsewhere.example", "user%elsewhere.example@example.org",
                  "user!elsewhere.example@example.org", '"user@elsewhere.example"@example.org',
                  '"user%elsewhere"@example.org', "user@[192.0.2.1]", "user@sub.sub.example.net",
                  "@example.org:user@elsewhere.example"]
        for i, r in enumerate(denied):
            if i % 4 == 0:       # stay under max_errors = 5
                c = self.mx()
                c.expect("MAIL FROM:<a@test.example>", 250)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % r)[1], ["554 5.7.1 Relay access denied"], r)
        self.assertEqual([m.raw for m in self.up.messages()], [])
        self.gw.wait_log(r"relay-denied session=\S+ client=127\.0\.0\.1 rcpt=")

    def test_relay_allowed_forms(self):
        c = self.mx()
        c.expect("MAIL FROM:<a@test.example>", 250)
        for r in ["user@example.org", "user@EXAMPLE.ORG", "user@example.org.", "user@a.example.org",
                  "Postmaster", "POSTMASTER", "@relay.example:user@example.org"]:
            self.assertEqual(c.cmd("RCPT TO:<%s>" % r)[0], 250, r)
        c.expect("DATA", 354)
        c.send(b"Subject: ok\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        m = self.up.wait_messages(1)
        self.assertEqual(m[0].rcpts, ["<user@example.org>", "<user@EXAMPLE.ORG>", "<user@example.org.>",
                                      "<user@a.example.org>", "<Postmaster>", "<POSTMASTER>",
                                      "<user@example.org>"])

    def test_session_end_result_relay_denied(self):
        c = self.mx()
        c.expect("MAIL FROM:<a@test.example>", 250)
        c.cmd("RCPT TO:<x@elsewhere.example>")
        c.expect("QUIT", 221)
        self.gw.wait_log(r"helo=client\.test msgs=0 .*result=relay-denied")

    def test_bad_addresses_and_params(self):
        c = self.mx()
        self.assertEqual(c.cmd("MAIL FROM:user@test.example")[1][0][:9], "501 5.1.7")
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example> FOO=bar")[1][0][:9], "555 5.5.4")
        c.expect("NOOP", 250)
        self.assertEqual(c.cmd("MAIL FROM:<\xe9@test.example>")[1][0][:9], "553 5.6.7")
        c.expect("MAIL FROM:<a@test.example>", 250)
        self.assertEqual(c.cmd("RCPT TO:<>")[1][0][:9], "501 5.1.3")


if __name__ == "__main__":
    main()
