"""The TLS layer as clients see it: strict ALPN (refusal with
no_application_protocol, logged with the offered list), TLS 1.2 as the
floor, ECDSA and RSA certificates chosen by what the client supports, the
certificate chain verified by the client against the test CA for the name
localhost, and session resumption with tickets."""
import re
import ssl
import subprocess

from mgtest import (GatewayTest, Smtp, client_context, free_port, listener, main, need,
                    smtpd_conf)


def gnutls_cli(port, *args, stdin=b"QUIT\r\n", pki=None):
    argv = ["gnutls-cli", "--port", str(port), "--x509cafile", pki + "/ca.pem",
            "--sni-hostname", "localhost", "--verify-hostname", "localhost", *args, "127.0.0.1"]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30)


class Tls(GatewayTest):
    def setUp(self):
        super().setUp()
        need("gnutls-cli")
        self.up = self.sink()
        self.p_strict, self.p_loose = free_port(), free_port()
        conf = smtpd_conf(self.pki, self.up.port, listener("smtps", self.p_strict, "implicit") +
                          listener("loose", self.p_loose, "implicit", 'tls = "loose"'))
        conf += ('tls "loose" {\n  cert = "%s/server-ecdsa.pem"\n  key = "%s/server-ecdsa.key"\n'
                 '  alpn = false\n}\n' % (self.pki, self.pki))
        self.gw = self.gateway(conf, [self.p_strict, self.p_loose])

    def test_alpn_strict(self):
        with self.assertRaises(ssl.SSLError) as e:
            Smtp(self.p_strict, tls=True, ctx=client_context(alpn=["h2", "http/1.1"]))
        self.assertRegex(str(e.exception).upper(), r"NO.APPLICATION.PROTOCOL")
        self.gw.wait_log(r"tls-failed session=\S+ client=127\.0\.0\.1 "
                         r"reason=\"no_application_protocol: client offered ALPN h2,http/1\.1\"")
        c = Smtp(self.p_strict, tls=True, ctx=client_context(alpn=["h2", "smtp"]))
        self.assertEqual(c.sock.selected_alpn_protocol(), "smtp")
        self.assertEqual(c.reply()[0], 220)
        c = Smtp(self.p_strict, tls=True)           # no ALPN at all: accepted
        self.assertIsNone(c.sock.selected_alpn_protocol())
        self.assertEqual(c.reply()[0], 220)

    def test_alpn_off(self):
        c = Smtp(self.p_loose, tls=True, ctx=client_context(alpn=["h2"]))
        self.assertEqual(c.reply()[0], 220)

    def test_gnutls_cli_alpn(self):
        r = gnutls_cli(self.p_strict, "--alpn=imap", pki=self.pki)
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr.decode() + r.stdout.decode(), r"(?i)no.application.protocol|No supported application protocol")
        r = gnutls_cli(self.p_strict, "--alpn=smtp", pki=self.pki)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"220 mx.test.example ESMTP", r.stdout)

    def test_old_protocols_refused(self):
        r = gnutls_cli(self.p_strict, "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0", pki=self.pki)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn(b"220 ", r.stdout)
        r = gnutls_cli(self.p_strict, "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2", pki=self.pki)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"(TLS1.2-X.509)", r.stdout)

    def test_key_type_by_client_capability(self):
        # A TLS 1.2 client that only does ECDHE-RSA gets the RSA certificate.
        r = gnutls_cli(self.p_strict, "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA",
                       pki=self.pki)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.decode(), r"subject `CN=localhost'.*RSA key 2048 bits")
        r = gnutls_cli(self.p_strict, pki=self.pki)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.decode(), r"subject `CN=localhost'.*EC/ECDSA key 256 bits")
        self.assertIn(b"issuer `CN=mailgate test CA", r.stdout)

    def test_client_verifies_name(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            Smtp(self.p_strict, tls=True, server_hostname="wrong.example")
        with self.assertRaises(ssl.SSLCertVerificationError):
            Smtp(self.p_strict, tls=True, ctx=ssl.create_default_context())   # unknown CA

    def test_resumption(self):
        for prio in ("NORMAL:-VERS-ALL:+VERS-TLS1.3", "NORMAL:-VERS-ALL:+VERS-TLS1.2"):
            r = gnutls_cli(self.p_strict, "--resume", "--priority", prio, pki=self.pki, stdin=b"")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"This is a resumed session", r.stdout, prio)


if __name__ == "__main__":
    main()
