"""make install, as a packager or an admin runs it: `make install
DESTDIR=...` from the build folder puts the binaries in sbindir, the man
pages in mandir, the commented samples in docdir/examples and (only when
absent) in sysconfdir/mailgate/NAME.conf.sample, the README in docdir,
and the systemd units in the unit folder with the configured paths filled
in; a second install keeps a sample the admin edited; make uninstall
removes everything but an edited sample. The units are checked with
systemd-analyze verify (executables and man pages resolved in the
installed tree) when it is there, and they agree with the samples on the
pidfile."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from mgtest import BUILDDIR, SRCDIR, main

DIRS = ("sbindir", "sysconfdir", "mandir", "docdir", "systemdsystemunitdir")


def make(*args, cwd=BUILDDIR, stdin=None):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=300, env=env)


def configured():
    """The install folders this build was configured with."""
    prog = "print:\n" + "".join("\t@echo %s=$(%s)\n" % (d, d) for d in DIRS)
    r = make("-s", "-f", "Makefile", "-f", "-", "print", stdin=prog)
    assert r.returncode == 0, r.stderr
    return dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)


class Install(unittest.TestCase):
    def setUp(self):
        if not shutil.which("make") or not os.path.exists(os.path.join(BUILDDIR, "Makefile")):
            self.skipTest("no configured build folder")
        self.dest = tempfile.mkdtemp(prefix="mgtest-install-")
        self.addCleanup(shutil.rmtree, self.dest, True)
        self.dirs = configured()

    def at(self, key, *rest):
        return os.path.join(self.dest + self.dirs[key], *rest)

    def install(self, target="install"):
        r = make(target, "DESTDIR=" + self.dest)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_install_tree(self):
        self.install()
        for b in ("mailgate-smtpd", "mailgate-imapd"):
            path = self.at("sbindir", b)
            self.assertTrue(os.access(path, os.X_OK), path)
            r = subprocess.run([path, "-V"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0)
            self.assertTrue(r.stdout.startswith(b + " "), r.stdout)
        for sect, page in (("man8", "mailgate-smtpd.8"), ("man8", "mailgate-imapd.8"),
                           ("man5", "mailgate.conf.5")):
            with open(self.at("mandir", sect, page)) as f, open(os.path.join(SRCDIR, "man", page)) as g:
                self.assertEqual(f.read(), g.read(), page)
        for n in ("smtpd", "imapd"):
            with open(os.path.join(SRCDIR, "etc", "mailgate", n + ".conf")) as f:
                shipped = f.read()
            for path in (self.at("sysconfdir", "mailgate", n + ".conf.sample"),
                         self.at("docdir", "examples", n + ".conf")):
                with open(path) as f:
                    self.assertEqual(f.read(), shipped, path)
            # No live configuration is ever written.
            self.assertFalse(os.path.exists(self.at("sysconfdir", "mailgate", n + ".conf")))
        self.assertTrue(os.path.exists(self.at("docdir", "README")))

    def units(self):
        if self.dirs.get("systemdsystemunitdir", "") in ("", "no"):
            self.skipTest("configured without systemd units")
        return {n: self.at("systemdsystemunitdir", "mailgate-%s.service" % n) for n in ("smtpd", "imapd")}

    def test_units(self):
        self.install()
        for n, path in self.units().items():
            with open(path) as f:
                unit = f.read()
            self.assertNotRegex(unit, r"@[a-z_]+@", path)     # every placeholder filled
            binary = os.path.join(self.dirs["sbindir"], "mailgate-" + n)
            conf = os.path.join(self.dirs["sysconfdir"], "mailgate", n + ".conf")
            for line in ("Type=forking", "PIDFile=/run/mailgate/%s.pid" % n,
                         "ExecStartPre=%s -t -c %s" % (binary, conf), "ExecStart=%s -c %s" % (binary, conf),
                         "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "ProtectSystem=strict",
                         "ReadWritePaths=-/var/log/mailgate", "PrivateTmp=yes", "ProtectHome=yes",
                         "RuntimeDirectory=mailgate", "RuntimeDirectoryPreserve=yes", "LimitNOFILE=65536",
                         "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE "
                         "CAP_DAC_READ_SEARCH CAP_KILL"):
                self.assertIn("\n" + line + "\n", unit, (path, line))
            # The sample's pidfile is the unit's PIDFile.
            with open(self.at("docdir", "examples", n + ".conf")) as f:
                self.assertRegex(f.read(), r'(?m)^pidfile\s*=\s*"/run/mailgate/%s\.pid"' % n)

    def test_systemd_analyze_verify(self):
        units = self.units()
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed (Debian: the systemd package)")
        self.install()
        # The units name the final paths; verify copies that point into
        # the installed tree, with its man pages.
        vdir = tempfile.mkdtemp(prefix="mgtest-units-")
        self.addCleanup(shutil.rmtree, vdir, True)
        copies = []
        for n, path in units.items():
            with open(path) as f:
                text = f.read().replace(self.dirs["sbindir"] + "/", self.dest + self.dirs["sbindir"] + "/")
            copies.append(os.path.join(vdir, os.path.basename(path)))
            with open(copies[-1], "w") as f:
                f.write(text)
        env = dict(os.environ, MANPATH=self.dest + self.dirs["mandir"])
        r = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True,
                           timeout=120, env=env)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_second_install_keeps_an_edited_sample_and_uninstall(self):
        self.install()
        sample = self.at("sysconfdir", "mailgate", "smtpd.conf.sample")
        with open(sample, "a") as f:
            f.write("# edited by the admin\n")
        out = self.install()
        self.assertIn("keeping %s" % sample, out)
        with open(sample) as f:
            self.assertTrue(f.read().endswith("# edited by the admin\n"))
        with open(self.at("docdir", "examples", "smtpd.conf")) as f:
            self.assertNotIn("edited by the admin", f.read())
        # Uninstall: everything goes but the edited sample.
        self.install("uninstall")
        left = sorted(os.path.join(d, f) for d, _, fs in os.walk(self.dest) for f in fs)
        self.assertEqual(left, [sample])


if __name__ == "__main__":
    main()
