"""faultproxy: a fault-injecting TCP proxy between a gateway and a real
upstream (smtp-sink, Dovecot), for test_upstream_faults.py.

Per upstream connection it draws one fault from a seeded generator: none,
slow (every forward a little late), refuse (accept, then RST), or an
action at a stage of the protocol - close or stall before the stage's
client line is forwarded, or after it (the upstream's reply is then never
forwarded), or mid-stream after k bytes. A stalled connection forwards
nothing either way until the gateway gives up (its timeout_reply), or
until STALL_MAX has passed and the proxy closes it (an upstream that hangs
and then dies: the gateway waits a fixed 600 s after the final dot, RFC
5321 §4.5.3.2.6, longer than a test can).

The protocol knowledge is in a Dialect: where the client lines of each
stage are, and (SMTP) the message body between DATA and the final dot.
Records what it forwarded: per message (SMTP: its Message-ID), the
upstream's reply to the final dot that reached the gateway."""
import random
import re
import select
import socket
import struct
import threading
import time

from mgtest import LoopbackServer

STALL_MAX = 2.5      # seconds a stalled connection is held before the proxy closes it
SLOW_DELAY = (0.01, 0.15)


class Fault:
    def __init__(self, kind, stage=None, when=None, k=0):
        self.kind, self.stage, self.when, self.k = kind, stage, when, k

    def __str__(self):
        return "-".join(str(x) for x in (self.kind, self.stage, self.when) if x)


class Conn:
    """One proxied connection: the gateway's socket and the upstream's."""

    def __init__(self, proxy, gw, fault):
        self.p, self.gw, self.fault = proxy, gw, fault
        self.up = None
        self.cbuf = b""           # gateway -> upstream, not yet handled
        self.sbuf = b""           # upstream -> gateway, not yet a whole reply
        self.pending = ["GREETING"]   # stages whose reply is awaited, in order
        self.kill_on_reply = None     # ("close" | "stall", stage) after a forwarded line
        self.stalled = None
        self.done = False
        self.body = None          # SMTP: the message being forwarded (bytes) or None
        self.body_fwd = 0
        self.state = {}

    # -- actions ------------------------------------------------------
    def close(self):
        self.done = True
        for s in (self.gw, self.up):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def stall(self):
        if self.stalled is None:
            self.stalled = time.time()

    def act(self, how):
        if how == "close":
            self.close()
        else:
            self.stall()

    def delay(self):
        if self.fault.kind == "slow":
            time.sleep(self.p.rng_uniform(*SLOW_DELAY))

    def to_up(self, data):
        self.delay()
        self.up.sendall(data)

    def to_gw(self, data):
        self.delay()
        self.gw.sendall(data)

    # -- gateway -> upstream --------------------------------------------
    def from_gw(self, data):
        self.cbuf += data
        while self.cbuf and not self.done and self.stalled is None:
            if self.body is not None:
                if not self.body_bytes():
                    return
                continue
            if b"\n" not in self.cbuf:
                return
            line, _, self.cbuf = self.cbuf.partition(b"\n")
            line += b"\n"
            stage = self.p.dialect.client_stage(self, line)
            f = self.fault
            if stage and f.stage == stage and f.when == "before":
                self.act(f.kind)
                return
            self.to_up(line)
            self.pending.append(stage or "OTHER")
            if stage and f.stage == stage and f.when == "after":
                self.kill_on_reply = f.kind
            if self.p.dialect.starts_body(self, stage):
                self.body = b""
                self.body_fwd = 0

    def body_bytes(self):
        """Forwards message bytes up to the final dot (and applies a
        mid-message fault); False when more input is needed."""
        start = max(0, len(self.body) - 4)
        self.body += self.cbuf
        end = (b"\r\n" + self.body).find(b"\r\n.\r\n", start)
        if end < 0:
            n_new = len(self.cbuf)
            self.cbuf = b""
            whole = None
        else:
            whole = end + 3     # through the dot line (the leading CRLF was added)
            n_new = len(self.cbuf) - (len(self.body) - whole)
            self.cbuf = self.body[whole:]
            self.body = self.body[:whole]
        chunk = self.body[len(self.body) - n_new:] if n_new else b""
        f = self.fault
        if f.stage == "body" and self.body_fwd + len(chunk) >= f.k and (whole is None or f.k < whole - 3):
            self.to_up(chunk[:max(0, f.k - self.body_fwd)])
            self.act(f.kind)
            return False
        if whole is not None and f.stage == "dot" and f.when == "before":
            self.to_up(chunk[:len(chunk) - 3])       # all but the dot line
            self.act(f.kind)
            return False
        if chunk:
            self.to_up(chunk)
            self.body_fwd += len(chunk)
        if whole is None:
            return False
        self.p.dialect.body_done(self, self.body)
        self.body = None
        self.pending.append("dot")
        if f.stage == "dot" and f.when == "after":
            self.kill_on_reply = f.kind
        return True

    # -- upstream -> gateway --------------------------------------------
    def from_up(self, data):
        self.sbuf += data
        while not self.done and self.stalled is None:
            reply, self.sbuf = self.p.dialect.split_reply(self, self.sbuf)
            if reply is None:
                return
            stage = self.pending.pop(0) if self.pending else "OTHER"
            f = self.fault
            if stage == "GREETING" and f.stage == "greeting":
                self.act(f.kind)
                return
            if self.kill_on_reply:
                self.act(self.kill_on_reply)
                return
            self.to_gw(reply)
            self.p.dialect.reply_forwarded(self, stage, reply)
            if stage == "dot" and f.stage == "dot" and f.when == "reply":
                self.close()     # the reply went out, then the upstream died
                return

    # -- the loop -----------------------------------------------------
    def run(self):
        f = self.fault
        if f.kind == "refuse":
            self.gw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close()
            return
        try:
            self.up = socket.create_connection(self.p.backend, timeout=10)
        except OSError:
            self.close()
            return
        try:
            while not self.done:
                if self.stalled is not None and time.time() - self.stalled > STALL_MAX:
                    self.close()
                    return
                r, _, _ = select.select([self.gw, self.up], [], [], 0.2)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        self.close()
                        return
                    if self.stalled is not None:
                        continue     # swallowed
                    if s is self.gw:
                        self.from_gw(data)
                    else:
                        self.from_up(data)
                    if self.done:
                        return
        except OSError:
            self.close()


class SmtpDialect:
    VERBS = {"EHLO": "ehlo", "HELO": "ehlo", "XCLIENT": "xclient", "MAIL": "mail", "RCPT": "rcpt",
             "DATA": "data"}
    STAGES = ["greeting", "ehlo", "mail", "rcpt", "data", "body", "dot"]
    MSGID = re.compile(rb"(?im)^Message-ID: <([^>]+)>")

    def __init__(self):
        self.final = {}          # Message-ID -> the reply to its final dot forwarded to the gateway
        self.lock = threading.Lock()

    def client_stage(self, c, line):
        verb = line.split(b" ")[0].split(b":")[0].strip().decode("ascii", "replace").upper()
        return self.VERBS.get(verb)

    def starts_body(self, c, stage):
        return stage == "data"

    def body_done(self, c, body):
        m = self.MSGID.search(body)
        c.state["msgid"] = m.group(1).decode() if m else None

    def split_reply(self, c, buf):
        """One whole (possibly multi-line) reply off buf."""
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                return None, buf
            line = buf[pos:nl]
            pos = nl + 1
            if len(line) < 4 or line[3:4] != b"-":
                return buf[:pos], buf[pos:]

    def reply_forwarded(self, c, stage, reply):
        if stage == "dot":
            with self.lock:
                self.final.setdefault(c.state.get("msgid"), []).append(reply.decode("ascii", "replace"))

    def pick(self, rng):
        x = rng.random()
        if x < 0.30:
            return Fault("none")
        if x < 0.40:
            return Fault("slow")
        if x < 0.45:
            return Fault("refuse")
        stage = rng.choice(self.STAGES)
        kind = "close" if rng.random() < 0.6 else "stall"
        if stage == "greeting":
            return Fault(kind, stage)
        if stage == "body":
            return Fault(kind, stage, "at", rng.randrange(1, 3000))
        if stage == "dot":
            when = rng.choice(["before", "after", "reply"])
            return Fault("close" if when == "reply" else kind, stage, when)
        return Fault(kind, stage, rng.choice(["before", "after"]))


class ImapDialect:
    """Stages: greeting, id (the gateway's ID), login (its AUTHENTICATE or
    LOGIN line, and a SASL continuation), relay (after the login's OK:
    k bytes from the upstream, then the fault)."""
    STAGES = ["greeting", "id", "login", "relay"]

    def __init__(self):
        self.lock = threading.Lock()

    def client_stage(self, c, line):
        if c.state.get("relay"):
            return None
        words = line.split(b" ")
        cmd = words[1].strip().upper() if len(words) > 1 else b""
        if cmd == b"ID":
            return "id"
        if cmd in (b"AUTHENTICATE", b"LOGIN"):
            c.state["login_tag"] = words[0]
            return "login"
        return None

    def starts_body(self, c, stage):
        return False

    def split_reply(self, c, buf):
        """After login: whatever arrived (a relay), else one line."""
        if c.state.get("relay"):
            f = c.fault
            if f.stage == "relay":
                left = f.k - c.state.get("relayed", 0)
                if len(buf) >= left:
                    c.state["relayed"] = f.k
                    c.act(f.kind)
                    return None, b""
            c.state["relayed"] = c.state.get("relayed", 0) + len(buf)
            return (buf or None), b""
        nl = buf.find(b"\n")
        if nl < 0:
            return None, buf
        return buf[:nl + 1], buf[nl + 1:]

    def reply_forwarded(self, c, stage, reply):
        # Untagged lines and continuations do not answer the stage.
        tag = c.state.get("login_tag")
        if reply.startswith(b"* ") or reply.startswith(b"+"):
            if stage != "GREETING":
                c.pending.insert(0, stage)     # still waiting for the tagged one
            return
        if tag and reply.startswith(tag + b" OK"):
            c.state["relay"] = True
            c.pending = []

    def pick(self, rng):
        x = rng.random()
        if x < 0.3:
            return Fault("none")
        if x < 0.4:
            return Fault("refuse")
        stage = rng.choice(self.STAGES)
        kind = "close" if rng.random() < 0.6 else "stall"
        if stage == "greeting":
            return Fault(kind, stage)
        if stage == "relay":
            return Fault(kind, stage, "at", rng.randrange(1, 600))
        return Fault(kind, stage, rng.choice(["before", "after"]))


class FaultProxy(LoopbackServer):
    def __init__(self, backend_port, dialect, seed):
        self.backend = ("127.0.0.1", backend_port)
        self.dialect = dialect
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.faults = []         # one per upstream connection, in accept order
        self.drawn = {}          # accepted connection -> its fault, until its thread takes it
        super().__init__(backlog=256)

    def rng_uniform(self, a, b):
        with self.rng_lock:
            return self.rng.uniform(a, b)

    def accepted(self, gw):
        with self.rng_lock:
            fault = self.dialect.pick(self.rng)
        self.faults.append(str(fault))
        self.drawn[gw] = fault

    def handle(self, gw):
        Conn(self, gw, self.drawn.pop(gw)).run()
