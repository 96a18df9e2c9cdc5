"""Upstream failures as the client sees them (DESIGN.md §4.4/4.5): down
(421 4.4.1), failover over the address list (connect refused, bad
greeting), killed mid-DATA (451 4.4.2, nothing delivered), silent past
timeout_reply (451 in a transaction), upstream rejections relayed as they
are, XCLIENT missing (fail closed, 421 4.3.0), and the extension
pass-through learned from the upstream's EHLO."""
import time

from mgtest import (GatewayTest, Smtp, SmtpSink, free_port, listener, main, message,
                    send_message, smtpd_conf)


def conf_for(pki, addresses, port, upstream_extra="xclient = false", extra=""):
    return smtpd_conf(pki, 0, listener("local", port, "none", 'relay_networks = "127.0.0.1/32"'),
                      upstream_extra=upstream_extra, extra=extra).replace(
        'address = "127.0.0.1:0"', "address = { %s }" % ", ".join('"127.0.0.1:%d"' % a for a in addresses))


class Upstream(GatewayTest):
    def client(self, port):
        c = Smtp(port)
        self.assertEqual(c.reply()[0], 220)
        c.expect("EHLO up.test", 250)
        return c

    def test_upstream_down(self):
        p = free_port()
        gw = self.gateway(conf_for(self.pki, [free_port()], p), [p])
        c = self.client(p)
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[1],
                         ["421 4.4.1 Upstream unavailable, try again later"])
        self.assertTrue(c.closed())
        gw.wait_log(r"result=upstream-failed")

    def test_failover_refused_and_bad_greeting(self):
        bad = self.sink(args=("-f", "CONNECT"))        # 5xx greeting
        good = self.sink()
        p = free_port()
        self.gateway(conf_for(self.pki, [free_port(), bad.port, good.port], p), [p])
        c = self.client(p)
        code, _ = send_message(c, message("failover"))
        self.assertEqual(code, 250)
        self.assertEqual(len(good.wait_messages(1)), 1)
        self.assertEqual(bad.messages(), [])

    def test_killed_mid_data(self):
        up = self.sink()
        p = free_port()
        gw = self.gateway(conf_for(self.pki, [up.port], p), [p])
        c = self.client(p)
        c.expect("MAIL FROM:<a@test.example>", 250)
        c.expect("RCPT TO:<user@example.org>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: doomed\r\n\r\n" + b"line\r\n" * 1000)
        time.sleep(0.3)
        up.stop()
        c.send(b"more after the kill\r\n" * 100 + b".\r\n")
        self.assertEqual(c.reply()[1], ["451 4.4.2 Upstream connection lost"])
        # The killed sink may leave its partial capture file; it never
        # accepted the message and got nothing sent after the kill.
        for m in up.messages():
            self.assertNotIn(b"more after the kill", m.raw)
        # Still usable: QUIT is answered.
        c.expect("QUIT", 221)
        gw.wait_log(r"upstream \S+: ")

    def test_reply_timeout(self):
        up = self.sink(args=("-W", "rcpt:5"))
        p = free_port()
        self.gateway(conf_for(self.pki, [up.port], p, upstream_extra="xclient = false\n  timeout_reply = 1"), [p])
        c = self.client(p)
        c.expect("MAIL FROM:<a@test.example>", 250)
        t0 = time.time()
        self.assertEqual(c.cmd("RCPT TO:<user@example.org>")[1], ["451 4.4.2 Upstream timeout"])
        self.assertLess(time.time() - t0, 4)
        self.assertTrue(c.closed())

    def test_upstream_rejections_relayed(self):
        up = self.sink(args=("-f", "RCPT", "-B", "550 5.1.1 No such user here"))
        p = free_port()
        self.gateway(conf_for(self.pki, [up.port], p, extra="max_errors = 2"), [p])
        c = self.client(p)
        c.expect("MAIL FROM:<a@test.example>", 250)
        for _ in range(4):    # relayed upstream errors do not count toward max_errors
            self.assertEqual(c.cmd("RCPT TO:<user@example.org>")[1], ["550 5.1.1 No such user here"])
        self.assertEqual(c.cmd("DATA")[1], ["554 5.5.1 No valid recipients"])
        c.expect("QUIT", 221)

    def test_xclient_missing_fails_closed(self):
        up = self.sink()        # smtp-sink lists "XCLIENT NAME HELO": no ADDR
        p = free_port()
        gw = self.gateway(conf_for(self.pki, [up.port], p, upstream_extra="xclient = true"), [p])
        c = self.client(p)
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[1],
                         ["421 4.3.0 Upstream configuration error"])
        self.assertTrue(c.closed())
        gw.wait_log(r"offers no XCLIENT ADDR")
        self.assertEqual(up.messages(), [])

    def test_passthrough_extensions(self):
        """8BITMIME and DSN are offered only once every upstream address
        advertised them; smtp-sink -8 hides 8BITMIME."""
        a = self.sink()
        b = self.sink(args=("-8",))
        p = free_port()
        gw = self.gateway(conf_for(self.pki, [a.port, b.port], p), [p])
        gw.wait_log(r"upstream up: ehlo -> quitting[\s\S]*upstream up: ehlo -> quitting")
        c = Smtp(p)
        c.reply()
        kw = [l[4:] for l in c.expect("EHLO x.test", 250)[1:]]
        self.assertIn("DSN", kw)
        self.assertNotIn("8BITMIME", kw)
        self.assertNotIn("SMTPUTF8", kw)
        # BODY=8BITMIME is refused as the extension is not on.
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example> BODY=8BITMIME")[0], 555)
        c.expect("MAIL FROM:<a@test.example> RET=HDRS ENVID=abc", 250)
        c.expect("RCPT TO:<user@example.org> NOTIFY=NEVER", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: dsn\r\n\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        m = a.wait_messages(1)
        self.assertEqual(m[0].mail, "<a@test.example> RET=HDRS ENVID=abc")
        self.assertEqual(m[0].rcpts, ["<user@example.org> NOTIFY=NEVER"])


if __name__ == "__main__":
    main()
