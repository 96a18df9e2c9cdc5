"""The whole path, with real servers only: a client submits over SMTPS
through mailgate-smtpd with AUTH (checked by Dovecot through Postfix's
SASL), Postfix delivers over LMTP into Dovecot's maildir, and the same
user reads the message through mailgate-imapd over IMAPS - byte for byte
apart from the headers each hop adds in front."""
import imaplib
import smtplib

from mgtest import (GatewayTest, client_context, free_port, imapd_conf, listener, main,
                    smtpd_conf)


class FullChain(GatewayTest):
    def test_submit_deliver_read(self):
        auth_port, lmtp_port, imap_port = free_port(), free_port(), free_port()
        dc = self.dovecot(auth_port=auth_port, imap_port=imap_port, lmtp_port=lmtp_port,
                          users={"alice": "secret"})
        pf_port = free_port()
        self.postfix(pf_port, main_extra="""smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
mydestination = example.org
local_transport = lmtp:inet:127.0.0.1:{lmtp}
mynetworks = 127.0.0.1/32
""".format(auth=auth_port, lmtp=lmtp_port))
        p_smtps, p_imaps = free_port(), free_port()
        sgw = self.gateway(smtpd_conf(self.pki, pf_port, listener("smtps", p_smtps, "implicit"),
                                      upstream_extra="xclient = true"), [p_smtps])
        self.imap_gateway(imapd_conf(self.pki, imap_port, listener("imaps", p_imaps, "implicit")),
                          [p_imaps])
        body = ("From: alice@example.org\r\nTo: alice@example.org\r\nSubject: full chain\r\n"
                "Message-ID: <chain-1@test.example>\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\n"
                "Sent through mailgate-smtpd, read through mailgate-imapd.\r\n.dot line\r\n")
        with smtplib.SMTP_SSL("localhost", p_smtps, context=client_context(), timeout=30) as s:
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login("alice", "wrong")
            s.login("alice", "secret")
            s.sendmail("alice@example.org", ["alice@example.org"], body.encode())
        dc.wait_log(r"lmtp\(alice\).*saved mail to INBOX", timeout=20)
        m = imaplib.IMAP4_SSL("localhost", p_imaps, ssl_context=client_context(), timeout=30)
        m.login("alice", "secret")
        m.select("INBOX")
        typ, data = m.search(None, 'HEADER Message-ID "<chain-1@test.example>"')
        self.assertEqual(typ, "OK")
        num = data[0].split()[-1]
        typ, data = m.fetch(num, "(BODY.PEEK[])")
        got = data[0][1]
        m.logout()
        # Each hop prepends; the message we sent is the tail, intact.
        self.assertTrue(got.endswith(body.encode()), got[-400:])
        self.assertIn(b"by mx.test.example (mailgate) with ESMTPSA tls TLS_", got.replace(b"\r\n\t", b" "))
        sgw.wait_log(r"user=alice msgs=1")


if __name__ == "__main__":
    main()
