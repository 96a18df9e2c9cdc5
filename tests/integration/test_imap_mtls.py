"""IMAP with client certificates (DESIGN.md §5.2, §6) against a real
Dovecot with a master user: AUTH=EXTERNAL is offered only when a verified
certificate names exactly one user; AUTHENTICATE EXTERNAL (empty or
matching authzid, SASL-IR or continuation) logs that user in through the
master user; a certificate that maps to nobody, an unverified one, or
another authzid gets NO. peers_only refuses everyone else with BYE."""
import os

from mgtest import (GatewayTest, Imap, client_context, free_port, imapd_conf, listener, main)


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
                         r"user=alice@example\.org upstream=")

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
