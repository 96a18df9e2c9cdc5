"""mgtest: harness for mailgate's integration tests.

Real peers on 127.0.0.1 high ports, each in a private temp dir, started and
stopped by PID: mailgate-smtpd itself, Postfix's smtp-sink (dumps what it
receives), a private Postfix instance (XCLIENT, STARTTLS, SASL), and clients
(a raw SMTP client for byte-exact control, smtplib, swaks, gnutls-cli).
Nothing here touches the machine's own mail setup.
"""
import fcntl
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

SRCDIR = os.environ.get("MG_SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
BUILDDIR = os.environ.get("MG_BUILDDIR", SRCDIR)
SMTPD = os.path.join(BUILDDIR, "smtpd", "mailgate-smtpd")
IMAPD = os.path.join(BUILDDIR, "imapd", "mailgate-imapd")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise unittest.SkipTest("missing tools: " + " ".join(missing))


PORT_RESERVATIONS = os.path.join(tempfile.gettempdir(), "mgtest-ports")
PORT_RESERVATION_TTL = 900     # seconds a port handed out is not handed out again


def free_port():
    """A free 127.0.0.1 port, never handed out to another test (of any
    process of the parallel suite) for PORT_RESERVATION_TTL seconds: the
    kernel may give the same free port to two tests that have not bound it
    yet."""
    os.makedirs(PORT_RESERVATIONS, exist_ok=True)
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        path = os.path.join(PORT_RESERVATIONS, str(port))
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return port
        except FileExistsError:
            try:
                if time.time() - os.stat(path).st_mtime > PORT_RESERVATION_TTL:
                    os.utime(path)
                    return port
            except OSError:
                pass
    return port


def reserve_port(port):
    """Marks a port a listener of this process already holds (bound to
    port 0) as handed out, so that free_port() does not give it to a test
    in another process for PORT_RESERVATION_TTL seconds."""
    os.makedirs(PORT_RESERVATIONS, exist_ok=True)
    path = os.path.join(PORT_RESERVATIONS, str(port))
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    os.utime(path)


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def pki_dir():
    """The shared test PKI (generated once per build, under a lock)."""
    d = os.path.join(BUILDDIR, "tests", "pki")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(d, "done-10")):
            subprocess.run(["sh", os.path.join(SRCDIR, "tests", "tools", "mkpki.sh"), d], check=True)
            open(os.path.join(d, "done-10"), "w").close()
    return d


def client_context(ca=True, alpn=None, maxver=None, ciphers=None):
    pki = pki_dir()
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem") if ca else None)
    if not ca:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if maxver:
        ctx.maximum_version = maxver
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


# The start of every script run_with_private_dev() runs: as root in its
# own mount namespace (unshare -m), /dev becomes a private tmpfs holding
# only null, zero, random and urandom, so the script can put its own
# socket at /dev/log without touching the machine's logger. The script
# gets the daemon binary, its config and its port as smtpd, conf, port,
# and session() / stop_when_logged() to run one SMTP session and to stop
# the daemon once a line has arrived.
PRIVATE_DEV_PRELUDE = r'''
import json, os, socket, subprocess, sys, threading, time
smtpd, conf, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "none", "/dev"], check=True)
for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
    os.mknod("/dev/" + name, 0o20666, os.makedev(1, minor))
    os.chmod("/dev/" + name, 0o666)

def session(helo):
    """One EHLO + QUIT session with the daemon; the QUIT reply's code."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = c.makefile("rb")
    f.readline()
    c.sendall(b"EHLO " + helo + b"\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    c.sendall(b"QUIT\r\n")
    code = f.readline()[:3].decode()
    c.close()
    return code

def stop_when_logged(lines, needle):
    """Waits (10 s at most) for needle in one of lines, then stops the
    daemon (SIGTERM to the pid in its pidfile, conf's name with .pid)."""
    deadline = time.time() + 10
    while time.time() < deadline and not any(needle in g for g in list(lines)):
        time.sleep(0.05)
    pid = int(open(conf.replace(".conf", ".pid")).read())
    os.kill(pid, 15)
    while os.path.exists("/proc/%d" % pid) and time.time() < deadline + 10:
        time.sleep(0.05)
'''


def run_with_private_dev(test, tmp, name, script, daemon, conf, port, timeout=120):
    """Runs PRIVATE_DEV_PRELUDE + script in a private mount namespace
    (skips the test without unshare); the script's last line of output is
    JSON, returned decoded. Fails the test if the script fails."""
    import json
    if not shutil.which("unshare"):
        test.skipTest("no unshare")
    helper = tmp.file(name, PRIVATE_DEV_PRELUDE + script)
    r = subprocess.run(["unshare", "-m", sys.executable, helper, daemon, conf, str(port)],
                       capture_output=True, text=True, timeout=timeout)
    test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
    return json.loads(r.stdout.splitlines()[-1])


class TempDir:
    def __init__(self, prefix="mgtest-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.path, 0o755)

    def file(self, name, text=None, mode=0o644):
        p = os.path.join(self.path, name)
        if text is not None:
            with open(p, "wb" if isinstance(text, bytes) else "w") as f:
                f.write(text)
            os.chmod(p, mode)
        return p

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Proc:
    """A child process stopped by PID, whose output goes to a log file."""

    def __init__(self, argv, log, env=None):
        self.log_path = log
        self.argv = argv
        with open(log, "ab") as f:
            self.p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait()
        return self.p.returncode

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class SinkMessage:
    def __init__(self, raw):
        self.raw = raw
        head, _, rest = raw.partition(b"\nReceived: from ")
        self.meta = {}
        for line in head.split(b"\n"):
            k, _, v = line.partition(b": ")
            self.meta.setdefault(k.decode(), []).append(v.decode("utf-8", "replace"))
        # smtp-sink's own three-line Received header, then the message.
        lines = rest.split(b"\n")
        self.message = b"\n".join(lines[3:])
        if self.message.endswith(b"\n\n"):
            self.message = self.message[:-1]

    @property
    def client_addr(self):
        return self.meta.get("X-Client-Addr", [None])[0]

    @property
    def helo(self):
        return self.meta.get("X-Helo-Args", [None])[0]

    @property
    def mail(self):
        return self.meta.get("X-Mail-Args", [None])[0]

    @property
    def rcpts(self):
        return self.meta.get("X-Rcpt-Args", [])

    def without_our_received(self):
        """The message minus mailgate's Received header (with its folds)."""
        m = self.message
        assert m.startswith(b"Received: from "), m[:80]
        lines = m.split(b"\n")
        i = 1
        while i < len(lines) and lines[i].startswith(b"\t"):
            i += 1
        return b"\n".join(lines[i:]), b"\n".join(lines[:i])


class SmtpSink:
    """Postfix's smtp-sink as the upstream; dumps every transaction."""

    def __init__(self, tmp, port=None, args=(), dump=True):
        need("smtp-sink")
        self.port = port or free_port()
        self.dump = os.path.join(tmp.path, "sink-%d" % self.port)
        os.makedirs(self.dump, exist_ok=True)
        os.chmod(self.dump, 0o777)
        dumpargs = ["-d", os.path.join(self.dump, "%M.")] if dump else []
        argv = ["smtp-sink", "-u", "nobody", *dumpargs, *args, "127.0.0.1:%d" % self.port, "256"]
        self.proc = Proc(argv, os.path.join(tmp.path, "sink-%d.log" % self.port))
        if not wait_port(self.port, proc=self.proc.p):
            raise RuntimeError("smtp-sink did not start: " + self.proc.output())

    def messages(self):
        # smtp-sink opens a capture file at MAIL; it stays empty until
        # the transaction completes, and vanishes if it never does - also
        # between our listdir() and our reading it: such a file is skipped.
        found = []
        for name in os.listdir(self.dump):
            try:
                with open(os.path.join(self.dump, name), "rb") as f:
                    found.append((os.fstat(f.fileno()).st_mtime, name, f.read()))
            except FileNotFoundError:
                continue
        return [SinkMessage(raw) for _, _, raw in sorted(found) if raw]

    def wait_messages(self, n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            msgs = self.messages()
            if len(msgs) >= n:
                time.sleep(0.1)    # let the dump file be completed
                return self.messages()
            time.sleep(0.05)
        return self.messages()

    def stop(self):
        self.proc.stop(signal.SIGKILL)


def stop_by_pidfile(pidfile, timeout=10):
    """SIGTERM the daemon whose pid is in pidfile and wait for it to exit."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


def children(pid):
    """The child processes of pid (a master's workers)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def worker_pids(master, n=1, timeout=10.0):
    """The n worker processes of a master, once they are all there."""
    deadline = time.time() + timeout
    while True:
        kids = children(master)
        if len(kids) == n or time.time() > deadline:
            assert len(kids) == n, "master %d has workers %s, expected %d" % (master, kids, n)
            return kids
        time.sleep(0.02)


def memory_find(pid, needle, max_region=1 << 30):
    """The writable mappings of process pid whose bytes contain needle, as
    (mapping name, address) pairs - for tests that secrets are wiped.
    Mappings over max_region (sanitizer shadow memory) are skipped."""
    hits, maps = [], []
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                maps.append([line.split(), 0])
            elif line.startswith("Rss:"):
                maps[-1][1] = int(line.split()[1])
    with open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for parts, rss in maps:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if not parts[1].startswith("rw") or hi - lo > max_region or not rss:
                continue    # read-only, shadow memory, or never touched
            pos, tail = lo, b""
            while pos < hi:
                n = min(1 << 20, hi - pos)
                try:
                    mem.seek(pos)
                    chunk = mem.read(n)
                except OSError:
                    chunk = b""
                i = (tail + chunk).find(needle)
                if i >= 0:
                    hits.append((parts[5] if len(parts) > 5 else "[anon]", hex(pos - len(tail) + i)))
                    break
                tail = chunk[-(len(needle) - 1):] if chunk else b""
                pos += n
    return hits


class LogFile:
    """log() and wait_log() over a server's log file (self.logfile)."""

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10):
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = rx.search(self.log())
            if m:
                return m
            time.sleep(0.1)
        raise AssertionError("%s log never matched %r:\n%s" % (type(self).__name__, pattern,
                                                                self.log()[-3000:]))


class Gateway(LogFile):
    """mailgate-smtpd (or -imapd) in the foreground with a generated config."""

    _count = 0

    def __init__(self, tmp, conf, ports, binary=None, name="smtpd", extra_args=(), env=None,
                 wrapper=()):
        """wrapper: a command that execs the daemon (prlimit ...)."""
        self.tmp = tmp
        Gateway._count += 1
        if Gateway._count > 1:    # a restarted gateway gets fresh files
            name = "%s-%d" % (name, Gateway._count)
        self.conf_path = tmp.file(name + ".conf", conf)
        self.log_path = self.logfile = os.path.join(tmp.path, name + ".log")
        self.binary = binary or SMTPD
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:detect_stack_use_after_return=1")
        if env:
            e.update(env)
        self.proc = Proc([*wrapper, self.binary, "-f", "-c", self.conf_path, *extra_args], self.log_path,
                         env=e)
        # Listeners are bound before "ready" is logged; waiting for the log
        # line (not connecting) keeps probe sessions out of the logs. With
        # a log_level above notice there is no such line: probe the ports.
        quiet = re.search(r'(?m)^log_level\s*=\s*"(error|warning)"', conf)
        deadline = time.time() + 15
        while not (" ready (GnuTLS" in self.log() if not quiet else
                   all(wait_port(p, timeout=0.2) for p in ports)):
            if self.proc.p.poll() is not None or time.time() > deadline:
                raise RuntimeError("gateway did not start (rc=%s):\n%s" % (self.proc.p.poll(), self.log()))
            time.sleep(0.02)

    def worker_pid(self):
        """The worker process (with workers = 1): where sessions live."""
        return worker_pids(self.proc.pid, 1)[0]

    def stop(self, sig=signal.SIGTERM):
        rc = self.proc.stop(sig)
        self.check_sanitizers()
        return rc

    def check_sanitizers(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                raise AssertionError("sanitizer report in gateway log:\n" + text[-6000:])


class LineClient:
    """A raw line-protocol client over TCP or TLS: exact bytes out, lines in."""

    def __init__(self, port, tls=False, ctx=None, host="127.0.0.1", source=None, timeout=10,
                 server_hostname="localhost"):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        if tls:
            self.sock = (ctx or client_context()).wrap_socket(self.sock, server_hostname=server_hostname)
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending %r" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def starttls(self, ctx=None, server_hostname="localhost"):
        self.sock = (ctx or client_context()).wrap_socket(self.sock, server_hostname=server_hostname)

    def closed(self, timeout=5):
        """True if the server closes the connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
            self.buf += data
            return data == b""
        except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
            return True
        except socket.timeout:
            return False

    def half_close(self):
        """TCP half-close of a plain connection: we send nothing more, the
        replies still arrive (BioTls does this under TLS)."""
        self.sock.shutdown(socket.SHUT_WR)

    def read_to_end(self):
        """Everything that arrives until the server closes."""
        out, self.buf = self.buf, b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return out
            out += data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __del__(self):
        self.close()


class Imap(LineClient):
    """A raw IMAP client for exact control over tags, literals and timing."""

    def until_tagged(self, tag):
        """All lines up to and including the tagged response."""
        out = []
        while True:
            l = self.line()
            out.append(l)
            if l.startswith(tag + " "):
                return out

    def cmd(self, tag, text):
        self.send("%s %s\r\n" % (tag, text))
        return self.until_tagged(tag)


class BioTls:
    """A TLS client over memory BIOs on a raw socket, so a test controls the
    TCP connection underneath: a half-close is shutdown(SHUT_WR) of the
    socket, with or without a close_notify first, and the replies are still
    read and decrypted afterwards (an ssl.SSLSocket cannot do either)."""

    def __init__(self, port, ctx=None, host="127.0.0.1", timeout=10, server_hostname="localhost"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = (ctx or client_context()).wrap_bio(self.incoming, self.outgoing,
                                                       server_hostname=server_hostname)
        self.buf = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        self._flush()

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _pump(self):
        """One read from the socket into the TLS object; False at TCP EOF."""
        self._flush()
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    def send(self, data):
        self.tls.write(data.encode() if isinstance(data, str) else data)
        self._flush()

    def _read(self):
        """Decrypted bytes, b"" at the end of the stream (close_notify or EOF)."""
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                if not self._pump():
                    try:
                        return self.tls.read(65536)
                    except (ssl.SSLEOFError, ssl.SSLWantReadError):
                        return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def line(self):
        while b"\n" not in self.buf:
            data = self._read()
            if not data:
                raise EOFError("connection closed; pending %r" % self.buf)
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def half_close(self, close_notify=False):
        """Ends our sending side: TCP FIN, after a close_notify if asked."""
        if close_notify:
            try:
                self.tls.unwrap()
            except ssl.SSLWantReadError:
                pass
            self._flush()
        self.sock.shutdown(socket.SHUT_WR)

    def read_to_end(self):
        """Everything that arrives until the server closes."""
        out, self.buf = self.buf, b""
        while True:
            data = self._read()
            if not data:
                return out
            out += data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __del__(self):
        self.close()


class SmtpReplyError(Exception):
    pass


class Smtp(LineClient):
    """A raw SMTP client: exact bytes out, parsed replies in."""

    def reply(self):
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def expect(self, line, code):
        c, lines = self.cmd(line)
        if c != code:
            raise SmtpReplyError("%s -> %s (wanted %d)" % (line, lines, code))
        return lines


class Postfix(LogFile):
    """A private Postfix instance (config, queue and data in a temp dir).

    Its system service is never touched: `postfix -c DIR` runs a separate
    master whose pid file lives under our queue directory."""

    def __init__(self, tmp, port, main_extra="", master_extra="", smtpd_args=""):
        need("postfix", "postconf")
        self.tmp = tmp
        self.port = port
        base = os.path.join(tmp.path, "postfix-%d" % port)
        self.base = base
        self.etc = os.path.join(base, "etc")
        self.spool = os.path.join(base, "spool")
        self.data = os.path.join(base, "data")
        self.maillog = self.logfile = os.path.join(base, "maillog")
        for d in (self.etc, self.spool, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix")
        for d in (tmp.path, base):
            os.chmod(d, 0o755)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("""compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
myhostname = upstream.test
mydomain = test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_authorized_xclient_hosts = 127.0.0.0/8
maillog_file = {maillog}
maillog_file_prefixes = /tmp
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
default_transport = discard
relay_transport = discard
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
{extra}
""".format(spool=self.spool, data=self.data, maillog=self.maillog, extra=main_extra))
        with open("/etc/postfix/master.cf") as f:
            master = f.read()
        master = re.sub(r"(?m)^smtp\s+inet.*$",
                        "127.0.0.1:%d inet n - n - - smtpd %s" % (port, smtpd_args), master)
        master += "\n" + master_extra + "\n"
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(master)
        for attempt in range(3):
            with open(os.path.join(base, "start.out"), "w") as out:
                subprocess.run(["postfix", "-c", self.etc, "start"], stdout=out, stderr=subprocess.STDOUT)
            # Ready means its own log works: under load a master can come
            # up without postlogd, and then every Postfix process blocks
            # on logging. Such an instance is restarted.
            if wait_port(port, timeout=15) and self._wait_started(15):
                break
            self.stop()
        else:
            raise RuntimeError("postfix did not start:\n" + self.log())

    def _wait_started(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "daemon started" in self.log():
                return True
            time.sleep(0.1)
        return False

    def stop(self):
        stop_by_pidfile(os.path.join(self.spool, "pid", "master.pid"))


def _gateway_conf(hostname, upstream_name, pki, upstream_port, listeners, extra,
                  upstream_extra, tls_extra):
    """The config body both daemons share: the test PKI's ECDSA+RSA pair,
    one upstream, the given listener blocks (text) and extra top-level text."""
    return """hostname = "{host}"
log_target = "stderr"
log_level = "debug"
tls "default" {{
  cert = {{ "{pki}/server-ecdsa.pem", "{pki}/server-rsa.pem" }}
  key = {{ "{pki}/server-ecdsa.key", "{pki}/server-rsa.key" }}
  {tls_extra}
}}
upstream "{upname}" {{
  address = "127.0.0.1:{up}"
  {upstream_extra}
}}
{listeners}
{extra}
""".format(host=hostname, upname=upstream_name, pki=pki, up=upstream_port,
           listeners=listeners, extra=extra, upstream_extra=upstream_extra,
           tls_extra=tls_extra)


def smtpd_conf(pki, upstream_port, listeners, extra="", upstream_extra="xclient = false",
               tls_extra=""):
    """An smtpd config: one upstream "up", accepting mail for example.org."""
    extra = 'accept_domains = { "example.org", ".example.org" }\n' + extra
    return _gateway_conf("mx.test.example", "up", pki, upstream_port, listeners, extra,
                         upstream_extra, tls_extra)


def imapd_conf(pki, upstream_port, listeners, extra="", upstream_extra="", tls_extra=""):
    """An imapd config: one Dovecot upstream "dovecot"."""
    return _gateway_conf("imap.test.example", "dovecot", pki, upstream_port, listeners, extra,
                         upstream_extra, tls_extra)


def listener(name, port, mode, extra=""):
    return 'listener "%s" {\n  address = "127.0.0.1:%d"\n  tls_mode = "%s"\n  %s\n}\n' % (name, port, mode, extra)


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("test exceeded MG_TEST_TIMEOUT seconds")


class GatewayTest(unittest.TestCase):
    """Base class: a temp dir, and every process started is stopped - by
    cleanups, which run even when setUp fails half-way. A test that hangs
    fails after MG_TEST_TIMEOUT seconds instead of stalling the suite."""

    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self._remove_tmp)
        self.procs = []
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(int(os.environ.get("MG_TEST_TIMEOUT", "240")))
        self.addCleanup(signal.alarm, 0)
        self.pki = pki_dir()

    def _remove_tmp(self):
        if os.environ.get("MG_KEEP_TMP"):
            print("kept", self.tmp.path, file=sys.stderr)
        else:
            self.tmp.cleanup()

    def _stop(self, p):
        if p in self.procs:
            self.procs.remove(p)
            p.stop()    # a gateway's sanitizer report fails the test here

    def track(self, p):
        self.procs.append(p)
        self.addCleanup(self._stop, p)
        return p

    def sink(self, **kw):
        return self.track(SmtpSink(self.tmp, **kw))

    def gateway(self, conf, ports, **kw):
        return self.track(Gateway(self.tmp, conf, ports, **kw))

    def imap_gateway(self, conf, ports, **kw):
        return self.track(Gateway(self.tmp, conf, ports, binary=IMAPD, name="imapd", **kw))

    def postfix(self, port, **kw):
        return self.track(Postfix(self.tmp, port, **kw))

    def dovecot(self, **kw):
        return self.track(Dovecot(self.tmp, **kw))


def ehlo_until(c, keyword, name="client.test", tries=50):
    """EHLO until the start-up probe has told the gateway what the
    upstream offers (keyword appears), so pass-through extensions are on."""
    for _ in range(tries):
        lines = c.expect("EHLO " + name, 250)
        if any(keyword in l for l in lines):
            return lines
        time.sleep(0.1)
    raise AssertionError("EHLO never listed %s: %s" % (keyword, lines))


def message(subject="test", body="hello\r\n", extra_headers=""):
    return ("From: sender@test.example\r\nTo: user@example.org\r\nSubject: %s\r\n%s\r\n%s"
            % (subject, extra_headers, body)).encode()


def send_message(c, msg, mail="sender@test.example", rcpts=("user@example.org",)):
    """MAIL/RCPT/DATA over a raw Smtp client; returns the final reply."""
    c.expect("MAIL FROM:<%s>" % mail, 250)
    for r in rcpts:
        c.expect("RCPT TO:<%s>" % r, 250)
    c.expect("DATA", 354)
    stuffed = re.sub(rb"(?m)^\.", b"..", msg)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    c.send(stuffed + b".\r\n")
    return c.reply()


class _LogsOnFailure(unittest.TextTestResult):
    """A failing test prints the last lines of every log its processes
    wrote (gateway, sink, Postfix, Dovecot), so a CI failure explains
    itself. Reported while the test's processes and temp dir still exist."""

    def _dump(self, test):
        for p in getattr(test, "procs", []):
            path = getattr(p, "log_path", None) or getattr(p, "logfile", None)
            try:
                with open(path, errors="replace") as f:
                    tail = f.read()[-4000:]
            except (OSError, TypeError):
                continue
            self.stream.write("\n--- %s (last lines)\n%s\n" % (path, tail))

    def addFailure(self, test, err):
        self._dump(test)
        super().addFailure(test, err)

    def addError(self, test, err):
        self._dump(test)
        super().addError(test, err)


def main():
    import warnings
    warnings.simplefilter("ignore", ResourceWarning)
    unittest.main(verbosity=2, testRunner=unittest.TextTestRunner(resultclass=_LogsOnFailure, verbosity=2))


class Dovecot(LogFile):
    """A private Dovecot (config, state, logs, users and mail in a temp dir).

    auth_port: a TCP SASL listener for Postfix (smtpd_sasl_path = inet:...).
    imap_port: a plain IMAP listener. Users live in a passwd-file."""

    def __init__(self, tmp, users=None, auth_port=None, imap_port=None, extra="", master_users=None,
                 lmtp_port=None, imaps_port=None, tls_cert=None, tls_key=None):
        need("dovecot", "doveadm")
        self.tmp = tmp
        self.base = os.path.join(tmp.path, "dovecot-%d" % (auth_port or imap_port or lmtp_port))
        self.run = os.path.join(self.base, "run")
        self.home = os.path.join(self.base, "home")
        self.logf = self.logfile = os.path.join(self.base, "dovecot.log")
        for d in (self.base, self.run, self.home):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        shutil.chown(self.home, "nobody", "nogroup")
        users = users or {"alice": "secret"}
        with open(os.path.join(self.base, "users"), "w") as f:
            for u, pw in users.items():
                f.write("%s:{PLAIN}%s::::::\n" % (u, pw))
        masters = ""
        if master_users:
            with open(os.path.join(self.base, "masters"), "w") as f:
                for u, pw in master_users.items():
                    f.write("%s:{PLAIN}%s::::::\n" % (u, pw))
            masters = """passdb {
  driver = passwd-file
  args = scheme=PLAIN %s
  master = yes
  result_success = continue
}
auth_master_user_separator = *
""" % os.path.join(self.base, "masters")
        listeners = ""
        if auth_port:
            listeners += """service auth {
  inet_listener {
    address = 127.0.0.1
    port = %d
  }
}
""" % auth_port
        if imap_port:
            listeners += """service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %d
    ssl = yes
  }
}
""" % (imap_port, imaps_port or 0)
        else:
            listeners += "service imap-login {\n  inet_listener imap {\n    port = 0\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}\n"
        if lmtp_port:
            listeners += """service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %d
  }
}
protocol lmtp {
  auth_username_format = %%Ln
}
""" % lmtp_port
        protocols = " ".join(p for p, on in (("imap", imap_port), ("lmtp", lmtp_port)) if on) or "none"
        self.conf = os.path.join(self.base, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write("""base_dir = {run}
state_dir = {run}/state
log_path = {log}
protocols = {protocols}
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:~/Maildir
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
{masters}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={home}/%u
}}
{listeners}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
{extra}
""".format(run=self.run, log=self.logf, base=self.base, home=self.home, listeners=listeners,
           masters=masters, extra=extra, protocols=protocols,
           ssl=("ssl = yes\nssl_cert = <%s\nssl_key = <%s" % (tls_cert, tls_key)) if tls_cert else "ssl = no"))
        # dovecot daemonizes; its children must not inherit our pipes.
        with open(os.path.join(self.base, "start.out"), "w") as out:
            r = subprocess.run(["dovecot", "-c", self.conf], stdout=out, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            with open(os.path.join(self.base, "start.out")) as f:
                raise RuntimeError("dovecot failed: " + f.read())
        for p in (auth_port, imap_port, lmtp_port, imaps_port):
            if p and not wait_port(p):
                raise RuntimeError("dovecot did not listen on %d:\n%s" % (p, self.log()))

    def stop(self):
        stop_by_pidfile(os.path.join(self.run, "master.pid"))


class LoopbackServer:
    """A threaded TCP server on 127.0.0.1 for the peers no real server
    plays (a hostile or scripted upstream, a delaying proxy). The kernel
    picks the port when the listener binds (nothing can take it between
    choosing and binding), and it is reserved against free_port() like the
    ports handed out there. An accept loop in a daemon thread passes each
    connection to handle(conn) - in a thread of its own, or with
    serial=True in turn on the accept thread (one connection at a time) -
    and closes it when handle() returns or raises OSError. A subclass sets
    its own attributes, then calls LoopbackServer.__init__ (which starts
    accepting), and overrides handle() (and accepted(), run on the accept
    thread in accept order); or pass handler=function(conn).
    close() (also stop(), and the end of a with block) stops accepting,
    shuts down and closes the live connections (a handler blocked in
    recv() sees EOF, one waiting on `stopping` wakes) and joins the
    threads for at most JOIN_TIMEOUT seconds."""

    JOIN_TIMEOUT = 5.0
    ACCEPT_POLL = 0.2       # seconds between looks at `stopping` while accept() waits

    def __init__(self, handler=None, serial=False, backlog=16, rcvbuf=None):
        import threading
        self.handler = handler
        self.serial = serial
        self.conns = []
        self.threads = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:              # inherited by the accepted connections
            self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(backlog)
        self.srv.settimeout(self.ACCEPT_POLL)
        self.port = self.srv.getsockname()[1]
        reserve_port(self.port)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        import threading
        while not self.stopping.is_set():
            try:
                conn, _ = self.srv.accept()     # blocking, whatever the listener's timeout
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                if self.stopping.is_set():
                    conn.close()
                    return
                self.conns.append(conn)
            self.accepted(conn)
            if self.serial:
                self._serve(conn)
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self.lock:
                self.threads.append(t)
            t.start()

    def _serve(self, conn):
        try:
            self.handle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def accepted(self, conn):
        """Called on the accept thread, in accept order, before handle():
        for what must follow the order connections came in."""

    def handle(self, conn):
        self.handler(conn)

    @staticmethod
    def lines(conn, chunk=65536):
        """The lines conn sends (bytes, without the LF and any CR before
        it) until EOF; a partial last line is dropped. chunk=1 reads a byte
        at a time: nothing past the line just yielded leaves the kernel."""
        buf = b""
        while True:
            data = conn.recv(chunk)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                yield line.rstrip(b"\r")

    @staticmethod
    def read_line(conn):
        """One line, read a byte at a time (nothing after it is taken),
        without its CR LF; OSError if the peer closes first."""
        line = b""
        while not line.endswith(b"\n"):
            data = conn.recv(1)
            if not data:
                raise OSError("closed before the end of the line")
            line += data
        return line.rstrip(b"\r\n")

    @staticmethod
    def recv_exact(conn, n):
        """Exactly n bytes; OSError if the peer closes first."""
        out = b""
        while len(out) < n:
            data = conn.recv(n - len(out))
            if not data:
                raise OSError("closed")
            out += data
        return out

    @staticmethod
    def wait_hangup(conn):
        """Reads and drops what conn sends until the peer closes."""
        while conn.recv(65536):
            pass

    def close(self):
        self.stopping.set()
        try:
            self.srv.shutdown(socket.SHUT_RDWR)     # wakes the accept() at once (Linux)
        except OSError:
            pass
        self.srv.close()
        with self.lock:
            conns, threads = list(self.conns), list(self.threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        deadline = time.time() + self.JOIN_TIMEOUT
        for t in [self.thread] + threads:
            t.join(max(0.0, deadline - time.time()))

    stop = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ScriptedSmtp(LoopbackServer):
    """An SMTP upstream that answers from a script, for the replies no real
    server sends (a hostile or broken upstream): `replies` maps a command
    verb ("EHLO", "MAIL", ...; "GREETING" for the banner) to the raw bytes
    to send back. Unlisted verbs get "250 ok". Runs in a thread of the test
    process; every connection is served in turn and logged in `commands`."""

    def __init__(self, replies=None):
        self.replies = {"GREETING": b"220 scripted.test ESMTP\r\n",
                        "EHLO": b"250-scripted.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                        "QUIT": b"221 bye\r\n"}
        self.replies.update(replies or {})
        self.commands = []
        super().__init__(serial=True)

    def dot(self, conn):
        """The final dot arrived: answer it (a subclass may take its time)."""
        conn.sendall(self.replies.get("DOT", b"250 queued\r\n"))

    def handle(self, conn):
        conn.sendall(self.replies["GREETING"])
        data = False
        for line in self.lines(conn):
            if data:
                if line == b".":
                    data = False
                    self.dot(conn)
                continue
            verb = line.split(b" ")[0].split(b":")[0].decode("ascii", "replace").upper()
            self.commands.append(line.decode("utf-8", "replace"))
            conn.sendall(self.replies.get(verb, b"250 ok\r\n"))
            if verb == "DATA":
                data = True
            if verb == "QUIT":
                return
