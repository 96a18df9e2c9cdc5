"""Prometheus metrics (DESIGN.md §3 metrics, §7): real sessions through
mailgate-smtpd to smtp-sink and to a real Postfix with Dovecot SASL, and
through mailgate-imapd to a real Dovecot, then GET /metrics with urllib,
parsed by the real Prometheus parser (Debian's python3-prometheus-client):
every counter moves by exactly what the sessions did - one message, one
refused relay, a failed and a good AUTH/LOGIN, a client certificate from a
configured peer (its expiry close to the certificate's real notAfter),
the server certificates' expiry, a failed handshake, an unreachable
upstream address; connections_total agrees with the session log line by
line, bytes_total with its bytes_in/bytes_out; sessions_active is 1 while
a session is open and 0 after. The endpoint: 404, 405, HEAD, HTTP/1.0,
400 for garbage; a hostile scraper holding 50 silent connections and
sending endless headers neither stops a normal scrape nor mail sessions,
and its connections are closed; a flood of connections leaves no
descriptors behind."""
import collections
import os
import signal
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from mgtest import (SMTPD, GatewayTest, Imap, Smtp, client_context, free_port, imapd_conf, listener,
                    main, message, need, send_message, smtpd_conf, worker_pids)

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:    # an interpreter outside Debian's (pyenv): the package's own copy
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families

COUNTERS = ["mailgate_connections", "mailgate_tls_handshakes", "mailgate_client_certs",
            "mailgate_relay_denied", "mailgate_auth", "mailgate_messages", "mailgate_bytes",
            "mailgate_upstream_failures"]
GAUGES = ["mailgate_sessions_active", "mailgate_cert_expiry_seconds",
          "mailgate_peer_cert_expiry_seconds", "mailgate_workers"]


class Scrape:
    """One GET /metrics, parsed."""

    def __init__(self, port):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            self.status = r.status
            self.content_type = r.headers["Content-Type"]
            self.text = r.read().decode("utf-8")
        self.samples, self.types = {}, {}
        for fam in text_string_to_metric_families(self.text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def sum(self, name, **labels):
        """Sum of the samples of name whose labels include these."""
        return sum(v for (n, ls), v in self.samples.items()
                   if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def not_after(pem):
    """A certificate's notAfter, in seconds since the epoch."""
    return ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(pem)["notAfter"])


def session_results(log):
    """(listener, result) -> number of session-end lines in a gateway log."""
    return collections.Counter(re.findall(r"(?m)info: session=\S+ listener=(\S+) .* result=(\S+)$", log))


def logged_bytes(log):
    pairs = re.findall(r"(?m)info: session=\S+ .* bytes_in=(\d+) bytes_out=(\d+) ", log)
    return sum(int(i) for i, _ in pairs), sum(int(o) for _, o in pairs)


class MetricsTest(GatewayTest):
    def wait_sessions_closed(self, port, timeout=10):
        """sessions_active reaches 0 (every session freed)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = Scrape(port)
            if m.get("mailgate_sessions_active") == 0:
                return m
            time.sleep(0.1)
        self.fail("sessions_active never went back to 0:\n" + m.text)

    def assert_agrees_with_log(self, m, gw):
        """connections_total and bytes_total say what the session log says."""
        for (lst, res), n in session_results(gw.log()).items():
            self.assertEqual(m.get("mailgate_connections_total", listener=lst, result=res), n, (lst, res))
        self.assertEqual(m.sum("mailgate_connections_total"), sum(session_results(gw.log()).values()))
        bin_, bout = logged_bytes(gw.log())
        self.assertEqual(m.get("mailgate_bytes_total", direction="in"), bin_)
        self.assertEqual(m.get("mailgate_bytes_total", direction="out"), bout)


class SmtpMetrics(MetricsTest):
    def setUp(self):
        super().setUp()
        self.sink_ = self.sink()
        self.p_smtps, self.p_mtls, self.p_metrics = free_port(), free_port(), free_port()
        self.dead = free_port()     # nothing listens there: the first upstream address fails
        conf = smtpd_conf(self.pki, self.sink_.port,
                          listener("smtps", self.p_smtps, "implicit") +
                          listener("mtls", self.p_mtls, "implicit", 'client_cert = "optional"'),
                          extra='metrics = "127.0.0.1:%d"\n'
                                'peer "partner" {\n  name = "partner-mx.test"\n  relay = true\n}\n'
                                % self.p_metrics,
                          tls_extra='client_ca = "%s/ca.pem"' % self.pki)
        conf = conf.replace('address = "127.0.0.1:%d"' % self.sink_.port,
                            'address = { "127.0.0.1:%d", "127.0.0.1:%d" }' % (self.dead, self.sink_.port))
        self.gw = self.gateway(conf, [self.p_smtps, self.p_mtls])
        # the start-up probe of each upstream address: the dead one counts
        deadline = time.time() + 10
        while Scrape(self.p_metrics).get("mailgate_upstream_failures_total") != 1:
            self.assertLess(time.time(), deadline, "the probe's failure was never counted")
            time.sleep(0.05)

    def test_families_help_type(self):
        m = Scrape(self.p_metrics)
        self.assertEqual(m.status, 200)
        self.assertEqual(m.content_type, "text/plain; version=0.0.4; charset=utf-8")
        for name in COUNTERS:
            self.assertEqual(m.types.get(name), "counter", name)
            self.assertIn("# HELP %s_total " % name, m.text)
        for name in GAUGES:
            self.assertEqual(m.types.get(name), "gauge", name)
            self.assertIn("# HELP %s " % name, m.text)
        # every listener and result from the start, at zero
        for res in ("ok", "quit", "timeout", "tls-failed", "cert-rejected", "relay-denied",
                    "too-many-errors", "auth-failures", "upstream-failed", "limit", "shutdown", "error"):
            self.assertEqual(m.get("mailgate_connections_total", listener="smtps", result=res), 0)
        self.assertEqual(m.get("mailgate_workers"), 1)
        self.assertEqual(m.get("mailgate_sessions_active"), 0)

    def test_counters_move_by_what_sessions_did(self):
        before = Scrape(self.p_metrics)
        # a session that delivers one message and is refused one relay
        c = Smtp(self.p_smtps, tls=True)
        self.assertEqual(c.reply()[0], 220)
        mid = Scrape(self.p_metrics)
        self.assertEqual(mid.get("mailgate_sessions_active"), 1)    # open now
        c.expect("EHLO client.test", 250)
        code, lines = send_message(c, message("metrics"))
        self.assertEqual(code, 250, lines)
        c.expect("MAIL FROM:<a@test.example>", 250)
        self.assertEqual(c.cmd("RCPT TO:<x@remote.example>")[0], 554)
        c.expect("QUIT", 221)
        c.closed()
        self.assertEqual(len(self.sink_.wait_messages(1)), 1)
        # a peer's client certificate on the mtls listener
        ctx = client_context()
        ctx.load_cert_chain("%s/peer.pem" % self.pki, "%s/peer.key" % self.pki)
        c = Smtp(self.p_mtls, tls=True, ctx=ctx)
        c.reply()
        c.expect("QUIT", 221)
        c.closed()
        # a client that is no TLS client: a failed handshake
        s = socket.create_connection(("127.0.0.1", self.p_smtps))
        s.sendall(b"EHLO not-tls.test\r\n" * 20)
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        self.gw.wait_log(r"listener=mtls .*peer=partner .*result=quit")
        self.gw.wait_log(r"listener=smtps .*result=tls-failed")
        m = self.wait_sessions_closed(self.p_metrics)
        now = time.time()

        def delta(name, **labels):
            return m.get(name, **labels) - before.get(name, **labels)

        self.assertEqual(delta("mailgate_messages_total"), 1)
        self.assertEqual(delta("mailgate_relay_denied_total"), 1)
        self.assertEqual(delta("mailgate_connections_total", listener="smtps", result="quit"), 1)
        self.assertEqual(delta("mailgate_connections_total", listener="mtls", result="quit"), 1)
        self.assertEqual(delta("mailgate_connections_total", listener="smtps", result="tls-failed"), 1)
        self.assertEqual(delta("mailgate_tls_handshakes_total", listener="smtps", result="ok"), 1)
        self.assertEqual(delta("mailgate_tls_handshakes_total", listener="smtps", result="failed"), 1)
        self.assertEqual(delta("mailgate_tls_handshakes_total", listener="mtls", result="ok"), 1)
        self.assertEqual(delta("mailgate_client_certs_total", status="verified"), 1)
        # the smtps session's handshake carried none (cert=none in its log)
        self.assertEqual(delta("mailgate_client_certs_total", status="none"), 1)
        self.assertEqual(m.sum("mailgate_client_certs_total") - before.sum("mailgate_client_certs_total"), 2)
        self.assertEqual(delta("mailgate_auth_total", result="failed"), 0)
        # one upstream connection per delivering session, each after the dead address failed
        self.assertEqual(delta("mailgate_upstream_failures_total"), 1)
        self.assertEqual(m.get("mailgate_sessions_active"), 0)
        self.assert_agrees_with_log(m, self.gw)
        # expiry: the peer's certificate and the two server certificates
        want = not_after("%s/peer.pem" % self.pki) - now
        got = m.get("mailgate_peer_cert_expiry_seconds", peer="partner")
        self.assertIsNotNone(got, m.text)
        self.assertAlmostEqual(got, want, delta=60)
        for name in ("server-ecdsa", "server-rsa"):
            path = "%s/%s.pem" % (self.pki, name)
            got = m.get("mailgate_cert_expiry_seconds", cert=path)
            self.assertIsNotNone(got, m.text)
            self.assertAlmostEqual(got, not_after(path) - now, delta=60)
        self.assertEqual(len([k for k in m.samples if k[0] == "mailgate_cert_expiry_seconds"]), 2)

    def test_peer_expiry_only_for_matched_peers(self):
        """A certificate that matches no peer section leaves the series out."""
        ctx = client_context()
        ctx.load_cert_chain("%s/stranger.pem" % self.pki, "%s/stranger.key" % self.pki)
        c = Smtp(self.p_mtls, tls=True, ctx=ctx)
        c.reply()
        c.expect("QUIT", 221)
        c.closed()
        self.gw.wait_log(r"listener=mtls .*peer=none .*result=quit")
        m = self.wait_sessions_closed(self.p_metrics)
        self.assertIsNone(m.get("mailgate_peer_cert_expiry_seconds", peer="partner"))
        self.assertEqual(m.get("mailgate_client_certs_total", status="verified"), 1)

    def test_endpoint_http(self):
        url = "http://127.0.0.1:%d" % self.p_metrics
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/other", timeout=10)
        self.assertEqual(e.exception.code, 404)
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(url + "/metrics", data=b"x=1", method="POST"),
                                   timeout=10)
        self.assertEqual(e.exception.code, 405)
        self.assertEqual(e.exception.headers["Allow"], "GET, HEAD")
        with urllib.request.urlopen(urllib.request.Request(url + "/metrics", method="HEAD"), timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertGreater(int(r.headers["Content-Length"]), 1000)
            self.assertEqual(r.read(), b"")
        with urllib.request.urlopen(url + "/metrics?collect[]=x", timeout=10) as r:
            self.assertIn(b"mailgate_workers 1\n", r.read())
        for raw, want in ((b"GET /metrics HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK\r\n"),
                          (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", b"HTTP/1.1 400 "),
                          (b"GET /metrics HTTP/2.0\r\n\r\n", b"HTTP/1.1 505 "),
                          (b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", b"HTTP/1.1 400 ")):
            s = socket.create_connection(("127.0.0.1", self.p_metrics), timeout=10)
            s.sendall(raw)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            self.assertTrue(data.startswith(want), (raw, data[:80]))
            self.assertIn(b"\r\nConnection: close\r\n", data)

    def test_hostile_scraper(self):
        """50 silent connections and endless headers: a normal scrape and a
        mail session are still served at once; the silent ones are evicted
        or closed at the deadline, the endless ones get 431."""
        idle = [socket.create_connection(("127.0.0.1", self.p_metrics)) for _ in range(50)]
        stop, answers = threading.Event(), []

        def endless():
            s = socket.create_connection(("127.0.0.1", self.p_metrics), timeout=10)
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Endless: ")
            try:
                while not stop.is_set() and not select.select([s], [], [], 0)[0]:
                    s.sendall(b"a" * 256)
                    time.sleep(0.001)
            except OSError:
                pass
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            answers.append(data)
            s.close()

        threads = [threading.Thread(target=endless) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        t0 = time.time()
        m = Scrape(self.p_metrics)
        self.assertLess(time.time() - t0, 3, "a normal scrape waited for the hostile ones")
        self.assertEqual(m.get("mailgate_workers"), 1)
        c = Smtp(self.p_smtps, tls=True)
        self.assertEqual(c.reply()[0], 220)
        c.expect("EHLO during-flood.test", 250)
        code, _ = send_message(c, message("during the flood"))
        self.assertEqual(code, 250)
        c.expect("QUIT", 221)
        stop.set()
        for t in threads:
            t.join(15)
        self.assertEqual(len(answers), 3)
        for a in answers:
            self.assertTrue(a.startswith(b"HTTP/1.1 431 "), a[:80])
        # the silent connections: most evicted right away, the rest closed at the deadline
        closed_now = self.count_closed(idle, 1.0)
        self.assertGreaterEqual(closed_now, 50 - 16)
        self.assertEqual(closed_now + self.count_closed([s for s in idle if s.fileno() >= 0], 15), 50)
        self.assertEqual(Scrape(self.p_metrics).status, 200)

    def test_connection_flood(self):
        """300 connections held open and 300 opened and dropped: the endpoint
        keeps at most METRICS_HTTP_SCRAPES_MAX of them, its descriptors come
        back, and scrapes and mail are served throughout."""
        fds = lambda: len(os.listdir("/proc/%d/fd" % self.gw.proc.pid))
        base = fds()
        held = [socket.create_connection(("127.0.0.1", self.p_metrics)) for _ in range(300)]
        for _ in range(300):
            socket.create_connection(("127.0.0.1", self.p_metrics)).close()
        self.assertEqual(Scrape(self.p_metrics).status, 200)
        c = Smtp(self.p_smtps, tls=True)
        self.assertEqual(c.reply()[0], 220)
        c.expect("QUIT", 221)
        c.closed()
        time.sleep(3)   # lingering closes last 2 s at most
        self.assertLessEqual(fds(), base + 16)
        self.assertGreaterEqual(self.count_closed(held, 2), 300 - 16)
        for s in held:
            s.close()

    @staticmethod
    def count_closed(socks, timeout):
        """How many of socks the server closes (EOF) within timeout; closed ones are closed here."""
        n, deadline = 0, time.time() + timeout
        pending = list(socks)
        while pending and time.time() < deadline:
            ready, _, _ = select.select(pending, [], [], max(0, deadline - time.time()))
            for s in ready:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    n += 1
                    pending.remove(s)
                    s.close()
        return n


class MetricsStartup(MetricsTest):
    def test_bind_failure_stops_start(self):
        """A metrics address in use: the daemon does not start, and says why
        (as for a listener); with -t the address is only checked for syntax."""
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        conf = self.tmp.file("taken.conf", smtpd_conf(self.pki, free_port(),
                                                      listener("smtps", free_port(), "implicit"),
                                                      extra='metrics = "127.0.0.1:%d"' % port))
        r = subprocess.run([SMTPD, "-f", "-c", conf], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("metrics: cannot bind 127.0.0.1:%d: Address already in use" % port, r.stderr)
        r = subprocess.run([SMTPD, "-t", "-c", conf], capture_output=True, text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "configuration ok"), r.stderr)
        self.assertNotIn("metrics", r.stderr)     # no more "not supported" warning
        taken.close()
        with open(conf) as f:
            text = f.read().replace('metrics = "127.0.0.1:%d"' % port, 'metrics = "localhost:9465"')
        bad = self.tmp.file("bad.conf", text)
        r = subprocess.run([SMTPD, "-t", "-c", bad], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"bad\.conf:\d+: metrics: 'localhost:9465' is not IP:PORT")

    def test_ipv6_address(self):
        p_smtps, port = free_port(), free_port()
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", port))
            s.close()
        except OSError:
            self.skipTest("no IPv6 loopback")
        self.gateway(smtpd_conf(self.pki, free_port(), listener("smtps", p_smtps, "implicit"),
                                extra='metrics = "[::1]:%d"' % port), [p_smtps])
        with urllib.request.urlopen("http://[::1]:%d/metrics" % port, timeout=10) as r:
            self.assertIn(b"mailgate_sessions_active 0\n", r.read())


class SmtpAuthMetrics(MetricsTest):
    """AUTH relayed to a real Postfix whose SASL is a real Dovecot."""

    def test_auth_failed_and_ok(self):
        need("dovecot", "postfix")
        auth_port, pf_port = free_port(), free_port()
        self.dovecot(auth_port=auth_port, users={"alice": "secret"})
        self.postfix(pf_port, main_extra="smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
                                         "smtpd_sasl_path = inet:127.0.0.1:%d\nmynetworks = 127.0.0.1/32"
                                         % auth_port)
        p_smtps, p_metrics = free_port(), free_port()
        gw = self.gateway(smtpd_conf(self.pki, pf_port, listener("smtps", p_smtps, "implicit"),
                                     upstream_extra="xclient = true",
                                     extra='metrics = "127.0.0.1:%d"' % p_metrics), [p_smtps])
        before = Scrape(p_metrics)
        c = Smtp(p_smtps, tls=True)
        c.reply()
        c.expect("EHLO auth.test", 250)
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHdyb25n")[0], 535)     # alice / wrong
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")[0], 235)  # alice / secret
        c.expect("QUIT", 221)
        c.closed()
        gw.wait_log(r"user=alice .*result=quit")
        m = self.wait_sessions_closed(p_metrics)
        self.assertEqual(m.get("mailgate_auth_total", result="failed") -
                         before.get("mailgate_auth_total", result="failed"), 1)
        self.assertEqual(m.get("mailgate_auth_total", result="ok") -
                         before.get("mailgate_auth_total", result="ok"), 1)
        self.assertEqual(m.get("mailgate_auth_total", result="failed"),
                         len(re.findall(r"auth-failed session=", gw.log())))
        self.assert_agrees_with_log(m, gw)


class ImapMetrics(MetricsTest):
    def test_imap_logins(self):
        need("dovecot")
        dc_port = free_port()
        self.dovecot(imap_port=dc_port, users={"alice": "secret"})
        p_imaps, p_metrics = free_port(), free_port()
        gw = self.imap_gateway(imapd_conf(self.pki, dc_port, listener("imaps", p_imaps, "implicit"),
                                          extra='metrics = "127.0.0.1:%d"' % p_metrics), [p_imaps])
        before = Scrape(p_metrics)
        self.assertEqual(before.get("mailgate_auth_total", result="ok"), 0)
        c = Imap(p_imaps, tls=True)
        self.assertTrue(c.line().startswith("* OK"))
        self.assertIn("a NO", c.cmd("a", "LOGIN alice wrong")[-1])     # refused by Dovecot
        self.assertEqual(Scrape(p_metrics).get("mailgate_sessions_active"), 1)
        self.assertIn("b OK", c.cmd("b", "LOGIN alice secret")[-1])
        self.assertIn("c OK", c.cmd("c", "SELECT INBOX")[-1])
        c.cmd("d", "LOGOUT")
        c.closed()
        gw.wait_log(r"listener=imaps .*user=alice .*result=")
        m = self.wait_sessions_closed(p_metrics)
        self.assertEqual(m.get("mailgate_auth_total", result="failed"), 1)
        self.assertEqual(m.get("mailgate_auth_total", result="ok"), 1)
        self.assertEqual(m.get("mailgate_messages_total"), 0)
        self.assertEqual(m.get("mailgate_tls_handshakes_total", listener="imaps", result="ok"), 1)
        self.assertEqual(m.sum("mailgate_connections_total", listener="imaps"), 1)
        self.assertEqual(m.get("mailgate_upstream_failures_total"), 0)
        self.assert_agrees_with_log(m, gw)
        path = "%s/server-ecdsa.pem" % self.pki
        self.assertAlmostEqual(m.get("mailgate_cert_expiry_seconds", cert=path),
                               not_after(path) - time.time(), delta=60)


def sockets_of(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


class WorkerMetrics(MetricsTest):
    """workers = 2: the master serves the sum of both workers' counters;
    a worker killed with SIGKILL takes its live sessions out of
    sessions_active, its counters stay, and its replacement counts on."""

    def test_sum_over_workers_and_restarts(self):
        sink = self.sink()
        p, pm = free_port(), free_port()
        conf = smtpd_conf(self.pki, sink.port, listener("smtps", p, "implicit"),
                          extra='workers = 2\nmetrics = "127.0.0.1:%d"\n' % pm)
        gw = self.gateway(conf, [p])
        self.assertEqual(Scrape(pm).get("mailgate_workers"), 2)
        before = Scrape(pm).get("mailgate_connections_total", listener="smtps", result="quit") or 0
        for i in range(12):
            c = Smtp(p, tls=True)
            c.reply()
            c.expect("QUIT", 221)
            c.closed()
        m = self.wait_sessions_closed(pm)
        self.assertEqual(m.get("mailgate_connections_total", listener="smtps", result="quit") - before, 12)
        # Hold sessions open, then kill a worker that holds some of them
        # (told by the sockets it gained).
        pids = set(worker_pids(gw.proc.pid, 2))
        base = {w: sockets_of(w) for w in pids}
        held = []
        for i in range(6):
            c = Smtp(p, tls=True)
            c.reply()
            held.append(c)
        m = Scrape(pm)
        self.assertEqual(m.get("mailgate_sessions_active"), len(held))
        victim = max(pids, key=lambda w: sockets_of(w) - base[w])
        self.assertGreater(sockets_of(victim) - base[victim], 0)
        os.kill(victim, signal.SIGKILL)
        deadline = time.time() + 10
        while True:
            m = Scrape(pm)
            if m.get("mailgate_sessions_active") < len(held) and m.get("mailgate_workers") == 2 \
                    and len(set(worker_pids(gw.proc.pid, 2)) - pids) == 1:
                break
            self.assertLess(time.time(), deadline, m.text)
            time.sleep(0.1)
        survivors = 0
        for c in held:
            try:
                c.expect("QUIT", 221)
                c.closed()
                survivors += 1
            except (OSError, AssertionError, EOFError):
                pass
        self.assertLess(survivors, len(held))
        m = self.wait_sessions_closed(pm)
        # The killed worker's counts stay; the survivors' sessions add to them.
        self.assertEqual(m.get("mailgate_connections_total", listener="smtps", result="quit") - before,
                         12 + survivors)
        for i in range(4):
            c = Smtp(p, tls=True)
            c.reply()
            c.expect("QUIT", 221)
            c.closed()
        m = self.wait_sessions_closed(pm)
        self.assertEqual(m.get("mailgate_connections_total", listener="smtps", result="quit") - before,
                         16 + survivors)


if __name__ == "__main__":
    main()
