"""mailgate-smtpd as a daemon: -t and -V, detaching only once listeners are
bound (exit status, pidfile), privilege drop, bind failures, SIGTERM
(421 4.3.2 between transactions, transactions finish), shutdown_timeout,
JSON logs, max_connections / max_per_ip, IPv6 and dual-stack binding,
secret-file permissions."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import mgtest
from mgtest import (SMTPD, GatewayTest, Smtp, free_port, listener, main, message, send_message,
                    smtpd_conf, wait_port)


def env_quiet(text):
    """stderr minus the warnings about the machine rather than the file:
    no /dev/log here, or an open-file limit below max_connections."""
    return "".join(l for l in text.splitlines(True) if not re.search(
        r": warning: (log_target = syslog, but|max_connections = \d+ \(over all listeners\))", l))


def run(*args, **kw):
    return subprocess.run([SMTPD, *args], capture_output=True, text=True, timeout=30, **kw)


class Daemon(GatewayTest):
    def conf(self, listeners, extra="", **kw):
        self.up = getattr(self, "up", None) or self.sink()
        return smtpd_conf(self.pki, self.up.port, listeners, extra=extra, **kw)

    def test_version(self):
        r = run("-V")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"mailgate-smtpd \S+\nGnuTLS 3\.\d+\.\d+\nlibev 4\.\d+\nlibconfuse \S+\n"
                                   r"c-ares \d+\.\d+")

    def test_check_ok_and_errors(self):
        p = free_port()
        good = self.tmp.file("good.conf", self.conf(listener("smtps", p, "implicit")))
        r = run("-t", "-c", good)
        self.assertEqual((r.returncode, r.stdout), (0, "configuration ok\n"), r.stderr)
        bad = self.tmp.file("bad.conf", self.conf(listener("smtps", p, "implicit"),
                                                  extra='hostname = "nodot"\nmax_line = 10\n'
                                                        'tls "extra" {\n  cert = "/nonexistent/cert.pem"\n'
                                                        '  key = "/nonexistent/key.pem"\n}\n'))
        r = run("-t", "-c", bad)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"bad\.conf:\d+: hostname: 'nodot' has no dot")
        self.assertRegex(r.stderr, r"bad\.conf:\d+: max_line: 10 out of range")
        self.assertRegex(r.stderr, r"bad\.conf:\d+: cert: cannot read '/nonexistent/cert\.pem'")
        self.assertRegex(r.stderr, r"bad\.conf:\d+: key: cannot read '/nonexistent/key\.pem'")
        self.assertNotIn("configuration ok", r.stdout)

    def test_check_reports_each_file_problem_once(self):
        """-t checks files and then loads TLS credentials; a missing CRL (or
        CA, OCSP response) is still one line, at the key's FILE:LINE."""
        p = free_port()
        conf = self.conf(listener("smtps", p, "implicit"),
                         tls_extra='crl = "/nonexistent/crl.pem"\n'
                                   '  client_ca = "/nonexistent/ca.pem"\n'
                                   '  ocsp_staple = "/nonexistent/ocsp.der"')
        lines = conf.splitlines()
        r = run("-t", "-c", self.tmp.file("once.conf", conf))
        self.assertEqual(r.returncode, 1)
        for key, path in (("crl", "/nonexistent/crl.pem"), ("client_ca", "/nonexistent/ca.pem"),
                          ("ocsp_staple", "/nonexistent/ocsp.der")):
            n = 1 + next(i for i, l in enumerate(lines) if l.strip().startswith(key + " ="))
            about = [l for l in r.stderr.splitlines() if path in l]
            self.assertEqual(about, ["%s:%d: %s: cannot read '%s': No such file or directory"
                                     % (self.tmp.file("once.conf"), n, key, path)], r.stderr)

    def sample(self):
        """etc/mailgate/smtpd.conf's text, with certificates in the temp
        folder where it expects them."""
        import shutil
        from mgtest import SRCDIR
        if not os.path.isdir(self.tmp.file("certs")):
            os.makedirs(self.tmp.file("certs"))
            os.makedirs(self.tmp.file("private"))
            for src, dst in (("server-ecdsa.pem", "certs/mx-ecdsa.pem"), ("server-rsa.pem", "certs/mx-rsa.pem"),
                             ("server-ecdsa.key", "private/mx-ecdsa.key"),
                             ("server-rsa.key", "private/mx-rsa.key")):
                shutil.copy(os.path.join(self.pki, src), self.tmp.file(dst))
                os.chmod(self.tmp.file(dst), 0o600 if dst.endswith(".key") else 0o644)
        with open(os.path.join(SRCDIR, "etc", "mailgate", "smtpd.conf")) as f:
            return f.read()

    def test_sample_config(self):
        """etc/mailgate/smtpd.conf, with certificates where it expects them,
        passes -t: the sample documents real keys only."""
        sample = self.sample()
        r = run("-t", "-c", self.tmp.file("smtpd.conf", sample))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "configuration ok\n")

    def test_sample_config_error_lines(self):
        """The sample is full of comments: a typo put at line N of a copy is
        reported at copy:N, wherever N is (libconfuse 3.3 alone counts every
        comment line twice)."""
        lines = self.sample().splitlines(keepends=True)
        # Right after each top-level comment line, and at the very end.
        spots = [i + 2 for i, l in enumerate(lines) if l.startswith("#")] + [len(lines) + 1]
        self.assertGreater(len(spots), 10)
        for n in spots:
            copy = self.tmp.file("copy%d.conf" % n,
                                 "".join(lines[:n - 1] + ["max_mesage_size = 1\n"] + lines[n - 1:]))
            r = run("-t", "-c", copy)
            self.assertEqual((r.returncode, r.stderr), (1, "%s:%d: no such option 'max_mesage_size'\n"
                                                        % (copy, n)))
        # A bad value in the sample's own max_line line, found after parsing.
        n = 1 + next(i for i, l in enumerate(lines) if l.startswith("max_line "))
        lines[n - 1] = "max_line = 10     # too small\n"
        copy = self.tmp.file("value.conf", "".join(lines))
        r = run("-t", "-c", copy)
        self.assertEqual((r.returncode, env_quiet(r.stderr)),
                         (1, "%s:%d: max_line: 10 out of range (512-65536)\n" % (copy, n)))

    def test_sample_config_include_with_comments(self):
        """An include()d file is read the same way: errors in it name it as
        written in include(), at its own lines, after comments of every
        form and a comment inside a list."""
        lines = self.sample().splitlines(keepends=True)
        n = 1 + next(i for i, l in enumerate(lines) if l.startswith('# include("peers.conf")'))
        lines.insert(n, 'include("extra.conf")   # more settings\n')
        main = self.tmp.file("main.conf", "".join(lines))
        self.tmp.file("extra.conf",
                      "# extra settings\n"                       # 1
                      "/* a block\n"                             # 2
                      "   comment */\n"                          # 3
                      "accept_domains = {      # replaced\n"     # 4
                      '    "example.org",      # primary\n'      # 5
                      '    "example.net"       // secondary\n'   # 6
                      "}\n"                                      # 7
                      'tls "extra" {           # one more\n'     # 8
                      '    cert = "certs/mx-ecdsa.pem"\n'        # 9
                      '    key  = "private/mx-ecdsa.key"\n'      # 10
                      '    client_cert = "sometimes"  # bad\n'   # 11
                      "}\n")
        r = run("-t", "-c", main)
        self.assertEqual((r.returncode, env_quiet(r.stderr)),
                         (1, "extra.conf:11: client_cert: bad value 'sometimes' "
                             "(expected none | optional | require)\n"))
        # A parse error there, and the comment inside the list still parses.
        self.tmp.file("extra.conf", "# extra\n// extra\naccept_domains = {\n"
                                    '  "example.org",  # primary\n  "example.net"\n}\nbogus = 1\n')
        r = run("-t", "-c", main)
        self.assertEqual((r.returncode, r.stderr), (1, "extra.conf:7: no such option 'bogus'\n"))
        # Fixed: the whole configuration is fine.
        self.tmp.file("extra.conf", "# extra\naccept_domains = {\n"
                                    '  "example.org",  # primary\n  "example.net"  /* 2nd */\n}\n')
        r = run("-t", "-c", main)
        self.assertEqual((r.returncode, r.stdout), (0, "configuration ok\n"), r.stderr)

    def test_comment_inside_list(self):
        """libconfuse 3.3 refuses a comment inside a list (upstream issue
        #150); mailgate accepts it."""
        sample = self.sample()
        self.assertIn('accept_domains    = { "example.org", ".example.org" }', sample)
        conf = sample.replace('accept_domains    = { "example.org", ".example.org" }',
                              'accept_domains = {\n  "example.org",   # the domain\n'
                              '  ".example.org"   # and its subdomains\n}')
        r = run("-t", "-c", self.tmp.file("list.conf", conf))
        self.assertEqual((r.returncode, r.stdout), (0, "configuration ok\n"), r.stderr)

    def test_imapd_sample_config_and_version(self):
        import shutil
        from mgtest import IMAPD, SRCDIR
        os.makedirs(self.tmp.file("certs"))
        os.makedirs(self.tmp.file("private"))
        for src, dst in (("server-ecdsa.pem", "certs/imap-ecdsa.pem"), ("server-rsa.pem", "certs/imap-rsa.pem"),
                         ("server-ecdsa.key", "private/imap-ecdsa.key"), ("server-rsa.key", "private/imap-rsa.key")):
            shutil.copy(os.path.join(self.pki, src), self.tmp.file(dst))
            os.chmod(self.tmp.file(dst), 0o600 if dst.endswith(".key") else 0o644)
        with open(os.path.join(SRCDIR, "etc", "mailgate", "imapd.conf")) as f:
            sample = f.read()
        r = subprocess.run([IMAPD, "-t", "-c", self.tmp.file("imapd.conf", sample)], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout), (0, "configuration ok\n"), r.stderr)
        r = subprocess.run([IMAPD, "-V"], capture_output=True, text=True, timeout=30)
        self.assertRegex(r.stdout, r"^mailgate-imapd \S+\nGnuTLS ")
        # A user_map naming an unknown upstream: FILE:LINE of the map.
        umap = self.tmp.file("user_map", "alice dovecot\n\nbob nowhere\n")
        bad = sample + 'user_map = "%s"\n' % umap
        r = subprocess.run([IMAPD, "-t", "-c", self.tmp.file("imapd2.conf", bad)], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("user_map:3: no upstream section \"nowhere\"", r.stderr)
        # smtpd keys are unknown to imapd; the line is right after the
        # sample's comments.
        r = subprocess.run([IMAPD, "-t", "-c", self.tmp.file("imapd3.conf", sample + "max_recipients = 100\n")],
                           capture_output=True, text=True, timeout=30)
        self.assertIn("imapd3.conf:%d: no such option 'max_recipients'" % (sample.count("\n") + 1), r.stderr)

    def test_check_key_mismatch_and_permissions(self):
        p = free_port()
        with open(self.pki + "/server-rsa.key") as f:
            key = self.tmp.file("key.pem", f.read(), mode=0o640)
        conf = self.conf(listener("smtps", p, "implicit")).replace(
            '"%s/server-rsa.key"' % self.pki, '"%s"' % key)
        r = run("-t", "-c", self.tmp.file("g.conf", conf))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r"g\.conf:\d+: warning: key: secret file '.*key\.pem' is readable by its group")
        os.chmod(key, 0o644)
        r = run("-t", "-c", self.tmp.file("o.conf", conf))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"o\.conf:\d+: key: secret file '.*key\.pem' is readable by others")
        swapped = conf.replace('"%s"' % key, '"%s/server-ecdsa.key"' % self.pki, 1).replace(
            '{ "%s/server-ecdsa.key", ' % self.pki, '{ "%s/upstream.key", ' % self.pki)
        r = run("-t", "-c", self.tmp.file("m.conf", swapped))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"m\.conf:\d+: key: '.*' does not match cert '.*'")

    def test_detach_pidfile_privileges(self):
        p = free_port()
        pidfile = self.tmp.file("smtpd.pid")
        conf = self.conf(listener("local", p, "none"), extra='pidfile = "%s"' % pidfile).replace(
            'log_target = "stderr"', 'log_target = "syslog"')
        r = run("-c", self.tmp.file("d.conf", conf))
        self.assertEqual(r.returncode, 0, r.stderr)
        # Bound before the parent exited: connect at once.
        c = Smtp(p)
        self.assertEqual(c.reply()[0], 220)
        with open(pidfile) as f:
            pid = int(f.read())

        def uids(p):
            status = open("/proc/%d/status" % p).read()
            return set(map(int, [l for l in status.splitlines() if l.startswith("Uid:")][0].split()[1:]))

        nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout)
        worker = mgtest.worker_pids(pid, 1)[0]
        if os.geteuid() == 0:
            # The master keeps root (it re-reads keys on SIGHUP); the
            # worker, which serves clients, runs as the user, all three ids.
            self.assertEqual(uids(pid), {0})
            self.assertEqual(uids(worker), {nobody})
        c.expect("QUIT", 221)
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not os.path.exists("/proc/%d" % pid):
                break
            time.sleep(0.05)
        self.assertFalse(os.path.exists("/proc/%d" % pid))
        # A clean stop removes the pidfile, though the daemon runs as
        # nobody and the folder is root's.
        for _ in range(100):
            if not os.path.exists(pidfile):
                break
            time.sleep(0.05)
        self.assertFalse(os.path.exists(pidfile))

    def test_bind_failure_exit_status(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        conf = self.conf(listener("local", port, "none"))
        r = run("-c", self.tmp.file("b.conf", conf))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot bind 127.0.0.1:%d" % port, r.stderr)
        s.close()

    def test_sigterm(self):
        p = free_port()
        gw = self.gateway(self.conf(listener("local", p, "none"), extra="shutdown_timeout = 30"), [p])
        idle = Smtp(p)
        idle.reply()
        idle.expect("EHLO idle.test", 250)
        busy = Smtp(p)
        busy.reply()
        busy.expect("EHLO busy.test", 250)
        busy.expect("MAIL FROM:<a@test.example>", 250)
        busy.expect("RCPT TO:<user@example.org>", 250)
        os.kill(gw.proc.pid, signal.SIGTERM)
        gw.wait_log(r"SIGTERM: no new connections")
        self.assertFalse(wait_port(p, timeout=0.5))               # not accepting
        self.assertEqual(idle.cmd("NOOP")[1], ["421 4.3.2 Service shutting down"])
        self.assertTrue(idle.closed())
        busy.expect("DATA", 354)                                   # the transaction finishes
        busy.send(b"Subject: during shutdown\r\n\r\n.\r\n")
        self.assertEqual(busy.reply()[0], 250)
        self.assertEqual(busy.cmd("QUIT")[0], 221)
        self.assertEqual(gw.proc.p.wait(10), 0)
        self.assertEqual(len(self.up.wait_messages(1)), 1)

    def test_shutdown_timeout(self):
        p = free_port()
        gw = self.gateway(self.conf(listener("local", p, "none"), extra="shutdown_timeout = 1"), [p])
        c = Smtp(p)
        c.reply()
        c.expect("EHLO slow.test", 250)
        c.expect("MAIL FROM:<a@test.example>", 250)
        os.kill(gw.proc.pid, signal.SIGTERM)
        self.assertEqual(c.reply()[1], ["421 4.3.2 Service shutting down"])
        self.assertTrue(c.closed())
        self.assertEqual(gw.proc.p.wait(10), 0)
        gw.wait_log(r"result=shutdown")

    def test_json_log(self):
        p = free_port()
        gw = self.gateway(self.conf(listener("local", p, "none"), extra='log_format = "json"'), [p])
        c = Smtp(p)
        c.reply()
        c.expect('EHLO json.test', 250)
        c.expect("QUIT", 221)
        line = gw.wait_log(r'\{"ts":"[^"]+","event":"session".*"helo":"json\.test".*\}').group(0)
        rec = json.loads(line)
        self.assertEqual(rec["listener"], "local")
        self.assertEqual(rec["result"], "quit")
        self.assertRegex(rec["client"], r"^127\.0\.0\.1:\d+$")

    def test_connection_limits(self):
        p1, p2 = free_port(), free_port()
        gw = self.gateway(self.conf(listener("local", p1, "none", "max_per_ip = 2") +
                                    listener("smtps", p2, "implicit", "max_connections = 1")), [p1, p2])
        a, b = Smtp(p1), Smtp(p1)
        a.reply(), b.reply()
        c = Smtp(p1)
        self.assertEqual(c.reply()[1], ["421 4.7.0 Too many connections"])
        self.assertTrue(c.closed())
        a.expect("QUIT", 221)
        a.closed()
        time.sleep(0.2)
        d = Smtp(p1)
        self.assertEqual(d.reply()[0], 220)
        t1 = Smtp(p2, tls=True)
        t1.reply()
        s = socket.create_connection(("127.0.0.1", p2))
        s.settimeout(5)
        self.assertEqual(s.recv(100), b"")          # implicit TLS: closed before any handshake
        gw.wait_log(r"session=[0-9A-F]{12} listener=smtps client=127\.0\.0\.1:\d+ bytes_in=0 bytes_out=0 duration=0\.000 reason=max_connections result=limit")

    def test_ipv6_and_dual_stack(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        p = free_port()
        lst = ('listener "dual" {\n  address = { "0.0.0.0:%d", "[::]:%d" }\n  tls_mode = "starttls"\n'
               '  require_tls = false\n}\n' % (p, p))
        self.gateway(self.conf(lst), [p])
        c6 = Smtp(p, host="::1")
        self.assertEqual(c6.reply()[0], 220)
        c6.expect("EHLO v6.test", 250)
        code, _ = send_message(c6, message("over ipv6"))
        self.assertEqual(code, 250)
        m = self.up.wait_messages(1)
        flat = m[0].message.replace(b"\n\t", b" ")
        self.assertIn(b"(unknown [IPv6:::1])", flat)
        c4 = Smtp(p)
        self.assertEqual(c4.reply()[0], 220)


if __name__ == "__main__":
    main()
