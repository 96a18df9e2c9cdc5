"""Running as a service: the pidfile is removed after a clean stop
(SIGTERM, SIGINT) by both daemons, detached and with -f, although they
run as nobody and the pidfile's folder is root's (like /run/mailgate);
a daemon killed outright leaves it; whatever removes it holds no
listening socket (the port can be bound again at once)."""
import os
import signal
import socket
import subprocess
import time

from mgtest import (IMAPD, SMTPD, GatewayTest, Smtp, free_port, imapd_conf, listener, main,
                    smtpd_conf, worker_pids)


def gone(pid, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and os.path.exists("/proc/%d" % pid):
        time.sleep(0.05)
    return not os.path.exists("/proc/%d" % pid)


def wait_absent(path, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline and os.path.exists(path):
        time.sleep(0.05)
    return not os.path.exists(path)


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([l for l in f if l.startswith("Uid:")][0].split()[1])


class Pidfile(GatewayTest):
    def setUp(self):
        super().setUp()
        self.run_dir = self.tmp.file("run")
        os.makedirs(self.run_dir)
        os.chmod(self.run_dir, 0o755)       # root's, like /run/mailgate

    def conf(self, daemon, port, pidfile, foreground):
        if daemon == "smtpd":
            text = smtpd_conf(self.pki, free_port(), listener("local", port, "none"))
        else:
            text = imapd_conf(self.pki, free_port(), listener("local", port, "none"))
        if not foreground:    # stderr would be kept: it is our pipe
            text = text.replace('log_target = "stderr"', 'log_target = "syslog"')
        return text.replace("hostname =", 'pidfile = "%s"\nhostname =' % pidfile, 1)

    def start(self, daemon, foreground):
        binary = SMTPD if daemon == "smtpd" else IMAPD
        port = free_port()
        pidfile = os.path.join(self.run_dir, daemon + ".pid")
        text = self.conf(daemon, port, pidfile, foreground)
        if foreground:
            gw = self.gateway(text, [port], binary=binary, name=daemon)
            pid = gw.proc.pid
        else:
            conf = self.tmp.file("%s.conf" % daemon, text)
            r = subprocess.run([binary, "-c", conf], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            gw = None
        with open(pidfile) as f:
            pid = int(f.read())
        if not foreground:
            self.addCleanup(lambda: os.path.exists("/proc/%d" % pid) and os.kill(pid, signal.SIGKILL))
        if os.geteuid() == 0:
            # The pidfile names the master, which keeps root to remove it;
            # its worker serves as nobody.
            self.assertEqual(uid_of(pid), 0)
            self.assertEqual(uid_of(worker_pids(pid, 1)[0]),
                             int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout))
        return pid, port, pidfile, gw

    def check_clean_stop(self, daemon, foreground, sig=signal.SIGTERM):
        pid, port, pidfile, gw = self.start(daemon, foreground)
        s = socket.create_connection(("127.0.0.1", port))
        s.recv(100)
        s.close()
        os.kill(pid, sig)
        if gw:
            gw.proc.p.wait(10)      # our child: reaped here
        self.assertTrue(gone(pid), "%s did not stop" % daemon)
        self.assertTrue(wait_absent(pidfile), "%s left %s" % (daemon, pidfile))
        # Nothing still holds the listener: it binds again at once.
        b = socket.socket()
        b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        b.bind(("127.0.0.1", port))
        b.listen()
        b.close()
        if gw:
            gw.check_sanitizers()

    def test_smtpd_detached(self):
        self.check_clean_stop("smtpd", False)

    def test_smtpd_foreground(self):
        self.check_clean_stop("smtpd", True)

    def test_imapd_detached(self):
        self.check_clean_stop("imapd", False)

    def test_imapd_foreground(self):
        self.check_clean_stop("imapd", True)

    def test_sigint_removes_it_too(self):
        self.check_clean_stop("smtpd", False, signal.SIGINT)

    def test_killed_daemon_leaves_it(self):
        pid, port, pidfile, _ = self.start("smtpd", False)
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(gone(pid))
        time.sleep(0.5)
        with open(pidfile) as f:
            self.assertEqual(int(f.read()), pid)


if __name__ == "__main__":
    main()
