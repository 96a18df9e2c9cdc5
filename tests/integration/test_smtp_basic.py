"""SMTP basics end to end: SMTPS, STARTTLS and the plain loopback listener
in front of smtp-sink; Python smtplib and swaks as clients; what the
upstream received, byte for byte; the certificate the client saw; the
Received header; the session log line."""
import re
import smtplib
import ssl
import subprocess

from mgtest import (GatewayTest, Smtp, client_context, free_port, listener, main, message,
                    need, send_message, smtpd_conf)


class Basic(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p_smtps, self.p_sub, self.p_local = free_port(), free_port(), free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("smtps", self.p_smtps, "implicit") +
                          listener("submission", self.p_sub, "starttls") +
                          listener("local", self.p_local, "none", 'relay_networks = "127.0.0.1/32"'))
        self.gw = self.gateway(conf, [self.p_smtps, self.p_sub, self.p_local])

    def test_smtps_smtplib_message_bytes(self):
        msg = message("smtps", "line one\r\n.leading dot\r\n..two dots\r\nend\r\n")
        # smtplib verifies the certificate against the host name it dials.
        with smtplib.SMTP_SSL("localhost", self.p_smtps, context=client_context(), timeout=30) as s:
            code, _ = s.ehlo("client.test.example")
            self.assertEqual(code, 250)
            cert = s.sock.getpeercert()
            self.assertEqual(dict(x[0] for x in cert["subject"])["commonName"], "localhost")
            self.assertEqual(dict(x[0] for x in cert["issuer"])["commonName"], "mailgate test CA")
            s.sendmail("sender@test.example", ["user@example.org"], msg)
        m = self.up.wait_messages(1)
        self.assertEqual(len(m), 1)
        body, received = m[0].without_our_received()
        # smtp-sink unstuffs dots and writes LF; the message must be intact.
        self.assertEqual(body, msg.replace(b"\r\n", b"\n"))
        self.assertEqual(m[0].mail, "<sender@test.example>")
        self.assertEqual(m[0].rcpts, ["<user@example.org>"])
        flat = received.replace(b"\n\t", b" ").decode()
        self.assertRegex(flat, r"^Received: from client\.test\.example \(unknown \[127\.0\.0\.1\]\) "
                               r"by mx\.test\.example \(mailgate\) with ESMTPS tls TLS_\w+ "
                               r"\(client certificate: none\) id [0-9A-F]{12}\.1; "
                               r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000$")
        line = self.gw.wait_log(r"session=\S+ listener=smtps client=127\.0\.0\.1:\d+ tls=TLS1\.3 "
                                r"cipher=TLS_\S+ cert=none helo=client\.test\.example msgs=1 "
                                r"bytes_in=\d+ bytes_out=\d+ upstream=127\.0\.0\.1:%d "
                                r"duration=[\d.]+ result=quit" % self.up.port)
        self.assertTrue(line)

    def test_starttls_swaks(self):
        need("swaks")
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.p_sub, "--tls",
                            "--tls-verify", "--tls-ca-path", self.pki + "/ca.pem",
                            "--tls-sni", "localhost",
                            "-t", "user@example.org", "-f", "sender@test.example",
                            "--header", "Subject: via swaks", "--body", "swaks body"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("<~  250", r.stdout)
        m = self.up.wait_messages(1)
        self.assertEqual(len(m), 1)
        self.assertIn(b"Subject: via swaks", m[0].message)
        self.assertIn(b"swaks body", m[0].message)

    def test_ehlo_before_and_after_starttls(self):
        c = Smtp(self.p_sub)
        self.assertEqual(c.reply()[0], 220)
        lines = c.expect("EHLO a.test", 250)
        kw = [l[4:].split(" ")[0] for l in lines[1:]]
        self.assertIn("STARTTLS", kw)
        self.assertIn("PIPELINING", kw)
        self.assertIn("ENHANCEDSTATUSCODES", kw)
        self.assertIn("SIZE", kw)
        self.assertNotIn("AUTH", kw)          # never before TLS
        self.assertNotIn("CHUNKING", kw)
        c.expect("STARTTLS", 220)
        c.starttls()
        # The session restarts: MAIL before a new EHLO is refused.
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 503)
        lines = c.expect("EHLO a.test", 250)
        kw = [l[4:].split(" ")[0] for l in lines[1:]]
        self.assertNotIn("STARTTLS", kw)
        self.assertIn("AUTH", kw)
        self.assertEqual(c.cmd("STARTTLS")[0], 503)
        c.expect("QUIT", 221)

    def test_plain_local_relay(self):
        """The loopback tls_mode=none listener relays for relay_networks."""
        c = Smtp(self.p_local)
        self.assertEqual(c.reply(), (220, ["220 mx.test.example ESMTP"]))
        c.expect("EHLO local.test", 250)
        code, _ = send_message(c, message("relay"), rcpts=("someone@elsewhere.example",))
        self.assertEqual(code, 250)
        c.expect("QUIT", 221)
        m = self.up.wait_messages(1)
        self.assertEqual(m[0].rcpts, ["<someone@elsewhere.example>"])
        first = m[0].without_our_received()[1].replace(b"\n\t", b" ").decode()
        self.assertRegex(first, r" with ESMTP id [0-9A-F]{12}\.1; ")
        self.assertNotIn("tls", first)

    def test_local_commands(self):
        c = Smtp(self.p_local)
        c.reply()
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.cmd("HELP")[0], 214)
        self.assertEqual(c.cmd("VRFY user")[1], ["252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"])
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 503)   # before HELO
        self.assertEqual(c.cmd("HELO bad host")[0], 501)
        self.assertEqual(c.cmd("HELO ok.test")[1], ["250 mx.test.example"])
        self.assertEqual(c.cmd("RCPT TO:<user@example.org>")[0], 503)   # before MAIL
        self.assertEqual(c.cmd("DATA")[0], 503)
        self.assertEqual(c.cmd("BDAT 10 LAST")[1], ["502 5.5.1 CHUNKING not offered"])
        self.assertEqual(c.cmd("WHATEVER")[1], ["502 5.5.2 Command not recognized"])
        self.assertEqual(c.cmd("RSET")[0], 250)
        c.expect("QUIT", 221)
        self.assertTrue(c.closed())
        self.gw.wait_log(r"helo=ok\.test msgs=0 bytes_in=\d+ bytes_out=\d+ duration=\S+ result=quit")

    def test_no_valid_recipients(self):
        c = Smtp(self.p_local)
        c.reply()
        c.expect("EHLO a.test", 250)
        c.expect("MAIL FROM:<a@test.example>", 250)
        self.assertEqual(c.cmd("DATA")[1], ["554 5.5.1 No valid recipients"])
        self.assertEqual(c.cmd("MAIL FROM:<b@test.example>")[1][0][:3], "503")   # nested
        c.expect("RSET", 250)
        code, _ = send_message(c, message("after rset"))
        self.assertEqual(code, 250)
        c.expect("QUIT", 221)
        self.assertEqual(len(self.up.wait_messages(1)), 1)

    def test_several_messages_one_session(self):
        c = Smtp(self.p_smtps, tls=True)
        c.reply()
        c.expect("EHLO multi.test", 250)
        for i in range(3):
            code, _ = send_message(c, message("msg %d" % i))
            self.assertEqual(code, 250)
        c.expect("QUIT", 221)
        m = self.up.wait_messages(3)
        self.assertEqual(len(m), 3)
        ids = sorted(re.search(rb"id ([0-9A-F]{12})\.(\d)", x.message.replace(b"\n\t", b" ")).group(2) for x in m)
        self.assertEqual(ids, [b"1", b"2", b"3"])


if __name__ == "__main__":
    main()
