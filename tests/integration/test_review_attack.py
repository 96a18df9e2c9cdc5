"""Reproducers from the hostile review of the fix (6036e26..ff022e5).
Each test fails on the reviewed code; each docstring says what the
gateway should do instead.

  1. OutputFlood: a client that pipelines cheap commands and never reads
     its replies makes the worker queue them without bound (smtpd and
     imapd, before login, with or without TLS): memory exhaustion of the
     worker that serves every other session.
  2. SmtpHalfClose: a client that half-closes after pipelining a whole
     transaction gets no reply at all, while the message is delivered
     upstream (the final dot went out, then QUIT) and the session line
     says msgs=0.
  3. DataStall: an upstream lost while DATA is paused by back-pressure
     leaves the client's reading stopped: the session hangs until
     timeout_data and ends in 421 Timeout instead of 451 after the dot.
  4. SmtpAuthSecret: smtpd decodes AUTH PLAIN to read the user name and
     frees the decoded blob - the cleartext password - unwiped.
  6. LingerFds: sessions that ended keep their fd for the 2 s lingering
     close, outside max_per_ip/max_connections: one address held to 2
     concurrent sessions runs the worker out of file descriptors.
  5. LongKeyword: a long unsupported MAIL parameter keyword makes the
     gateway answer "451 4.3.0 Internal error" (a temporary failure) and
     log an error-level "cannot happen" line, at the client's will.
"""
import base64
import os
import socket
import threading
import time

from mgtest import (ehlo_until, BioTls, GatewayTest, LoopbackServer, ScriptedSmtp, Smtp, free_port, imapd_conf, listener, main,
                    memory_find, message, smtpd_conf)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


LOCAL = 'relay_networks = "127.0.0.1/32"'


class OutputFlood(GatewayTest):
    """A session's queued output must be bounded (EXAMPLES.md §3 "Output
    cap ... per session"): stop reading the client while its replies pile
    up, or close it. Today the worker's RSS grows with every pipelined
    NOOP - by 2.3x (smtpd) to 2.6x (imapd) the bytes the client sent."""

    LIMIT_KIB = 96 * 1024    # generous: ASan build, 60 MB sent

    def flood(self, pid, send, chunk, total=60 * 1000 * 1000):
        before = rss_kib(pid)
        sent = 0
        t0 = time.time()
        try:
            while sent < total and time.time() - t0 < 60:
                send(chunk)
                sent += len(chunk)
        except OSError:
            pass    # closed by the gateway: fine
        time.sleep(0.5)
        return rss_kib(pid) - before, sent

    def test_smtpd_noop_flood_not_read(self):
        up = self.sink()
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none", LOCAL)), [p])
        s = socket.create_connection(("127.0.0.1", p))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # and never read
        s.settimeout(10)    # a gateway that stops reading is the right answer
        grew, sent = self.flood(gw.worker_pid(), s.sendall, b"NOOP\r\n" * 100000)
        s.close()
        self.assertLess(grew, self.LIMIT_KIB, "worker RSS grew by %d KiB after %d MB of NOOPs"
                        % (grew, sent // 1000000))

    def test_imapd_preauth_noop_flood_not_read(self):
        p = free_port()
        gw = self.imap_gateway(imapd_conf(self.pki, free_port(), listener("imaps", p, "implicit")), [p])
        c = BioTls(p)
        c.line()
        grew, sent = self.flood(gw.worker_pid(), c.send, b"a NOOP\r\n" * 50000)
        c.close()
        self.assertLess(grew, self.LIMIT_KIB, "worker RSS grew by %d KiB after %d MB of NOOPs"
                        % (grew, sent // 1000000))


class SmtpHalfClose(GatewayTest):
    """DESIGN.md §4.2: pipelined input is fully supported and replies keep
    their order; §4.5: never a lost or unacknowledged message. A client
    that sends its last bytes and shuts down its write side (as imapd
    already handles, review #11) must still get the reply to its final
    dot and to QUIT - at least, the gateway must not deliver a message and
    then drop the session without a word (the client retries: duplicate)
    while logging msgs=0."""

    def test_pipelined_transaction_then_half_close(self):
        up = self.sink()
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none", LOCAL)), [p])
        c = Smtp(p)
        c.reply()
        c.send(b"EHLO x.test\r\nMAIL FROM:<a@test.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n")
        for _ in range(4):
            c.reply()
        c.send(message("half-close") + b".\r\nQUIT\r\n")
        c.half_close()
        got = c.read_to_end().decode()
        delivered = len(up.wait_messages(1, timeout=5))
        log = gw.wait_log(r"session=\S+ listener=local .*result=\S+").group(0)
        self.assertEqual(delivered, 1)    # the upstream has the message ...
        self.assertRegex(got, r"^250 .*\r\n221 ", "... but the client got %r; log: %s" % (got, log))
        self.assertIn("msgs=1", log)


class StallingUpstream(LoopbackServer):
    """Accepts one transaction up to 354, then never reads again and resets
    the connection after `after` seconds."""

    def __init__(self, after=2.0):
        self.after = after
        super().__init__(backlog=8)

    def handle(self, c):
        c.sendall(b"220 stall ESMTP\r\n")
        for line in self.lines(c):
            verb = line.split(b" ")[0].split(b":")[0].upper()
            if verb == b"EHLO":
                c.sendall(b"250-stall\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                c.sendall(b"354 go\r\n")
                time.sleep(self.after)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                c.close()    # RST: unread data
                return
            elif verb == b"QUIT":
                c.sendall(b"221 bye\r\n")
                return
            else:
                c.sendall(b"250 ok\r\n")


class DataStall(GatewayTest):
    """DESIGN.md §4.5: "Upstream lost during DATA: keep reading, reply
    451 4.4.2 Upstream connection lost after the final dot." When the loss
    comes while the client's reading is paused for back-pressure
    (smtp_txn_data_input: conn_read_stop), nothing restarts it: the
    session sits until timeout_data (600 s by default) and ends in 421."""

    def test_upstream_lost_during_backpressure(self):
        up = StallingUpstream(after=2.0)
        self.addCleanup(up.stop)
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none", LOCAL),
                                     extra="timeout_data = 45\nmax_message_size = 200000000\n"), [p])
        c = Smtp(p, timeout=90)
        c.reply()
        c.expect("EHLO x.test", 250)
        c.expect("MAIL FROM:<a@test.example>", 250)
        c.expect("RCPT TO:<u@example.org>", 250)
        c.expect("DATA", 354)
        body = (b"x" * 998 + b"\r\n") * 20000 + b".\r\n"    # 20 MB
        threading.Thread(target=lambda: c.sock.sendall(body), daemon=True).start()
        t0 = time.time()
        code, lines = c.reply()
        took = time.time() - t0
        self.assertEqual((code, lines[0][:9]), (451, "451 4.4.2"),
                         "after %.1f s: %s\n%s" % (took, lines, gw.log()[-800:]))
        self.assertLess(took, 30)


class SmtpAuthSecret(GatewayTest):
    """b64.h: "the caller wipes the result it owns" - smtp_txn.c
    plain_user() and login_user() free the decoded SASL response unwiped;
    for PLAIN that is authzid NUL authcid NUL password, in clear. (The
    base64 lines also stay in unwiped conn buffers, ss->pending and the
    static line buffer of smtp_process.)"""

    def test_plain_password_not_left_in_memory(self):
        up = ScriptedSmtp({"EHLO": b"250-scripted.test\r\n250 AUTH PLAIN LOGIN\r\n",
                           "AUTH": b"235 2.7.0 ok\r\n"})
        self.addCleanup(up.stop)
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none")), [p])
        pw = "Pw-%s-secret" % os.urandom(6).hex()
        # The user name puts the password past the 16 bytes malloc reuses in a freed chunk.
        blob = base64.b64encode(b"\0alice.smith@example.org\0" + pw.encode()).decode()
        c = Smtp(p)
        c.reply()
        ehlo_until(c, "AUTH", "x.test")    # until the start-up probe has seen AUTH
        c.expect("AUTH PLAIN " + blob, 235)
        c.expect("NOOP", 250)
        # Nothing has any business holding the cleartext password now.
        self.assertEqual(memory_find(gw.worker_pid(), pw.encode()), [])
        c.expect("QUIT", 221)


class LongKeyword(GatewayTest):
    """A keyword the gateway does not forward gets 555 5.5.4 (DESIGN.md
    §4.2). With a long one the reply line does not fit and the client gets
    "451 4.3.0 Internal error" - a temporary failure for a permanent
    syntax error - and the log an error line per command."""

    def test_long_unsupported_keyword(self):
        up = self.sink()
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none", LOCAL)), [p])
        c = Smtp(p)
        c.reply()
        c.expect("EHLO x.test", 250)
        code, lines = c.cmd("MAIL FROM:<> X" + "K" * 2030)    # 2044 octets <= max_line
        self.assertEqual(code, 555, lines)
        self.assertNotIn("did not fit", gw.log())


class LingerFds(GatewayTest):
    """DESIGN.md §3: max_per_ip (concurrent) and max_connections bound a
    listener, and RLIMIT_NOFILE is sized 2 x max_connections + 64 from
    them. A session's fd outlives it by up to LINGER_SECONDS (conn.c
    close_lingering) without counting anywhere, so one address limited to
    2 sessions can hold hundreds of fds: here the worker (256 fds, enough
    by the sizing rule for max_connections = 50) hits EMFILE and pauses
    its listener - every other client waits."""

    def test_one_address_cannot_exhaust_fds(self):
        import mgtest
        up = self.sink()
        p = free_port()
        wrap = self.tmp.file("smtpd-256.sh", "#!/bin/sh\nulimit -n 256\nexec %s \"$@\"\n" % mgtest.SMTPD,
                             mode=0o755)
        gw = self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none",
                                                                 "max_per_ip = 2\nmax_connections = 50")),
                          [p], binary=wrap)
        held = []
        deadline = time.time() + 4
        # 1,000 closed sessions are four times the worker's descriptors;
        # the bound keeps this process within its own limit.
        while time.time() < deadline and len(held) < 1000:
            try:
                s = socket.create_connection(("127.0.0.1", p), timeout=5)
                s.recv(100)
                s.sendall(b"QUIT\r\n")
                s.recv(100)    # 221: the session is over, its fd is not
                held.append(s)
            except OSError:
                pass
        fds = len(os.listdir("/proc/%d/fd" % gw.worker_pid()))
        for s in held:
            s.close()
        emfile = [l for l in gw.log().splitlines() if "Too many open files" in l]
        self.assertEqual(emfile, [], "%d sessions of one address, 2 at a time; fds at the end: %d"
                         % (len(held), fds))


if __name__ == "__main__":
    main()
