"""mailgate-smtpd in front of a real Postfix (private instance): XCLIENT
carries the client's address, port, protocol and HELO (the client binds
127.0.0.5, Postfix's log must name it); EHLO arguments that try to inject
XCLIENT attributes are refused; STARTTLS to the upstream with chain and
name verification (and refusal on a name mismatch); AUTH relayed to
Postfix's SASL backed by a real Dovecot, where a wrong password is refused
by the real server; XCLIENT LOGIN after a reconnect."""
import subprocess
import time

from mgtest import (GatewayTest, Smtp, free_port, listener, main, message, need, send_message,
                    smtpd_conf)


class WithPostfix(GatewayTest):
    def start(self, upstream_extra="xclient = true", main_extra="", listeners=None, extra="",
              tls_client=""):
        self.pf_port = free_port()
        self.pf = self.postfix(self.pf_port, main_extra=main_extra)
        self.p_local, self.p_smtps = free_port(), free_port()
        conf = smtpd_conf(self.pki, self.pf_port,
                          listeners or (listener("local", self.p_local, "none") +
                                        listener("smtps", self.p_smtps, "implicit")),
                          upstream_extra=upstream_extra, extra=extra + "\n" + tls_client)
        self.gw = self.gateway(conf, [self.p_local, self.p_smtps])

    def test_xclient_carries_client_identity(self):
        self.start(main_extra="smtpd_recipient_restrictions = check_helo_access "
                              "inline:{ { xclient-helo.test = WARN helo-was-forwarded } }, permit")
        c = Smtp(self.p_local, source="127.0.0.5")
        c.reply()
        c.expect("EHLO xclient-helo.test", 250)
        code, lines = send_message(c, message("xclient"))
        self.assertEqual(code, 250, lines)
        c.expect("QUIT", 221)
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.5\]")
        w = self.pf.wait_log(r"warn: RCPT from .*helo-was-forwarded.*").group(0)
        self.assertIn("unknown[127.0.0.5]", w)
        self.assertIn("helo=<xclient-helo.test>", w)
        self.assertIn("proto=ESMTP", w)
        self.pf.wait_log(r"to=<user@example\.org>.*status=sent")

    def test_reverse_dns_forward_confirmed(self):
        """reverse_dns = true: 127.0.0.1 -> localhost -> 127.0.0.1 (the
        hosts file, through c-ares): XCLIENT NAME=localhost reaches Postfix."""
        with open("/etc/hosts") as f:
            if not any(l.split()[:2] == ["127.0.0.1", "localhost"] for l in f if l.strip()):
                self.skipTest("/etc/hosts has no '127.0.0.1 localhost'")
        self.start(extra="reverse_dns = true")
        c = Smtp(self.p_local)
        c.reply()
        c.expect("EHLO rdns.test", 250)
        code, lines = send_message(c, message("rdns"))
        self.assertEqual(code, 250, lines)
        self.pf.wait_log(r"client=localhost\[127\.0\.0\.1\]")
        self.gw.wait_log(r"reverse DNS localhost")

    def test_reverse_dns_unknown_address(self):
        """A client address without a PTR record: NAME is [UNAVAILABLE]
        (NXDOMAIN) or [TEMPUNAVAIL] (resolver silent), within 5 s."""
        self.start(extra="reverse_dns = true")
        c = Smtp(self.p_local, source="127.0.0.42")
        c.reply()
        c.expect("EHLO rdns.test", 250)
        t0 = time.time()
        code, lines = send_message(c, message("no rdns"))
        self.assertEqual(code, 250, lines)
        self.assertLess(time.time() - t0, 7)
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.42\]")
        self.gw.wait_log(r"reverse DNS \[(UNAVAILABLE|TEMPUNAVAIL)\]")

    def test_postfix_error_limit_ends_the_session(self):
        """Postfix counts the client's errors (XCLIENT made it the client)
        and at smtpd_hard_error_limit says "421 ... too many errors", unasked,
        and disconnects: the client gets 421 and the session ends - no
        fresh upstream connection with a fresh error count behind it - and
        the gateway's log has Postfix's words."""
        self.start(main_extra="smtpd_hard_error_limit = 2\nsmtpd_soft_error_limit = 1\n"
                              "smtpd_error_sleep_time = 0\n"
                              "smtpd_recipient_restrictions = check_recipient_access "
                              "inline:{ { bad@example.org = REJECT no such user } }, permit")
        c = Smtp(self.p_local)
        c.reply()
        c.expect("EHLO errors.test", 250)
        c.expect("MAIL FROM:<a@test.example>", 250)
        self.assertEqual(c.cmd("RCPT TO:<bad@example.org>")[0], 554)
        code, lines = c.cmd("RCPT TO:<bad@example.org>")
        self.assertEqual(code, 554, lines)
        code, lines = c.reply()
        self.assertEqual((code, lines[0][:9]), (421, "421 4.4.2"), lines)
        self.assertTrue(c.closed(), "more after the 421: %r" % c.buf)
        self.pf.wait_log(r"too many errors after RCPT")
        self.gw.wait_log(r"upstream-closing .*reply=.*too many errors")

    def test_helo_injection_refused(self):
        self.start()
        c = Smtp(self.p_local, source="127.0.0.6")
        c.reply()
        for bad in ("x ADDR=6.6.6.6", "x.test NAME=evil.example", "a=b", "x.test\tADDR=6.6.6.6"):
            self.assertEqual(c.cmd("EHLO " + bad)[0], 501, bad)
        c.expect("HELO plain.test", 250)
        code, lines = send_message(c, message("after injection attempts"))
        self.assertEqual(code, 250, lines)
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.6\]")
        self.assertNotIn("6.6.6.6", self.pf.log())
        self.assertNotIn("evil.example", self.pf.log())

    def test_starttls_to_upstream(self):
        tls = ('tls_client "to-postfix" {\n  ca = "%s/ca.pem"\n  verify_name = "upstream.test"\n}\n' % self.pki)
        self.start(upstream_extra='xclient = true\n  tls = "starttls"\n  tls_client = "to-postfix"',
                   main_extra="smtpd_tls_cert_file = %s/upstream.pem\nsmtpd_tls_key_file = %s/upstream.key\n"
                              "smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1" % (self.pki, self.pki),
                   tls_client=tls)
        c = Smtp(self.p_local, source="127.0.0.7")
        c.reply()
        c.expect("EHLO tls-up.test", 250)
        code, lines = send_message(c, message("over tls"))
        self.assertEqual(code, 250, lines)
        self.pf.wait_log(r"TLS connection established from localhost\[127\.0\.0\.1\]: TLSv1\.3")
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.7\]")

    def test_starttls_to_upstream_wrong_name_refused(self):
        tls = ('tls_client "to-postfix" {\n  ca = "%s/ca.pem"\n  verify_name = "not-the-upstream.test"\n}\n'
               % self.pki)
        self.start(upstream_extra='xclient = true\n  tls = "starttls"\n  tls_client = "to-postfix"',
                   main_extra="smtpd_tls_cert_file = %s/upstream.pem\nsmtpd_tls_key_file = %s/upstream.key\n"
                              "smtpd_tls_security_level = may" % (self.pki, self.pki),
                   tls_client=tls)
        c = Smtp(self.p_local)
        c.reply()
        c.expect("EHLO tls-up.test", 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 421)
        self.gw.wait_log(r"server certificate rejected")
        self.assertNotRegex(self.pf.log(), r"client=")

    def sasl_setup(self, upstream_extra="xclient = true"):
        need("dovecot")
        auth_port = free_port()
        self.dc = self.dovecot(auth_port=auth_port, users={"alice": "secret"})
        self.start(upstream_extra=upstream_extra,
                   main_extra="smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
                              "smtpd_sasl_path = inet:127.0.0.1:%d\nmynetworks = 127.0.0.1/32" % auth_port,
                   extra="max_message_size = 10000")

    def test_auth_relayed_to_real_sasl(self):
        self.sasl_setup()
        c = Smtp(self.p_smtps, tls=True, source="127.0.0.8")
        c.reply()
        lines = c.expect("EHLO auth.test", 250)
        self.assertIn("250 AUTH PLAIN LOGIN", lines)
        # Not yet authenticated: no relay.
        c.expect("MAIL FROM:<alice@test.example>", 250)
        self.assertEqual(c.cmd("RCPT TO:<x@remote.example>")[1], ["554 5.7.1 Relay access denied"])
        c.expect("RSET", 250)
        # Wrong password: refused by Dovecot through Postfix, relayed as is.
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHdyb25n")[0], 535)
        self.gw.wait_log(r"auth-failed session=\S+ client=127\.0\.0\.8 user=alice mech=PLAIN")
        # AUTH LOGIN with the continuation exchange, right password.
        self.assertEqual(c.cmd("AUTH LOGIN")[0], 334)
        self.assertEqual(c.cmd("YWxpY2U=")[0], 334)         # alice
        self.assertEqual(c.cmd("c2VjcmV0")[0], 235)         # secret
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")[0], 503)
        code, lines = send_message(c, message("authenticated"), mail="alice@test.example",
                                   rcpts=("x@remote.example",))
        self.assertEqual(code, 250, lines)
        c.expect("QUIT", 221)
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.8\], sasl_method=LOGIN, sasl_username=alice")
        self.gw.wait_log(r"helo=auth\.test user=alice msgs=1")
        self.assertNotIn("secret", self.gw.log())
        self.assertNotIn("c2VjcmV0", self.gw.log())

    def test_auth_bad_base64_and_unknown_mech(self):
        self.sasl_setup()
        c = Smtp(self.p_smtps, tls=True)
        c.reply()
        c.expect("EHLO auth.test", 250)
        self.assertEqual(c.cmd("AUTH CRAM-MD5")[1], ["504 5.5.4 Unrecognized authentication type"])
        self.assertEqual(c.cmd("AUTH PLAIN not*base64")[0], 501)
        self.assertEqual(c.cmd("AUTH LOGIN")[0], 334)
        self.assertEqual(c.cmd("%%%")[0], 501)
        self.assertEqual(c.cmd("AUTH LOGIN")[0], 334)
        self.assertEqual(c.cmd("*")[0], 501)                 # cancelled by the client
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")[0], 235)

    def test_swaks_auth(self):
        need("swaks")
        self.sasl_setup()
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.p_smtps, "--tlsc",
                            "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret",
                            "-t", "someone@remote.example", "-f", "alice@test.example"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("235", r.stdout)
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.p_smtps, "--tlsc",
                            "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "nope",
                            "-t", "someone@remote.example", "-f", "alice@test.example"],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("535", r.stdout)

    def test_xclient_login_after_reconnect(self):
        """After an oversize message the upstream is dropped; the next MAIL
        reconnects and XCLIENT LOGIN=alice keeps the session authenticated."""
        self.sasl_setup()
        c = Smtp(self.p_smtps, tls=True, source="127.0.0.9")
        c.reply()
        c.expect("EHLO relogin.test", 250)
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")[0], 235)
        c.expect("MAIL FROM:<alice@test.example>", 250)
        c.expect("RCPT TO:<x@remote.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: too big\r\n\r\n" + b"y" * 20000 + b"\r\n.\r\n")
        self.assertEqual(c.reply()[0], 552)
        code, lines = send_message(c, message("small"), mail="alice@test.example",
                                   rcpts=("x@remote.example",))
        self.assertEqual(code, 250, lines)
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.9\], sasl_method=XCLIENT, sasl_username=alice")

    def test_no_xclient_auth_session_closes_after_upstream_loss(self):
        self.sasl_setup(upstream_extra="xclient = false")
        c = Smtp(self.p_smtps, tls=True)
        c.reply()
        c.expect("EHLO noxc.test", 250)
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")[0], 235)
        c.expect("MAIL FROM:<alice@test.example>", 250)
        c.expect("RCPT TO:<x@remote.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: too big\r\n\r\n" + b"y" * 20000 + b"\r\n.\r\n")
        self.assertEqual(c.reply()[0], 552)
        self.assertEqual(c.reply()[0], 421)
        self.assertTrue(c.closed())


if __name__ == "__main__":
    main()
