"""Reproducers from the hostile review of the process model, the shared
admission counts, metrics from the master and the log file (7a624b6..1092741).
Each test fails on the reviewed code; each docstring says what the gateway
should do instead. Several tests play a compromised worker (remote code
execution in the unprivileged process that parses client input): the test,
as root, does to the worker's own memory and descriptors only what code
running in that worker could do itself - write to its view of the shared
mappings, write to its end of the control socket, plant a symlink in a
folder its user may write.

  1. WorkerVsMaster.test_shared_admission_header_crashes_master: the root
     master takes the admission region's layout (per_slot, offsets) from
     memory every worker can write; one write and one worker exit kill it.
  2. WorkerVsMaster.test_shared_metrics_header_crashes_master: same for the
     metrics region (capacity), at the next scrape.
  3. WorkerVsMaster.test_worker_holding_admission_lock_wedges_master: the
     robust mutex only helps when its holder dies; a worker that holds it
     and lives on freezes the master (no restarts, no SIGTERM).
  4. WorkerVsMaster.test_fatal_message_forges_master_log_lines: the 'F'
     text a worker sends is written raw into the master's log.
  5. LogFile.test_reopen_follows_symlink_planted_by_worker_user: the root
     master's SIGUSR1 reopen follows a symlink the worker user put in its
     log folder, and appends to any root file.
  6. LogFile.test_restart_under_shipped_unit_capabilities: under the
     shipped systemd unit (no CAP_DAC_OVERRIDE) the master cannot open the
     log file it gave to `user` at the previous start: the next start fails.
  7. Scrape.test_scrape_in_flight_survives_reload: every fork frees the
     master's scrapes in the child with a lingering close - shutdown() on
     the master's socket - so a scrape in flight during a reload or a
     worker restart gets an empty reply.
  8. Reload.test_raising_max_connections, test_raising_workers: the
     admission region is sized once, from the first configuration: a
     reload that raises max_connections refuses the sessions beyond the
     old per-worker capacity as "table-full", and one that raises workers
     starts fewer than asked.
  9. Reload.test_failed_reload_leaves_new_listener_bound: a reload that
     could start no worker keeps the new listener bound - clients connect
     and hang.
 10. Reload.test_sighup_during_startup: a reload that completes before the
     first generation is ready leaves the master "not started" for good:
     no ready notice (a detached parent waits forever) and the next worker
     death stops the whole daemon.
 11. Listeners.test_sixty_five_listeners: the 65th listener refuses every
     client (table-full), and nothing says so at start.
"""
import ctypes
import os
import pwd
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.request

from mgtest import (SMTPD, SRCDIR, GatewayTest, Smtp, children, free_port, listener, main,
                    smtpd_conf, stop_by_pidfile, worker_pids)

LOCAL = 'relay_networks = "127.0.0.1/32"'
NOBODY = pwd.getpwnam("nobody")


# ---- a compromised worker's reach, from the outside ----

def shared_mappings(pid):
    """(lo, hi) of the MAP_SHARED anonymous mappings of pid."""
    out = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            if parts[1].startswith("rw") and parts[1].endswith("s") and "/dev/zero" in line:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def peek(pid, addr, n):
    with open("/proc/%d/mem" % pid, "rb", 0) as m:
        m.seek(addr)
        return m.read(n)


def poke(pid, addr, data):
    with open("/proc/%d/mem" % pid, "r+b", 0) as m:
        m.seek(addr)
        m.write(data)


# struct admission on x86-64 glibc: pthread_mutex_t (40 bytes), then
# size_t map_size, unsigned nslots, size_t per_slot, size_t cap, ...
ADM_LOCK, ADM_MAP_SIZE, ADM_PER_SLOT = 0, 40, 56
METRICS_MAGIC = 0x4d47544d


def admission_region(pid):
    for lo, hi in shared_mappings(pid):
        size = struct.unpack("<Q", peek(pid, lo + ADM_MAP_SIZE, 8))[0]
        if 0 < size <= hi - lo < size + 4096:
            return lo
    raise AssertionError("no admission region in worker %d" % pid)


def metrics_region(pid):
    for lo, hi in shared_mappings(pid):
        if struct.unpack("<I", peek(pid, lo, 4))[0] == METRICS_MAGIC:
            return lo
    raise AssertionError("no metrics region in worker %d" % pid)


def steal_fd(pid, fd):
    """A copy of descriptor fd of process pid (pidfd_getfd, Linux 5.6)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        n = libc.syscall(438, pidfd, fd, 0)
        if n < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return n
    finally:
        os.close(pidfd)


def unix_stream_fds(pid):
    """The descriptors of pid that are AF_UNIX stream sockets."""
    inodes = {}
    with open("/proc/%d/net/unix" % pid) as f:
        next(f)
        for line in f:
            parts = line.split()
            inodes[parts[6]] = parts[4]    # inode -> type (0001 = stream)
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m and inodes.get(m.group(1)) == "0001":
            out.append(int(fd))
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except OSError:
        return False


class Base(GatewayTest):
    def start(self, listener_extra="", extra="", workers=1, port=None):
        self.up = getattr(self, "up", None) or self.sink()
        self.port = port or free_port()
        self.conf = smtpd_conf(self.pki, self.up.port,
                               listener("local", self.port, "none", LOCAL + "\n" + listener_extra),
                               extra="workers = %d\n%s" % (workers, extra))
        self.gw = self.gateway(self.conf, [self.port])
        return worker_pids(self.gw.proc.pid, workers)

    def reload(self, conf):
        gw = self.gw
        with open(gw.conf_path, "w") as f:
            f.write(conf)
        n = gw.log().count("SIGHUP: reloading")
        os.kill(gw.proc.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while gw.log().count("SIGHUP: reloading") <= n:
            self.assertLess(time.time(), deadline)
            time.sleep(0.02)

    def wait_count(self, text, n, timeout=15):
        deadline = time.time() + timeout
        while self.gw.log().count(text) < n:
            self.assertLess(time.time(), deadline, "%r never logged %d times:\n%s"
                            % (text, n, self.gw.log()[-3000:]))
            time.sleep(0.02)

    def session(self, port=None):
        c = Smtp(port or self.port)
        return c, c.reply()

    def master_restarts(self, killed, timeout=8):
        """True once the master runs a new worker in place of killed."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not alive(self.gw.proc.pid):
                return False
            kids = [k for k in children(self.gw.proc.pid) if k != killed and alive(k)]
            if kids and "worker 1 (generation 1) started" in self.gw.log().split("killed by signal")[-1]:
                return True
            time.sleep(0.05)
        return False


class WorkerVsMaster(Base):
    def test_shared_admission_header_crashes_master(self):
        """A worker writes its view of the shared admission region (here
        per_slot, the size of every process's list of held admissions),
        then exits: the root master, reaping its slot, walks the lists with
        the worker's numbers and crashes - every listener goes down.

        Wanted: the master keeps the layout (nslots, per_slot, offsets,
        cap, map_size) in its private memory, bounds every index it reads
        from the region (held[].listener), and survives any content."""
        (w,) = self.start()
        base = admission_region(w)
        poke(w, base + ADM_PER_SLOT, struct.pack("<Q", 1 << 40))
        os.kill(w, signal.SIGKILL)
        self.assertTrue(self.master_restarts(w), "the master died reaping a worker:\n"
                        + self.gw.log()[-3000:])
        c, r = self.session()
        self.assertEqual(r[0], 220)

    def test_shared_metrics_header_crashes_master(self):
        """A worker rewrites the metrics region's capacity: the master's
        next scrape walks that many series past the end of the mapping and
        the master crashes.

        Wanted: the master renders from a capacity it keeps privately (and
        treats every name in the region as untrusted bytes)."""
        pm = free_port()
        (w,) = self.start(extra='metrics = "127.0.0.1:%d"' % pm)
        base = metrics_region(w)
        poke(w, base + 4, struct.pack("<I", 1 << 30))
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % pm, timeout=10) as r:
                r.read()
        except OSError:
            pass
        time.sleep(0.5)
        self.assertTrue(alive(self.gw.proc.pid), "the master died rendering a scrape:\n"
                        + self.gw.log()[-3000:])

    def test_worker_holding_admission_lock_wedges_master(self):
        """A worker holds the shared admission mutex and does not die
        (compromised; or stopped by SIGSTOP or a debugger; or blocked in a
        log write - admission_admit logs under the lock). Here worker A's
        view of the mutex gets A's thread id, as pthread_mutex_lock would
        write it. Another worker then dies: the master blocks in
        admission_reap for good - no restart, no SIGTERM, no scrape.

        Wanted: the master never waits on a lock a worker can hold (it
        reaps with a trylock and retries from a timer, or the counts move
        to the master), and a lock held too long is detected and logged."""
        a, b = self.start(workers=2)
        base = admission_region(a)
        poke(a, base + ADM_LOCK, struct.pack("<i", a))
        os.kill(b, signal.SIGKILL)
        deadline = time.time() + 8
        restarted = False
        while time.time() < deadline and not restarted:
            restarted = any(k not in (a, b) for k in children(self.gw.proc.pid))
            time.sleep(0.05)
        os.kill(self.gw.proc.pid, signal.SIGTERM)
        try:
            self.gw.proc.p.wait(10)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
        finally:
            for k in children(self.gw.proc.pid) + [a]:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.assertEqual((restarted, stopped), (True, True),
                         "(dead worker started again, master stopped on SIGTERM)")

    def test_fatal_message_forges_master_log_lines(self):
        """A worker writes 'F' and text with a line feed to its control
        socket, then exits: the master appends the text to its own
        "worker ... exited" line raw, so the worker writes whole lines of
        its choosing into the root master's log (with the symlink of
        test_reopen_follows_symlink_planted_by_worker_user, into any root
        file - an /etc/passwd line).

        Wanted: the master escapes what a worker says (log_escape_value:
        \\x0a), as every client-supplied value already is."""
        (w,) = self.start()
        fds = unix_stream_fds(w)
        self.assertEqual(len(fds), 1, "the worker's control socket: %s" % fds)
        ctl = steal_fd(w, fds[0])
        forged = "2030-01-01T00:00:00.000Z mailgate-smtpd[1]: notice: FORGED by the worker"
        os.write(ctl, b"F\n" + forged.encode() + b"\n")
        os.close(ctl)
        time.sleep(0.3)
        os.kill(w, signal.SIGKILL)
        self.gw.wait_log(r"killed by signal 9")
        time.sleep(0.3)
        lines = [l for l in self.gw.log().splitlines() if l.startswith("2030-01-01T")]
        self.assertEqual(lines, [], "a worker forged master log lines")


class LogFile(Base):
    def detached(self, conf, name="d", wrapper=()):
        pidfile = self.tmp.file(name + ".pid")
        path = self.tmp.file(name + ".conf", conf.replace("hostname =", 'pidfile = "%s"\nhostname ='
                                                          % pidfile, 1))
        r = subprocess.run([*wrapper, SMTPD, "-c", path], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            return None, r, pidfile
        deadline = time.time() + 5
        while True:
            try:
                with open(pidfile) as f:
                    pid = int(f.read())
                break
            except (FileNotFoundError, ValueError):
                self.assertLess(time.time(), deadline, "no pidfile")
                time.sleep(0.05)
        self.addCleanup(stop_by_pidfile, pidfile)
        return pid, r, pidfile

    def file_conf(self, port, log):
        self.up = getattr(self, "up", None) or self.sink()
        conf = smtpd_conf(self.pki, self.up.port, listener("local", port, "none", LOCAL))
        return conf.replace('log_target = "stderr"', 'log_target = "%s"' % log)

    def wait_file(self, path, pattern, timeout=10):
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            try:
                with open(path, errors="replace") as f:
                    text = f.read()
            except FileNotFoundError:
                text = ""
            if re.search(pattern, text):
                return text
            time.sleep(0.05)
        raise AssertionError("%s never matched %r:\n%s" % (path, pattern, text[-3000:]))

    def test_reopen_follows_symlink_planted_by_worker_user(self):
        """The log folder belongs to the worker's user (the set-up the
        reopen error message and README suggest so that SIGUSR1 can create
        the new file). The worker user renames the log, as logrotate
        would, and puts a symlink to a root-only file in its place; at
        SIGUSR1 the root master opens the symlink and appends its lines
        (and with test 4 lines of the worker's choosing) to that file.

        Wanted: the master reopens with O_NOFOLLOW, and refuses a file it
        did not create that is not owned by root or the worker user (or
        it leaves the reopen to a process that has dropped privileges)."""
        logs = self.tmp.file("logs")
        os.makedirs(logs)
        os.chown(logs, NOBODY.pw_uid, NOBODY.pw_gid)
        os.chmod(logs, 0o755)
        victim = self.tmp.file("victim", "root-only secret\n", mode=0o600)
        log = os.path.join(logs, "smtpd.log")
        p = free_port()
        pid, r, _ = self.detached(self.file_conf(p, log))
        self.assertIsNotNone(pid, r.stderr)
        subprocess.run(["setpriv", "--reuid=%d" % NOBODY.pw_uid, "--regid=%d" % NOBODY.pw_gid,
                        "--clear-groups", "sh", "-c", 'mv "$1" "$1.1" && ln -s "$2" "$1"', "sh",
                        log, victim], check=True)
        os.kill(pid, signal.SIGUSR1)
        self.wait_file(log + ".1", r"SIGUSR1")
        time.sleep(0.5)
        with open(victim) as f:
            self.assertEqual(f.read(), "root-only secret\n", "the root master wrote through a symlink")

    def unit_capabilities(self):
        with open(os.path.join(SRCDIR, "etc", "mailgate-smtpd.service.in")) as f:
            unit = f.read()
        caps = re.search(r"(?m)^CapabilityBoundingSet=(.*)$", unit).group(1).split()
        self.assertIn("NoNewPrivileges=yes", unit)
        return ["setpriv", "--no-new-privs", "--bounding-set",
                "-all," + ",".join("+" + c[4:].lower() for c in caps)]

    def test_restart_under_shipped_unit_capabilities(self):
        """mailgate-smtpd.service keeps the master root but bounds its
        capabilities to CapabilityBoundingSet= (no CAP_DAC_OVERRIDE). At
        the first start the master creates log_target's file and gives it
        to `user` (0640); at the next start (systemctl restart, a reboot)
        root without CAP_DAC_OVERRIDE may not write that file: ExecStartPre
        -t fails and so does the start. (SIGUSR1 after logrotate's
        "create 0640 nobody ..." fails in the master the same way.)

        Wanted: the master keeps a file it can write (created root-owned
        and group-writable for the worker's group, or the unit grants
        what the chown scheme needs), and -t says so."""
        wrapper = self.unit_capabilities()
        logs = self.tmp.file("logs")     # /var/log/mailgate: root's, 0755
        os.makedirs(logs)
        os.chmod(logs, 0o755)
        log = os.path.join(logs, "smtpd.log")
        p = free_port()
        conf = self.file_conf(p, log)
        pid, r, pidfile = self.detached(conf, "first", wrapper)
        self.assertIsNotNone(pid, r.stderr)
        self.assertEqual(os.stat(log).st_uid, NOBODY.pw_uid)
        stop_by_pidfile(pidfile)
        check = subprocess.run([*wrapper, SMTPD, "-t", "-c", self.tmp.file("first.conf")],
                               capture_output=True, text=True, timeout=30)
        pid, r, _ = self.detached(conf, "second", wrapper)
        self.assertIsNotNone(pid, "the second start under the unit's capabilities failed:\n"
                             + r.stderr)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


class Scrape(Base):
    def test_scrape_in_flight_survives_reload(self):
        """Prometheus scrapes while the operator reloads (or while a worker
        is restarted). forget_in_child() frees the master's scrapes in the
        new worker with conn_free(), whose lingering close calls
        shutdown(SHUT_WR) and recv() on the socket the master still
        serves: the scraper gets FIN before its response, the master's
        reply is lost, and the worker keeps the master's socket.

        Wanted: a child closes inherited descriptors with close() only
        (no shutdown, no reads, no lingering), or the master forks its
        workers from a process that holds no scrapes."""
        pm = free_port()
        self.start(extra='metrics = "127.0.0.1:%d"' % pm)
        s = socket.create_connection(("127.0.0.1", pm), timeout=10)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)     # accepted and read by the master
        self.reload(self.conf)
        self.wait_count("reload done", 1)
        s.sendall(b"\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), "scrape during a reload got %r" % data[:200])
        self.assertIn(b"mailgate_workers", data)


class Reload(Base):
    def test_raising_max_connections(self):
        """max_connections = 2, then a reload with max_connections = 5:
        the new worker's admission slot still holds 2 sessions (per_slot
        is sized once, at start, from the first configuration), so the
        third client is refused "421 Too many connections" with
        reason=table-full.

        Wanted: a reload that needs more than the region holds either
        maps a new region for the new generation or refuses the reload
        with a message; README promises the configuration is read again."""
        self.start("max_connections = 2\n  max_per_ip = 100")
        self.reload(self.conf.replace("max_connections = 2", "max_connections = 5"))
        self.wait_count("reload done", 1)
        held = []
        for i in range(4):
            c, r = self.session()
            held.append(c)
            self.assertEqual(r[0], 220, "session %d of max_connections = 5 refused: %s\n%s"
                             % (i + 1, r, self.gw.log()[-1500:]))

    def test_raising_workers(self):
        """workers = 1, then a reload with workers = the CPU count: the
        shared counts are sized at start for at least one worker per CPU,
        so it is done with that many. A reload asking more than they hold
        is refused with a clear message, and the running workers stay.
        (Found: the region had room for the first configuration's workers
        only, and the reload was reported done with fewer workers than
        asked, blaming "too many generations draining".)"""
        cpus = os.cpu_count() or 1
        self.start()
        self.reload(self.conf.replace("workers = 1", "workers = %d" % cpus))
        self.wait_count("reload done", 1)
        done = re.search(r"reload done: .*", self.gw.log()).group(0)
        self.assertIn("generation 2 serves with %d worker(s)" % cpus, done)
        self.reload(self.conf.replace("workers = 1", "workers = %d" % (cpus + 3)))
        self.gw.wait_log(r"reload failed: workers = %d is more than the %d this master sized its "
                         r"shared counts for at start; restart to apply it" % (cpus + 3, cpus))
        self.assertEqual(self.gw.log().count("reload done"), 1)

    def test_failed_reload_leaves_new_listener_bound(self):
        """workers = 1 gives the admission region 4 process slots. With a
        session held in each generation (draining for shutdown_timeout), the
        fourth reload finds no slot: "reload failed: no worker could be
        started; the running configuration stays" - but the listener that
        reload added stays bound, and clients connecting to it hang (no
        worker accepts there) instead of being refused.

        Wanted: a reload that starts no worker undoes its bindings as the
        other failure paths do (bindings_apply with the running
        configuration, then bindings_prune)."""
        self.start(extra="shutdown_timeout = 120")
        slots = 4 * (os.cpu_count() or 1)     # ADMISSION_GENERATIONS x a worker per CPU
        held = []
        for gen in range(1, slots):
            c, r = self.session()
            self.assertEqual(r[0], 220)
            c.expect("EHLO held%d.test" % gen, 250)
            c.expect("MAIL FROM:<a@test.example>", 250)
            held.append(c)
            self.reload(self.conf)
            self.wait_count("reload done", gen)
            self.wait_count("reload: no new connections", gen)
        c, r = self.session()     # generation 4 holds one too
        self.assertEqual(r[0], 220)
        held.append(c)
        extra_port = free_port()
        self.reload(self.conf + listener("added", extra_port, "none", LOCAL))
        self.gw.wait_log(r"reload failed: no worker could be started")
        try:
            s = socket.create_connection(("127.0.0.1", extra_port), timeout=2)
        except ConnectionRefusedError:
            return
        s.settimeout(2)
        try:
            greeting = s.recv(100)
        except socket.timeout:
            greeting = b"(nothing: the connection hangs)"
        s.close()
        self.fail("the failed reload's listener accepts connections: %r" % greeting)

    def test_sighup_during_startup(self):
        """SIGHUP while the first workers are still starting (systemd's
        ExecReload, logrotate, configuration management right after a
        start). When the reload's workers are ready before the first
        generation is, the switch happens and the master never sets
        m.started: no "ready" notice (a detached parent - systemd's
        Type=forking - waits until it times out), and the next worker
        death is taken for a start-up failure that stops the daemon.
        Here the first generation's worker is slow to drop privileges
        (an LD_PRELOAD getpwnam() that sleeps in the first process that
        calls it).

        Wanted: whichever generation becomes ready first completes the
        start-up (process_ready, m.started), or SIGHUP is deferred until
        the start-up is complete."""
        shim_c = self.tmp.file("slowpw.c", r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>
/* The first process to look a user up (generation 1's worker) takes
 * the flag and is slow; the others are not. */
struct passwd *getpwnam(const char *name)
{
	static struct passwd *(*real)(const char *);
	const char *flag = getenv("SLOWPW_FLAG");
	if (!real)
		real = (struct passwd *(*)(const char *))dlsym(RTLD_NEXT, "getpwnam");
	if (flag && unlink(flag) == 0)
		sleep(5);
	return real(name);
}
""")
        shim = self.tmp.file("slowpw.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", shim, shim_c, "-ldl"], check=True)
        flag = self.tmp.file("slow", "")
        self.up = self.sink()
        self.port = free_port()
        self.conf = smtpd_conf(self.pki, self.up.port, listener("local", self.port, "none", LOCAL))
        conf_path = self.tmp.file("startup.conf", self.conf)
        log_path = self.tmp.file("startup.log")
        env = dict(os.environ, LD_PRELOAD=shim, SLOWPW_FLAG=flag,
                   ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=0")
        with open(log_path, "ab") as f:
            p = subprocess.Popen([SMTPD, "-f", "-c", conf_path], stdout=f, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait()))

        def log():
            with open(log_path, errors="replace") as f:
                return f.read()

        deadline = time.time() + 15
        while "worker 1 (generation 1) started" not in log():
            self.assertLess(time.time(), deadline, log())
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGHUP)
        while "reload done" not in log() and " ready (GnuTLS" not in log():
            self.assertLess(time.time(), deadline, log())
            time.sleep(0.02)
        deadline = time.time() + 8     # generation 1's worker wakes up, drains, exits
        while "worker 1 (generation 1, pid" not in log() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        ready = " ready (GnuTLS" in log()
        kids = children(p.pid)
        c = Smtp(self.port)
        self.assertEqual(c.reply()[0], 220)
        c.expect("QUIT", 221)
        for k in kids:
            os.kill(k, signal.SIGKILL)
        time.sleep(2.0)
        survived = p.poll() is None
        self.assertEqual((ready, survived), (True, True),
                         "(start-up completed, master survived a worker's death):\n" + log()[-3000:])


class Listeners(Base):
    def test_sixty_five_listeners(self):
        """A configuration with 65 listeners (several services on several
        addresses, or listener names changed by reloads over a master's
        lifetime: the region remembers 64 names for good). The 65th gets
        no admission key: every client is refused "421 Too many
        connections", reason=table-full, and neither -t nor the start says
        anything.

        Wanted: as many keys as listeners (names of dropped listeners
        recycled), or -t and the start refuse what the region cannot
        count."""
        self.up = self.sink()
        ports = [free_port() for _ in range(65)]
        ls = "".join(listener("l%02d" % i, p, "none", LOCAL) for i, p in enumerate(ports))
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port, ls), ports)
        c = Smtp(ports[-1])
        r = c.reply()
        self.assertEqual(r[0], 220, "the 65th listener refused a client: %s\n%s"
                         % (r, self.gw.log()[-1000:]))


if __name__ == "__main__":
    main()
