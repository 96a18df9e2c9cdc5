"""Logs that never vanish silently: RFC 3339 timestamps (the first key of
every JSON line, in front of every text line), long JSON messages kept
whole, log_target = "/path" (appended, created 0640 for the user the
daemon drops to, reopened on SIGUSR1 after a logrotate-style rename; a
reopen that is refused keeps the old file and says so), -t checks of the
log file's folder, stderr without -f (kept when it is a pipe or the
journal, a warning when it is a terminal), syslog (facility mail at
/dev/log, a warning when /dev/log is missing - run in a private mount
namespace with its own /dev), and the start-up notice saying where the
logs go."""
import calendar
import collections
import json
import os
import pty
import pwd
import re
import select
import signal
import socket
import subprocess
import time

from mgtest import (SMTPD, GatewayTest, Smtp, free_port, listener, main, run_with_private_dev,
                    smtpd_conf, stop_by_pidfile)

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
NOBODY = pwd.getpwnam("nobody")


def run(*args, binary=SMTPD, **kw):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=30, **kw)


def wait_gone(pid, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and os.path.exists("/proc/%d" % pid):
        time.sleep(0.05)
    return not os.path.exists("/proc/%d" % pid)


def read_pid(path, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise AssertionError("no pidfile " + path)


class Logs(GatewayTest):
    def conf(self, port, target='"stderr"', extra="", name="local"):
        self.up = getattr(self, "up", None) or self.sink()
        conf = smtpd_conf(self.pki, self.up.port, listener(name, port, "none"), extra=extra)
        return conf.replace('log_target = "stderr"', "log_target = %s" % target)

    def detached(self, conf, name="d", stderr=None):
        """Starts the daemon without -f; returns (pid, parent's stderr)."""
        pidfile = self.tmp.file(name + ".pid")
        path = self.tmp.file(name + ".conf", conf.replace("hostname =", 'pidfile = "%s"\nhostname ='
                                                          % pidfile, 1))
        if stderr is None:
            r = run("-c", path)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = r.stderr
        else:
            p = subprocess.Popen([SMTPD, "-c", path], stderr=stderr, stdout=subprocess.DEVNULL)
            self.assertEqual(p.wait(30), 0)
            out = None
        pid = read_pid(pidfile)
        self.addCleanup(stop_by_pidfile, pidfile)
        return pid, out, pidfile

    def session(self, port, helo):
        c = Smtp(port)
        self.assertEqual(c.reply()[0], 220)
        c.expect("EHLO %s" % helo, 250)
        c.expect("QUIT", 221)
        c.closed()

    # ---- timestamps and JSON ----

    def test_json_lines_start_with_rfc3339_ts(self):
        p = free_port()
        gw = self.gateway(self.conf(p, extra='log_format = "json"'), [p])
        self.session(p, "json.test")
        line = gw.wait_log(r'\{[^\n]*"helo":"json\.test"[^\n]*\}').group(0)
        rec = json.loads(line, object_pairs_hook=collections.OrderedDict)
        self.assertEqual(list(rec)[:2], ["ts", "event"], line)
        self.assertRegex(rec["ts"], "^%s$" % TS)
        when = calendar.timegm(time.strptime(rec["ts"][:19], "%Y-%m-%dT%H:%M:%S"))
        self.assertLess(abs(when - time.time()), 120)
        # Free-form messages too: {"ts":...,"level":...,"msg":...}.
        ready = gw.wait_log(r'\{[^\n]*"msg":"[^\n]* ready \(GnuTLS[^\n]*\}').group(0)
        rec = json.loads(ready, object_pairs_hook=collections.OrderedDict)
        self.assertEqual(list(rec), ["ts", "level", "msg"])
        self.assertRegex(rec["ts"], "^%s$" % TS)

    def test_text_lines_start_with_rfc3339_ts(self):
        p = free_port()
        gw = self.gateway(self.conf(p), [p])
        self.session(p, "text.test")
        gw.wait_log(r"(?m)^%s mailgate-smtpd\[\d+\]: info: session=\S+ listener=local .*helo=text\.test"
                    % TS)

    def test_json_long_message_kept_whole(self):
        """A message longer than one value's 256-byte cap (a long listener
        name in "listener ... on ...") is written whole, as valid JSON."""
        p = free_port()
        name = "l" + "x" * 400
        gw = self.gateway(self.conf(p, extra='log_format = "json"', name=name), [p])
        line = gw.wait_log(r'(?m)^\{[^\n]*"msg":"listener [^\n]*$').group(0)
        rec = json.loads(line)
        self.assertEqual(rec["msg"], 'listener "%s" on 127.0.0.1:%d (plain)' % (name, p))
        self.assertNotIn("truncated", rec)

    # ---- log_target = "/path" ----

    def logdir(self, owner=NOBODY):
        d = self.tmp.file("logs")
        os.makedirs(d, exist_ok=True)
        os.chown(d, owner.pw_uid, owner.pw_gid)
        os.chmod(d, 0o755)
        return d

    def test_file_target_created_for_the_user_and_reopened_on_sigusr1(self):
        p = free_port()
        log = os.path.join(self.logdir(), "smtpd.log")
        pid, out, pidfile = self.detached(self.conf(p, '"%s"' % log))
        self.assertIn("mailgate-smtpd: logging to %s\n" % log, out)
        st = os.stat(log)
        self.assertEqual((st.st_mode & 0o777, st.st_uid), (0o640, NOBODY.pw_uid))
        self.session(p, "before.test")
        self.wait_file(log, r"helo=before\.test")
        # logrotate: rename, then SIGUSR1; the daemon (now nobody) creates
        # the new file in its folder.
        os.rename(log, log + ".1")
        os.kill(pid, signal.SIGUSR1)
        self.wait_file(log, r"SIGUSR1: log file '%s' reopened" % re.escape(log))
        self.session(p, "after.test")
        self.wait_file(log, r"helo=after\.test")
        with open(log + ".1") as f:
            old = f.read()
        self.assertIn("helo=before.test", old)
        self.assertNotIn("after.test", old)
        self.assertEqual(os.stat(log).st_mode & 0o777, 0o640)
        os.kill(pid, signal.SIGTERM)
        self.assertTrue(wait_gone(pid))
        self.wait_file(log, r"mailgate-smtpd stopped")

    def test_file_reopen_refused_keeps_the_old_file(self):
        """The new file cannot be opened (its name is now a folder): the
        master and the worker each say why, in the file they still have,
        and go on writing there."""
        p = free_port()
        log = os.path.join(self.logdir(pwd.getpwnam("root")), "smtpd.log")
        pid, out, _ = self.detached(self.conf(p, '"%s"' % log))
        os.rename(log, log + ".1")
        os.mkdir(log)
        os.kill(pid, signal.SIGUSR1)
        text = self.wait_file(log + ".1", r"(?s)(error: SIGUSR1: cannot reopen log file '%s': Is a directory.*){2}"
                              % re.escape(log))
        self.assertEqual(len(set(re.findall(r"\[(\d+)\]: error: SIGUSR1", text))), 2, text)
        self.session(p, "still.test")
        self.wait_file(log + ".1", r"helo=still\.test")
        self.assertEqual(os.listdir(log), [])

    def wait_file(self, path, pattern, timeout=10):
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            try:
                with open(path) as f:
                    text = f.read()
            except FileNotFoundError:
                text = ""
            if re.search(pattern, text):
                return text
            time.sleep(0.05)
        raise AssertionError("%s never matched %r:\n%s" % (path, pattern, text[-3000:]))

    def test_check_file_target(self):
        p = free_port()
        conf = self.conf(p, '"%s/nodir/smtpd.log"' % self.tmp.path)
        n = 1 + next(i for i, l in enumerate(conf.splitlines()) if l.startswith("log_target"))
        path = self.tmp.file("f.conf", conf)
        r = run("-t", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:%d: log_target: folder '%s/nodir' does not exist" % (path, n, self.tmp.path),
                      r.stderr)
        r = run("-t", "-c", self.tmp.file("g.conf", conf.replace("/nodir/smtpd.log", "")))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"g\.conf:%d: log_target: '%s' is not a regular file"
                         % (n, re.escape(self.tmp.path)))
        r = run("-t", "-c", self.tmp.file("h.conf", conf.replace('"%s/nodir/smtpd.log"' % self.tmp.path,
                                                                  '"mail.log"')))
        self.assertEqual(r.returncode, 1)
        self.assertIn("h.conf:%d: log_target: bad value 'mail.log' (expected syslog | stderr | "
                      "/path/to/file)" % n, r.stderr)
        # A folder root may write but nobody may not: a warning (SIGUSR1
        # after a rename could not create the file again).
        d = self.logdir(pwd.getpwnam("root"))
        r = run("-t", "-c", self.tmp.file("i.conf", conf.replace("nodir", "logs")))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("i.conf:%d: warning: log_target: user nobody cannot create files in '%s'" % (n, d),
                      r.stderr)
        os.chown(d, NOBODY.pw_uid, NOBODY.pw_gid)
        r = run("-t", "-c", self.tmp.file("j.conf", conf.replace("nodir", "logs")))
        self.assertEqual((r.returncode, r.stdout), (0, "configuration ok\n"), r.stderr)
        self.assertNotIn("log_target", r.stderr)

    # ---- stderr without -f ----

    def test_stderr_without_f_kept_when_not_a_terminal(self):
        """Started by a supervisor that reads a pipe (systemd's journal is
        a socket): the detached daemon's lines still reach it."""
        p = free_port()
        rfd, wfd = os.pipe()
        try:
            pid, _, pidfile = self.detached(self.conf(p), stderr=wfd)
        finally:
            os.close(wfd)
        self.addCleanup(os.close, rfd)
        got = self.read_until(rfd, r" ready \(GnuTLS")
        self.assertIn("mailgate-smtpd: logging to standard error (inherited)", got)
        self.session(p, "piped.test")
        self.read_until(rfd, r"helo=piped\.test", got)

    def test_stderr_journal_stream_named(self):
        """systemd says which socket is the journal (JOURNAL_STREAM)."""
        p = free_port()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        st = os.fstat(b.fileno())
        env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
        pidfile = self.tmp.file("j.pid")
        conf = self.tmp.file("j.conf", self.conf(p).replace("hostname =", 'pidfile = "%s"\nhostname ='
                                                            % pidfile, 1))
        proc = subprocess.Popen([SMTPD, "-c", conf], stderr=b.fileno(), stdout=subprocess.DEVNULL, env=env)
        b.close()
        self.assertEqual(proc.wait(30), 0)
        self.addCleanup(stop_by_pidfile, pidfile)
        got = self.read_until(a.fileno(), r" ready \(GnuTLS")
        self.assertIn("mailgate-smtpd: logging to standard error (the systemd journal)", got)

    def test_stderr_journal_stream_full_never_blocks(self):
        """The journal's socket full (journald not reading): sessions go
        on, lines that do not fit are dropped, and the first line through
        afterwards says how many."""
        p = free_port()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        pidfile = self.tmp.file("jf.pid")
        conf = self.tmp.file("jf.conf", self.conf(p).replace("hostname =", 'pidfile = "%s"\nhostname ='
                                                             % pidfile, 1))
        proc = subprocess.Popen([SMTPD, "-c", conf], stderr=b.fileno(), stdout=subprocess.DEVNULL)
        self.assertEqual(proc.wait(30), 0)
        self.addCleanup(stop_by_pidfile, pidfile)
        got = self.read_until(a.fileno(), r" ready \(GnuTLS")
        # Fill the stream from the daemon's end until nothing more fits
        # (MSG_DONTWAIT: O_NONBLOCK would be set on the daemon's stderr too).
        try:
            while True:
                b.send(b"x" * 4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        b.close()
        for _ in range(3):
            self.session(p, "stalled.test")	# each must end: nothing waits on the log
        a.setblocking(False)
        drained = b""
        try:
            while True:
                chunk = a.recv(1 << 20)
                if not chunk:
                    break
                drained += chunk
        except BlockingIOError:
            pass
        a.setblocking(True)
        self.session(p, "after.test")
        # The worker may have got a line in while we drained: keep it.
        got = self.read_until(a.fileno(), r"helo=after\.test", re.sub(rb"x{16,}", b"", drained).decode("utf-8", "replace"))
        m = re.search(r"warning: (\d+) log lines dropped: the reader of standard error was not reading", got)
        self.assertTrue(m, got[-3000:])
        self.assertGreaterEqual(int(m.group(1)), 3)
        self.assertLess(m.start(), got.index("helo=after.test"))

    def test_stderr_terminal_warns(self):
        p = free_port()
        conf = self.conf(p)
        n = 1 + next(i for i, l in enumerate(conf.splitlines()) if l.startswith("log_target"))
        path = self.tmp.file("t.conf", conf)
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        proc = subprocess.Popen([SMTPD, "-t", "-c", path], stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        out, _ = proc.communicate(timeout=30)
        self.assertEqual((proc.returncode, out), (0, "configuration ok\n"))
        err = self.read_until(master, r"journal\)")
        self.assertIn("%s:%d: warning: log_target = stderr without -f: stderr is this terminal" % (path, n),
                      err)
        # With -f the terminal is where the logs go: nothing to say.
        master2, slave2 = pty.openpty()
        self.addCleanup(os.close, master2)
        proc = subprocess.Popen([SMTPD, "-t", "-f", "-c", path], stdout=subprocess.PIPE, stderr=slave2,
                                text=True)
        os.close(slave2)
        proc.communicate(timeout=30)
        try:
            r, _, _ = select.select([master2], [], [], 0.5)
            text = os.read(master2, 65536).decode() if r else ""
        except OSError:
            text = ""
        self.assertNotIn("log_target", text)

    def read_until(self, fd, pattern, text="", timeout=10):
        deadline = time.time() + timeout
        while not re.search(pattern, text):
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("never read %r:\n%s" % (pattern, text[-3000:]))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError("EOF before %r:\n%s" % (pattern, text[-3000:]))
                text += chunk.decode("utf-8", "replace")
        return text

    # ---- syslog ----

    def test_syslog_facility_mail_and_missing_dev_log(self):
        """In a private mount namespace with its own /dev: without /dev/log
        -t warns; with a socket there, no warning, and the daemon's lines
        arrive at it with facility mail."""
        p = free_port()
        conf = self.tmp.file("s.conf", self.conf(p, '"syslog"').replace(
            "hostname =", 'pidfile = "%s"\nhostname =' % self.tmp.file("s.pid"), 1))
        res = run_with_private_dev(self, self.tmp, "syslog_ns.py", SYSLOG_NS, SMTPD, conf, p)
        n = 1 + next(i for i, l in enumerate(open(conf).read().splitlines()) if l.startswith("log_target"))
        self.assertEqual(res["check_without"][0], 0)
        self.assertIn("%s:%d: warning: log_target = syslog, but /dev/log: No such file or directory" % (conf, n),
                      res["check_without"][1])
        self.assertEqual(res["check_with"][0], 0)
        self.assertNotIn("/dev/log", res["check_with"][1])
        self.assertIn("mailgate-smtpd: logging to syslog (facility mail)", res["start_stderr"])
        # <22>: facility mail (2) * 8 + info (6); tagged with the program and pid.
        self.assertTrue(any(re.match(r"<22>.*mailgate-smtpd\[\d+\]: session=\S+ listener=local .*helo=ns\.test",
                                     m) for m in res["datagrams"]), res["datagrams"])

    def test_syslog_receiver_not_reading_never_blocks(self):
        """A syslog receiver that stops reading (its queue full) must not
        stop the worker: sessions go on, the lines that found the queue
        full are dropped, and the first line through says how many."""
        p = free_port()
        conf = self.tmp.file("s.conf", self.conf(p, '"syslog"').replace(
            "hostname =", 'pidfile = "%s"\nhostname =' % self.tmp.file("s.pid"), 1))
        res = run_with_private_dev(self, self.tmp, "syslog_full.py", SYSLOG_FULL, SMTPD, conf, p)
        # Every session was answered while nobody read the log socket.
        self.assertEqual(res["stalled_sessions"], ["221", "221", "221"], res)
        grams = res["datagrams"]
        dropped = [g for g in grams if re.search(r"<20>.*mailgate-smtpd\[\d+\]: warning: \d+ log lines "
                                                 r"dropped: the syslog receiver was not reading", g)]
        self.assertTrue(dropped, grams)
        after = [i for i, g in enumerate(grams) if "helo=after.test" in g]
        self.assertTrue(after, grams)
        self.assertLess(grams.index(dropped[0]), after[0], grams)
        # (The last stalled session's own end line may come after the
        # drain - the worker writes it after the 221 - so it is not
        # asserted either way.)


# Run by run_with_private_dev (a private /dev): -t runs without
# /dev/log, then with a datagram socket bound there, which then collects
# what the daemon sends during one session.
SYSLOG_NS = r'''
res = {}
r = subprocess.run([smtpd, "-t", "-c", conf], capture_output=True, text=True)
res["check_without"] = [r.returncode, r.stderr]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
r = subprocess.run([smtpd, "-t", "-c", conf], capture_output=True, text=True)
res["check_with"] = [r.returncode, r.stderr]
# Read from the start: a full queue (net.unix.max_dgram_qlen) would
# block the daemon's syslog() - the master and its worker both log.
grams = []
def collect():
    while True:
        grams.append(s.recv(65536))
threading.Thread(target=collect, daemon=True).start()
r = subprocess.run([smtpd, "-c", conf], capture_output=True, text=True)
res["start_stderr"] = r.stderr
session(b"ns.test")
stop_when_logged(grams, b"helo=ns.test")
res["datagrams"] = [g.decode("utf-8", "replace") for g in list(grams)]
print(json.dumps(res))
'''


# Same namespace set-up; the socket at /dev/log is filled to the brim and
# not read while three sessions run; then it is drained and one more
# session runs.
SYSLOG_FULL = r'''
res = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
r = subprocess.run([smtpd, "-c", conf], capture_output=True, text=True)

# Fill the receiver's queue (net.unix.max_dgram_qlen) from here.
filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
filler.connect("/dev/log")
filler.setblocking(False)
n = 0
while True:
    try:
        filler.send(b"<22>filler")
        n += 1
    except BlockingIOError:
        break
res["filled"] = n
try:
    res["stalled_sessions"] = [session(b"stalled.test") for _ in range(3)]
except Exception as e:
    res["stalled_sessions"] = repr(e)
grams = []
s.setblocking(False)
while True:
    try:
        g = s.recv(65536)
    except BlockingIOError:
        break
    if not g.startswith(b"<22>filler"):
        grams.append(g)    # the worker may have got a line in meanwhile
def collect():
    s.setblocking(True)
    while True:
        g = s.recv(65536)
        if not g.startswith(b"<22>filler"):
            grams.append(g)
threading.Thread(target=collect, daemon=True).start()
session(b"after.test")
stop_when_logged(grams, b"helo=after.test")
res["datagrams"] = [g.decode("utf-8", "replace") for g in list(grams)]
print(json.dumps(res))
'''


if __name__ == "__main__":
    main()
