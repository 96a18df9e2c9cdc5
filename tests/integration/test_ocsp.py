"""OCSP stapling from a file (ocsp_staple, one DER response per cert).

The responses come from a real OCSP responder - `openssl ocsp` answering a
request for the test PKI's server certificates out of a CA index, signed
by the responder certificate the CA delegated (mkpki.sh: ocsp.pem) - and
are checked the way clients check them: `gnutls-cli --ocsp` (which fails
a certificate without a valid staple, having no responder URL to ask) and
`openssl s_client -status` (which prints the stapled status). SMTPS,
SMTP STARTTLS, IMAPS and IMAP STARTTLS; the ECDSA and the RSA chain each
with its own response. -t refuses revoked, unknown, foreign-certificate,
wrongly signed and malformed responses, and warns about an expired one,
which is then not stapled (the gateway still serves)."""
import os
import re
import shutil
import subprocess

from mgtest import (GatewayTest, SMTPD, IMAPD, free_port, imapd_conf, listener, main, need,
                    smtpd_conf)


def serial_of(cert):
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-serial"], check=True,
                         capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1]


class Responder:
    """openssl ocsp as the CA's responder, over files: a CA index (V =
    valid, R = revoked; a serial not listed is unknown), a request from
    `openssl ocsp -reqout`, the response with -respout."""

    def __init__(self, tmp, pki):
        need("openssl")
        self.tmp, self.pki = tmp, pki
        self.n = 0

    def respond(self, cert, status="good", signer="ocsp", issuer="ca", days_ago=0, days=7, minutes=None):
        self.n += 1
        base = os.path.join(self.tmp.path, "ocsp-%d" % self.n)
        serial = serial_of(cert)
        line = {"good": "V\t301231235959Z\t\t%s\tunknown\t/CN=localhost\n",
                "revoked": "R\t301231235959Z\t261101000000Z\t%s\tunknown\t/CN=localhost\n",
                "unknown": ""}[status]
        with open(base + ".index", "w") as f:
            f.write(line % serial if line else "")
        p = lambda name: os.path.join(self.pki, name)
        subprocess.run(["openssl", "ocsp", "-issuer", p(issuer + ".pem"), "-cert", cert, "-no_nonce",
                        "-reqout", base + ".req"], check=True, capture_output=True)
        argv = ["openssl", "ocsp", "-index", base + ".index", "-CA", p(issuer + ".pem"),
                "-rsigner", p(signer + ".pem"), "-rkey", p(signer + ".key"),
                "-reqin", base + ".req", "-respout", base + ".der"]
        argv += ["-nmin", str(minutes)] if minutes else ["-ndays", str(days)]
        if days_ago:
            # The responder answered days_ago days ago: its clock, faked.
            need("faketime")
            argv = ["faketime", "-f", "-%dd" % days_ago] + argv
        subprocess.run(argv, check=True, capture_output=True)
        return base + ".der"


def gnutls_ocsp(port, starttls=None):
    """gnutls-cli --ocsp: (exit code, output). Without a valid staple it
    must ask the responder named in the certificate - ours name none - so
    it fails."""
    argv = ["gnutls-cli", "--ocsp", "--x509cafile", os.path.join(GatewayTest.pki_path, "ca.pem"),
            "-p", str(port), "localhost"]
    if starttls:
        argv[1:1] = ["--starttls-proto=" + starttls]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def s_client_status(port, starttls=None, rsa=False):
    """openssl s_client -status: the stapled response as it prints it."""
    argv = ["openssl", "s_client", "-status", "-connect", "127.0.0.1:%d" % port,
            "-CAfile", os.path.join(GatewayTest.pki_path, "ca.pem"), "-servername", "localhost"]
    if starttls:
        argv += ["-starttls", starttls]
    if rsa:     # only RSA signatures: the gateway must present its RSA chain
        argv += ["-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"]
    r = subprocess.run(argv, input="", capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


class OcspBase(GatewayTest):
    def setUp(self):
        need("gnutls-cli", "openssl")
        super().setUp()
        GatewayTest.pki_path = self.pki
        self.resp = Responder(self.tmp, self.pki)
        self.ecdsa = os.path.join(self.pki, "server-ecdsa.pem")
        self.rsa = os.path.join(self.pki, "server-rsa.pem")

    def staple(self, *files):
        return 'ocsp_staple = { %s }' % ", ".join('"%s"' % f for f in files)

    def check(self, tls_extra, binary=SMTPD):
        conf = (smtpd_conf if binary == SMTPD else imapd_conf)(
            self.pki, free_port(), listener("s", free_port(), "implicit"), tls_extra=tls_extra)
        path = self.tmp.file("check-%d.conf" % free_port(), conf)
        r = subprocess.run([binary, "-t", "-c", path], capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr


class Stapling(OcspBase):
    def test_good_staple_on_every_listener_kind(self):
        good = self.staple(self.resp.respond(self.ecdsa), self.resp.respond(self.rsa))
        smtps, sub, imaps, imap = free_port(), free_port(), free_port(), free_port()
        self.gateway(smtpd_conf(self.pki, free_port(),
                                listener("smtps", smtps, "implicit") + listener("sub", sub, "starttls"),
                                tls_extra=good), [smtps, sub])
        self.imap_gateway(imapd_conf(self.pki, free_port(),
                                     listener("imaps", imaps, "implicit") + listener("imap", imap, "starttls"),
                                     tls_extra=good), [imaps, imap])
        for port, starttls in ((smtps, None), (sub, "smtp"), (imaps, None), (imap, "imap")):
            rc, out = gnutls_ocsp(port, starttls)
            self.assertEqual(rc, 0, "port %d starttls=%s:\n%s" % (port, starttls, out))
            self.assertIn("OCSP status request", out)
            out = s_client_status(port, starttls)
            self.assertIn("Cert Status: good", out)
            self.assertIn("Serial Number: %s" % serial_of(self.ecdsa), out)
        # An RSA-only client gets the RSA chain, with the RSA chain's response.
        out = s_client_status(smtps, rsa=True)
        self.assertIn("Server public key is 2048 bit", out)
        self.assertIn("Cert Status: good", out)
        self.assertIn("Serial Number: %s" % serial_of(self.rsa), out)

    def test_no_staple_fails_client_check(self):
        """The control: the same clients without ocsp_staple."""
        p = free_port()
        self.gateway(smtpd_conf(self.pki, free_port(), listener("smtps", p, "implicit")), [p])
        rc, out = gnutls_ocsp(p)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("OCSP response: no response sent", s_client_status(p))

    def test_single_string_staples_the_first_cert_only(self):
        p = free_port()
        self.gateway(smtpd_conf(self.pki, free_port(), listener("smtps", p, "implicit"),
                                tls_extra='ocsp_staple = "%s"' % self.resp.respond(self.ecdsa)), [p])
        self.assertIn("Cert Status: good", s_client_status(p))
        self.assertIn("OCSP response: no response sent", s_client_status(p, rsa=True))

    def test_expired_response_warned_and_not_stapled(self):
        old = self.resp.respond(self.ecdsa, days_ago=10, days=7)     # nextUpdate 3 days ago
        extra = self.staple(old, "")
        rc, out = self.check(extra)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"warning: ocsp_staple: '.*' expired on \d{4}-\d\d-\d\d .*not stapled")
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, free_port(), listener("smtps", p, "implicit"),
                                     tls_extra=extra), [p])
        self.assertIn("OCSP response: no response sent", s_client_status(p))
        self.assertNotEqual(gnutls_ocsp(p)[0], 0)
        self.assertRegex(gw.log(), r"warning: ocsp_staple: .* expired on")

    def test_response_expiring_soon_warned(self):
        rc, out = self.check(self.staple(self.resp.respond(self.ecdsa, minutes=90)))
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"warning: ocsp_staple: '.*' expires on ")


class Refused(OcspBase):
    """Responses -t and start-up refuse, with the reason."""

    def assert_refused(self, extra, pattern, binary=SMTPD):
        rc, out = self.check(extra, binary)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"check-\d+\.conf:\d+: .*" + pattern)
        # Start-up refuses the same configuration.
        conf = (smtpd_conf if binary == SMTPD else imapd_conf)(
            self.pki, free_port(), listener("s", free_port(), "implicit"), tls_extra=extra)
        r = subprocess.run([binary, "-f", "-c", self.tmp.file("start.conf", conf)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout + r.stderr, pattern)

    def test_revoked(self):
        self.assert_refused(self.staple(self.resp.respond(self.ecdsa, status="revoked")),
                            r"ocsp_staple: '.*' says '.*server-ecdsa\.pem' was REVOKED on 2026-11-01")
        self.assert_refused(self.staple("", self.resp.respond(self.rsa, status="revoked")),
                            r"server-rsa\.pem' was REVOKED", binary=IMAPD)

    def test_unknown(self):
        self.assert_refused(self.staple(self.resp.respond(self.ecdsa, status="unknown")),
                            r"does not know '.*server-ecdsa\.pem' \(status unknown\)")

    def test_response_for_another_certificate(self):
        # The RSA certificate's (good) response given for the ECDSA one.
        self.assert_refused(self.staple(self.resp.respond(self.rsa)),
                            r"is about another certificate \(serial %s\), not '.*server-ecdsa\.pem' "
                            r"\(serial %s\)" % (serial_of(self.rsa).lower(),
                                                serial_of(self.ecdsa).lower()))

    def test_signed_by_a_responder_the_issuer_never_delegated(self):
        chain = self.tmp.file("chain.pem", open(self.ecdsa).read() + open(os.path.join(self.pki, "ca.pem")).read())
        key = os.path.join(self.pki, "server-ecdsa.key")
        foreign = self.resp.respond(self.ecdsa, signer="ocsp-foreign")
        extra = 'cert = { "%s" }\n  key = { "%s" }\n  ocsp_staple = "%s"' % (chain, key, foreign)
        conf = smtpd_conf(self.pki, free_port(), listener("s", free_port(), "implicit"))
        conf = re.sub(r'(?s)tls "default" \{.*?\n\}', 'tls "default" {\n  %s\n}' % extra, conf)
        path = self.tmp.file("chain.conf", conf)
        r = subprocess.run([SMTPD, "-t", "-c", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("is not signed by the issuer of", r.stdout + r.stderr)
        # The good responder's response for the same chain passes.
        good = self.resp.respond(self.ecdsa)
        path = self.tmp.file("chain2.conf", conf.replace(foreign, good))
        r = subprocess.run([SMTPD, "-t", "-c", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_malformed_and_truncated(self):
        good = self.resp.respond(self.ecdsa)
        with open(good, "rb") as f:
            der = f.read()
        for name, data in (("trunc.der", der[:len(der) // 2]), ("empty.der", b""),
                           ("pem.der", open(self.ecdsa, "rb").read()), ("junk.der", b"\x30\x82\xff\xff" + b"A" * 64)):
            path = self.tmp.file(name, data)
            self.assert_refused(self.staple(path), r"'%s' is not a DER OCSP response" % re.escape(path))

    def test_more_responses_than_certs(self):
        good = self.resp.respond(self.ecdsa)
        self.assert_refused(self.staple(good, "", good), r"3 ocsp_staple response\(s\) for 2 cert\(s\)")


if __name__ == "__main__":
    main()
