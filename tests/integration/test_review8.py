"""Review 8: hostile input against the parts earlier reviews left alone -
imapd's pre-auth SASL continuation, PROXY protocol input, the metrics
endpoint, reload and the outbound/identity paths. Each test states what
the gateway must do; each was written against a defect found by attacking
a real daemon."""
import os
import socket
import time

from mgtest import (GatewayTest, Imap, free_port, imapd_conf, listener, main, worker_pids)


class ImapSaslContinuation(GatewayTest):
    """AUTHENTICATE's continuation line (RFC 3501 §6.2.2) is a client line
    like any other: DESIGN.md §5.1 caps pre-auth lines at 8192 octets."""

    def setUp(self):
        super().setUp()
        self.p_imaps = free_port()
        # No upstream is ever contacted: the attack happens before login.
        self.gw = self.imap_gateway(imapd_conf(self.pki, free_port(),
                                               listener("imaps", self.p_imaps, "implicit")),
                                    [self.p_imaps])

    def test_oversized_sasl_response_in_one_record(self):
        """A SASL response line longer than 8192 octets that arrives whole
        (one TLS record holds up to 16384 octets) gets `* BAD Line too
        long` and a clean close - never a write past the gateway's line
        buffer (it crashes the worker; ASan reports a stack overflow), and
        the worker keeps serving new clients."""
        worker = worker_pids(self.gw.proc.pid, 1)[0]
        c = Imap(self.p_imaps, tls=True)
        c.line()
        # The command and its over-long response in one write: one record.
        c.send(b"a AUTHENTICATE PLAIN\r\n" + b"A" * 12000 + b"\r\n")
        self.assertEqual(c.line(), "+ ")
        self.assertEqual(c.line(), "* BAD Line too long")
        self.assertTrue(c.closed())
        d = Imap(self.p_imaps, tls=True)
        self.assertRegex(d.line(), r"^\* OK \[CAPABILITY ")
        self.assertEqual(worker_pids(self.gw.proc.pid, 1)[0], worker)
        self.gw.check_sanitizers()


if __name__ == "__main__":
    main()
