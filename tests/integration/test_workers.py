"""The master and its workers, against real clients and a real smtp-sink:
workers = 4 gives four worker processes that share the load; a worker
killed with SIGKILL mid-session costs only its own sessions (another
worker's session finishes its message) and is started again, with a
growing back-off while it keeps dying young; max_connections, max_per_ip
and rate_per_ip hold across all workers (and a killed worker's sessions
stop counting); (tickets across workers and reloads: test_reload.py)."""
import os
import re
import signal
import time

from mgtest import GatewayTest, Smtp, free_port, listener, main, message, smtpd_conf, worker_pids

LOCAL = 'relay_networks = "127.0.0.1/32"'


def session_pids(log):
    """The pids that logged a session end."""
    return set(int(m) for m in re.findall(r"mailgate-smtpd\[(\d+)\]: info: session=", log))


class Workers(GatewayTest):
    def start(self, workers, listener_extra="", extra=""):
        self.up = self.sink()
        self.port = free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port,
                                          listener("local", self.port, "none", LOCAL + "\n" + listener_extra),
                                          extra="workers = %d\n%s" % (workers, extra)), [self.port])
        return worker_pids(self.gw.proc.pid, workers)

    def quit_session(self):
        c = Smtp(self.port)
        code = c.reply()[0]
        if code == 220:
            c.expect("QUIT", 221)
        return code

    def test_four_workers_share_the_load(self):
        pids = self.start(4)
        self.assertEqual(len(set(pids)), 4)
        self.gw.wait_log(r"ready \(GnuTLS [^)]*\), 4 worker\(s\)")
        # Every worker accepts from the shared socket: with the three others
        # stopped, a new session is served by the one left. (Which worker
        # wins a race is the scheduler's choice: on an idle machine one
        # worker may well take every sequential connection.)
        for pid in pids:
            others = [p for p in pids if p != pid]
            for p in others:
                os.kill(p, signal.SIGSTOP)
            try:
                self.assertEqual(self.quit_session(), 220)
            finally:
                for p in others:
                    os.kill(p, signal.SIGCONT)
        deadline = time.time() + 5
        while len(session_pids(self.gw.log())) < 4 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(session_pids(self.gw.log()), set(pids))
        # And a burst held open at once is served (by whichever workers).
        held = [Smtp(self.port) for _ in range(24)]
        for c in held:
            self.assertEqual(c.reply()[0], 220)
        for c in held:
            c.expect("QUIT", 221)

    def test_killed_worker_costs_only_its_sessions(self):
        pids = self.start(2, "max_per_ip = 100")
        # One session per worker: keep opening until both workers hold one.
        by_pid = {}
        deadline = time.time() + 20
        while len(by_pid) < 2 and time.time() < deadline:
            c = Smtp(self.port)
            c.reply()
            c.expect("EHLO k.test", 250)
            # Which worker? The one whose fd table has our connection.
            local = c.sock.getsockname()
            owner = owner_of(pids, local)
            if owner and owner not in by_pid:
                by_pid[owner] = c
            else:
                c.expect("QUIT", 221)
        self.assertEqual(len(by_pid), 2, "could not get a session on each worker")
        victim, survivor = pids[0], pids[1]
        doomed, alive = by_pid[victim], by_pid[survivor]
        alive.expect("MAIL FROM:<a@test.example>", 250)
        alive.expect("RCPT TO:<user@example.org>", 250)
        os.kill(victim, signal.SIGKILL)
        # The survivor's transaction completes; the victim's client sees a close.
        alive.expect("DATA", 354)
        alive.send(message("survives") + b".\r\n")
        self.assertEqual(alive.reply()[0], 250)
        alive.expect("QUIT", 221)
        self.assertTrue(doomed.closed())
        self.assertEqual(len(self.up.wait_messages(1)), 1)
        # The master starts a new worker in its place.
        self.gw.wait_log(r"worker \d \(pid %d\) killed by signal 9; starting it again" % victim)
        new = worker_pids(self.gw.proc.pid, 2)
        self.assertIn(survivor, new)
        self.assertNotIn(victim, new)
        self.assertEqual(self.quit_session(), 220)

    def test_crash_loop_backs_off(self):
        self.start(1)
        # Kill the worker again and again right after each start: the
        # master waits longer each time instead of spinning.
        rx = re.compile(r"keeps dying young: next start in ([\d.]+) s")
        seen = []
        for n in range(1, 4):
            pid = worker_pids(self.gw.proc.pid, 1, timeout=30)[0]
            os.kill(pid, signal.SIGKILL)
            deadline = time.time() + 10
            while len(rx.findall(self.gw.log())) < n:
                self.assertLess(time.time(), deadline, self.gw.log()[-2000:])
                time.sleep(0.05)
            seen = [float(x) for x in rx.findall(self.gw.log())]
        self.assertEqual(seen, sorted(seen))
        self.assertLess(seen[0], seen[-1])
        # ... and it does come back.
        worker_pids(self.gw.proc.pid, 1, timeout=30)

    def test_max_per_ip_across_workers(self):
        self.start(4, "max_per_ip = 3")
        held = []
        for _ in range(3):
            c = Smtp(self.port)
            self.assertEqual(c.reply()[0], 220)
            held.append(c)
        for _ in range(3):    # whichever worker takes it, the fourth is over the limit
            c = Smtp(self.port)
            self.assertEqual(c.reply(), (421, ["421 4.7.0 Too many connections"]))
        self.gw.wait_log(r"reason=max_per_ip result=limit")
        held.pop().expect("QUIT", 221)
        time.sleep(0.2)
        self.assertEqual(self.quit_session(), 220)
        for c in held:
            c.expect("QUIT", 221)

    def test_max_connections_across_workers(self):
        self.start(4, "max_connections = 5\nmax_per_ip = 100")
        held = []
        for _ in range(5):
            c = Smtp(self.port)
            self.assertEqual(c.reply()[0], 220)
            held.append(c)
        c = Smtp(self.port)
        self.assertEqual(c.reply()[0], 421)
        self.gw.wait_log(r"reason=max_connections result=limit")
        for c in held:
            c.expect("QUIT", 221)

    def test_killed_workers_sessions_stop_counting(self):
        pids = self.start(1, "max_per_ip = 2")
        held = [Smtp(self.port), Smtp(self.port)]
        for c in held:
            self.assertEqual(c.reply()[0], 220)
        self.assertEqual(self.quit_session(), 421)
        os.kill(pids[0], signal.SIGKILL)
        worker_pids(self.gw.proc.pid, 1)
        deadline = time.time() + 10
        while self.quit_session() != 220:
            self.assertLess(time.time(), deadline, "the dead worker's sessions still count")
            time.sleep(0.1)

    def test_rate_per_ip_across_workers(self):
        self.start(4, "rate_per_ip = 5\nmax_per_ip = 100")
        codes = [self.quit_session() for _ in range(8)]
        self.assertEqual(codes, [220] * 5 + [421] * 3)
        self.gw.wait_log(r"reason=rate_per_ip result=limit")


def owner_of(pids, local):
    """The worker pid holding the server side of a connection whose client
    end is local (matched through /proc/PID/net/tcp inode ownership)."""
    inode = None
    port = "%04X" % local[1]
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            # the gateway's end: remote address is our local port
            if parts[2].endswith(":" + port) and parts[3] == "01":
                inode = parts[9]
    if not inode:
        return None
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "socket:[%s]" % inode:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


if __name__ == "__main__":
    main()
