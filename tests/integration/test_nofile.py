"""The open-file limit (DESIGN.md §3): the daemon raises RLIMIT_NOFILE to
fit 2 x max_connections + 64 (plus the lingering closes); when raising the
hard limit is refused it takes the soft limit up to the hard one, logs how
many sessions fit, and -t warns. Started with prlimit and without
CAP_SYS_RESOURCE (setpriv drops it from the bounding set, so root cannot
raise a hard limit either), then many sessions at once must all be
served."""
import os
import re
import shutil
import subprocess
import time

from mgtest import SMTPD, GatewayTest, Smtp, free_port, listener, main, smtpd_conf

LINGER = 1024     # CONN_LINGER_MAX
RESERVE = 64      # FDLIMIT_RESERVE


def limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        m = re.search(r"Max open files\s+(\d+)\s+(\d+)", f.read())
    return int(m.group(1)), int(m.group(2))


def can_raise_hard():
    with open("/proc/self/status") as f:
        eff = int(re.search(r"CapEff:\s+([0-9a-f]+)", f.read()).group(1), 16)
    return bool(eff & (1 << 24))    # CAP_SYS_RESOURCE


class Nofile(GatewayTest):
    def setUp(self):
        super().setUp()
        for tool in ("prlimit", "setpriv"):
            if not shutil.which(tool):
                self.skipTest("missing " + tool)
        self.up = self.sink()

    def conf(self, port, max_connections):
        return smtpd_conf(self.pki, self.up.port, listener(
            "local", port, "none", "max_connections = %d\n  max_per_ip = %d" % (max_connections,
                                                                                 max_connections)))

    def limited(self, soft, hard, no_raise=True):
        argv = ["prlimit", "--nofile=%d:%d" % (soft, hard)]
        if no_raise:
            argv += ["setpriv", "--bounding-set=-sys_resource"]
        return argv

    def start(self, conf, port, wrapper):
        return self.gateway(conf, [port], wrapper=wrapper)

    def test_soft_limit_raised_to_the_hard_one_when_hard_refused(self):
        p = free_port()
        gw = self.start(self.conf(p, 10000), p, self.limited(64, 256))
        # 150 sessions at once. With the soft limit left at 64 they
        # stalled from about the 55th ("Too many open files" every second).
        # Now the soft limit is the hard one, and what does not fit (two
        # descriptors a session, the reserve and an eighth of the limit
        # kept for lingering closes) is refused with a reply, not stalled.
        fit = (256 - 256 // 8 - RESERVE) // 2
        clients = []
        for i in range(150):
            c = Smtp(p, timeout=10)
            clients.append(c)
        codes = [c.reply()[0] for c in clients]
        self.assertEqual(codes, [220] * fit + [421] * (150 - fit))
        for c in clients:
            c.close()
        self.assertEqual(limits(gw.proc.pid), (256, 256))
        gw.wait_log(r"warning: open-file limit 256 \(hard limit 256; raising it to %d was refused\): "
                    r"about %d sessions fit, not the 10000 of max_connections"
                    % (2 * 10000 + RESERVE + LINGER, fit))
        deadline = time.time() + 10
        while True:     # the refused and closed sessions are given back
            c = Smtp(p, timeout=10)
            code = c.reply()[0]
            c.close()
            if code == 220:
                break
            self.assertLess(time.time(), deadline, "no session after the others closed")
            time.sleep(0.1)

    def test_check_warns_when_max_connections_cannot_fit(self):
        p = free_port()
        path = self.tmp.file("c.conf", self.conf(p, 10000))
        r = subprocess.run([*self.limited(64, 256), SMTPD, "-t", "-c", path], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout), (0, "configuration ok\n"), r.stderr)
        # FILE:LINE (in the listener section that asks for the connections).
        lines = open(path).read().split("\n")
        first = next(i for i, t in enumerate(lines, 1) if t.startswith("listener"))
        m = re.search(r"^%s:(\d+): warning: max_connections = 10000 \(over all listeners\) needs %d open "
                      r"files, but the limit can only be raised to 256 \(hard limit 256\): about %d "
                      r"sessions fit" % (re.escape(path), 2 * 10000 + RESERVE, (256 - RESERVE) // 2),
                      r.stderr, re.M)
        self.assertTrue(m, r.stderr)
        self.assertIn(int(m.group(1)), range(first, first + 6), r.stderr)
        # What fits gives no warning.
        path = self.tmp.file("d.conf", self.conf(p, 50))
        r = subprocess.run([*self.limited(64, 256), SMTPD, "-t", "-c", path], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout), (0, "configuration ok\n"), r.stderr)
        self.assertNotIn("max_connections", r.stderr)

    def test_soft_limit_raised_under_the_hard_one(self):
        p = free_port()
        gw = self.start(self.conf(p, 50), p, self.limited(64, 4096))
        self.assertEqual(limits(gw.proc.pid), (2 * 50 + RESERVE + LINGER, 4096))
        gw.wait_log(r"open-file limit %d: room for max_connections = 50" % (2 * 50 + RESERVE + LINGER))
        self.assertNotIn("warning: open-file limit", gw.log())

    def test_hard_limit_raised_as_root(self):
        if os.geteuid() != 0 or not can_raise_hard():
            self.skipTest("raising a hard limit needs root with CAP_SYS_RESOURCE (this machine: %s)"
                          % ("not root" if os.geteuid() else "no CAP_SYS_RESOURCE"))
        p = free_port()
        gw = self.start(self.conf(p, 10000), p, self.limited(1024, 1024, no_raise=False))
        want = 2 * 10000 + RESERVE + LINGER
        self.assertEqual(limits(gw.proc.pid), (want, want))


if __name__ == "__main__":
    main()
