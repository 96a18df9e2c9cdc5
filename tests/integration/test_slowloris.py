"""Slowloris at every stage (issue 10 part 7, DESIGN.md §3, §4.2, §5.1):
a client that connects and sends nothing, trickles a TLS ClientHello,
trickles a PROXY header (and then a ClientHello), or trickles a command
line that never ends, is cut at the configured timeout - timeout_handshake
is one deadline for the PROXY header and the handshake behind it, and
timeout_command (imapd: timeout_preauth) counts only complete lines, so a
byte a second does not keep a session alive. And a source holding its
max_per_ip slots with slow handshakes never keeps a well-behaved client
from another address out of max_connections."""
import select
import socket
import ssl
import time

from mgtest import (GatewayTest, Smtp, client_context, free_port, imapd_conf, listener, main,
                    message, send_message, smtpd_conf)

TIMEOUT = 3          # timeout_handshake, timeout_command, timeout_preauth in these configs
SLACK = 2.0          # a loaded CI machine under ASan: how late a cut may come
TRICKLE = 0.2        # seconds between trickled bytes


def client_hello():
    """The first flight of a TLS client: a whole ClientHello record."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    t = client_context(ca=False).wrap_bio(inc, out, server_hostname="localhost")
    try:
        t.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert len(hello) > 100, hello
    return hello


def peer_closed(s):
    """(closed, bytes) without blocking: whether the peer closed (FIN or RST)."""
    got = b""
    while select.select([s], [], [], 0)[0]:
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            return True, got
        if not data:
            return True, got
        got += data
    return False, got


def trickle(s, data, limit, interval=TRICKLE):
    """Sends data a byte at a time until the peer closes (or limit seconds
    pass; then idles without sending). Returns (seconds until the close or
    None, the bytes received)."""
    t0, got, i = time.time(), b"", 0
    while time.time() - t0 < limit:
        closed, more = peer_closed(s)
        got += more
        if closed:
            return time.time() - t0, got
        if i < len(data):
            try:
                s.sendall(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.time() - t0, got
            i += 1
        select.select([s], [], [], interval)
    return None, got


class Stages(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p_plain, self.p_smtps, self.p_lb = free_port(), free_port(), free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("local", self.p_plain, "none", 'relay_networks = "127.0.0.1/32"') +
                          listener("smtps", self.p_smtps, "implicit") +
                          listener("lb", self.p_lb, "implicit",
                                   'proxy_protocol = true\n  trusted_proxies = "127.0.0.0/8"'),
                          extra="timeout_command = %d\ntimeout_handshake = %d" % (TIMEOUT, TIMEOUT))
        self.gw = self.gateway(conf, [self.p_plain, self.p_smtps, self.p_lb])

    def assertCut(self, took, what, since=0.0):
        self.assertIsNotNone(took, "%s: never cut (timeout %d s)" % (what, TIMEOUT))
        print("%s: cut after %.2f s (timeout %d s)" % (what, took - since, TIMEOUT))
        self.assertGreater(took - since, TIMEOUT - 0.5, what)
        self.assertLess(took - since, TIMEOUT + SLACK, what)

    def test_tcp_connect_no_bytes(self):
        s = socket.create_connection(("127.0.0.1", self.p_smtps))
        took, got = trickle(s, b"", TIMEOUT + 10)
        self.assertCut(took, "silent TCP connection")
        self.assertEqual(got, b"")

    def test_trickled_client_hello(self):
        s = socket.create_connection(("127.0.0.1", self.p_smtps))
        hello = client_hello()
        took, got = trickle(s, hello[:-1], TIMEOUT + 10)
        self.assertCut(took, "trickled ClientHello")
        self.assertNotIn(b"220", got)
        self.gw.wait_log(r"listener=smtps client=127\.0\.0\.1:\d+ .*result=timeout")

    def test_trickled_proxy_header(self):
        s = socket.create_connection(("127.0.0.1", self.p_lb))
        took, got = trickle(s, b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 465\r"[:-1], TIMEOUT + 10)
        self.assertCut(took, "trickled PROXY header")
        self.assertEqual(got, b"")
        self.gw.wait_log(r"PROXY header from 127\.0\.0\.1 refused: no header within timeout_handshake")

    def test_proxy_header_then_trickled_client_hello(self):
        # The header completes just before the deadline; the handshake
        # behind it gets only what is left of timeout_handshake (before:
        # a fresh timeout_handshake, twice the time in all).
        s = socket.create_connection(("127.0.0.1", self.p_lb))
        header = b"PROXY TCP4 192.0.2.8 127.0.0.1 4000 465\r\n"
        s.sendall(header[:10])
        time.sleep(TIMEOUT - 0.5)
        s.sendall(header[10:])
        took, got = trickle(s, client_hello()[:-1], TIMEOUT + 10)
        self.assertIsNotNone(took, "PROXY header + trickled ClientHello never cut")
        whole = took + (TIMEOUT - 0.5)
        print("PROXY header + trickled ClientHello: cut %.2f s after accept, %.2f s after the header"
              % (whole, took))
        # Restarted after the header it would be cut at 2 x TIMEOUT - 0.5;
        # SLACK (< TIMEOUT - 0.5) is how late a loaded machine may cut.
        self.assertLess(whole, TIMEOUT + SLACK, "timeout_handshake restarted after the PROXY header")
        self.assertNotIn(b"220", got)
        self.gw.wait_log(r"listener=lb client=192\.0\.2\.8:\d+ .*result=timeout")

    def trickled_command(self, c):
        t0 = time.time()
        took, got = trickle(c.sock, b"MAIL FROM:<slow@test.example> SIZE=100", TIMEOUT + 10)
        return t0, took, got

    def test_trickled_command_line_plain(self):
        c = Smtp(self.p_plain)
        c.reply()
        c.expect("EHLO slow.test", 250)
        _, took, got = self.trickled_command(c)
        self.assertCut(took, "trickled command line (cleartext)")
        self.assertTrue(got.startswith(b"421 4.4.2 "), got)
        self.gw.wait_log(r"helo=slow\.test .*result=timeout")

    def test_trickled_command_line_tls(self):
        # Over TLS each byte is a record of its own: still no line.
        c = Smtp(self.p_smtps, tls=True)
        c.reply()
        c.expect("EHLO slowtls.test", 250)
        t0, got = time.time(), b""
        c.sock.settimeout(TRICKLE)
        took = None
        for ch in b"MAIL FROM:<slow@test.example> SIZE=100":
            try:
                c.sock.sendall(bytes([ch]))
                data = c.sock.recv(4096)
                got += data
                if not data:
                    took = time.time() - t0
                    break
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError):
                took = time.time() - t0
                break
        else:
            took = time.time() - t0 if c.closed(TIMEOUT + SLACK) else None
        self.assertCut(took, "trickled command line (TLS)")
        self.assertTrue(got.startswith(b"421 4.4.2 "), got)

    def test_complete_lines_keep_a_session(self):
        # The other side of the rule: whole commands, each within
        # timeout_command, keep a session however long it lasts.
        c = Smtp(self.p_plain)
        c.reply()
        c.expect("EHLO patient.test", 250)
        for _ in range(3):
            time.sleep(TIMEOUT - 1.5)
            c.expect("NOOP", 250)
        code, _ = send_message(c, message("patient"))
        self.assertEqual(code, 250)
        c.expect("QUIT", 221)


class ImapPreauth(GatewayTest):
    def setUp(self):
        super().setUp()
        self.p_imap = free_port()
        conf = imapd_conf(self.pki, free_port(), listener("imap", self.p_imap, "none"),
                          extra="timeout_preauth = %d\ntimeout_handshake = %d" % (TIMEOUT, TIMEOUT))
        self.gw = self.imap_gateway(conf, [self.p_imap])

    def test_trickled_login_line(self):
        s = socket.create_connection(("127.0.0.1", self.p_imap))
        s.settimeout(5)
        self.assertTrue(s.recv(4096).startswith(b"* OK"))
        took, got = trickle(s, b"a1 LOGIN alice secret-but-never-finished", TIMEOUT + 10)
        self.assertIsNotNone(took, "trickled IMAP line never cut")
        print("trickled IMAP line: cut after %.2f s (timeout_preauth %d s)" % (took, TIMEOUT))
        self.assertLess(took, TIMEOUT + SLACK)
        self.assertNotIn(b"a1 OK", got)


class PerIpSlots(GatewayTest):
    """One source filling its max_per_ip slots with handshakes that never
    end (and trying for more) while a client from 127.0.0.2 does a whole
    session: max_connections still has room for it."""
    MAX_CONN, PER_IP, SLOW = 8, 4, 12

    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p = free_port()
        # Bound on 127.0.0.1, so 127.0.0.2 reaches it through loopback.
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("smtps", self.p, "implicit",
                                   "max_connections = %d\n  max_per_ip = %d" % (self.MAX_CONN, self.PER_IP)),
                          extra="timeout_handshake = 30")
        self.gw = self.gateway(conf, [self.p])

    def test_slowloris_source_does_not_exhaust_max_connections(self):
        hello = client_hello()
        slow = []
        for _ in range(self.SLOW):
            s = socket.create_connection(("127.0.0.1", self.p), source_address=("127.0.0.1", 0))
            s.sendall(hello[:5])    # a record header, then nothing: a handshake never finishing
            slow.append(s)
        time.sleep(1.0)    # every one was accepted and admitted or refused
        states = [peer_closed(s)[0] for s in slow]
        held, refused = states.count(False), states.count(True)
        print("slowloris from 127.0.0.1: %d held, %d refused (max_per_ip %d, max_connections %d)"
              % (held, refused, self.PER_IP, self.MAX_CONN))
        self.assertEqual(held, self.PER_IP, states)

        try:
            c = Smtp(self.p, tls=True, source="127.0.0.2")
            greeting = c.reply()[0]
        except (OSError, EOFError) as e:
            self.fail("the client from 127.0.0.2 was refused: %r" % e)
        self.assertEqual(greeting, 220)
        c.expect("EHLO good.test", 250)
        code, lines = send_message(c, message("from the good client"))
        self.assertEqual(code, 250, lines)
        c.expect("QUIT", 221)
        msgs = self.up.wait_messages(1)
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"Subject: from the good client", msgs[0].message)
        # ...while every slot of 127.0.0.1 was still taken.
        self.assertEqual([peer_closed(s)[0] for s in slow].count(False), self.PER_IP)
        self.assertEqual(refused, self.SLOW - self.PER_IP, states)
        self.gw.wait_log(r"listener=smtps client=127\.0\.0\.1:\d+ .*reason=max_per_ip result=limit")
        for s in slow:
            s.close()


if __name__ == "__main__":
    main()
