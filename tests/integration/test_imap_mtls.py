"""IMAP with client certificates (DESIGN.md §5.2, §6) against a real
Dovecot with a master user: AUTH=EXTERNAL is offered only when a verified
certificate names exactly one user; AUTHENTICATE EXTERNAL (empty or
matching authzid, SASL-IR or continuation) logs that user in through the
master user; a certificate that maps to nobody, an unverified one, or
another authzid gets NO. peers_only refuses everyone else with BYE. A
certificate with an rfc822Name the gateway cannot read exactly (over-long,
or past the SANs it used to look at) beside alice@example.org is ambiguous,
never alice. Behind the gateway, the PROXY v2 header carries the CN as its
raw value for a verified chain with one CN, and verify=1 without a CN for
a pin-only match."""
import os
import re
import struct
import subprocess

from mgtest import (GatewayTest, Imap, LoopbackServer, client_context, free_port, imapd_conf, listener, main)


def spki_pin(pki, name):
    out = subprocess.run(["certtool", "-i", "--infile", "%s/%s.pem" % (pki, name)],
                         capture_output=True, text=True).stdout
    return re.search(r"pin-sha256[:=]\"?([A-Za-z0-9+/]+=*)", out).group(1)


class ImapExternal(GatewayTest):
    def setUp(self):
        super().setUp()
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice@example.org": "secret", "bob": "pw"},
                               master_users={"gatewaymaster": "m4ster"})
        pwfile = self.tmp.file("master.pw", "m4ster\n", mode=0o600)
        self.p_imaps, self.p_po = free_port(), free_port()
        conf = imapd_conf(self.pki, self.dc_port,
                          listener("imaps", self.p_imaps, "implicit", 'client_cert = "optional"') +
                          listener("partners", self.p_po, "implicit",
                                   'client_cert = "optional"\n  peers_only = true'),
                          tls_extra='client_ca = "%s/ca.pem"\n  crl = "%s/crl.pem"' % (self.pki, self.pki),
                          extra='master_user = "gatewaymaster"\nmaster_password_file = "%s"\n'
                                'external_identity = "email"\n'
                                'peer "partner" {\n  name = "partner-mx.test"\n}\n' % pwfile)
        self.gw = self.imap_gateway(conf, [self.p_imaps, self.p_po])

    def client(self, cert, port=None):
        ctx = client_context()
        if cert:
            ctx.load_cert_chain("%s/%s.pem" % (self.pki, cert), "%s/%s.key" % (self.pki, cert))
        c = Imap(port or self.p_imaps, tls=True, ctx=ctx)
        return c, c.line()

    def test_external_sasl_ir(self):
        c, greeting = self.client("peer")
        self.assertIn("AUTH=EXTERNAL", greeting)
        lines = c.cmd("a", "AUTHENTICATE EXTERNAL =")
        self.assertRegex(lines[-1], r"^a OK ")
        self.assertRegex(c.cmd("b", "SELECT INBOX")[-1], r"^b OK ")
        c.cmd("c", "LOGOUT")
        self.dc.wait_log(r"Login: user=<alice@example\.org>, method=PLAIN")
        self.gw.wait_log(r"listener=imaps .*cert=verified cn=partner-mx\.test .*peer=partner "
                         r"user=alice@example\.org bytes_in=\d+ bytes_out=\d+ upstream=")

    def test_external_continuation_with_matching_authzid(self):
        import base64
        c, _ = self.client("peer")
        c.send("a AUTHENTICATE EXTERNAL\r\n")
        self.assertEqual(c.line(), "+ ")
        c.send(base64.b64encode(b"alice@example.org").decode() + "\r\n")
        self.assertRegex(c.until_tagged("a")[-1], r"^a OK ")

    def test_external_other_authzid_refused(self):
        import base64
        c, _ = self.client("peer")
        lines = c.cmd("a", "AUTHENTICATE EXTERNAL " + base64.b64encode(b"bob").decode())
        self.assertRegex(lines[-1], r"^a NO \[AUTHENTICATIONFAILED\]")
        self.assertNotIn("user=<bob>", self.dc.log())
        # Each refusal counts toward max_auth_failures (3 by default).
        self.assertRegex(c.cmd("b", "AUTHENTICATE EXTERNAL " + base64.b64encode(b"carol").decode())[-1],
                         r"^b NO \[AUTHENTICATIONFAILED\]")
        c.send("c AUTHENTICATE EXTERNAL\r\n")
        self.assertEqual(c.line(), "+ ")
        c.send(base64.b64encode(b"ALICE@example.org").decode() + "\r\n")   # byte-equal or nothing
        self.assertRegex(c.line(), r"^c NO \[AUTHENTICATIONFAILED\]")
        self.assertEqual(c.line(), "* BYE Too many authentication failures")
        self.assertTrue(c.closed())
        self.gw.wait_log(r"(?s)(?:auth-failed session=\S+ client=127\.0\.0\.1 user=alice@example\.org "
                         r"mech=EXTERNAL\n.*){3}.*user=alice@example\.org .*result=auth-failures")

    def test_no_mapping_no_external(self):
        for cert in (None, "cnonly", "foreign", "expired"):
            c, greeting = self.client(cert)
            self.assertNotIn("AUTH=EXTERNAL", greeting, cert)
            self.assertRegex(c.cmd("a", "AUTHENTICATE EXTERNAL =")[-1], r"^a NO \[AUTHENTICATIONFAILED\]", cert)
            # PLAIN still works for a real user.
            self.assertRegex(c.cmd("b", "LOGIN bob pw")[-1], r"^b OK ", cert)

    def test_unreadable_email_is_no_identity(self):
        """longemail: a 302-octet rfc822Name, then alice@example.org;
        manysans: 127 URIs, then alice@ and bob@example.org. Each has two
        rfc822Names, so EXTERNAL is ambiguous: not offered, refused, and
        Dovecot never sees alice."""
        for cert in ("longemail", "manysans"):
            c, greeting = self.client(cert)
            self.assertTrue(greeting.startswith("* OK [CAPABILITY "), (cert, greeting))
            self.assertNotIn("AUTH=EXTERNAL", greeting, cert)
            self.assertRegex(c.cmd("a", "AUTHENTICATE EXTERNAL =")[-1], r"^a NO \[AUTHENTICATIONFAILED\]", cert)
            c.cmd("b", "LOGOUT")
        self.gw.wait_log(r"identity=ambiguous")
        self.assertNotIn("identity=ok", self.gw.log())
        self.assertNotIn("alice@example.org", self.dc.log())

    def test_peers_only(self):
        for cert in (None, "stranger", "foreign"):
            c, greeting = self.client(cert, self.p_po)
            self.assertEqual(greeting, "* BYE [AUTHENTICATIONFAILED] Certificate not accepted", cert)
            self.assertTrue(c.closed())
        c, greeting = self.client("peer", self.p_po)
        self.assertTrue(greeting.startswith("* OK [CAPABILITY "))
        self.gw.wait_log(r"listener=partners .*result=cert-rejected")

    def test_master_password_file_permissions(self):
        import subprocess
        from mgtest import IMAPD
        os.chmod(self.tmp.file("master.pw"), 0o644)
        r = subprocess.run([IMAPD, "-t", "-c", self.gw.conf_path], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"master_password_file: secret file '.*master\.pw' is readable by others")


class ProxyCapture(LoopbackServer):
    """A fake upstream that records the PROXY v2 header of each connection,
    greets, and closes after the first command (the login then fails; the
    header is what is looked at)."""

    def __init__(self):
        self.headers = []
        super().__init__(serial=True, backlog=8)

    def handle(self, conn):
        conn.settimeout(10)
        head = self.recv_exact(conn, 16)
        body = self.recv_exact(conn, struct.unpack("!H", head[14:16])[0])
        self.headers.append(head + body)
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake\r\n")
        conn.recv(1024)

    @staticmethod
    def ssl_tlv(header):
        """(verify, {subtype: value}) of PP2_TYPE_SSL."""
        tlvs = header[16 + 12:]      # after the IPv4 addresses and ports
        while tlvs:
            t, l = tlvs[0], struct.unpack("!H", tlvs[1:3])[0]
            v, tlvs = tlvs[3:3 + l], tlvs[3 + l:]
            if t == 0x20:
                verify = struct.unpack("!I", v[1:5])[0]
                subs, rest = {}, v[5:]
                while rest:
                    st, sl = rest[0], struct.unpack("!H", rest[1:3])[0]
                    subs[st] = rest[3:3 + sl]
                    rest = rest[3 + sl:]
                return verify, subs
        return None, {}


class ProxyV2Identity(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cap = ProxyCapture()
        self.addCleanup(self.cap.stop)
        self.p = free_port()
        conf = imapd_conf(self.pki, self.cap.port,
                          listener("imaps", self.p, "implicit", 'client_cert = "optional"'),
                          upstream_extra='forward_id = false\n  proxy_protocol = "v2"',
                          tls_extra='client_ca = "%s/ca.pem"' % self.pki,
                          extra='peer "pinned" {\n  spki = "%s"\n}\n' % spki_pin(self.pki, "selfsigned"))
        self.gw = self.imap_gateway(conf, [self.p])

    def header_for(self, cert):
        ctx = client_context()
        ctx.load_cert_chain("%s/%s.pem" % (self.pki, cert), "%s/%s.key" % (self.pki, cert))
        c = Imap(self.p, tls=True, ctx=ctx)
        c.line()
        n = len(self.cap.headers)
        self.assertRegex(c.cmd("a", "LOGIN bob pw")[-1], r"^a NO ")
        c.cmd("b", "LOGOUT")
        self.assertEqual(len(self.cap.headers), n + 1)
        return ProxyCapture.ssl_tlv(self.cap.headers[-1])

    def test_cn_is_the_raw_value(self):
        verify, subs = self.header_for("weirdcn")
        self.assertEqual(verify, 0)
        self.assertEqual(subs.get(0x22), b'Weird "Q" = N x')

    def test_no_cn_when_the_subject_has_several(self):
        """Several CNs: which one names the client is ambiguous (§6), so none
        is forwarded for Dovecot to log in as."""
        verify, subs = self.header_for("multicn")
        self.assertEqual(verify, 0)
        self.assertNotIn(0x22, subs)

    def test_pin_only_is_not_verified_for_dovecot(self):
        """A pin-only match is cert=verified pin=yes in the log, but PROXY
        v2 says verify=1 and sends no CN (Dovecot would log in as it)."""
        verify, subs = self.header_for("selfsigned")
        self.assertEqual(verify, 1)
        self.assertNotIn(0x22, subs)
        self.gw.wait_log(r"listener=imaps .*cert=verified pin=yes fp=sha256:[0-9A-F:]+ peer=pinned ")

class ExternalNoPlainUpstream(GatewayTest):
    """EXTERNAL logs in through the master user, which needs an
    authorization identity; an upstream without AUTH=PLAIN cannot take one,
    so the gateway answers NO itself: a whole line, CRLF included, and the
    next command's reply on a line of its own."""

    def test_external_refused_with_a_whole_line(self):
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice@example.org": "secret"},
                               master_users={"gatewaymaster": "m4ster"}, extra="auth_mechanisms = login\n")
        pwfile = self.tmp.file("master.pw", "m4ster\n", mode=0o600)
        self.p_imaps = free_port()
        conf = imapd_conf(self.pki, self.dc_port, listener("imaps", self.p_imaps, "implicit", 'client_cert = "optional"'),
                          tls_extra='client_ca = "%s/ca.pem"' % self.pki,
                          extra='master_user = "gatewaymaster"\nmaster_password_file = "%s"\n' % pwfile)
        self.gw = self.imap_gateway(conf, [self.p_imaps])
        ctx = client_context()
        ctx.load_cert_chain("%s/peer.pem" % self.pki, "%s/peer.key" % self.pki)
        c = Imap(self.p_imaps, tls=True, ctx=ctx)
        self.assertIn("AUTH=EXTERNAL", c.line())
        c.send("a AUTHENTICATE EXTERNAL =\r\nb NOOP\r\n")
        self.assertEqual(c.line(), "a NO [AUTHENTICATIONFAILED] Upstream cannot log in as another user")
        self.assertEqual(c.line(), "b OK NOOP completed")


if __name__ == "__main__":
    main()
