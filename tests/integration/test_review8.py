"""Review 8: hostile input against the parts earlier reviews left alone -
imapd's pre-auth SASL continuation, PROXY protocol input, the metrics
endpoint, reload and the outbound/identity paths. Each test states what
the gateway must do; each was written against a defect found by attacking
a real daemon."""
import os
import shutil
import signal
import socket
import threading
import time

from mgtest import (GatewayTest, Imap, LoopbackServer, children, free_port, imapd_conf, listener, main,
                    worker_pids)


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


class FloodingUpstream(LoopbackServer):
    """An IMAP upstream that greets, answers ID, and answers the login
    command with untagged lines for ever (as fast as the gateway takes
    them), counting what it got rid of."""

    LINE = b"* OK " + b"x" * 1000 + b"\r\n"

    def __init__(self):
        self.sent = 0
        self.flooding = threading.Event()
        self.cut = threading.Event()        # the gateway closed the connection
        LoopbackServer.__init__(self)

    def handle(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID] ready\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            if b"AUTHENTICATE" in line.upper():
                break
            conn.sendall(line.split(b" ")[0] + b" OK done\r\n")
        self.flooding.set()
        chunk = self.LINE * 64
        try:
            while not self.stopping.is_set() and self.sent < 8 << 30:
                conn.sendall(chunk)     # blocks once the gateway stops reading
                self.sent += len(chunk)
        except OSError:
            self.cut.set()


class ImapLoginBackPressure(GatewayTest):
    """Untagged upstream responses during a login are relayed to the
    client (DESIGN.md §5.2) - with back-pressure, like everything else the
    gateway relays (§5.3): a client that does not read while its upstream
    talks must not make the worker queue the upstream's output without
    bound."""

    def test_untagged_flood_during_login_is_bounded(self):
        """The client sends LOGIN and then reads nothing; the upstream
        answers with an endless stream of untagged lines. The gateway
        ends that login after 64 KiB of them (NO [UNAVAILABLE], the
        upstream connection closed, after the 2 s lingering close at
        most) and its worker holds none of it: not hundreds of MiB queued
        for a client that reads nothing."""
        up = FloodingUpstream()
        self.addCleanup(up.close)
        p = free_port()
        gw = self.imap_gateway(imapd_conf(self.pki, up.port, listener("imaps", p, "implicit")), [p])
        worker = gw.worker_pid()
        c = Imap(p, tls=True)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.line()
        c.send("a LOGIN alice secret\r\n")
        self.assertTrue(up.flooding.wait(10))
        cut = up.cut.wait(10)
        rss = int(next(l.split()[1] for l in open("/proc/%d/status" % worker) if l.startswith("VmRSS:")))
        up.stopping.set()
        self.assertTrue(cut, "the upstream's flood was never cut (%d MiB taken, worker RSS %d MiB)"
                        % (up.sent >> 20, rss >> 10))
        self.assertLess(rss, 64 * 1024, "worker RSS %d MiB" % (rss >> 10))
        relayed = 0
        while True:                     # the untagged lines relayed before the limit, then the NO
            line = c.line()
            if not line.startswith("* OK x"):
                break
            relayed += len(line) + 2
        self.assertRegex(line, r"^a NO \[UNAVAILABLE\]")
        self.assertLessEqual(relayed, 64 * 1024)
        gw.wait_log(r"upstream sent over 64 KiB of untagged responses during the login")


class StallingMidLiteral(LoopbackServer):
    """An IMAP upstream that logs in, then answers the first command with
    a FETCH whose 100-octet literal stops after one line, and stalls."""

    def handle(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] ready\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            tag = line.split(b" ")[0]
            if b"AUTHENTICATE" in line.upper():
                conn.sendall(tag + b" OK [CAPABILITY IMAP4rev1] Logged in\r\n")
                break
            conn.sendall(tag + b" OK done\r\n")
        f.readline()
        conn.sendall(b"* 1 FETCH (BODY[] {100}\r\nSubject: x\r\n")
        self.stopping.wait(10)


class ImapAutologoutInsideLiteral(GatewayTest):
    """After login the gateway writes into the client stream only `* BYE
    Autologout` on timeout_idle, and only if the upstream stream is at a
    line boundary (DESIGN.md §5.3). An LF inside a literal is not one: the
    BYE would become part of the message data the client is reading."""

    def test_no_bye_inside_an_unfinished_literal(self):
        """The upstream stalls 11 octets into a 100-octet FETCH literal
        that happens to end in CRLF; at timeout_idle the gateway must close
        both sides writing nothing, so the client sees exactly the bytes
        the upstream sent."""
        up = StallingMidLiteral()
        self.addCleanup(up.close)
        p = free_port()
        self.imap_gateway(imapd_conf(self.pki, up.port, listener("imaps", p, "implicit"),
                                     extra="timeout_idle = 2", upstream_extra="forward_id = false"), [p])
        c = Imap(p, tls=True)
        c.line()
        self.assertEqual(c.cmd("a", "LOGIN alice secret")[-1], "a OK [CAPABILITY IMAP4rev1] Logged in")
        c.send("b FETCH 1 BODY[]\r\n")
        self.assertEqual(c.read_to_end(), b"* 1 FETCH (BODY[] {100}\r\nSubject: x\r\n")


class ReloadNonRegularKey(GatewayTest):
    """SIGHUP: "a broken new config is logged and the old one stays"
    (DESIGN.md §2), and the master stays the master - it restarts dying
    workers and obeys SIGTERM. A key path that names a FIFO (a mistake, or
    a file swapped by someone who can write the key's directory) is a
    broken config like any other: not a regular file."""

    def test_fifo_key_on_reload_does_not_hang_the_master(self):
        """The key file is replaced by a FIFO and SIGHUP sent: within 3 s
        the reload must be refused (logged "reload failed", the running
        configuration stays), not block the master in open() for ever -
        where it restarts no worker and ignores SIGTERM."""
        key = os.path.join(self.tmp.path, "mx.key")
        shutil.copy(os.path.join(self.pki, "server-ecdsa.key"), key)
        os.chmod(key, 0o600)
        p = free_port()
        conf = imapd_conf(self.pki, free_port(), listener("imaps", p, "implicit"))
        conf = conf.replace('cert = { "%s/server-ecdsa.pem", "%s/server-rsa.pem" }' % (self.pki, self.pki),
                            'cert = "%s/server-ecdsa.pem"' % self.pki)
        conf = conf.replace('key = { "%s/server-ecdsa.key", "%s/server-rsa.key" }' % (self.pki, self.pki),
                            'key = "%s"' % key)
        gw = self.imap_gateway(conf, [p])
        os.unlink(key)
        os.mkfifo(key, 0o600)
        self.addCleanup(self._unblock_fifo, key)
        os.kill(gw.proc.pid, signal.SIGHUP)
        deadline = time.time() + 3
        while "reload failed" not in gw.log() and time.time() < deadline:
            time.sleep(0.05)
        self.assertIn("reload failed", gw.log(), "the master is stuck opening the FIFO")
        # The master still does its job: a killed worker is replaced.
        old = gw.worker_pid()
        os.kill(old, signal.SIGKILL)
        deadline = time.time() + 5
        while time.time() < deadline and not [w for w in children(gw.proc.pid) if w != old]:
            time.sleep(0.1)
        self.assertTrue([w for w in children(gw.proc.pid) if w != old], "no worker restarted")
        c = Imap(p, tls=True, timeout=5)
        self.assertRegex(c.line(), r"^\* OK ")

    @staticmethod
    def _unblock_fifo(path):
        """A writer that opens and closes at once lets a reader blocked in
        open() go on (to an empty file), so a stuck master can stop."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass


if __name__ == "__main__":
    main()
