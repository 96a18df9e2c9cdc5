"""No reply waits for Nagle's algorithm.

Two small writes in a row with no client data in between - the TLS 1.3
session tickets and then the greeting; a message's last octets (its final
dot) after the bulk of it towards the upstream - make the kernel hold the
second until the peer ACKs the first, and a peer with delayed ACKs waits
40 ms for that: every session's greeting, every message's final reply
arrived ~40 ms late. The gateway sets TCP_NODELAY on both sides and sends
the last handshake flight together with the greeting.

These are not timings of the gateway's speed (make bench measures that):
the stall is a fixed 40 ms wait per reply, and the medians below must stay
far below it however busy the machine is; before the change each of them
was >= 40 ms."""
from mgload import loadgen, need_loadgen
from mgtest import GatewayTest, free_port, imapd_conf, listener, main, smtpd_conf

STALL_MS = 40.0
LIMIT_MS = 20.0    # a median above this is the stall, not noise
RSA_ONLY = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-X25519:-CIPHER-ALL:+AES-128-GCM:" \
           "-SIGN-ALL:+SIGN-RSA-PSS-RSAE-SHA256"


class NoStall(GatewayTest):
    def setUp(self):
        super().setUp()
        need_loadgen()
        self.up = self.sink()
        self.smtps, self.sub = free_port(), free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port,
                                          listener("smtps", self.smtps, "implicit") +
                                          listener("sub", self.sub, "starttls")),
                               [self.smtps, self.sub])

    def median(self, r, key):
        h = r[key]
        self.assertGreater(h["n"], 0, r)
        self.assertEqual(r["errors"], 0, r.get("first_error"))
        return h["p50"]

    def assertNoStall(self, r, key, what):
        m = self.median(r, key)
        self.assertLess(m, LIMIT_MS, "%s: median %.1f ms (the Nagle stall is %.0f ms)" % (what, m, STALL_MS))

    def test_greeting_after_resumed_handshake(self):
        # Resumed TLS 1.3: the tickets follow the handshake, then the greeting.
        r = loadgen(self.smtps, "--resume", "-n", 21, "-c", 1)
        self.assertGreater(r["resumed"], 15, r)
        self.assertNoStall(r, "first_reply_ms", "SMTPS greeting, resumed sessions")

    def test_greeting_rsa(self):
        r = loadgen(self.smtps, "--priority", RSA_ONLY, "-n", 20, "-c", 1)
        self.assertNoStall(r, "first_reply_ms", "SMTPS greeting, RSA certificate")

    def test_reply_after_starttls(self):
        r = loadgen(self.sub, "--starttls", "--resume", "-n", 21, "-c", 1)
        self.assertNoStall(r, "first_reply_ms", "EHLO reply after STARTTLS")

    def test_final_reply_to_messages(self):
        # The message's last octets towards the upstream after 20 kB of it.
        r = loadgen(self.smtps, "-s", "smtp-data", "-b", 20000, "-k", 10, "-n", 2, "-c", 1)
        self.assertEqual(r["messages"], 20, r)
        self.assertNoStall(r, "msg_reply_ms", "the reply to a message's final dot")
        self.assertEqual(len(self.up.wait_messages(20)), 20)


class NoStallImap(GatewayTest):
    def test_imaps_greeting_resumed(self):
        need_loadgen()
        port = free_port()
        # The greeting needs no upstream: an address nothing listens on.
        gw = self.imap_gateway(imapd_conf(self.pki, free_port(), listener("imaps", port, "implicit")), [port])
        r = loadgen(port, "--imap", "--resume", "-n", 21, "-c", 1)
        m = r["first_reply_ms"]["p50"]
        self.assertEqual(r["errors"], 0, r.get("first_error"))
        self.assertLess(m, LIMIT_MS, "IMAPS greeting, resumed: median %.1f ms" % m)
        gw.stop()


if __name__ == "__main__":
    main()
