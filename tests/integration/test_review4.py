"""Reproducers and guards from the hostile review of the performance
changes (8fd3d8d..9e2ccf3: the DATA scanner's one-pass fast path, the TLS
record-header read-ahead, freed heap kept mapped with wipes bounded by a
high-water mark, ALPN armed by a ClientHello hook).

  1. AuthSecretsTls: with freed heap kept mapped (xmem_keep_heap) an
     unwiped copy of an AUTH secret is never given back to the kernel; a
     wipe that covers only the bytes ever written (buf "used") must still
     cover every copy. After AUTH PLAIN (initial response and
     continuation) and AUTH LOGIN, over implicit TLS and in clear
     (loopback), and again after 400 pipelined commands have regrown and
     compacted the buffers, neither the password nor a base64 form of it,
     nor the tail of either (what a freed buffer partly overwritten by
     later data keeps), is anywhere in the worker's writable memory.
     Not counting AUTH lines as written in buf_commit() fails the PLAIN
     cases (a tail of the blob is found in the heap).
  2. ImapSecretTails (a finding, older than the performance work): after
     every imapd login that reached the upstream (upstream NO or OK, any
     login form) the whole PLAIN blob imapd sent to Dovecot - base64 of
     the user's password - was left on the worker's stack:
     gnutls_base64_encode2() encodes through a stack buffer (tmpres) it
     never wipes. b64_encode() is now ours, writing straight into the
     result the caller wipes, like b64_decode().
  3. RecordCuts: the TLS record-header read-ahead (transport_pull) under
     ciphertext cut at every offset, and an EOF inside a record header.
     Not advancing the read-ahead's offset, or dropping it, fails both.
"""
import base64
import os
import socket
import secrets
import time

from mgtest import (ehlo_until, BioTls, GatewayTest, ScriptedSmtp, Smtp, free_port, imapd_conf, listener, main, memory_find,
                    smtpd_conf)
import test_imap_security


def b64(b):
    return base64.b64encode(b).decode()


class AuthSecretsTls(GatewayTest):
    """Secrets after AUTH are gone from the worker's memory (see above)."""

    def run_form(self, form, mode):
        pw = ("Pw-%s-secret" % os.urandom(8).hex()).encode()
        user = b"alice.smith@example.org"
        plain = b64(b"\0" + user + b"\0" + pw)
        replies = {"EHLO": b"250-scripted.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"}
        if form == "plain-ir":
            replies["AUTH"] = b"235 2.7.0 ok\r\n"
        elif form == "plain-continuation":
            replies["AUTH"] = b"334 \r\n"
            replies[plain.upper()] = b"235 2.7.0 ok\r\n"
        else:
            replies["AUTH"] = b"334 VXNlcm5hbWU6\r\n"
            replies[b64(user).upper()] = b"334 UGFzc3dvcmQ6\r\n"
            replies[b64(pw).upper()] = b"235 2.7.0 ok\r\n"
        up = ScriptedSmtp(replies)
        self.addCleanup(up.stop)
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("l", p, mode)), [p])
        c = Smtp(p, tls=mode == "implicit", timeout=30)
        c.reply()
        ehlo_until(c, "AUTH", "x.test")    # until the start-up probe has seen AUTH
        if form == "plain-ir":
            c.expect("AUTH PLAIN " + plain, 235)
        elif form == "plain-continuation":
            c.expect("AUTH PLAIN", 334)
            c.expect(plain, 235)
        else:
            c.expect("AUTH LOGIN", 334)
            c.expect(b64(user), 334)
            c.expect(b64(pw), 235)
        c.expect("NOOP", 250)
        # Whole secrets and tails: a freed buffer partly overwritten by
        # later data keeps only the end of a line (the password's end).
        needles = [pw, pw[-14:], plain.encode(), plain.encode()[-16:], b64(pw).encode(), b64(pw).encode()[-16:]]
        for n in needles:
            self.assertEqual(memory_find(gw.worker_pid(), n), [], "%s/%s: %r after AUTH" % (form, mode, n))
        # The session goes on: pipelined commands regrow and compact the
        # buffers that held the secret (in the command phase, wiped ones).
        # 90 padded NOOPs (the bytes of 400 bare ones): more than 100 junk
        # commands would count toward max_errors (SMTP_JUNK_LIMIT).
        c.send(("NOOP " + "x" * 22 + "\r\n") * 90)
        for _ in range(90):
            self.assertEqual(c.reply()[0], 250)
        for n in needles:
            self.assertEqual(memory_find(gw.worker_pid(), n), [], "%s/%s: %r after 90 commands" % (form, mode, n))
        c.expect("QUIT", 221)
        c.close()

    def test_plain_initial_response(self):
        self.run_form("plain-ir", "implicit")
        self.run_form("plain-ir", "none")

    def test_plain_continuation(self):
        self.run_form("plain-continuation", "implicit")
        self.run_form("plain-continuation", "none")

    def test_login(self):
        self.run_form("login", "implicit")
        self.run_form("login", "none")



class ImapSecretTails(test_imap_security.PasswordWiped):
    """test_imap_security.PasswordWiped (every login form; upstream NO,
    unavailable, OK) also looking for the tail of the password and the
    PLAIN blob, whole and its tail."""

    # No upstream, nothing encoded: PasswordWiped covers that case.
    test_after_upstream_unavailable = None

    def login(self, form, user, pw):
        self.blob = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode())
        return super().login(form, user, pw)

    def assert_wiped(self, pw, what):
        for n in (pw.encode(), pw.encode()[-14:], self.blob, self.blob[-16:]):
            self.assertEqual(memory_find(self.gw.worker_pid(), n), [], "%s: %r" % (what, n))



class ImapSecretTailsTlsUpstream(ImapSecretTails):
    """The same with Dovecot behind implicit TLS: the login goes out
    through GnuTLS's record layer (client side) too."""

    def setUp(self):
        GatewayTest.setUp(self)
        self.good = "Ok" + secrets.token_hex(12)
        self.dc_port, dc_tls = free_port(), free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, imaps_port=dc_tls,
                               users={"alice": "secret", "carol": self.good},
                               tls_cert=self.pki + "/upstream.pem", tls_key=self.pki + "/upstream.key")
        self.p_imaps = free_port()
        conf = imapd_conf(self.pki, dc_tls, listener("imaps", self.p_imaps, "implicit"),
                          upstream_extra='tls = "implicit"\n  tls_client = "dc"',
                          extra='max_auth_failures = 10\ntls_client "dc" {\n  ca = "%s/ca.pem"\n'
                                '  verify_name = "upstream.test"\n}\n' % self.pki)
        self.gw = self.imap_gateway(conf, [self.p_imaps])
        self.source = 20



class RecordCuts(GatewayTest):
    """The TLS pull function reads the next record's header with a
    record's body into a 5-octet read-ahead. A message sent in ~300 small
    records whose ciphertext reaches the gateway cut at every offset
    (pieces of 1 to 13 octets, each its own segment) arrives at the
    upstream byte for byte; a stream that ends inside a record header
    (after 1 to 4 of its octets) ends the session with nothing
    delivered and no hang."""

    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p = free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port, listener("smtps", self.p, "implicit")),
                               [self.p])

    def client(self):
        c = BioTls(self.p, timeout=20)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.assertTrue(c.line().startswith("220"))
        for cmd, code in (("EHLO x.test", "250 "), ("MAIL FROM:<a@test.example>", "250"),
                          ("RCPT TO:<u@example.org>", "250"), ("DATA", "354")):
            c.send(cmd + "\r\n")
            while True:
                line = c.line()
                if line.startswith(code[:3] + " ") or not line.startswith(code[:3]):
                    break
            self.assertTrue(line.startswith(code[:3] + " "), "%s -> %s" % (cmd, line))
        return c

    def records(self, c, data):
        """data written as records of 1 to 40 octets; their ciphertext."""
        i, k = 0, 0
        while i < len(data):
            n = 1 + (k * 7) % 40
            c.tls.write(data[i:i + n])
            i, k = i + n, k + 1
        return c.outgoing.read()

    def cut_send(self, c, wire):
        i, k = 0, 0
        while i < len(wire):
            n = 1 + k % 13
            c.sock.sendall(wire[i:i + n])
            time.sleep(0.0005)
            i, k = i + n, k + 1

    def test_every_cut(self):
        c = self.client()
        body = b"".join(b"Line %04d of a message cut into small TLS records.\r\n" % n for n in range(200))
        msg = b"Subject: cuts\r\n\r\n" + body
        self.cut_send(c, self.records(c, msg + b".\r\n"))
        self.assertTrue(c.line().startswith("250 "))
        got = self.up.wait_messages(1)
        self.assertEqual(len(got), 1)
        lf = body.replace(b"\r\n", b"\n")    # smtp-sink's dump has LF line ends
        self.assertIn(b"\n\n" + lf, got[0].raw)
        self.assertEqual(got[0].raw.count(b"Line "), 200)

    def test_eof_inside_a_header(self):
        for keep in (1, 2, 3, 4):
            c = self.client()
            wire = self.records(c, b"Subject: cut\r\n\r\nbody\r\n")
            c.tls.write(b".\r\n")
            tail = c.outgoing.read()
            self.cut_send(c, wire + tail[:keep])    # the final dot's record: only its header's start
            c.sock.shutdown(socket.SHUT_WR)
            t0 = time.time()
            c.read_to_end()    # the gateway closes (no reply owed to a cut message)
            self.assertLess(time.time() - t0, 10)
            c.close()
        time.sleep(0.5)
        self.assertEqual(self.up.messages(), [])


if __name__ == "__main__":
    main()
