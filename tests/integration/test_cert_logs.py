"""Certificate log lines an administrator can act on: a client certificate
refused on a require listener is logged with its status, fingerprint,
subject CN, SANs, issuer and notAfter (a hostile one - control bytes and
a line break in its CN, 60 long SANs - stays one escaped, bounded line);
the upstream's certificate is logged at warning level when refused
(wrong name, no pin) and at debug level when accepted (by name or by
pin); transport failures are put in words: a reset or a close during the
handshake, a handshake that times out, bytes that are not TLS - on the
client side and towards an implicit-TLS upstream."""
import hashlib
import os
import re
import socket
import ssl
import struct
import subprocess
import time

from mgtest import (GatewayTest, LoopbackServer, Smtp, client_context, free_port, listener, main, smtpd_conf)


def cert_facts(path):
    """(fp as logged, notAfter as logged) of a PEM certificate."""
    with open(path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    fp = "sha256:" + ":".join("%02X" % b for b in hashlib.sha256(der).digest())
    out = subprocess.run(["certtool", "-i", "--infile", path], capture_output=True, text=True).stdout
    na = re.search(r"Not After: \w+ (\w+ \d+ [\d:]+) UTC (\d+)", out)
    t = time.strptime("%s %s" % na.groups(), "%b %d %H:%M:%S %Y")
    return fp, time.strftime("%Y-%m-%dT%H:%M:%SZ", t)


def hostile_cert(out_dir):
    """A self-signed client certificate (so: unknown-ca) whose subject -
    and so its issuer - CN holds CR LF, an ANSI escape, '=' and spaces,
    with 60 DNS SANs of 60 bytes. certtool takes the raw bytes."""
    key, cert, tmpl = (os.path.join(out_dir, n) for n in ("hostile.key", "hostile.pem", "hostile.tmpl"))
    subprocess.run(["certtool", "--generate-privkey", "--key-type=ecdsa", "--outfile", key],
                   check=True, capture_output=True)
    with open(tmpl, "w") as f:
        f.write('cn = "evil\r\nforged: session=X result=ok \x1b[31m q=v"\nserial = 4242\n'
                "expiration_days = 30\ntls_www_client\nsigning_key\n")
        for i in range(60):
            f.write('dns_name = "h%02d-%s.test"\n' % (i, "a" * 52))
    subprocess.run(["certtool", "--generate-self-signed", "--load-privkey", key, "--template", tmpl,
                    "--outfile", cert], check=True, capture_output=True)
    return cert, key


def tls_client_hello_prefix():
    """The first bytes of a real ClientHello (then we stop sending)."""
    return bytes.fromhex("160301") + struct.pack(">H", 200) + b"\x01\x00\x00"


class ClientSide(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p_req, self.p_imp = free_port(), free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("req", self.p_req, "implicit", 'client_cert = "require"') +
                          listener("imp", self.p_imp, "implicit"),
                          tls_extra='client_ca = "%s/ca.pem"\n  crl = "%s/crl.pem"' % (self.pki, self.pki),
                          extra="timeout_handshake = 2")
        self.gw = self.gateway(conf, [self.p_req, self.p_imp])

    def refused(self, cert, key=None):
        ctx = client_context()
        ctx.load_cert_chain(cert, key)
        with self.assertRaises((ssl.SSLError, EOFError, ConnectionResetError)):
            Smtp(self.p_req, tls=True, ctx=ctx).reply()

    def test_refused_client_certificate_logged_with_what_to_act_on(self):
        for name, status, issuer in (("foreign", "unknown-ca", "CN=foreign test CA"),
                                     ("expired", "expired", "CN=mailgate test CA,O=mailgate tests")):
            self.refused("%s/%s.pem" % (self.pki, name), "%s/%s.key" % (self.pki, name))
            fp, not_after = cert_facts("%s/%s.pem" % (self.pki, name))
            line = self.gw.wait_log(r"(?m)^.*tls-failed session=\S+ client=127\.0\.0\.1 "
                                    r"reason=\"client certificate rejected: %s\" listener=req .*$"
                                    % status).group(0)
            self.assertIn(" cert=%s fp=%s " % (status, fp), line)
            self.assertIn(' issuer="%s" not_after=%s' % (issuer, not_after), line)
        self.assertRegex(self.gw.log(), r"cert=unknown-ca fp=\S+ subject_cn=partner-mx\.test "
                                        r"san=DNS:partner-mx\.test,email:alice@example\.org ")
        self.assertIn("not_after=2020-01-01T00:00:00Z", self.gw.log())
        self.assertRegex(self.gw.log(), r"cert=expired fp=\S+ subject_cn=expired\.test san=DNS:partner-mx\.test ")

    def test_hostile_certificate_stays_one_bounded_line(self):
        cert, key = hostile_cert(self.tmp.path)
        self.refused(cert, key)
        fp, not_after = cert_facts(cert)
        line = self.gw.wait_log(r"(?m)^.*tls-failed .* fp=%s .*$" % re.escape(fp)).group(0)
        # The CN escaped once (\xHH, \"), never a second line or a raw escape.
        cn = r'"evil\x0d\x0aforged: session=X result=ok \x1b[31m q=v"'
        self.assertIn(" subject_cn=%s " % cn, line)
        self.assertIn(' issuer="CN=%s ' % cn[1:], line)      # self-signed: the same name
        self.assertIn(" san_unreadable=28 ", line)            # 60 SANs, 32 kept
        self.assertNotRegex(self.gw.log(), r"(?m)^forged")
        self.assertNotIn("\x1b", self.gw.log())
        san = re.search(r" san=(\S+) ", line).group(1)
        self.assertTrue(san.startswith("DNS:h00-") and san.endswith(",..."), san)
        self.assertLessEqual(len(san), 256)
        self.assertIn("not_after=%s" % not_after, line)
        # ... and the gateway serves the next client.
        c = Smtp(self.p_imp, tls=True)
        self.assertEqual(c.reply()[0], 220)

    def test_reset_during_handshake(self):
        s = socket.create_connection(("127.0.0.1", self.p_imp))
        s.sendall(tls_client_hello_prefix())
        time.sleep(0.3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        self.gw.wait_log(r"tls-failed session=\S+ client=127\.0\.0\.1 reason=\"connection reset by peer "
                         r"during the handshake\" listener=imp")
        self.assertNotIn("pull function", self.gw.log())

    def test_close_during_handshake(self):
        s = socket.create_connection(("127.0.0.1", self.p_imp))
        s.sendall(tls_client_hello_prefix())
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
        s.close()
        self.gw.wait_log(r"tls-failed session=\S+ client=127\.0\.0\.1 reason=\"peer closed the connection "
                         r"during the handshake\" listener=imp")

    def test_handshake_timeout(self):
        s = socket.create_connection(("127.0.0.1", self.p_imp))
        s.sendall(tls_client_hello_prefix())
        self.gw.wait_log(r"tls-failed session=\S+ client=127\.0\.0\.1 reason=\"handshake timed out\" "
                         r"listener=imp", timeout=15)
        self.gw.wait_log(r"listener=imp client=\S+ .*result=timeout")
        s.close()

    def test_not_tls(self):
        s = socket.create_connection(("127.0.0.1", self.p_imp))
        s.sendall(b"EHLO plain.test\r\n")
        self.gw.wait_log(r"tls-failed session=\S+ client=127\.0\.0\.1 reason=\"not a TLS handshake: the peer "
                         r"sent plain text")
        s.close()


class Raw(LoopbackServer):
    """An 'upstream' that accepts and then resets, or says nothing."""

    def __init__(self, mode):
        self.mode = mode
        super().__init__(serial=(mode == "reset"))

    def handle(self, c):
        if self.mode == "reset":
            c.recv(10)      # the ClientHello arrived
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        else:
            self.stopping.wait()    # held open, silent, until close()


class UpstreamSide(GatewayTest):
    """Gateway A relays over implicit TLS to gateway B, which presents
    upstream.pem (CN and DNS upstream.test, DNS localhost)."""

    def chain(self, a_tls_client, extra_up=""):
        self.sink_ = self.sink()
        self.p_b = free_port()
        conf_b = smtpd_conf(self.pki, self.sink_.port, listener("partners", self.p_b, "implicit"))
        conf_b = conf_b.replace('"%s/server-ecdsa.pem", "%s/server-rsa.pem"' % (self.pki, self.pki),
                                '"%s/upstream.pem"' % self.pki).replace(
            '"%s/server-ecdsa.key", "%s/server-rsa.key"' % (self.pki, self.pki), '"%s/upstream.key"' % self.pki)
        self.gw_b = self.gateway(conf_b, [self.p_b], name="gateway-b")
        self.a_gateway(self.p_b, a_tls_client, extra_up)

    def a_gateway(self, up_port, a_tls_client, extra_up=""):
        self.p_a = free_port()
        conf_a = smtpd_conf(self.pki, up_port,
                            listener("local-mta", self.p_a, "none", 'relay_networks = "127.0.0.1/32"'),
                            upstream_extra='xclient = false\n  tls = "implicit"\n  tls_client = "to-b"\n  '
                            + extra_up,
                            extra='tls_client "to-b" {\n%s\n}\n' % a_tls_client)
        self.gw_a = self.gateway(conf_a, [self.p_a], name="gateway-a")

    def mail(self):
        c = Smtp(self.p_a)
        c.reply()
        c.expect("EHLO mta.local", 250)
        return c.cmd("MAIL FROM:<a@test.example>")[0]

    def test_refused_upstream_certificate_wrong_name(self):
        self.chain('  ca = "%s/ca.pem"\n  verify_name = "not-gateway-b.test"' % self.pki)
        self.assertEqual(self.mail(), 421)
        fp, not_after = cert_facts("%s/upstream.pem" % self.pki)
        line = self.gw_a.wait_log(r"(?m)^.*warning: upstream-cert .*$").group(0)
        # The first refusal may be the start-up probe's (no session).
        self.assertRegex(line, r"warning: upstream-cert upstream=up address=127\.0\.0\.1:%d (?:session=\S+ )?"
                               r"result=refused cert=verified match=none verify_name=not-gateway-b\.test "
                               r"fp=%s subject_cn=upstream\.test san=DNS:upstream\.test,DNS:localhost "
                               r"issuer=\"CN=mailgate test CA,O=mailgate tests\" not_after=%s "
                               r"reason=\"server certificate rejected: no DNS name in it matches "
                               r"'not-gateway-b\.test'\"" % (self.p_b, re.escape(fp), not_after))
        self.assertEqual(self.sink_.messages(), [])

    def test_refused_upstream_certificate_no_pin(self):
        self.chain('  fingerprint = "sha256:%s"' % ("00" * 32))
        self.assertEqual(self.mail(), 421)
        fp, _ = cert_facts("%s/upstream.pem" % self.pki)
        self.gw_a.wait_log(r"warning: upstream-cert upstream=up .* result=refused cert=unknown-ca match=none "
                           r".*fp=%s .*reason=\"server certificate rejected: matches no pin" % re.escape(fp))

    def test_accepted_upstream_certificate_at_debug(self):
        self.chain('  ca = "%s/ca.pem"\n  verify_name = "upstream.test"' % self.pki)
        self.assertEqual(self.mail(), 250)
        self.gw_a.wait_log(r"debug: upstream-cert upstream=up address=127\.0\.0\.1:%d session=\S+ "
                           r"result=accepted cert=verified match=name verify_name=upstream\.test fp=sha256:"
                           % self.p_b)
        self.assertNotIn("warning: upstream-cert", self.gw_a.log())

    def test_accepted_upstream_certificate_by_pin(self):
        fp, _ = cert_facts("%s/upstream.pem" % self.pki)
        self.chain('  fingerprint = "%s"' % fp)
        self.assertEqual(self.mail(), 250)
        self.gw_a.wait_log(r"debug: upstream-cert upstream=up .* result=accepted cert=unknown-ca match=pin "
                           r".*fp=%s " % re.escape(fp))

    def test_upstream_reset_during_handshake(self):
        raw = Raw("reset")
        self.addCleanup(raw.stop)
        self.a_gateway(raw.port, '  ca = "%s/ca.pem"\n  verify_name = "upstream.test"' % self.pki)
        self.assertEqual(self.mail(), 421)
        self.gw_a.wait_log(r"upstream up 127\.0\.0\.1:%d: connection reset by peer during the handshake"
                           % raw.port)
        self.assertNotIn("pull function", self.gw_a.log())

    def test_upstream_handshake_timeout(self):
        raw = Raw("silent")
        self.addCleanup(raw.stop)
        self.a_gateway(raw.port, '  ca = "%s/ca.pem"\n  verify_name = "upstream.test"' % self.pki,
                       extra_up="timeout_reply = 1")
        self.assertEqual(self.mail(), 421)
        self.gw_a.wait_log(r"upstream up 127\.0\.0\.1:%d: TLS handshake timed out" % raw.port)


if __name__ == "__main__":
    main()
