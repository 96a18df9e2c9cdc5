"""Scaling out behind a real HAProxy (README "Scaling out"): HAProxy runs
etc/haproxy-mailgate.cfg.example itself - its addresses and ports replaced
by loopback ones, maxconn lowered - in front of two mailgate-smtpd and two
mailgate-imapd instances (send-proxy-v2 -> proxy_protocol = true, one
shared ticket_key), with a real Postfix and a real Dovecot behind them,
plus a control instance (its own ticket key, low per-client limits).
Checked:

  - the client address HAProxy declares reaches Postfix through XCLIENT
    (Postfix logs client=unknown[127.0.0.9], not the balancer's address)
    and Dovecot through ID (rip=127.0.0.9);
  - a TLS session ticket issued by one instance resumes on the other (and,
    the control, not on an instance with its own random key); rotating
    the key as the README says - a new file, then a reload of each
    instance - cuts resumption across the instances only while one has
    the new file and the other the old;
  - health checks are TCP checks with a PROXY v2 LOCAL header; the
    gateways log such byte-less connections at debug only (HAProxy's
    dontlognull) and leave them out of /metrics, where a real session
    through the balancer is counted (and logged at info);
  - per-client limits at the balancer: the example's stick table refuses
    a source address's 51st concurrent connection and its 121st new one
    within a minute, other addresses unaffected; and behind it each
    gateway still applies its own max_per_ip and rate_per_ip to the
    address PROXY declares (a backstop);
  - one SMTP instance SIGKILLed while four clients send: HAProxy's health
    check marks it DOWN, new connections go to the other, and every message
    that got a 250 is at Postfix exactly once; every message eventually got
    its 250 (a client retries what got none, as an MTA would).
"""
import os
import re
import signal
import socket
import threading
import time
import urllib.request

from mgtest import (SRCDIR, GatewayTest, Imap, Proc, Smtp, SmtpReplyError, client_context, free_port,
                    imapd_conf, listener, main, message, need, send_message, smtpd_conf)

EXAMPLE = os.path.join(SRCDIR, "etc", "haproxy-mailgate.cfg.example")


class Balancer:
    """HAProxy with the example configuration, by PID, foreground (-db)."""

    def __init__(self, tmp, ports, extra):
        need("haproxy")
        with open(EXAMPLE) as f:
            cfg = f.read()
        self.sock = os.path.join(tmp.path, "haproxy.sock")
        subst = [(r"log /dev/log local0", "log stderr format raw local0"),
                 (r"stats socket /run/haproxy/admin\.sock", "stats socket " + self.sock),
                 (r"maxconn \d+", "maxconn 2000")]    # the test machine's descriptor limit
        for old, new in ports.items():
            subst.append((re.escape(old) + r"\b", new))
        for old, new in subst:
            cfg, n = re.subn(r"(?m)(?<=\s)" + old, new, cfg)
            assert n, "example has no %r" % old
        live = re.sub(r"(?m)#.*$", "", cfg)
        assert not re.search(r"10\.0\.0\.|bind :", live), "an address of the example was not replaced"
        self.cfg = tmp.file("haproxy.cfg", cfg + extra)
        self.log_path = os.path.join(tmp.path, "haproxy.log")     # printed when a test fails
        self.proc = Proc(["haproxy", "-db", "-f", self.cfg], self.log_path)
        # Ready when its stats socket answers (its listeners are bound by
        # then); no probe connection, which would reach a gateway as a
        # client that sent nothing.
        deadline = time.time() + 15
        while True:
            try:
                if self.stat():
                    break
            except OSError:
                pass
            if self.proc.p.poll() is not None or time.time() > deadline:
                raise RuntimeError("haproxy did not start: " + self.proc.output())
            time.sleep(0.05)

    def stat(self):
        """show stat as {(proxy, server): status}."""
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(b"show stat\n")
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
        s.close()
        rows = out.decode().splitlines()
        head = rows[0].lstrip("# ").split(",")
        st = {}
        for r in rows[1:]:
            f = dict(zip(head, r.split(",")))
            if f.get("pxname"):
                st[(f["pxname"], f["svname"])] = f["status"]
        return st

    def wait_status(self, proxy, server, want, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.stat().get((proxy, server), "").startswith(want):
                return
            time.sleep(0.2)
        raise AssertionError("%s/%s never %s: %s" % (proxy, server, want, self.stat()))

    def stop(self):
        self.proc.stop()


class ScaleOut(GatewayTest):
    def setUp(self):
        need("haproxy")
        super().setUp()
        self.ticket_key = self.tmp.file("ticket.key", os.urandom(64), mode=0o600)
        tls_extra = 'ticket_key = "%s"' % self.ticket_key
        pp = 'proxy_protocol = true\n  trusted_proxies = { "127.0.0.1" }\n  max_per_ip = %d'
        self.pf = self.postfix(free_port())
        imap_port = free_port()
        self.dc = self.dovecot(imap_port=imap_port, users={"alice": "secret"})
        self.smtp = {}
        self.metrics_port = free_port()     # gw1's /metrics
        for name in ("gw1", "gw2"):
            p465, p587 = free_port(), free_port()
            extra = 'metrics = "127.0.0.1:%d"' % self.metrics_port if name == "gw1" else ""
            gw = self.gateway(smtpd_conf(self.pki, self.pf.port,
                                         listener("smtps", p465, "implicit", pp % 1000) +
                                         listener("submission", p587, "starttls", pp % 1000),
                                         extra=extra, upstream_extra="xclient = true", tls_extra=tls_extra),
                              [p465, p587])
            self.smtp[name] = (gw, p465, p587)
        self.imap = {}
        for name in ("gw1", "gw2"):
            p993 = free_port()
            gw = self.imap_gateway(imapd_conf(self.pki, imap_port, listener("imaps", p993, "implicit", pp % 1000),
                                              tls_extra=tls_extra), [p993])
            self.imap[name] = (gw, p993)
        # The control instance: its own (random) ticket key, and low
        # max_per_ip and rate_per_ip (the per-instance backstop).
        p_ctl = free_port()
        self.control = self.gateway(smtpd_conf(self.pki, self.pf.port,
                                               listener("smtps", p_ctl, "implicit", pp % 2 + "\n  rate_per_ip = 6"),
                                               upstream_extra="xclient = true"), [p_ctl])
        self.f_smtps, self.f_sub, self.f_imaps = free_port(), free_port(), free_port()
        ports = {":465": "127.0.0.1:%d" % self.f_smtps, ":587": "127.0.0.1:%d" % self.f_sub,
                 ":993": "127.0.0.1:%d" % self.f_imaps,
                 "10.0.0.11:465": "127.0.0.1:%d" % self.smtp["gw1"][1],
                 "10.0.0.12:465": "127.0.0.1:%d" % self.smtp["gw2"][1],
                 "10.0.0.11:587": "127.0.0.1:%d" % self.smtp["gw1"][2],
                 "10.0.0.12:587": "127.0.0.1:%d" % self.smtp["gw2"][2],
                 "10.0.0.21:993": "127.0.0.1:%d" % self.imap["gw1"][1],
                 "10.0.0.22:993": "127.0.0.1:%d" % self.imap["gw2"][1]}
        # Test-only additions: frontends pinned to one instance each
        # (tickets and the gateway's own limit are checked instance by
        # instance).
        self.pin = {k: free_port() for k in ("gw1", "gw2", "control")}
        extra = ""
        for k, back in (("gw1", self.smtp["gw1"][1]), ("gw2", self.smtp["gw2"][1]), ("control", p_ctl)):
            extra += ("\nfrontend pin_%s\n    bind 127.0.0.1:%d\n    default_backend pin_%s\n"
                      "backend pin_%s\n    server s 127.0.0.1:%d send-proxy-v2\n" % (k, self.pin[k], k, k, back))
        self.lb = self.track(Balancer(self.tmp, ports, extra))
        for name in ("gw1", "gw2"):
            for px in ("mailgate_smtps", "mailgate_submission", "mailgate_imaps"):
                self.lb.wait_status(px, name, "UP")

    def checked_gateways(self):
        """(gateway, its listeners) for every instance HAProxy checks."""
        return ([(g, ("smtps", "submission")) for g, _, _ in self.smtp.values()] +
                [(g, ("imaps",)) for g, _ in self.imap.values()])

    # ---- the client's address, end to end ----

    def test_client_address_reaches_postfix_and_dovecot(self):
        for port, starttls in ((self.f_smtps, False), (self.f_sub, True), (self.f_smtps, False)):
            c = Smtp(port, tls=not starttls, source="127.0.0.9")
            self.assertEqual(c.reply()[0], 220)
            if starttls:
                c.expect("EHLO client.test", 250)
                c.expect("STARTTLS", 220)
                c.starttls()
            c.expect("EHLO client.test", 250)
            code, lines = send_message(c, message("via haproxy"))
            self.assertEqual(code, 250, lines)
            c.expect("QUIT", 221)
        self.pf.wait_log(r"client=unknown\[127\.0\.0\.9\]")
        self.assertEqual(len(re.findall(r": client=unknown\[127\.0\.0\.9\]", self.pf.log())), 3)
        self.assertNotRegex(self.pf.log(), r": client=\S+\[127\.0\.0\.1\]")
        # Both instances served (leastconn: round robin among equally
        # loaded servers), each logging the declared client.
        for name in ("gw1", "gw2"):
            self.smtp[name][0].wait_log(r"info: session=\w+ listener=\w+ client=127\.0\.0\.9:\d+ .*msgs=1")
        for _ in range(2):
            c = Imap(self.f_imaps, tls=True, source="127.0.0.9")
            self.assertTrue(c.line().startswith("* OK"))
            self.assertRegex(c.cmd("a", "LOGIN alice secret")[-1], r"^a OK ")
            c.cmd("b", "LOGOUT")
        deadline = time.time() + 10
        while len(re.findall(r"Login: user=<alice>", self.dc.log())) < 2 and time.time() < deadline:
            time.sleep(0.1)
        logins = re.findall(r"Login: user=<alice>.*", self.dc.log())
        self.assertEqual(len(logins), 2, self.dc.log()[-3000:])
        for line in logins:
            self.assertIn("rip=127.0.0.9,", line)
        for name in ("gw1", "gw2"):
            self.imap[name][0].wait_log(r"info: session=\w+ listener=imaps client=127\.0\.0\.9:\d+ ")

    # ---- tickets across instances ----

    def tls_session(self, port, source, session=None):
        """One SMTPS session through the pinned frontend at port, from
        source, offering session: (resumed?, the new session)."""
        if not hasattr(self, "ctx"):
            self.ctx = client_context()     # a session resumes within its context
        raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        c = Smtp.__new__(Smtp)
        c.sock = self.ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        c.buf, c.timeout = b"", 10
        self.assertEqual(c.reply()[0], 220)
        c.expect("QUIT", 221)   # the ticket (TLS 1.3: after the handshake) is in by now
        reused, sess = c.sock.session_reused, c.sock.session
        c.close()
        return reused, sess

    def test_ticket_from_one_instance_resumes_on_the_other(self):
        reused, sess = self.tls_session(self.pin["gw1"], "127.0.0.31")
        self.assertFalse(reused)
        self.assertTrue(sess.has_ticket)
        self.smtp["gw1"][0].wait_log(r"client=127\.0\.0\.31:\d+ tls=TLS1\.3")
        reused, _ = self.tls_session(self.pin["gw2"], "127.0.0.32", sess)
        self.assertTrue(reused, "gw2 did not resume gw1's ticket")
        self.smtp["gw2"][0].wait_log(r"client=127\.0\.0\.32:\d+ tls=TLS1\.3")
        # And back: a ticket gw2 issued, on gw1.
        reused, sess2 = self.tls_session(self.pin["gw2"], "127.0.0.33")
        self.assertFalse(reused)
        reused, _ = self.tls_session(self.pin["gw1"], "127.0.0.34", sess2)
        self.assertTrue(reused, "gw1 did not resume gw2's ticket")
        # The control: an instance without the shared ticket_key.
        reused, _ = self.tls_session(self.pin["control"], "127.0.0.35", sess)
        self.assertFalse(reused, "an instance with its own key resumed a foreign ticket")

        # Rotation (README): a new file, then a reload of each instance.
        with open(self.ticket_key, "wb") as f:
            f.write(os.urandom(64))
        self.reload(self.smtp["gw2"][0])
        # gw2 has the new key, gw1 the old: no resumption either way.
        reused, _ = self.tls_session(self.pin["gw2"], "127.0.0.36", sess)
        self.assertFalse(reused, "gw2 resumed a ticket of the old key after its reload")
        reused, new = self.tls_session(self.pin["gw2"], "127.0.0.37")
        self.assertFalse(reused)
        reused, _ = self.tls_session(self.pin["gw1"], "127.0.0.38", new)
        self.assertFalse(reused, "gw1 (old key) resumed a ticket of the new key")
        # Both reloaded: resumption across them again, with the new key.
        self.reload(self.smtp["gw1"][0])
        reused, _ = self.tls_session(self.pin["gw1"], "127.0.0.39", new)
        self.assertTrue(reused, "gw1 did not resume gw2's new-key ticket after its reload")

    def reload(self, gw):
        """SIGHUP to the instance's master; returns once its new workers
        serve and the old one has stopped accepting (it is told to after
        the new ones are ready: until it reads that, it may still take a
        connection, with the old key)."""
        log = gw.log()
        done, drained = log.count("reload done"), log.count("reload: no new connections")
        os.kill(gw.proc.pid, signal.SIGHUP)
        deadline = time.time() + 20
        while True:
            log = gw.log()
            if log.count("reload done") > done and log.count("reload: no new connections") > drained:
                return
            self.assertLess(time.time(), deadline, "no reload:\n" + log[-3000:])
            time.sleep(0.1)

    # ---- health checks ----

    def test_health_checks_are_quiet(self):
        """HAProxy's checks (a PROXY v2 LOCAL header, then the close) end
        as sessions without a byte from the client: logged at debug only,
        never at info (what a log_level = "info" production log shows)."""
        check = r"(\w+): session=\w+ listener=%s client=127\.0\.0\.1:\d+ [^\n]*bytes_in=0 "
        deadline = time.time() + 15
        for gw, names in self.checked_gateways():
            for name in names:      # at least two checks of every listener
                while len(re.findall(check % name, gw.log())) < 2:
                    self.assertLess(time.time(), deadline, "no checks on %s:\n%s" % (name, gw.log()[-3000:]))
                    time.sleep(0.2)
                self.assertEqual(set(re.findall(check % name, gw.log())), {"debug"})
        for gw, _ in self.checked_gateways():
            log = gw.log()
            self.assertNotRegex(log, r"info: .*session=")
            self.assertNotIn("PROXY header", log)
        # Nor are they counted: not a connection, not a failed handshake.
        m = self.metrics()
        counted = {k: v for k, v in m.items() if k[0] == "mailgate_connections_total" and v}
        self.assertEqual(counted, {})
        self.assertEqual(m[("mailgate_tls_handshakes_total", (("listener", "smtps"), ("result", "failed")))], 0)
        # A real session through the balancer (here pinned to gw1) is
        # logged at info and counted.
        c = Smtp(self.pin["gw1"], tls=True, source="127.0.0.9")
        self.assertEqual(c.reply()[0], 220)
        c.expect("QUIT", 221)
        c.close()
        self.smtp["gw1"][0].wait_log(r"info: session=\w+ listener=smtps client=127\.0\.0\.9:\d+ .*result=quit")
        m = self.metrics()
        counted = {k: v for k, v in m.items() if k[0] == "mailgate_connections_total" and v}
        self.assertEqual(counted, {("mailgate_connections_total", (("listener", "smtps"), ("result", "quit"))): 1})
        self.assertEqual(m[("mailgate_tls_handshakes_total", (("listener", "smtps"), ("result", "ok")))], 1)
        self.assertEqual(m[("mailgate_tls_handshakes_total", (("listener", "smtps"), ("result", "failed")))], 0)

    def metrics(self):
        """gw1's /metrics: {(name, sorted labels): value}."""
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=10) as r:
            text = r.read().decode()
        out = {}
        for name, labels, value in re.findall(r"(?m)^(\w+)(?:\{(.*)\})? (\S+)$", text):
            key = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))
            out[(name, key)] = float(value)
        return out

    # ---- limits: the balancer's, and each gateway's backstop ----

    def connect(self, port, source):
        """A plain connection, or None when it was reset at once (a
        connection HAProxy rejects can be reset before connect returns)."""
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        except ConnectionResetError:
            return None
        s.settimeout(5)
        self.addCleanup(s.close)
        return s

    def greeted(self, s):
        """The 220 greeting arrived (True), or the connection was closed
        or reset without a byte (False)."""
        if s is None:
            return False
        data = b""
        try:
            while len(data) < 4:
                d = s.recv(4 - len(data))
                if not d:
                    break
                data += d
        except ConnectionResetError:
            pass
        self.assertIn(data, (b"", b"220 ", b"220-"))
        return data != b""

    @staticmethod
    def drop(s):
        if s is not None:
            s.close()

    def test_balancer_limits_per_client(self):
        # Concurrency (conn_cur gt 50): 50 connections of one address are
        # served - each greeted by a gateway - and the 51st is refused.
        held = []
        for i in range(50):
            s = self.connect(self.f_sub, "127.0.0.40")
            held.append(s)
            self.assertTrue(self.greeted(s), "connection %d refused" % (i + 1))
        s = self.connect(self.f_sub, "127.0.0.40")
        self.assertFalse(self.greeted(s), "the 51st concurrent connection was served")
        self.drop(s)
        # The table is shared by the SMTP frontends: SMTPS refuses it too.
        s = self.connect(self.f_smtps, "127.0.0.40")
        self.assertFalse(self.greeted(s))
        self.drop(s)
        # Another address is not affected; released slots are usable again.
        s = self.connect(self.f_sub, "127.0.0.41")
        self.assertTrue(self.greeted(s))
        self.drop(s)
        for s in held:
            self.drop(s)
        deadline = time.time() + 5
        while True:     # HAProxy counts the closes as they reach it
            s = self.connect(self.f_sub, "127.0.0.40")
            ok = self.greeted(s)
            self.drop(s)
            if ok:
                break
            self.assertLess(time.time(), deadline, "slots never released")
            time.sleep(0.1)
        # Rate (conn_rate(60s) gt 120): one connection at a time, the
        # 121st new connection within the minute is refused.
        for i in range(120):
            s = self.connect(self.f_sub, "127.0.0.44")
            self.assertTrue(self.greeted(s), "connection %d refused" % (i + 1))
            self.drop(s)
        s = self.connect(self.f_sub, "127.0.0.44")
        self.assertFalse(self.greeted(s), "the 121st connection within a minute was served")
        self.drop(s)
        s = self.connect(self.f_sub, "127.0.0.45")
        self.assertTrue(self.greeted(s))
        self.drop(s)
        # Refused at the balancer: the gateways saw only the connections
        # that were served (one session line each), none of the refused.
        for ip, served in (("127.0.0.40", 51), ("127.0.0.44", 120)):
            rx = re.compile(r"info: session=\w+ listener=\w+ client=%s:\d+ " % re.escape(ip))
            deadline = time.time() + 10
            while sum(len(rx.findall(g.log())) for g, _, _ in self.smtp.values()) < served:
                if time.time() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(sum(len(rx.findall(g.log())) for g, _, _ in self.smtp.values()), served, ip)

    def test_gateway_backstop_on_declared_client(self):
        """Each gateway's own max_per_ip and rate_per_ip (2 and 6 on the
        control instance) count the address HAProxy declares, not the
        balancer's."""
        a = Smtp(self.pin["control"], tls=True, source="127.0.0.42")
        b = Smtp(self.pin["control"], tls=True, source="127.0.0.42")
        self.assertEqual(a.reply()[0], 220)
        self.assertEqual(b.reply()[0], 220)
        with self.assertRaises((OSError, EOFError)):    # implicit TLS: closed before the handshake
            c = Smtp(self.pin["control"], tls=True, source="127.0.0.42")
            c.reply()
        self.control.wait_log(r"notice: session=[0-9A-F]{12} listener=smtps client=127\.0\.0\.42:\d+ bytes_in=0 bytes_out=\d+ duration=0\.000 reason=max_per_ip result=limit")
        d = Smtp(self.pin["control"], tls=True, source="127.0.0.43")
        self.assertEqual(d.reply()[0], 220)
        for c in (a, b, d):
            c.expect("QUIT", 221)
        # rate_per_ip = 6: six sessions in a row from one declared client,
        # the seventh within the minute is refused.
        for i in range(6):
            c = Smtp(self.pin["control"], tls=True, source="127.0.0.46")
            self.assertEqual(c.reply()[0], 220, "session %d" % (i + 1))
            c.expect("QUIT", 221)
            c.close()
        with self.assertRaises((OSError, EOFError)):
            c = Smtp(self.pin["control"], tls=True, source="127.0.0.46")
            c.reply()
        self.control.wait_log(r"notice: session=[0-9A-F]{12} listener=smtps client=127\.0\.0\.46:\d+ .*reason=rate_per_ip result=limit")

    # ---- one instance killed, no message lost ----

    def test_kill_one_instance_no_message_lost(self):
        senders, per_sender = 4, 15
        total = senders * per_sender
        results = {}        # attempt (Message-ID) -> final reply code (None: no reply)
        done = {}           # (sender, message) -> the attempt that got its 250
        lock = threading.Lock()

        def attempt(src, mid):
            c = Smtp(self.f_smtps, tls=True, source=src, timeout=20)
            try:
                if c.reply()[0] != 220:
                    return None
                c.expect("EHLO sender.test", 250)
                code, _ = send_message(c, message("scale-out", extra_headers="Message-ID: <%s>\r\n" % mid))
                try:
                    c.expect("QUIT", 221)
                except (OSError, EOFError, SmtpReplyError):
                    pass
                return code
            finally:
                c.close()

        def sender(i):
            src = "127.0.0.%d" % (50 + i)
            for k in range(per_sender):
                for a in range(8):
                    mid = "so-%d-%d-%d@scale.test" % (i, k, a)
                    try:
                        code = attempt(src, mid)
                    except (OSError, EOFError, SmtpReplyError, ValueError):
                        code = None     # no (final) reply: the instance died under it
                    with lock:
                        results[mid] = code
                        if code == 250:
                            done[(i, k)] = mid
                    if code == 250:
                        break
                    time.sleep(0.3)     # an MTA retries later

        threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(senders)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while len(done) < total // 3:
            self.assertLess(time.time(), deadline, "no mail flowing: %s" % results)
            time.sleep(0.05)
        victim = self.smtp["gw1"][0]
        os.killpg(victim.proc.pid, signal.SIGKILL)     # the whole instance, as a crash
        victim.proc.p.wait()
        self.procs.remove(victim)
        self.lb.wait_status("mailgate_smtps", "gw1", "DOWN")
        for t in threads:
            t.join(180)
        self.assertFalse(any(t.is_alive() for t in threads), "senders still running")
        self.assertEqual(len(done), total, "messages never accepted: %s" %
                         sorted(set((i, k) for i in range(senders) for k in range(per_sender)) - set(done)))
        # Postfix's cleanup logs each message it took once, with its id.
        deadline = time.time() + 30
        while time.time() < deadline:
            at_upstream = re.findall(r"cleanup\[\d+\]: \w+: message-id=<(so-[^>]+)>", self.pf.log())
            if all(m in at_upstream for m in done.values()):
                break
            time.sleep(0.2)
        for mid in done.values():
            self.assertEqual(at_upstream.count(mid), 1, mid)
        for mid in results:
            self.assertLessEqual(at_upstream.count(mid), 1, mid)    # never twice
        # Both instances carried mail: gw1 before the kill, gw2 throughout.
        self.assertRegex(victim.log(), r"msgs=1")
        self.assertRegex(self.smtp["gw2"][0].log(), r"msgs=1")
        failed = sorted(m for m, c in results.items() if c != 250)
        print("scale-out: %d messages, %d attempts without a 250 (retried): %s"
              % (total, len(failed), failed), flush=True)


if __name__ == "__main__":
    main()
