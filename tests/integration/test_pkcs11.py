"""Private keys in a PKCS#11 token: key = "pkcs11:..." URLs, loaded by
GnuTLS through p11-kit, here with SoftHSM2 (a private token directory
named by SOFTHSM2_CONF in a temp dir; the test PKI's server keys imported
with softhsm2-util). A client completes the handshake and sees the
expected certificate (ECDSA, and RSA for an RSA-only client), in the
foreground and detached (the fork in between); -t accepts the URL; a
wrong PIN, a missing PIN, a missing object, a pin-source file ending in a
newline or readable by others, a pin-value in a configuration file others
can read, and a token the unprivileged user cannot use are clear -t /
start-up errors - and no message ever shows the PIN."""
import os
import re
import shutil
import ssl
import subprocess
import time

from mgtest import (IMAPD, SMTPD, GatewayTest, LineClient, client_context, free_port, imapd_conf,
                    listener, main, need, smtpd_conf, stop_by_pidfile, wait_port)

PIN = "260417"
SO_PIN = "91827364"


class SoftHsm:
    """A SoftHSM2 token in tmp holding the test PKI's server keys, owned
    by the user the gateway drops to (SoftHSM re-reads its files)."""

    def __init__(self, tmp, pki, label="mailgate", owner="nobody"):
        need("softhsm2-util", "openssl")
        self.dir = os.path.join(tmp.path, "softhsm")
        self.tokens = os.path.join(self.dir, "tokens")
        os.makedirs(self.tokens)
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "softhsm2.conf")
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n" % self.tokens)
        self.env = dict(os.environ, SOFTHSM2_CONF=self.conf)
        self.label = label
        self.run("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN)
        for name, oid in (("server-ecdsa", "01"), ("server-rsa", "02")):
            p8 = os.path.join(self.dir, name + ".p8")
            self.run("openssl", "pkcs8", "-topk8", "-nocrypt", "-in", os.path.join(pki, name + ".key"), "-out", p8)
            self.run("softhsm2-util", "--import", p8, "--token", label, "--label", name, "--id", oid,
                     "--pin", PIN)
            os.unlink(p8)
        self.own(owner)
        self.pin_file = os.path.join(self.dir, "pin")
        with open(self.pin_file, "w") as f:
            f.write(PIN)
        os.chmod(self.pin_file, 0o600)

    def own(self, user):
        for root, dirs, files in os.walk(self.tokens):
            for n in dirs + files:
                shutil.chown(os.path.join(root, n), user)
        shutil.chown(self.tokens, user)

    def run(self, *argv):
        subprocess.run(argv, env=self.env, check=True, capture_output=True)

    def url(self, obj, pin="source"):
        u = "pkcs11:token=%s;object=%s;type=private" % (self.label, obj)
        if pin == "source":
            return u + "?pin-source=" + self.pin_file
        if pin:
            return u + "?pin-value=" + pin
        return u


def s_client_rsa(port, bye):
    """openssl s_client offering RSA signatures only, sending bye and
    reading to the end: its output."""
    r = subprocess.run(["openssl", "s_client", "-ign_eof", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost",
                        "-CAfile", os.path.join(GatewayTest.pki_path, "ca.pem"),
                        "-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"],
                       input=bye, capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def pem_body(path):
    with open(path) as f:
        return "".join(l.strip() for l in f if not l.startswith("-----"))


class Pkcs11(GatewayTest):
    def setUp(self):
        super().setUp()
        GatewayTest.pki_path = self.pki
        self.hsm = SoftHsm(self.tmp, self.pki)

    def conf(self, keys, port, binary=SMTPD, extra=""):
        """A config whose tls section holds the ECDSA and RSA certificates
        with the given keys (URLs or files)."""
        builder = smtpd_conf if binary == SMTPD else imapd_conf
        conf = builder(self.pki, free_port(), listener("s", port, "implicit"), extra=extra)
        return conf.replace('key = { "%s/server-ecdsa.key", "%s/server-rsa.key" }' % (self.pki, self.pki),
                            'key = { "%s", "%s" }' % keys)

    def url_pair(self, pin="source"):
        return self.hsm.url("server-ecdsa", pin), self.hsm.url("server-rsa", pin)

    def check(self, conf, mode=0o600, binary=SMTPD):
        path = self.tmp.file("check-%d.conf" % free_port(), conf, mode=mode)
        r = subprocess.run([binary, "-t", "-c", path], env=self.hsm.env, capture_output=True, text=True,
                           timeout=60)
        return r.returncode, r.stdout + r.stderr

    def assert_handshakes(self, port, greeting, bye="QUIT\r\n"):
        der = ssl.PEM_cert_to_DER_cert(open(os.path.join(self.pki, "server-ecdsa.pem")).read())
        c = LineClient(port, tls=True)
        self.assertEqual(c.sock.getpeercert(binary_form=True), der)
        self.assertTrue(c.line().startswith(greeting))
        c.close()
        out = s_client_rsa(port, bye)
        self.assertIn("Server public key is 2048 bit", out)
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertIn(pem_body(os.path.join(self.pki, "server-rsa.pem")), out.replace("\n", ""))
        self.assertIn(greeting, out)

    def test_handshake_with_keys_in_the_token(self):
        p, q = free_port(), free_port()
        self.gateway(self.conf(self.url_pair(), p), [p], env=self.hsm.env)
        self.assert_handshakes(p, "220 ")
        self.imap_gateway(self.conf(self.url_pair(), q, binary=IMAPD), [q], env=self.hsm.env)
        self.assert_handshakes(q, "* OK ", "a LOGOUT\r\n")

    def test_detached_daemon_after_fork(self):
        """Without -f the daemon forks after loading the keys: GnuTLS
        re-opens the token in the child, which has dropped privileges."""
        p = free_port()
        pidfile = os.path.join(self.tmp.path, "smtpd.pid")
        conf = self.conf(self.url_pair(), p, extra='pidfile = "%s"' % pidfile).replace(
            'log_target = "stderr"', 'log_target = "syslog"')
        path = self.tmp.file("detached.conf", conf)
        r = subprocess.run([SMTPD, "-c", path], env=self.hsm.env, capture_output=True, text=True, timeout=60)
        self.addCleanup(stop_by_pidfile, pidfile)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(wait_port(p))
        self.assert_handshakes(p, "220 ")

    def test_check_accepts_urls(self):
        rc, out = self.check(self.conf(self.url_pair(), free_port()))
        self.assertEqual(rc, 0, out)
        self.assertIn("configuration ok\n", out)
        # Not a word about the keys (other warnings, such as the machine's
        # open-file limit, may come).
        self.assertEqual([l for l in out.splitlines() if re.search(r"key|pkcs11|pin", l, re.I)], [], out)
        # pin-value works too, in a configuration file others cannot read.
        rc, out = self.check(self.conf(self.url_pair(PIN), free_port(), binary=IMAPD), mode=0o640,
                             binary=IMAPD)
        self.assertEqual(rc, 0, out)
        self.assertNotIn(PIN, out)

    def assert_refused(self, conf, pattern, mode=0o600):
        rc, out = self.check(conf, mode=mode)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"check-\d+\.conf:\d+: .*" + pattern)
        self.assertNotIn(PIN, out)
        # Start-up refuses it the same way.
        path = self.tmp.file("start-%d.conf" % free_port(), conf, mode=mode)
        r = subprocess.run([SMTPD, "-f", "-c", path], env=self.hsm.env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout + r.stderr, pattern)
        self.assertNotIn(PIN, r.stdout + r.stderr)
        return out

    def test_wrong_pin(self):
        out = self.assert_refused(self.conf(self.url_pair("000000"), free_port()),
                                  r"key: wrong PIN for 'pkcs11:token=mailgate;object=server-ecdsa;"
                                  r"type=private\?pin-value=\(hidden\)'")
        self.assertNotIn("000000", out)
        with open(self.hsm.pin_file, "w") as f:
            f.write("000000")
        self.assert_refused(self.conf(self.url_pair(), free_port()), r"key: wrong PIN for '.*pin-source=")

    def test_pin_source_with_newline(self):
        with open(self.hsm.pin_file, "w") as f:
            f.write(PIN + "\n")
        self.assert_refused(self.conf(self.url_pair(), free_port()),
                            r"its pin-source file ends with a newline")

    def test_no_pin(self):
        self.assert_refused(self.conf(self.url_pair(None), free_port()),
                            r"key: '.*object=server-ecdsa;type=private' gives no PIN .* add \?pin-source=FILE")

    def test_missing_object_or_token(self):
        self.assert_refused(self.conf((self.hsm.url("server-ecdsa"), self.hsm.url("no-such-key")), free_port()),
                            r"key: no private key matches '.*object=no-such-key.*' in the PKCS#11 tokens")
        self.assert_refused(self.conf((self.hsm.url("server-ecdsa").replace("token=mailgate", "token=absent"),
                                       self.hsm.url("server-rsa")), free_port()),
                            r"key: no private key matches '.*token=absent")

    def test_key_of_another_certificate(self):
        self.assert_refused(self.conf((self.hsm.url("server-rsa"), self.hsm.url("server-ecdsa")), free_port()),
                            r"key: '.*object=server-rsa.*' does not match cert '.*server-ecdsa\.pem'")

    def test_pin_files_must_be_secret(self):
        os.chmod(self.hsm.pin_file, 0o644)
        self.assert_refused(self.conf(self.url_pair(), free_port()),
                            r"key: pin-source: secret file '.*/pin' is readable by others")
        self.assert_refused(self.conf(self.url_pair(PIN), free_port()), r"carries its PIN \(pin-value\) in "
                            r"'.*\.conf', which others can read", mode=0o644)

    def test_token_the_unprivileged_user_cannot_use(self):
        self.hsm.own("root")    # SoftHSM's files: 0600 root, read again at every use
        p = free_port()
        path = self.tmp.file("root-token.conf", self.conf(self.url_pair(), p))
        rc, out = self.check(open(path).read())
        self.assertEqual(rc, 0, out)        # -t runs as root: fine
        r = subprocess.run([SMTPD, "-f", "-c", path], env=self.hsm.env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout + r.stderr, r"key 'pkcs11:.*' cannot sign: .*running as user 'nobody'.*"
                                              r"SoftHSM's token directory")
        # Detached: the waiting parent reports it and exits 1.
        r = subprocess.run([SMTPD, "-c", path], env=self.hsm.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("cannot sign", r.stdout + r.stderr)

    def test_hostile_urls(self):
        """Over-long and malformed URLs: a clear error, never a crash."""
        for key in ("pkcs11:token=" + "A" * 5000 + ";type=private?pin-source=/nonexistent",
                    "pkcs11:token=mailgate?pin-source=" + "/x" * 3000,
                    "pkcs11:token=%zz;object=%;type=private?pin-value=%",
                    "pkcs11:?pin-value=" + "9" * 4000 + "&pin-source=",
                    "pkcs11:"):
            rc, out = self.check(self.conf((key, self.hsm.url("server-rsa")), free_port()))
            self.assertEqual(rc, 1, out)
            self.assertRegex(out, r"check-\d+\.conf:\d+: key: ")
            self.assertNotIn("9" * 20, out)


if __name__ == "__main__":
    main()
