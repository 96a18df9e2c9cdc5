"""Mutual TLS (DESIGN.md §3, §4.1, §6): every test client certificate -
none, peer, stranger, foreign CA, expired, not yet valid, revoked (CRL),
self-signed but pinned, wildcard, CN-only - against optional, require and
peers_only listeners, with the status the gateway records, the alert a
refused client gets, and whether it may relay. Certificates with names
that cannot be read exactly (an over-long dNSName) match no peer by name
and never fall back to the CN; a pin match is reported cert=verified
pin=yes; a peer that lists pins and names needs both, at the handshake on
require listeners too. The CN is logged and put in Received as its raw
value, escaped once. Outbound, the upstream's certificate must allow
serverAuth, pinned or not. Clients: Python ssl, swaks --tls-cert,
gnutls-cli."""
import hashlib
import re
import ssl
import subprocess

import mgtest
from mgtest import (GatewayTest, Smtp, client_context, free_port, listener, main, message, need,
                    send_message, smtpd_conf)


def spki_pin(pki, name):
    out = subprocess.run(["certtool", "-i", "--infile", "%s/%s.pem" % (pki, name)],
                         capture_output=True, text=True).stdout
    return re.search(r"pin-sha256[:=]\"?([A-Za-z0-9+/]+=*)", out).group(1)


def fingerprint(pki, name):
    with open("%s/%s.pem" % (pki, name)) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return "sha256:" + hashlib.sha256(der).hexdigest()


class Mtls(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p_opt, self.p_req, self.p_po, self.p_pos = free_port(), free_port(), free_port(), free_port()
        peers = """peer "partner" {{
  name = "partner-mx.test"
  relay = true
}}
peer "wild" {{
  name = "x.partner.test"
}}
peer "cnonly" {{
  name = "cn-only.test"
  relay = false
}}
peer "pinned" {{
  spki = "{spki}"
  relay = true
}}
peer "renewed" {{
  name = "stranger.test"
  fingerprint = "sha256:{zeros}"
}}
peer "pinned-named" {{
  fingerprint = "{fp2}"
  name = "someone-else.test"
  relay = true
}}
""".format(spki=spki_pin(self.pki, "selfsigned"), zeros="00" * 32,
           fp2=fingerprint(self.pki, "selfsigned2"))
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("opt", self.p_opt, "implicit", 'client_cert = "optional"') +
                          listener("req", self.p_req, "implicit", 'client_cert = "require"') +
                          listener("po", self.p_po, "implicit", 'client_cert = "optional"\n  peers_only = true') +
                          listener("pos", self.p_pos, "starttls", 'client_cert = "optional"\n  peers_only = true'),
                          tls_extra='client_ca = "%s/ca.pem"\n  crl = "%s/crl.pem"' % (self.pki, self.pki),
                          extra=peers)
        self.gw = self.gateway(conf, [self.p_opt, self.p_req, self.p_po, self.p_pos])

    def ctx(self, cert=None):
        c = client_context()
        if cert:
            c.load_cert_chain("%s/%s.pem" % (self.pki, cert), "%s/%s.key" % (self.pki, cert))
        return c

    def greet(self, port, cert):
        """The greeting line, or the SSL error text."""
        try:
            c = Smtp(port, tls=True, ctx=self.ctx(cert))
            return c, c.reply()[1][0]
        except (ssl.SSLError, EOFError, ConnectionResetError) as e:
            return None, "ERR " + str(e)

    def status_of(self, cert):
        c, g = self.greet(self.p_opt, cert)
        self.assertTrue(g.startswith("220 "), (cert, g))
        c.expect("QUIT", 221)
        c.closed()
        return self.gw.wait_log(r"listener=opt client=\S+ tls=\S+ cipher=\S+ cert=(\S+)(?: pin=yes)?"
                                r"(?: cn=\S+)? fp=sha256:[0-9A-F:]+ peer=(\S+)(?: reason=(\S+))? .*"
                                r"result=quit").groups()

    def test_optional_records_status(self):
        want = {
            "peer": ("verified", "partner", None),
            "stranger": ("verified", "none", "pin-mismatch"),   # names "renewed", wrong pin
            "foreign": ("unknown-ca", "none", "unknown-ca"),
            "expired": ("expired", "none", "expired"),
            "notyet": ("not-yet-valid", "none", "not-yet-valid"),
            "revoked": ("revoked", "none", "revoked"),
            "selfsigned": ("verified", "pinned", None),     # pin=yes: §6
            "wildcard": ("verified", "none", "no-matching-peer"),
            "cnonly": ("verified", "cnonly", None),
            "longdns": ("verified", "none", "no-matching-peer"),    # no CN fallback
            "selfsigned2": ("unknown-ca", "none", "unknown-ca"),    # pin, but not its names
        }
        for cert, expect in want.items():
            self.gw.stop()
            self.procs.remove(self.gw)
            with open(self.gw.conf_path) as f:
                self.gw = self.gateway(f.read(), [])
            self.assertEqual(self.status_of(cert), expect, cert)
        c, g = self.greet(self.p_opt, None)
        self.assertTrue(g.startswith("220 "))
        c.expect("QUIT", 221)
        self.gw.wait_log(r"listener=opt client=\S+ tls=\S+ cipher=\S+ cert=none msgs=0")

    def test_require_alerts(self):
        for cert, alert in (("foreign", "UNKNOWN_CA"), ("expired", "CERTIFICATE_EXPIRED"),
                            ("notyet", "CERTIFICATE_EXPIRED"), ("revoked", "CERTIFICATE_REVOKED"),
                            (None, "CERTIFICATE_REQUIRED")):
            c, g = self.greet(self.p_req, cert)
            self.assertTrue(g.startswith("ERR "), (cert, g))
            self.assertIn(alert, g.upper().replace(" ", "_"), (cert, g))
        for cert in ("peer", "stranger", "selfsigned"):     # verified, or pinned
            c, g = self.greet(self.p_req, cert)
            self.assertTrue(g.startswith("220 "), (cert, g))
        self.gw.wait_log(r"tls-failed session=\S+ client=127\.0\.0\.1 reason=\"client certificate rejected: revoked\"")
        self.gw.wait_log(r"result=cert-rejected")

    def test_hostile_certificates(self):
        """An unknown critical extension and a chain deeper than the limit
        are refused on require listeners, recorded on optional ones, and
        never make a peer."""
        for cert, status in (("critext", "invalid"), ("longchain", "chain-too-long")):
            c, g = self.greet(self.p_req, cert)
            self.assertTrue(g.startswith("ERR "), (cert, g))
            self.gw.wait_log(r"reason=\"client certificate rejected: %s\"" % status)
            c, g = self.greet(self.p_po, cert)
            self.assertEqual(g, "554 5.7.1 Certificate not accepted", cert)
            c.expect("QUIT", 221)
            self.gw.wait_log(r"cert=%s fp=sha256:[0-9A-F:]+ peer=none reason=%s" % (status, status))

    def test_peers_only_implicit(self):
        for cert in ("stranger", "foreign", None, "wildcard"):
            c, g = self.greet(self.p_po, cert)
            self.assertEqual(g, "554 5.7.1 Certificate not accepted", cert)
            self.assertEqual(c.cmd("EHLO x.test")[0], 503)
            self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 503)
            c.expect("QUIT", 221)
        for cert in ("peer", "selfsigned"):
            c, g = self.greet(self.p_po, cert)
            self.assertTrue(g.startswith("220 "), cert)

    def test_peers_only_starttls(self):
        c = Smtp(self.p_pos)
        c.reply()
        c.expect("EHLO x.test", 250)
        c.expect("STARTTLS", 220)
        c.starttls(self.ctx("stranger"))
        self.assertEqual(c.cmd("EHLO x.test")[1], ["421 4.7.1 Certificate not accepted"])
        self.assertTrue(c.closed())
        d = Smtp(self.p_pos)
        d.reply()
        d.expect("EHLO x.test", 250)
        d.expect("STARTTLS", 220)
        d.starttls(self.ctx("peer"))
        d.expect("EHLO x.test", 250)

    def test_relay_by_peer(self):
        # A relay peer may send anywhere; its Received line names it.
        c, g = self.greet(self.p_opt, "peer")
        c.expect("EHLO partner-mx.test", 250)
        code, _ = send_message(c, message("from a peer"), rcpts=("someone@elsewhere.example",))
        self.assertEqual(code, 250)
        m = self.up.wait_messages(1)
        flat = m[0].message.replace(b"\n\t", b" ")
        self.assertIn(b"(client certificate: verified, CN=partner-mx.test, peer=partner)", flat)
        # A matched peer with relay = false, and a stranger, may not.
        for cert in ("cnonly", "stranger", "selfsigned-unpinned"):
            if cert == "selfsigned-unpinned":
                continue
            c, g = self.greet(self.p_opt, cert)
            c.expect("EHLO x.test", 250)
            c.expect("MAIL FROM:<a@test.example>", 250)
            self.assertEqual(c.cmd("RCPT TO:<someone@elsewhere.example>")[0], 554, cert)
        # A pinned self-signed relay peer may; no CN for unverified chains.
        c, g = self.greet(self.p_opt, "selfsigned")
        c.expect("EHLO pinned.test", 250)
        code, _ = send_message(c, message("pinned"), rcpts=("other@elsewhere.example",))
        self.assertEqual(code, 250)
        c.expect("QUIT", 221)
        m = self.up.wait_messages(2)
        flat = m[-1].message.replace(b"\n\t", b" ")
        self.assertIn(b"(client certificate: verified, peer=pinned)", flat)
        self.gw.wait_log(r"cert=verified pin=yes fp=sha256:[0-9A-F:]+ peer=pinned helo=pinned\.test")

    def relay_one(self, cert, helo, subject, rcpt="someone@elsewhere.example"):
        """One message from cert on the optional listener; the reply code,
        and the upstream's copy with its Received folds undone."""
        c, g = self.greet(self.p_opt, cert)
        self.assertTrue(g.startswith("220 "), (cert, g))
        c.expect("EHLO " + helo, 250)
        c.expect("MAIL FROM:<a@test.example>", 250)
        code, _ = c.cmd("RCPT TO:<%s>" % rcpt)
        if code == 250:
            c.expect("DATA", 354)
            c.send(message(subject) + b".\r\n")
            c.reply()
        c.expect("QUIT", 221)
        c.closed()
        return code

    def received_for(self, subject):
        for m in self.up.wait_messages(1):
            if b"Subject: " + subject.encode() in m.message:
                return m.message.split(b"\nFrom: ")[0].replace(b"\n\t", b" ")
        self.fail("no message %r upstream" % subject)

    def test_overlong_dnsname_matches_no_peer(self):
        """A dNSName that cannot be read exactly (305 octets) is not dropped:
        the certificate has a dNSName, so its CN (partner-mx.test) is no
        DNS-ID, and it matches no peer by name - no relay, and peers_only
        refuses it."""
        self.assertEqual(self.relay_one("longdns", "partner-mx.test", "longdns"), 554)
        self.gw.wait_log(r"listener=opt .*cert=verified cn=partner-mx\.test fp=sha256:[0-9A-F:]+ "
                         r"peer=none reason=no-matching-peer helo=partner-mx\.test")
        self.assertNotRegex(self.gw.log(), r"cn=partner-mx\.test fp=\S+ peer=partner helo=partner-mx")
        c, g = self.greet(self.p_po, "longdns")
        self.assertEqual(g, "554 5.7.1 Certificate not accepted")
        c.expect("QUIT", 221)

    def test_pinned_peer_needs_its_names_on_require(self):
        """peer "pinned-named" pins selfsigned2 but names someone-else.test,
        which it does not carry: no peer matches it and its chain does not
        verify, so a require listener refuses it in the handshake with the
        §6 alert - the pin oracle applies peer_match's rule."""
        c, g = self.greet(self.p_req, "selfsigned2")
        self.assertTrue(g.startswith("ERR "), g)
        self.assertIn("UNKNOWN_CA", g.upper().replace(" ", "_"), g)
        self.gw.wait_log(r"tls-failed session=\S+ client=127\.0\.0\.1 "
                         r"reason=\"client certificate rejected: unknown-ca\"")
        self.gw.wait_log(r"listener=req client=\S+ .*result=cert-rejected")
        self.assertNotRegex(self.gw.log(), r"listener=req .*cert=unknown-ca .*peer=none")
        # The certificate a peer pins without names still gets in.
        c, g = self.greet(self.p_req, "selfsigned")
        self.assertTrue(g.startswith("220 "), g)
        c.expect("QUIT", 221)
        self.gw.wait_log(r"listener=req .*cert=verified pin=yes fp=sha256:[0-9A-F:]+ peer=pinned .*result=quit")

    def test_pin_match_reported_verified(self):
        """A self-signed certificate accepted by its pin is cert=verified
        pin=yes in the log and "verified" in Received (§6), with no CN (its
        chain did not verify)."""
        self.assertEqual(self.relay_one("selfsigned", "pinned.test", "pin-status"), 250)
        rec = self.received_for("pin-status")
        self.assertIn(b"(client certificate: verified, peer=pinned)", rec)
        self.assertNotIn(b"unknown-ca", rec)
        self.assertNotIn(b"CN=", rec)
        line = self.gw.wait_log(r"listener=opt .* cert=\S+ .*helo=pinned\.test .*").group(0)
        self.assertRegex(line, r" cert=verified pin=yes fp=sha256:[0-9A-F:]+ peer=pinned ")
        self.assertNotIn(" cn=", line)

    def test_cn_raw_value_escaped_once(self):
        """The CN is the attribute's raw value, escaped once for each
        consumer: the log quotes it per §7, Received writes it per §4.5
        (quotes and '=' are printable and stay)."""
        self.assertEqual(self.relay_one("weirdcn", "weird.test", "weird-cn", rcpt="user@example.org"), 250)
        rec = self.received_for("weird-cn")
        self.assertIn(b'(client certificate: verified, CN=Weird "Q" = N x)', rec)
        self.gw.wait_log(r'listener=opt .* cert=verified cn="Weird \\"Q\\" = N x" fp=sha256:')
        self.assertNotIn('\\\\', self.gw.log())     # no doubled backslash anywhere

    def test_swaks_and_gnutls_cli(self):
        need("swaks", "gnutls-cli")
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.p_req, "--tlsc",
                            "--tls-cert", self.pki + "/peer.pem", "--tls-key", self.pki + "/peer.key",
                            "-t", "someone@elsewhere.example", "-f", "relay@partner.test"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run(["gnutls-cli", "--port", str(self.p_req), "--x509cafile", self.pki + "/ca.pem",
                            "--verify-hostname", "localhost", "127.0.0.1"],
                           input=b"QUIT\r\n", capture_output=True, timeout=30)
        self.assertNotIn(b"220 mx", r.stdout)
        r = subprocess.run(["gnutls-cli", "--port", str(self.p_req), "--x509cafile", self.pki + "/ca.pem",
                            "--verify-hostname", "localhost", "--x509certfile", self.pki + "/peer.pem",
                            "--x509keyfile", self.pki + "/peer.key", "127.0.0.1"],
                           input=b"QUIT\r\n", capture_output=True, timeout=30)
        self.assertIn(b"220 mx.test.example ESMTP", r.stdout)

    def test_resumption_rechecks_policy(self):
        """A ticket from a listener that asks for no certificate must not
        open a listener that requires one (same tls section)."""
        ctx = self.ctx(None)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2     # session objects are simplest in 1.2
        p_none = free_port()
        self.gw.stop()
        self.procs.remove(self.gw)
        with open(self.gw.conf_path) as f:
            conf = f.read() + listener("none", p_none, "implicit")
        self.gw = self.gateway(conf, [])
        a = Smtp(p_none, tls=True, ctx=ctx)
        a.reply()
        sess = a.sock.session
        a.expect("QUIT", 221)
        import socket
        raw = socket.create_connection(("127.0.0.1", self.p_req))
        with self.assertRaises((ssl.SSLError, EOFError, ConnectionResetError)):
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=sess)
            s.recv(100) or (_ for _ in ()).throw(EOFError())


class TwoGateways(GatewayTest):
    """local MTA -> plain loopback listener of gateway A -> mTLS -> gateway B
    (peers_only) -> smtp-sink: byte-exact, and safe failures."""

    def chain(self, a_tls_client, b_peer='name = "partner-mx.test"', b_cert="upstream"):
        self.sink_ = self.sink()
        self.p_b = free_port()
        conf_b = smtpd_conf(self.pki, self.sink_.port,
                            listener("from-partners", self.p_b, "implicit",
                                     'client_cert = "optional"\n  peers_only = true'),
                            tls_extra='client_ca = "%s/ca.pem"' % self.pki,
                            extra='peer "gateway-a" {\n  %s\n  relay = true\n}\n' % b_peer)
        conf_b = conf_b.replace('"%s/server-ecdsa.pem", "%s/server-rsa.pem"' % (self.pki, self.pki),
                                '"%s/%s.pem"' % (self.pki, b_cert)).replace(
            '"%s/server-ecdsa.key", "%s/server-rsa.key"' % (self.pki, self.pki),
            '"%s/%s.key"' % (self.pki, b_cert))
        conf_b = conf_b.replace('hostname = "mx.test.example"', 'hostname = "mx-b.test.example"')
        self.gw_b = self.gateway(conf_b, [self.p_b], name="gateway-b")
        self.p_a = free_port()
        conf_a = smtpd_conf(self.pki, self.p_b,
                            listener("local-mta", self.p_a, "none", 'relay_networks = "127.0.0.1/32"'),
                            upstream_extra='xclient = false\n  tls = "implicit"\n  tls_client = "to-b"',
                            extra='tls_client "to-b" {\n%s\n}\n' % a_tls_client)
        self.gw_a = self.gateway(conf_a, [self.p_a], name="gateway-a")

    def a_client(self):
        c = Smtp(self.p_a)
        c.reply()
        c.expect("EHLO mta.local", 250)
        return c

    def test_chain_delivers_byte_exact(self):
        self.chain('  cert = "{p}/peer.pem"\n  key = "{p}/peer.key"\n  ca = "{p}/ca.pem"\n'
                   '  verify_name = "upstream.test"'.format(p=self.pki))
        msg = message("across gateways", "line 1\r\n.dot line\r\nline 3\r\n")
        code, lines = send_message(self.a_client(), msg, rcpts=("someone@partner.example",))
        self.assertEqual(code, 250, lines)
        m = self.sink_.wait_messages(1)
        body, recv_b = m[0].without_our_received()
        # B's Received first, then A's, then the message as sent.
        self.assertIn(b"peer=gateway-a)", recv_b.replace(b"\n\t", b" "))
        rest_lines = body.split(b"\n")
        self.assertTrue(rest_lines[0].startswith(b"Received: from mta.local"))
        i = 1
        while rest_lines[i].startswith(b"\t"):
            i += 1
        self.assertEqual(b"\n".join(rest_lines[i:]), msg.replace(b"\r\n", b"\n"))
        self.gw_b.wait_log(r"listener=from-partners .*cert=verified cn=partner-mx\.test .*peer=gateway-a")

    def test_chain_refuses_wrong_server_name(self):
        self.chain('  cert = "{p}/peer.pem"\n  key = "{p}/peer.key"\n  ca = "{p}/ca.pem"\n'
                   '  verify_name = "not-gateway-b.test"'.format(p=self.pki))
        c = self.a_client()
        self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 421)
        self.gw_a.wait_log(r"server certificate rejected: no DNS name in it matches 'not-gateway-b\.test'")
        self.assertEqual(self.sink_.messages(), [])

    def test_chain_refuses_when_a_presents_no_or_wrong_cert(self):
        for tc in ('  ca = "{p}/ca.pem"\n  verify_name = "upstream.test"',
                   '  cert = "{p}/stranger.pem"\n  key = "{p}/stranger.key"\n  ca = "{p}/ca.pem"\n'
                   '  verify_name = "upstream.test"'):
            self.chain(tc.format(p=self.pki))
            c = self.a_client()
            self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 421)
            self.assertEqual(self.sink_.messages(), [])
            self.gw_b.wait_log(r"peers_only: certificate not accepted")
            for g in (self.gw_a, self.gw_b, self.sink_):
                g.stop()
                self.procs.remove(g)

    def test_chain_with_pins(self):
        fp = fingerprint(self.pki, "upstream")
        self.chain('  cert = "{p}/peer.pem"\n  key = "{p}/peer.key"\n  fingerprint = "{fp}"'
                   .format(p=self.pki, fp=fp),
                   b_peer='spki = "%s"' % spki_pin(self.pki, "peer"))
        code, lines = send_message(self.a_client(), message("pinned both ways"),
                                   rcpts=("someone@partner.example",))
        self.assertEqual(code, 250, lines)
        self.assertEqual(len(self.sink_.wait_messages(1)), 1)

    def test_chain_refuses_server_cert_without_server_auth(self):
        """B presents a certificate whose EKU allows only clientAuth (a
        relay peer's client certificate, issued by the trusted CA for the
        name A expects): A refuses it, by chain and by pin alike (RFC 5280
        §4.2.1.12), and nothing is delivered."""
        fp = fingerprint(self.pki, "peer")
        for a_side in ('  ca = "{p}/ca.pem"\n  verify_name = "partner-mx.test"',
                       '  fingerprint = "{fp}"'):
            self.chain(('  cert = "{p}/peer.pem"\n  key = "{p}/peer.key"\n' + a_side)
                       .format(p=self.pki, fp=fp), b_cert="peer")
            c = self.a_client()
            self.assertEqual(c.cmd("MAIL FROM:<a@test.example>")[0], 421, a_side)
            self.gw_a.wait_log(r"server certificate rejected: .*(purpose|serverAuth)")
            self.assertEqual(self.sink_.messages(), [])
            for g in (self.gw_a, self.gw_b, self.sink_):
                g.stop()
                self.procs.remove(g)

    def test_chain_accepts_server_cert_without_eku(self):
        """A certificate without any EKU may serve (RFC 5280 §4.2.1.12: no
        extension, no restriction), by chain and by pin."""
        fp = fingerprint(self.pki, "noeku")
        for a_side in ('  ca = "{p}/ca.pem"\n  verify_name = "upstream.test"', '  fingerprint = "{fp}"'):
            self.chain(('  cert = "{p}/peer.pem"\n  key = "{p}/peer.key"\n' + a_side)
                       .format(p=self.pki, fp=fp), b_cert="noeku")
            code, lines = send_message(self.a_client(), message("no eku"), rcpts=("someone@partner.example",))
            self.assertEqual(code, 250, (a_side, lines))
            self.assertEqual(len(self.sink_.wait_messages(1)), 1)
            for g in (self.gw_a, self.gw_b, self.sink_):
                g.stop()
                self.procs.remove(g)


class EkuAndPostfix(GatewayTest):
    def test_client_eku(self):
        """client_eku = client: a certificate without id-kp-clientAuth
        (here a server certificate) is bad-usage; with "any" it verifies."""
        up = self.sink()
        p_any, p_cli = free_port(), free_port()
        conf = smtpd_conf(self.pki, up.port,
                          listener("any", p_any, "implicit", 'client_cert = "optional"') +
                          listener("cli", p_cli, "implicit", 'client_cert = "optional"\n  tls = "eku"'),
                          tls_extra='client_ca = "%s/ca.pem"' % self.pki,
                          extra='tls "eku" {\n  cert = "%s/server-ecdsa.pem"\n  key = "%s/server-ecdsa.key"\n'
                                '  client_ca = "%s/ca.pem"\n  client_eku = "client"\n}\n'
                                % (self.pki, self.pki, self.pki))
        gw = self.gateway(conf, [p_any, p_cli])
        for port, name in ((p_any, "any"), (p_cli, "cli")):
            for cert in ("upstream", "peer"):
                ctx = client_context()
                ctx.load_cert_chain("%s/%s.pem" % (self.pki, cert), "%s/%s.key" % (self.pki, cert))
                c = Smtp(port, tls=True, ctx=ctx)
                c.reply()
                c.expect("QUIT", 221)
        gw.wait_log(r"listener=any .*cert=verified cn=upstream\.test ")
        gw.wait_log(r"listener=cli .*cert=bad-usage fp=")
        gw.wait_log(r"listener=cli .*cert=verified cn=partner-mx\.test ")

    def test_client_eku_applies_to_pinned_certificates(self):
        """A pin tolerates an unknown issuer, nothing else (§6): with
        client_eku = client a pinned self-signed certificate whose EKU is
        serverAuth only is refused on a require listener and matches no
        peer on an optional one (its status shows unknown-ca, which ranks
        first, but bad-usage is behind it). A pinned clientAuth one still
        gets in."""
        up = self.sink()
        p_req, p_opt = free_port(), free_port()
        eku = 'tls = "eku"\n  client_cert = "%s"'
        conf = smtpd_conf(self.pki, up.port,
                          listener("req", p_req, "implicit", eku % "require") +
                          listener("opt", p_opt, "implicit", eku % "optional"),
                          extra='tls "eku" {\n  cert = "%s/server-ecdsa.pem"\n  key = "%s/server-ecdsa.key"\n'
                                '  client_ca = "%s/ca.pem"\n  client_eku = "client"\n}\n'
                                'peer "pinned-srv" {\n  spki = "%s"\n  relay = true\n}\n'
                                'peer "pinned" {\n  spki = "%s"\n  relay = true\n}\n'
                                % (self.pki, self.pki, self.pki, spki_pin(self.pki, "selfsigned-srv"),
                                   spki_pin(self.pki, "selfsigned")))
        gw = self.gateway(conf, [p_req, p_opt])

        def hello(port, cert):
            ctx = client_context()
            ctx.load_cert_chain("%s/%s.pem" % (self.pki, cert), "%s/%s.key" % (self.pki, cert))
            try:
                c = Smtp(port, tls=True, ctx=ctx)
                line = c.reply()[1][0]
                c.expect("QUIT", 221)
                c.closed()
                return line
            except (ssl.SSLError, EOFError, ConnectionResetError) as e:
                return "ERR " + str(e)

        self.assertTrue(hello(p_req, "selfsigned-srv").startswith("ERR "))
        gw.wait_log(r"listener=req .*result=cert-rejected")
        self.assertTrue(hello(p_opt, "selfsigned-srv").startswith("220 "))
        gw.wait_log(r"listener=opt .*cert=unknown-ca fp=sha256:[0-9A-F:]+ peer=none reason=unknown-ca ")
        self.assertNotIn("peer=pinned-srv", gw.log())
        self.assertTrue(hello(p_req, "selfsigned").startswith("220 "))
        gw.wait_log(r"listener=req .*cert=verified pin=yes fp=sha256:[0-9A-F:]+ peer=pinned ")

    def test_xclient_login_is_the_peer(self):
        """A relay peer reaches Postfix as XCLIENT LOGIN=<peer name>, which
        Postfix honours (permit_sasl_authenticated) when SASL is enabled."""
        auth_port = free_port()
        self.dovecot(auth_port=auth_port, users={"someone": "x"})
        pf_port = free_port()
        pf = self.postfix(pf_port, main_extra="mynetworks = 127.0.0.1/32\nsmtpd_sasl_auth_enable = yes\n"
                                              "smtpd_sasl_type = dovecot\n"
                                              "smtpd_sasl_path = inet:127.0.0.1:%d" % auth_port)
        p = free_port()
        conf = smtpd_conf(self.pki, pf_port, listener("partners", p, "implicit", 'client_cert = "require"'),
                          upstream_extra="xclient = true",
                          tls_extra='client_ca = "%s/ca.pem"' % self.pki,
                          extra='peer "partner" {\n  name = "partner-mx.test"\n  relay = true\n}\n')
        self.gateway(conf, [p])
        ctx = client_context()
        ctx.load_cert_chain(self.pki + "/peer.pem", self.pki + "/peer.key")
        c = Smtp(p, tls=True, ctx=ctx, source="127.0.0.13")
        c.reply()
        c.expect("EHLO partner-mx.test", 250)
        code, lines = send_message(c, message("peer relay"), rcpts=("someone@remote.example",))
        self.assertEqual(code, 250, lines)
        pf.wait_log(r"client=unknown\[127\.0\.0\.13\], sasl_method=XCLIENT, sasl_username=partner")


class ReadmePinRecipe(GatewayTest):
    """The README's pin recipe, run as written there (certtool 3.7's own
    output pasted into spki / fingerprint), identifies a self-signed peer."""

    def recipe(self):
        import os
        from mgtest import SRCDIR
        with open(os.path.join(SRCDIR, "README")) as f:
            cmds = [l.strip() for l in f if l.strip().startswith("certtool ") and "relay-client.pem" in l]
        self.assertEqual(len(cmds), 2, cmds)
        return cmds

    def test_recipe_as_written(self):
        need("certtool")
        up = self.sink()
        outs = []
        for cmd in self.recipe():
            cmd = cmd.replace("relay-client.pem", "%s/selfsigned.pem" % self.pki)
            r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, (cmd, r.stderr))
            outs.append(r.stdout.strip())
        self.assertTrue(outs[0].startswith("pin-sha256:"), outs)
        ctx = client_context()
        ctx.load_cert_chain("%s/selfsigned.pem" % self.pki, "%s/selfsigned.key" % self.pki)
        for key, value in (("spki", outs[0]), ("fingerprint", outs[1])):
            p = free_port()
            conf = smtpd_conf(self.pki, up.port,
                              listener("po", p, "implicit", 'client_cert = "require"\n  peers_only = true'),
                              extra='peer "by-%s" {\n  %s = "%s"\n}\n' % (key, key, value))
            r = subprocess.run([mgtest.SMTPD, "-t", "-c", self.tmp.file("check-%s.conf" % key, conf)],
                               capture_output=True, text=True)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "configuration ok"), r.stderr)
            gw = self.gateway(conf, [p])
            c = Smtp(p, tls=True, ctx=ctx)
            self.assertEqual(c.reply()[0], 220)
            c.expect("QUIT", 221)
            gw.wait_log(r"cert=verified pin=yes .*peer=by-%s" % key)


if __name__ == "__main__":
    main()
