"""Limits and streaming: SIZE, max_message_size (552, nothing delivered),
max_recipients (452), a 10 MB message byte-exact, pipelined bursts with
replies in order, inactivity and handshake timeouts."""
import os
import socket
import time

from mgtest import (GatewayTest, Smtp, free_port, listener, main, message, send_message,
                    smtpd_conf)


class Limits(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p_local, self.p_smtps = free_port(), free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("local", self.p_local, "none", 'relay_networks = "127.0.0.1/32"') +
                          listener("smtps", self.p_smtps, "implicit"),
                          extra="max_message_size = 20000\nmax_recipients = 100\n"
                                "timeout_command = 2\ntimeout_handshake = 2\nmax_errors = 20")
        self.gw = self.gateway(conf, [self.p_local, self.p_smtps])

    def local(self):
        c = Smtp(self.p_local)
        c.reply()
        lines = c.expect("EHLO limits.test", 250)
        self.assertIn("250-SIZE 20000", lines)
        return c

    def test_size_param(self):
        c = self.local()
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example> SIZE=20001")[1],
                         ["552 5.3.4 Message size exceeds fixed maximum message size"])
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example> SIZE=x")[0], 501)
        c.expect("QUIT", 221)
        # No upstream connection was opened for this session.
        line = self.gw.wait_log(r"session=\S+ listener=local [^\n]*helo=limits\.test[^\n]*result=quit").group(0)
        self.assertNotIn("upstream=", line)

    def test_size_param_ok_is_not_forwarded(self):
        c = self.local()
        c.expect("MAIL FROM:<a@test.example> SIZE=300", 250)
        c.expect("RCPT TO:<user@example.org>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: s\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(self.up.wait_messages(1)[0].mail, "<a@test.example>")

    def test_oversize_data(self):
        c = self.local()
        c.expect("MAIL FROM:<a@test.example>", 250)
        c.expect("RCPT TO:<user@example.org>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 30 + b".\r\n")
        self.assertEqual(c.reply()[1], ["552 5.3.4 Message size exceeds fixed maximum message size"])
        # The session continues; the next MAIL reconnects.
        code, _ = send_message(c, message("small one"))
        self.assertEqual(code, 250)
        c.expect("QUIT", 221)
        m = self.up.wait_messages(1)
        time.sleep(0.3)
        m = self.up.messages()
        self.assertEqual(len(m), 1)
        self.assertIn(b"Subject: small one", m[0].message)

    def test_max_recipients(self):
        c = self.local()
        c.expect("MAIL FROM:<a@test.example>", 250)
        burst = "".join("RCPT TO:<u%d@example.org>\r\n" % i for i in range(101))
        c.send(burst)
        codes = [c.reply()[0] for _ in range(101)]
        self.assertEqual(codes[:100], [250] * 100)
        self.assertEqual(codes[100], 452)
        c.expect("DATA", 354)
        c.send(b"Subject: many\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        m = self.up.wait_messages(1)
        self.assertEqual(len(m[0].rcpts), 100)

    def test_pipelined_burst_in_order(self):
        c = Smtp(self.p_local)
        c.reply()
        body = b"Subject: pipelined\r\n\r\nbody\r\n.\r\n"
        c.send(b"EHLO pipe.test\r\nMAIL FROM:<a@test.example>\r\nRCPT TO:<u1@example.org>\r\n"
               b"RCPT TO:<bad@elsewhere.example>\r\nRCPT TO:<u2@example.org>\r\nNOOP\r\nDATA\r\n")
        self.assertEqual(c.reply()[0], 250)                   # EHLO
        self.assertEqual(c.reply()[1], ["250 2.1.0 Ok"])      # MAIL (from smtp-sink)
        self.assertEqual(c.reply()[1], ["250 2.1.5 Ok"])      # RCPT
        self.assertEqual(c.reply()[0], 250)                   # relay_networks: relayed
        self.assertEqual(c.reply()[1], ["250 2.1.5 Ok"])
        self.assertEqual(c.reply()[1], ["250 2.0.0 OK"])      # NOOP (ours)
        self.assertEqual(c.reply()[0], 354)
        c.send(body + b"RSET\r\nMAIL FROM:<b@test.example>\r\nRCPT TO:<u3@example.org>\r\nDATA\r\n")
        self.assertEqual(c.reply()[0], 250)                   # end of data
        self.assertEqual(c.reply()[0], 250)                   # RSET
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 354)
        c.send(b"Subject: second\r\n\r\n.\r\nQUIT\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 221)
        m = self.up.wait_messages(2)
        self.assertEqual(len(m), 2)

    def test_ten_megabyte_message(self):
        self.gw.stop()
        self.procs.remove(self.gw)
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("smtps", self.p_smtps, "implicit"))
        self.gw = self.gateway(conf, [self.p_smtps])
        rnd = os.urandom(4 * 1024 * 1024).hex()      # 8 MiB of hex text
        lines = [rnd[i:i + 76] for i in range(0, len(rnd), 76)]
        for i in range(0, len(lines), 1000):
            lines[i] = "." + lines[i]                  # dot-stuffing on the way
        body = ("\r\n".join(lines) + "\r\n").encode()
        body += b"X" * (10 * 1024 * 1024 - len(body) - 200) + b"\r\n"
        msg = message("ten megabytes", body.decode())
        self.assertGreater(len(msg), 10 * 1000 * 1000)
        c = Smtp(self.p_smtps, tls=True, timeout=60)
        c.reply()
        c.expect("EHLO big.test", 250)
        code, _ = send_message(c, msg)
        self.assertEqual(code, 250)
        c.expect("QUIT", 221)
        m = self.up.wait_messages(1, timeout=30)
        got, _ = m[0].without_our_received()
        self.assertEqual(len(got), len(msg.replace(b"\r\n", b"\n")))
        self.assertEqual(got, msg.replace(b"\r\n", b"\n"))

    def test_command_timeout(self):
        c = Smtp(self.p_local)
        c.reply()
        c.expect("EHLO slow.test", 250)
        t0 = time.time()
        code, lines = c.reply()
        self.assertEqual(code, 421)
        self.assertIn("4.4.2", lines[0])
        self.assertGreater(time.time() - t0, 1.5)
        self.assertTrue(c.closed())
        self.gw.wait_log(r"helo=slow\.test .*result=timeout")

    def test_handshake_timeout(self):
        s = socket.create_connection(("127.0.0.1", self.p_smtps))
        s.settimeout(6)
        t0 = time.time()
        self.assertEqual(s.recv(100), b"")       # closed, no greeting ever
        self.assertGreater(time.time() - t0, 1.5)
        s.close()
        self.gw.wait_log(r"listener=smtps client=127\.0\.0\.1:\d+ .*result=timeout")

    def test_garbage_instead_of_tls(self):
        s = socket.create_connection(("127.0.0.1", self.p_smtps))
        s.sendall(b"EHLO plaintext.test\r\n" * 10)
        s.settimeout(5)
        try:
            data = s.recv(1000)    # a TLS alert at most, never a greeting
        except ConnectionResetError:
            data = b""
        self.assertNotIn(b"220", data)
        s.close()
        self.gw.wait_log(r"tls-failed session=\S+ client=127\.0\.0\.1 reason=")
        self.gw.wait_log(r"result=tls-failed")


if __name__ == "__main__":
    main()
