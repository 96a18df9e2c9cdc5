"""Contract items no other test asserted, each against real peers:
imapd over-limit (STARTTLS listener: exactly "* BYE [UNAVAILABLE] Too many
connections" then close; implicit listener: closed before any handshake;
a session line with result=limit in its exact form); imapd SIGTERM ("* BYE
Server shutting down" to sessions not logged in, nothing written into a
logged-in one); forward_id (the ID command a scripted IMAP upstream
receives: x-originating-ip/port, x-connected-ip/port, x-session-ext-id
with the right values, before the login); smtpd's exact texts "220 2.0.0
Ready to start TLS", "454 4.7.0 Temporary authentication failure"
(upstream unreachable at AUTH), "452 4.5.3 Too many recipients" (not
forwarded), "421 4.4.1 Upstream unavailable, try again later" and the
close (upstream unreachable at MAIL); no TLS 1.2 renegotiation (openssl
s_client's "R"), no 0-RTT early data (openssl s_client -early_data on a
resumed TLS 1.3 session); credentials (AUTH PLAIN, AUTH LOGIN, IMAP LOGIN
and AUTHENTICATE PLAIN) never in the log, even with -d and log_level =
debug; and imapd's log_target = syslog with facility mail (a private
/dev/log in a mount namespace)."""
import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import time

from mgtest import (IMAPD, GatewayTest, Imap, LoopbackServer, Smtp, free_port, imapd_conf, listener,
                    main, need, run_with_private_dev, smtpd_conf)

BYE_LIMIT = "* BYE [UNAVAILABLE] Too many connections"
PASSWORD = "Zq7-contract-Pw!9xK"          # distinctive: found nowhere else in any log


def session_line(gw, listener_name, client, port):
    """The session line logged for the client at client:port."""
    return gw.wait_log(r"session=(\S+) listener=%s client=%s:%d [^\n]*" %
                       (listener_name, re.escape(client), port))


class ScriptedImap(LoopbackServer):
    """An IMAP upstream that logs in anybody (AUTHENTICATE PLAIN with
    SASL-IR) and records every line each connection sends, in order."""

    CAPS = b"IMAP4rev1 SASL-IR AUTH=PLAIN ID"

    def __init__(self):
        self.received = []          # one list of lines per connection
        super().__init__()

    def handle(self, conn):
        mine = []
        with self.lock:
            self.received.append(mine)
        conn.sendall(b"* OK [CAPABILITY " + self.CAPS + b"] scripted ready\r\n")
        for line in self.lines(conn):
            mine.append(line)
            tag, _, rest = line.partition(b" ")
            verb = rest.split(b" ")[0].upper()
            if verb == b"CAPABILITY":
                conn.sendall(b"* CAPABILITY " + self.CAPS + b"\r\n" + tag + b" OK done\r\n")
            elif verb == b"ID":
                conn.sendall(b"* ID NIL\r\n" + tag + b" OK ID completed\r\n")
            elif verb == b"AUTHENTICATE":
                conn.sendall(tag + b" OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
            elif verb == b"LOGOUT":
                conn.sendall(b"* BYE Logging out\r\n" + tag + b" OK Logout completed\r\n")
                return
            else:
                conn.sendall(tag + b" OK done\r\n")

    def all_lines(self):
        with self.lock:
            return [l for conn in self.received for l in conn]


class ImapContract(GatewayTest):
    """One mailgate-imapd (run with -d, log_level = debug) in front of a
    scripted upstream: an implicit and a STARTTLS listener, max_per_ip = 1
    each. Every test uses a client address of its own, so the per-IP
    counts of one test never meet another's."""

    def setUp(self):
        super().setUp()
        self.up = ScriptedImap()
        self.addCleanup(self.up.stop)
        self.p_imaps, self.p_imap = free_port(), free_port()
        conf = imapd_conf(self.pki, self.up.port,
                          listener("imaps", self.p_imaps, "implicit", "max_per_ip = 1") +
                          listener("imap", self.p_imap, "starttls", "max_per_ip = 1"),
                          upstream_extra="forward_id = true")
        self.gw = self.imap_gateway(conf, [self.p_imaps, self.p_imap], extra_args=("-d",))

    def test_over_limit_starttls_listener_bye_then_close(self):
        first = Imap(self.p_imap, source="127.0.0.8")
        self.assertTrue(first.line().startswith("* OK "))
        second = Imap(self.p_imap, source="127.0.0.8")
        port = second.sock.getsockname()[1]
        self.assertEqual(second.line(), BYE_LIMIT)
        self.assertTrue(second.closed())
        self.assertEqual(second.buf, b"")             # nothing after the BYE
        line = session_line(self.gw, "imap", "127.0.0.8", port).group(0)
        self.assertRegex(line, r"^session=[0-9A-F]{12} listener=imap client=127\.0\.0\.8:%d bytes_in=0 "
                               r"bytes_out=%d duration=0\.000 reason=max_per_ip result=limit$"
                         % (port, len(BYE_LIMIT) + 2))
        # The first session is untouched by the refusal.
        self.assertEqual(first.cmd("a", "NOOP")[-1], "a OK NOOP completed")

    def test_over_limit_implicit_listener_closed_before_handshake(self):
        first = Imap(self.p_imaps, tls=True, source="127.0.0.7")
        self.assertTrue(first.line().startswith("* OK "))
        raw = socket.create_connection(("127.0.0.1", self.p_imaps), timeout=5,
                                       source_address=("127.0.0.7", 0))
        port = raw.getsockname()[1]
        # We send no ClientHello: a gateway waiting for one would not
        # close (recv times out); it must close at once, writing nothing.
        data = b""
        try:
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        raw.close()
        self.assertEqual(data, b"")
        line = session_line(self.gw, "imaps", "127.0.0.7", port).group(0)
        self.assertRegex(line, r"^session=[0-9A-F]{12} listener=imaps client=127\.0\.0\.7:%d bytes_in=0 "
                               r"bytes_out=0 duration=0\.000 reason=max_per_ip result=limit$" % port)
        self.assertEqual(first.cmd("a", "NOOP")[-1], "a OK NOOP completed")

    def test_forward_id_fields(self):
        c = Imap(self.p_imaps, tls=True, source="127.0.0.5")
        cport = c.sock.getsockname()[1]
        c.line()
        self.assertRegex(c.cmd("a", "LOGIN alice secret")[-1], r"^a OK ")
        c.cmd("b", "LOGOUT")
        sid = session_line(self.gw, "imaps", "127.0.0.5", cport).group(1)
        ids = [l for l in self.up.all_lines() if re.match(rb"^\S+ ID ", l)]
        self.assertEqual(len(ids), 1, self.up.received)
        self.assertEqual(ids[0].split(b" ", 2)[2].decode(),
                         '("x-originating-ip" "127.0.0.5" "x-originating-port" "%d" '
                         '"x-connected-ip" "127.0.0.1" "x-connected-port" "%d" '
                         '"x-session-ext-id" "%s")' % (cport, self.p_imaps, sid))
        # The ID went before the login command, on the same connection.
        conn = next(cl for cl in self.up.received if ids[0] in cl)
        verbs = [l.split(b" ")[1].upper() for l in conn]
        self.assertLess(verbs.index(b"ID"), verbs.index(b"AUTHENTICATE"))

    def test_imap_login_password_never_logged(self):
        c = Imap(self.p_imaps, tls=True, source="127.0.0.6")
        cport = c.sock.getsockname()[1]
        c.line()
        self.assertRegex(c.cmd("a", "LOGIN carol %s" % PASSWORD)[-1], r"^a OK ")
        c.cmd("b", "LOGOUT")
        session_line(self.gw, "imaps", "127.0.0.6", cport)
        # A second login, by AUTHENTICATE PLAIN with the password again.
        blob = base64.b64encode(b"\0carol\0" + PASSWORD.encode()).decode()
        c = Imap(self.p_imaps, tls=True, source="127.0.0.6")
        cport = c.sock.getsockname()[1]
        c.line()
        self.assertRegex(c.cmd("a", "AUTHENTICATE PLAIN %s" % blob)[-1], r"^a OK ")
        c.cmd("b", "LOGOUT")
        session_line(self.gw, "imaps", "127.0.0.6", cport)
        # The upstream did get the password: the gateway had it in hand.
        auths = [l for l in self.up.all_lines() if b" AUTHENTICATE PLAIN " in l]
        self.assertEqual(len(auths), 2)
        self.assertIn(b"\0carol\0" + PASSWORD.encode(), base64.b64decode(auths[0].split(b" ")[3]))
        log = self.gw.log()
        self.assertIn("debug", log)              # the debug level was on
        for secret in (PASSWORD, blob, base64.b64encode(PASSWORD.encode()).decode(),
                       auths[0].split(b" ")[3].decode()):
            self.assertNotIn(secret, log)


class ImapShutdown(GatewayTest):
    """SIGTERM: sessions not logged in yet get "* BYE Server shutting
    down" (over TLS and in cleartext before STARTTLS) and are closed; a
    logged-in session gets nothing written into its stream and is closed
    at shutdown_timeout; the master exits 0."""

    def test_sigterm_bye_before_login(self):
        up = ScriptedImap()
        self.addCleanup(up.stop)
        p_imaps, p_imap = free_port(), free_port()
        gw = self.imap_gateway(imapd_conf(self.pki, up.port,
                                          listener("imaps", p_imaps, "implicit") +
                                          listener("imap", p_imap, "starttls"),
                                          extra="shutdown_timeout = 2"),
                               [p_imaps, p_imap])
        tls = Imap(p_imaps, tls=True)
        self.assertTrue(tls.line().startswith("* OK "))
        plain = Imap(p_imap)
        self.assertTrue(plain.line().startswith("* OK "))
        self.assertEqual(plain.cmd("a", "NOOP")[-1], "a OK NOOP completed")
        user = Imap(p_imaps, tls=True)
        user.line()
        self.assertRegex(user.cmd("a", "LOGIN alice secret")[-1], r"^a OK ")
        self.assertEqual(user.cmd("b", "NOOP")[-1], "b OK done")     # relayed from the upstream
        t0 = time.time()
        os.kill(gw.proc.pid, signal.SIGTERM)
        for c in (tls, plain):
            c.sock.settimeout(10)
            self.assertEqual(c.line(), "* BYE Server shutting down")
            self.assertTrue(c.closed())
            self.assertEqual(c.buf, b"")
        user.sock.settimeout(10)
        try:
            rest = user.read_to_end()
        except (ssl.SSLError, ConnectionResetError):
            rest = user.buf
        self.assertEqual(rest, b"")                  # no BYE of ours after login
        self.assertGreater(time.time() - t0, 1.5)    # kept until shutdown_timeout
        self.assertEqual(gw.proc.p.wait(15), 0)
        gw.check_sanitizers()


class ScriptedAuthSmtp(LoopbackServer):
    """An SMTP upstream offering AUTH PLAIN LOGIN that accepts any
    credentials and any message; records every line it gets, in order."""

    def __init__(self):
        self.received = []
        super().__init__()

    def handle(self, conn):
        def say(b):
            conn.sendall(b)
        say(b"220 scripted.test ESMTP\r\n")
        data = False
        login = 0
        for line in self.lines(conn):
            with self.lock:
                self.received.append(line)
            if data:
                if line == b".":
                    data = False
                    say(b"250 2.0.0 queued\r\n")
                continue
            if login == 1:
                login = 2
                say(b"334 UGFzc3dvcmQ6\r\n")
                continue
            if login == 2:
                login = 0
                say(b"235 2.7.0 Authentication successful\r\n")
                continue
            words = line.split(b" ")
            verb = words[0].split(b":")[0].upper()
            if verb in (b"EHLO", b"HELO"):
                say(b"250-scripted.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
            elif verb == b"AUTH" and words[1].upper() == b"LOGIN":
                login = 1
                say(b"334 VXNlcm5hbWU6\r\n")
            elif verb == b"AUTH":
                say(b"235 2.7.0 Authentication successful\r\n")
            elif verb == b"DATA":
                data = True
                say(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                say(b"221 2.0.0 bye\r\n")
                return
            else:
                say(b"250 2.0.0 ok\r\n")

    def lines_received(self):
        with self.lock:
            return list(self.received)


class SmtpContract(GatewayTest):
    """One mailgate-smtpd (-d, log_level = debug) with two upstreams: "up"
    (scripted, offers AUTH) and "dead" (nothing listens). Listeners: smtps
    and a plain loopback one to "up", a STARTTLS one, and smtps and plain
    loopback ones to "dead"."""

    def setUp(self):
        super().setUp()
        self.up = ScriptedAuthSmtp()
        self.addCleanup(self.up.stop)
        self.dead_port = free_port()
        (self.p_smtps, self.p_local, self.p_sub,
         self.p_dead_smtps, self.p_dead_local) = (free_port() for _ in range(5))
        relay = 'relay_networks = "127.0.0.1/32"'
        listeners = (listener("smtps", self.p_smtps, "implicit", 'upstream = "up"') +
                     listener("local", self.p_local, "none", relay + '\n  upstream = "up"') +
                     listener("submission", self.p_sub, "starttls", 'upstream = "up"') +
                     listener("dead-smtps", self.p_dead_smtps, "implicit", 'upstream = "dead"') +
                     listener("dead-local", self.p_dead_local, "none", relay + '\n  upstream = "dead"'))
        conf = smtpd_conf(self.pki, self.up.port, listeners,
                          extra='max_recipients = 100\nupstream "dead" {\n  address = "127.0.0.1:%d"\n'
                                '  xclient = false\n}\n' % self.dead_port)
        self.gw = self.gateway(conf, [self.p_smtps, self.p_local, self.p_sub, self.p_dead_smtps,
                                      self.p_dead_local], extra_args=("-d",))

    def client(self, port, tls=False):
        c = Smtp(port, tls=tls)
        self.assertEqual(c.reply()[0], 220)
        return c

    def test_starttls_reply_text(self):
        c = self.client(self.p_sub)
        self.assertIn("STARTTLS", [l[4:] for l in c.expect("EHLO contract.test", 250)])
        self.assertEqual(c.cmd("STARTTLS"), (220, ["220 2.0.0 Ready to start TLS"]))
        c.starttls()
        self.assertNotIn("STARTTLS", [l[4:] for l in c.expect("EHLO contract.test", 250)])
        c.expect("QUIT", 221)

    def test_auth_upstream_unreachable_454(self):
        c = self.client(self.p_dead_smtps, tls=True)
        c.expect("EHLO contract.test", 250)
        blob = base64.b64encode(b"\0dave\0" + PASSWORD.encode()).decode()
        self.assertEqual(c.cmd("AUTH PLAIN " + blob), (454, ["454 4.7.0 Temporary authentication failure"]))
        # Not a close: the session goes on.
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.expect("QUIT", 221)

    def test_mail_upstream_unreachable_421_and_close(self):
        c = self.client(self.p_dead_local)
        c.expect("EHLO contract.test", 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>"),
                         (421, ["421 4.4.1 Upstream unavailable, try again later"]))
        self.assertTrue(c.closed())
        self.assertEqual(c.buf, b"")
        self.gw.wait_log(r"listener=dead-local [^\n]*result=upstream-failed")

    def test_too_many_recipients_452_not_forwarded(self):
        c = self.client(self.p_local)
        c.expect("EHLO contract.test", 250)
        c.expect("MAIL FROM:<a@test.example>", 250)
        c.send("".join("RCPT TO:<r%d@example.org>\r\n" % i for i in range(101)))
        replies = [c.reply() for _ in range(101)]
        self.assertEqual([r[0] for r in replies[:100]], [250] * 100)
        self.assertEqual(replies[100], (452, ["452 4.5.3 Too many recipients"]))
        # The transaction goes on with the first 100.
        c.expect("DATA", 354)
        c.send(b"Subject: many\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.expect("QUIT", 221)
        rcpts = [l for l in self.up.lines_received() if l.upper().startswith(b"RCPT TO:")]
        self.assertEqual(len(rcpts), 100)
        self.assertIn(b"RCPT TO:<r99@example.org>", rcpts)
        self.assertNotIn(b"RCPT TO:<r100@example.org>", rcpts)

    def test_auth_credentials_never_logged(self):
        plain = base64.b64encode(b"\0erin\0" + PASSWORD.encode()).decode()
        user64 = base64.b64encode(b"frank").decode()
        pass64 = base64.b64encode(PASSWORD.encode()).decode()
        c = self.client(self.p_smtps, tls=True)
        cport = c.sock.getsockname()[1]
        c.expect("EHLO contract.test", 250)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain)[0], 235)
        c.expect("QUIT", 221)
        session_line(self.gw, "smtps", "127.0.0.1", cport)
        c = self.client(self.p_smtps, tls=True)
        cport = c.sock.getsockname()[1]
        c.expect("EHLO contract.test", 250)
        self.assertEqual(c.cmd("AUTH LOGIN"), (334, ["334 VXNlcm5hbWU6"]))
        self.assertEqual(c.cmd(user64), (334, ["334 UGFzc3dvcmQ6"]))
        self.assertEqual(c.cmd(pass64)[0], 235)
        c.expect("QUIT", 221)
        session_line(self.gw, "smtps", "127.0.0.1", cport)
        # The upstream got both exchanges, so the gateway had them in hand.
        got = self.up.lines_received()
        self.assertIn(b"AUTH PLAIN " + plain.encode(), got)
        self.assertIn(pass64.encode(), got)
        log = self.gw.log()
        self.assertIn("debug", log)
        self.assertRegex(log, r"user=erin")      # the user name is logged...
        for secret in (PASSWORD, plain, pass64):  # ...the password never is
            self.assertNotIn(secret, log)


class TlsContract(GatewayTest):
    """No TLS 1.2 renegotiation, no 0-RTT early data (DESIGN: tls section)."""

    def setUp(self):
        super().setUp()
        self.up = ScriptedAuthSmtp()
        self.addCleanup(self.up.stop)
        self.p_smtps = free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port,
                                          listener("smtps", self.p_smtps, "implicit")),
                               [self.p_smtps])

    def test_tls12_renegotiation_refused(self):
        """A TLS 1.2 client asking to renegotiate (openssl s_client's "R")
        gets no new handshake: the gateway ends the connection, and a
        command sent after it is never answered."""
        need("openssl")
        p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.p_smtps, "-tls1_2",
                              "-servername", "localhost", "-CAfile", os.path.join(self.pki, "ca.pem")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        time.sleep(1.0)                             # the handshake and the greeting
        try:
            p.stdin.write(b"R\n")
            p.stdin.flush()
            time.sleep(1.0)
            p.stdin.write(b"NOOP\r\n")               # answered only if the session survived
            p.stdin.flush()
            time.sleep(0.5)
        except BrokenPipeError:
            pass                                    # s_client saw the connection end
        try:
            out = p.communicate(timeout=30)[0]
        except BrokenPipeError:
            out = p.stdout.read()
        out = out.decode("utf-8", "replace")
        self.assertIn("Protocol  : TLSv1.2", out)
        self.assertIn("220 mx.test.example ESMTP", out)
        head, sep, after = out.partition("RENEGOTIATING")
        self.assertEqual(sep, "RENEGOTIATING", out)
        self.assertNotIn("250 ", after)              # NOOP never answered
        self.assertNotIn("verify return:1", after)   # no second certificate: no new handshake
        line = self.gw.wait_log(r"session=\S+ listener=smtps [^\n]*tls=TLS1\.2 [^\n]*result=\S+").group(0)
        self.assertRegex(line, r"result=error$")

    def test_no_early_data(self):
        need("openssl")
        sess = os.path.join(self.tmp.path, "sess.pem")
        early = self.tmp.file("early", "EHLO early.test\r\n")
        base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.p_smtps, "-servername", "localhost",
                "-CAfile", os.path.join(self.pki, "ca.pem"), "-tls1_3", "-ign_eof"]

        def run(extra):
            # The tickets come after the handshake: stay until the
            # greeting (and the tickets before it) arrived, then QUIT.
            p = subprocess.Popen(base + extra, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
            time.sleep(1.0)
            out, _ = p.communicate(b"QUIT\r\n", timeout=30)
            return out.decode("utf-8", "replace")

        first = run(["-sess_out", sess])
        self.assertIn("220 mx.test.example ESMTP", first)
        self.assertRegex(first, r"Max Early Data: 0\b")   # the ticket allows none
        second = run(["-sess_in", sess, "-early_data", early])
        self.assertIn("Reused, TLSv1.3", second)           # resumed: early data was possible
        self.assertNotIn("Early data was accepted", second)
        self.assertIn("Early data was not sent", second)
        # The gateway never executed the early EHLO.
        self.assertNotIn("early.test", self.gw.log())


# Run by run_with_private_dev() (a private /dev in a mount namespace, so
# the machine's logger is never touched): a datagram socket at /dev/log,
# mailgate-imapd started detached with -d, one IMAP session (greeting,
# LOGOUT) on its plain loopback listener, then stopped.
IMAPD_SYSLOG = r'''
imapd = smtpd
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
grams = []
def collect():
    while True:
        grams.append(s.recv(65536))
threading.Thread(target=collect, daemon=True).start()
r = subprocess.run([imapd, "-d", "-c", conf], capture_output=True, text=True)
res = {"start": [r.returncode, r.stderr]}
c = socket.create_connection(("127.0.0.1", port), timeout=10)
greeting = c.makefile("rb").readline()
c.sendall(b"a LOGOUT\r\n")
while c.recv(4096):
    pass
c.close()
res["greeting"] = greeting.decode("utf-8", "replace")
stop_when_logged(grams, b"listener=local")
res["datagrams"] = [g.decode("utf-8", "replace") for g in list(grams)]
print(json.dumps(res))
'''


class ImapSyslog(GatewayTest):
    """log_target = syslog: mailgate-imapd's lines (info and -d debug ones)
    reach /dev/log with facility mail (priority 16-23), tagged with the
    program name and pid. (mailgate-smtpd's: test_logs.py.)"""

    def test_syslog_facility_mail(self):
        p = free_port()
        conf = imapd_conf(self.pki, free_port(), listener("local", p, "none"))
        conf = conf.replace('log_target = "stderr"', 'log_target = "syslog"').replace(
            "hostname =", 'pidfile = "%s"\nhostname =' % self.tmp.file("i.pid"), 1)
        path = self.tmp.file("i.conf", conf)
        res = run_with_private_dev(self, self.tmp, "imapd_syslog.py", IMAPD_SYSLOG, IMAPD, path, p)
        self.assertEqual(res["start"][0], 0, res)
        self.assertTrue(res["greeting"].startswith("* OK "), res)
        grams = res["datagrams"]
        # <22>: facility mail (2) * 8 + info (6); <23>: mail.debug.
        self.assertTrue(any(re.match(r"<22>\w{3} [ \d]\d \d\d:\d\d:\d\d mailgate-imapd\[\d+\]: "
                                     r"session=\S+ listener=local client=127\.0\.0\.1:\d+ ", g)
                            for g in grams), grams)
        self.assertTrue(any(g.startswith("<23>") for g in grams), grams)
        pris = {int(re.match(r"<(\d+)>", g).group(1)) for g in grams}
        self.assertTrue(pris and all(pri // 8 == 2 for pri in pris), pris)


if __name__ == "__main__":
    main()
