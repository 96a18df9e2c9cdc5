"""The upstream killed, stalled or made slow at every stage, with random
faults (issue 10 part 7; DESIGN.md §4.4, §4.5, §5.2): a fault-injecting
proxy (faultproxy.py) sits between the gateway and a real upstream.

SMTP: 1,000 messages from 8 parallel SMTPS clients, each with a unique
Message-ID, through mailgate-smtpd to Postfix's smtp-sink (which dumps
every message it accepted). Faults per upstream connection: refused, close
or stall at the greeting, before/after EHLO, MAIL, RCPT, DATA, mid-message
after k bytes, before/after the final dot and after forwarding the final
reply, or slow forwarding. (XCLIENT is not among the stages: smtp-sink
does not offer it: XclientFaults kills and stalls a scripted upstream
that offers XCLIENT at that stage.) Asserted: every message the client got 250 for is in the sink's
dump exactly once, and the sink's 250 for it was forwarded by the proxy;
every forwarded 250 reached its client as 250 (the gateway waits for the
final reply); no message is in the dump twice; no reply was a 5xx (every
fault is transient); no client interaction hung; the gateway still
answers afterwards, and no sanitizer report.

IMAP: sessions through mailgate-imapd to Dovecot with faults at the
greeting, ID, login command or reply, and after login (k bytes into the
relay, killed or stalled): every login ends in OK or `NO [UNAVAILABLE]`
(never a hang, never counted as a failed login), and every session that
logged in and got its FETCH's tagged OK got the right bytes.

The seed is printed; MG_FAULT_SEED=n repeats a run."""
import imaplib
import os
import queue
import random
import re
import socket
import ssl
import threading
import time

import faultproxy
from mgtest import (GatewayTest, Imap, ScriptedSmtp, Smtp, client_context, free_port, imapd_conf,
                    listener, main, smtpd_conf)

MESSAGES = int(os.environ.get("MG_FAULT_MESSAGES", "1000"))
CLIENTS = 8
CLIENT_TIMEOUT = 30      # seconds for any one reply: longer is a hang
TIMEOUT_REPLY = 1        # the gateway's timeout_reply towards the upstream


def seed():
    s = int(os.environ.get("MG_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print("fault seed %d (MG_FAULT_SEED=%d repeats it)" % (s, s))
    return s


class Hang(Exception):
    pass


class TracedSmtp(Smtp):
    """Smtp that keeps the last exchanges, for a failure to show."""

    def __init__(self, *a, **kw):
        self.trace = []
        super().__init__(*a, **kw)

    def send(self, data):
        self.trace = (self.trace + ["C: %r" % (data[:60] if len(data) < 200 else data[:40] + b"..." + data[-20:])])[-12:]
        super().send(data)

    def line(self):
        line = super().line()
        self.trace = (self.trace + ["S: " + line])[-12:]
        return line


class SmtpFaults(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.seed = seed()
        self.dialect = faultproxy.SmtpDialect()
        self.proxy = faultproxy.FaultProxy(self.up.port, self.dialect, self.seed)
        self.addCleanup(self.proxy.stop)
        self.p = free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, self.proxy.port,
                                          listener("smtps", self.p, "implicit", "max_per_ip = 1000"),
                                          upstream_extra="xclient = false\n  timeout_reply = %d\n"
                                                         "  connect_timeout = 2" % TIMEOUT_REPLY),
                               [self.p])
        self.ctx = client_context()
        self.lock = threading.Lock()
        self.outcome = {}        # msgid -> (code of the reply to the final dot, or the step that failed)
        self.replies_5xx = []
        self.hangs = []
        self.sent = {}           # msgid -> the message as sent (before dot-stuffing)

    def body(self, rng, msgid):
        n = rng.randrange(100, 6000)
        filler = "".join(rng.choice("abcdefghij .") for _ in range(n))
        lines = [filler[i:i + 70] for i in range(0, len(filler), 70)]
        msg = ("From: sender@test.example\r\nTo: user@example.org\r\nSubject: fault %s\r\n"
               "Message-ID: <%s>\r\n\r\n%s\r\n" % (msgid, msgid, "\r\n".join(lines))).encode()
        self.sent[msgid] = msg
        return re.sub(rb"(?m)^\.", b"..", msg)     # dot-stuffed: some lines start with "."

    def step(self, c, line, want, msgid, what):
        try:
            code, lines = c.cmd(line) if isinstance(line, str) else (c.send(line), c.reply())[1]
        except socket.timeout:
            raise Hang("%s: %s" % (msgid, what))
        if code >= 500:
            with self.lock:
                self.replies_5xx.append((msgid, what, lines, c.trace))
        if code != want:
            self.outcome[msgid] = (what, code)
            return False
        return True

    def client(self, ids, rng):
        while True:
            batch = []
            for _ in range(rng.randrange(1, 4)):
                try:
                    batch.append(ids.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            c = None
            try:
                c = TracedSmtp(self.p, tls=True, ctx=self.ctx, timeout=CLIENT_TIMEOUT)
                if c.reply()[0] != 220 or c.cmd("EHLO faults.test")[0] != 250:
                    raise EOFError("no greeting")
                while batch:
                    msgid = batch.pop(0)
                    self.outcome[msgid] = ("eof", "mail")    # attempted from here on
                    ok = (self.step(c, "MAIL FROM:<sender@test.example>", 250, msgid, "mail") and
                          self.step(c, "RCPT TO:<user@example.org>", 250, msgid, "rcpt") and
                          self.step(c, "DATA", 354, msgid, "data"))
                    if not ok:
                        break
                    self.outcome[msgid] = ("eof", "dot")
                    self.step(c, self.body(rng, msgid) + b".\r\n", 250, msgid, "dot")
                    if self.outcome[msgid] != ("eof", "dot"):
                        break
                    self.outcome[msgid] = 250
                c.cmd("QUIT")
            except Hang as e:
                with self.lock:
                    self.hangs.append(str(e))
            except socket.timeout as e:
                with self.lock:
                    self.hangs.append("session: %s" % e)
            except (EOFError, OSError, ssl.SSLError):
                pass
            finally:
                if c:
                    c.close()
            for msgid in batch:       # never attempted: another session sends them
                ids.put(msgid)

    def sink_ids(self, want, timeout=30):
        """Message-ID -> the sink's messages with it, once every id of
        want is there (or timeout seconds passed)."""
        deadline = time.time() + timeout
        while True:
            sink = {}
            for m in self.up.messages():
                hit = re.search(rb"(?im)^Message-ID: <([^>]+)>", m.message)
                self.assertIsNotNone(hit, m.raw[:300])
                sink.setdefault(hit.group(1).decode(), []).append(m)
            if want <= set(sink) or time.time() > deadline:
                return sink
            time.sleep(0.2)

    def test_thousand_messages_with_random_faults(self):
        ids = queue.Queue()
        for i in range(MESSAGES):
            ids.put("%d.%d@faults.test" % (i, self.seed))
        t0 = time.time()
        threads = [threading.Thread(target=self.client, args=(ids, random.Random(self.seed + n)))
                   for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        self.assertFalse(any(t.is_alive() for t in threads), "a client never finished")
        took = time.time() - t0

        got250 = {m for m, o in self.outcome.items() if o == 250}
        fwd = self.dialect.final
        sink = self.sink_ids(got250)

        kinds = {}
        for f in self.proxy.faults:
            kinds[f] = kinds.get(f, 0) + 1
        fails = {}
        for o in self.outcome.values():
            if o != 250:
                fails[str(o)] = fails.get(str(o), 0) + 1
        print("%d messages in %.1f s over %d upstream connections: %d got 250, %d in the sink, "
              "%d final replies forwarded" % (len(self.outcome), took, len(self.proxy.faults),
                                              len(got250), sum(map(len, sink.values())), len(fwd)))
        print("faults drawn: %s" % sorted(kinds.items()))
        print("client outcomes other than 250: %s" % sorted(fails.items()))

        self.assertEqual(len(self.outcome), MESSAGES)
        self.assertEqual(self.hangs, [])
        self.assertEqual(self.replies_5xx, [])
        for m in got250:
            self.assertEqual(len(sink.get(m, [])), 1, "%s: got 250, in the sink %d times"
                             % (m, len(sink.get(m, []))))
            self.assertEqual(sink[m][0].without_our_received()[0], self.sent[m].replace(b"\r\n", b"\n"), m)
            self.assertEqual(len(fwd.get(m, [])), 1, (m, fwd.get(m)))
            self.assertTrue(fwd[m][0].startswith("250"), (m, fwd[m]))
        for m, replies in fwd.items():
            if replies[0].startswith("250"):
                self.assertEqual(self.outcome.get(m), 250,
                                 "%s: the upstream's 250 was forwarded, the client got %s"
                                 % (m, self.outcome.get(m)))
        self.assertEqual([m for m, n in sink.items() if len(n) > 1], [])
        # The faults were real: many messages failed, many went through.
        self.assertGreater(len(got250), MESSAGES // 4)
        self.assertGreater(MESSAGES - len(got250), MESSAGES // 10)

        self.assertTrue(self.gw.proc.alive())
        c = Smtp(self.p, tls=True, timeout=10)
        self.assertEqual(c.reply()[0], 220)
        c.expect("EHLO after.test", 250)
        c.expect("NOOP", 250)
        c.expect("QUIT", 221)
        self.gw.check_sanitizers()


class FixedFault(faultproxy.SmtpDialect):
    def __init__(self, fault):
        super().__init__()
        self.fault = fault

    def pick(self, rng):
        return self.fault


class XclientFaults(GatewayTest):
    """The XCLIENT stage (xclient = true) against a scripted upstream
    that offers it, through the proxy: closed or stalled before or after
    the XCLIENT line. The client's MAIL gets a 4xx (never a 250), the
    session never hangs, and MAIL never reaches the upstream."""

    def test_close_or_stall_at_xclient(self):
        for kind in ("close", "stall"):
            for when in ("before", "after"):
                up = ScriptedSmtp({"EHLO": b"250-scripted.test\r\n250-XCLIENT ADDR NAME PORT PROTO HELO\r\n"
                                           b"250 8BITMIME\r\n"})
                self.addCleanup(up.stop)
                proxy = faultproxy.FaultProxy(up.port, FixedFault(faultproxy.Fault(kind, "xclient", when)), 0)
                self.addCleanup(proxy.stop)
                p = free_port()
                gw = self.gateway(smtpd_conf(self.pki, proxy.port, listener("local", p, "none",
                                                                             'relay_networks = "127.0.0.1/32"'),
                                             upstream_extra="xclient = true\n  timeout_reply = %d" % TIMEOUT_REPLY),
                                  [p])
                c = Smtp(p, timeout=CLIENT_TIMEOUT)
                self.assertEqual(c.reply()[0], 220)
                c.expect("EHLO x.test", 250)
                t0 = time.time()
                code, lines = c.cmd("MAIL FROM:<a@test.example>")
                print("%s %s XCLIENT: %s after %.1f s" % (kind, when, lines, time.time() - t0))
                self.assertEqual(code // 100, 4, lines)
                self.assertTrue(c.closed(), "%s %s: session left open" % (kind, when))
                self.assertTrue(any(x.startswith("XCLIENT") for x in up.commands) == (when == "after"),
                                up.commands)
                self.assertFalse(any(x.startswith("MAIL") for x in up.commands), up.commands)
                self._stop(gw)


class ImapFaults(GatewayTest):
    SESSIONS = int(os.environ.get("MG_FAULT_IMAP_SESSIONS", "120"))

    def setUp(self):
        super().setUp()
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret"})
        self.seed = seed()
        # One message in alice's INBOX, put there directly.
        m = imaplib.IMAP4("127.0.0.1", self.dc_port, timeout=30)
        m.login("alice", "secret")
        self.msg = ("From: a@test.example\r\nSubject: fetched through faults\r\n\r\n" +
                    "".join("line %d of the message\r\n" % i for i in range(200))).encode()
        m.append("INBOX", None, None, self.msg)
        m.logout()
        self.dialect = faultproxy.ImapDialect()
        self.proxy = faultproxy.FaultProxy(self.dc_port, self.dialect, self.seed)
        self.addCleanup(self.proxy.stop)
        self.p = free_port()
        self.gw = self.imap_gateway(imapd_conf(self.pki, self.proxy.port,
                                               listener("imaps", self.p, "implicit", "max_per_ip = 1000"),
                                               upstream_extra="timeout_reply = %d\n  connect_timeout = 2"
                                               % TIMEOUT_REPLY,
                                               extra="timeout_idle = 3"),
                                    [self.p])
        self.results = []
        self.lock = threading.Lock()

    def session(self):
        c = Imap(self.p, tls=True, timeout=CLIENT_TIMEOUT)
        try:
            if not c.line().startswith("* OK"):
                return "no greeting"
            login = c.cmd("a1", "LOGIN alice secret")[-1]
            if login.startswith("a1 NO [UNAVAILABLE]"):
                return "login unavailable"
            if not login.startswith("a1 OK"):
                return "login answered: " + login
            try:
                sel = c.cmd("a2", "SELECT INBOX")[-1]
                if not sel.startswith("a2 OK"):
                    return "select: " + sel
                c.send("a3 FETCH 1 BODY.PEEK[]\r\n")
                first = c.line()
                m = re.match(r"\* 1 FETCH \(BODY\[\] \{(\d+)\}$", first)
                if not m:
                    return "fetch: " + first
                n = int(m.group(1))
                while len(c.buf) < n:
                    data = c.sock.recv(65536)
                    if not data:
                        return "relay closed"
                    c.buf += data
                body, c.buf = c.buf[:n], c.buf[n:]
                rest = c.until_tagged("a3")
                if not rest[-1].startswith("a3 OK"):
                    return "fetch ended: " + rest[-1]
                if body != self.msg:
                    return "WRONG BYTES"
                c.cmd("a4", "LOGOUT")
                return "fetched"
            except socket.timeout:
                raise
            except (EOFError, OSError, ssl.SSLError):
                return "relay closed"	# the upstream lost after the login
        except socket.timeout:
            return "HANG"
        except EOFError:
            return "closed before login"
        except (OSError, ssl.SSLError) as e:
            # Before the login's answer the client must get NO [UNAVAILABLE],
            # never a reset or a broken TLS stream.
            return "error before login: %r" % e
        finally:
            c.close()

    def worker(self, n):
        for _ in range(n):
            r = self.session()
            with self.lock:
                self.results.append(r)

    def test_login_and_relay_faults(self):
        threads = [threading.Thread(target=self.worker, args=(self.SESSIONS // 6,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertFalse(any(t.is_alive() for t in threads))
        counts = {}
        for r in self.results:
            counts[r] = counts.get(r, 0) + 1
        kinds = {}
        for f in self.proxy.faults:
            kinds[f] = kinds.get(f, 0) + 1
        print("IMAP sessions: %s" % sorted(counts.items()))
        print("faults drawn: %s" % sorted(kinds.items()))
        allowed = {"fetched", "login unavailable", "relay closed"}
        self.assertEqual({r for r in self.results if r not in allowed}, set(), counts)
        self.assertGreater(counts.get("fetched", 0), 0)
        self.assertGreater(counts.get("login unavailable", 0), 0)
        self.assertTrue(self.gw.proc.alive())
        self.assertNotIn("auth-failed", self.gw.log())
        self.gw.check_sanitizers()


if __name__ == "__main__":
    main()
