"""demo.py: the end-to-end demo behind ./demo.sh, built on the test
harness (tests/integration/mgtest.py) so it starts and stops the same real
servers the tests use, each by PID, in a temp dir on 127.0.0.1 high ports:

  swaks --SMTPS+AUTH--> mailgate-smtpd --XCLIENT--> Postfix --LMTP--> Dovecot
  imaplib --IMAPS--> mailgate-imapd --ID, AUTHENTICATE--> Dovecot
"""
import imaplib
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ["MG_SRCDIR"], "tests", "integration"))
import mgtest  # noqa: E402


def say(text):
    print("\n\033[1m== %s\033[0m" % text, flush=True)


def swaks(port, pki, password, subject):
    return subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--tlsc", "--tls-verify",
                           "--tls-ca-path", pki + "/ca.pem", "--tls-sni", "localhost",
                           "--ehlo", "client.demo.example", "--auth", "PLAIN",
                           "--auth-user", "alice", "--auth-password", password,
                           "-f", "alice@example.org", "-t", "alice@example.org",
                           "--header", "Subject: " + subject,
                           "--body", "Hello through mailgate!"],
                          capture_output=True, text=True, timeout=60)


def main():
    tmp = mgtest.TempDir(prefix="mailgate-demo-")
    pki = mgtest.pki_dir()
    started = []
    try:
        say("Dovecot (users: alice/secret): IMAP, LMTP and SASL for Postfix, on loopback")
        auth, lmtp, imap = mgtest.free_port(), mgtest.free_port(), mgtest.free_port()
        dc = mgtest.Dovecot(tmp, users={"alice": "secret"}, auth_port=auth, imap_port=imap, lmtp_port=lmtp)
        started.append(dc)
        print("dovecot: IMAP 127.0.0.1:%d, LMTP 127.0.0.1:%d, auth 127.0.0.1:%d" % (imap, lmtp, auth))

        say("Postfix: trusts the gateway for XCLIENT, SASL through Dovecot, delivers over LMTP")
        pf_port = mgtest.free_port()
        pf = mgtest.Postfix(tmp, pf_port, main_extra="""smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
mydestination = example.org
local_transport = lmtp:inet:127.0.0.1:{lmtp}
""".format(auth=auth, lmtp=lmtp))
        started.append(pf)
        print("postfix: SMTP 127.0.0.1:%d" % pf_port)

        p_smtps, p_imaps = mgtest.free_port(), mgtest.free_port()
        sconf = mgtest.smtpd_conf(pki, pf_port, mgtest.listener("smtps", p_smtps, "implicit"),
                                  upstream_extra="xclient = true").replace('log_level = "debug"',
                                                                           'log_level = "info"')
        iconf = mgtest.imapd_conf(pki, imap, mgtest.listener("imaps", p_imaps, "implicit")).replace(
            'log_level = "debug"', 'log_level = "info"')
        say("mailgate-smtpd configuration")
        print(sconf)
        say("mailgate-imapd configuration")
        print(iconf)
        sgw = mgtest.Gateway(tmp, sconf, [p_smtps])
        started.append(sgw)
        igw = mgtest.Gateway(tmp, iconf, [p_imaps], binary=mgtest.IMAPD, name="imapd")
        started.append(igw)
        print("mailgate-smtpd on 127.0.0.1:%d (SMTPS), mailgate-imapd on 127.0.0.1:%d (IMAPS)"
              % (p_smtps, p_imaps))

        say("swaks with a wrong password: refused by the real server (Dovecot via Postfix)")
        r = swaks(p_smtps, pki, "wrong", "never sent")
        print("\n".join(l for l in r.stdout.splitlines() if " AUTH " in l or "535" in l))

        say("swaks submits over SMTPS with AUTH, the certificate verified against the demo CA")
        r = swaks(p_smtps, pki, "secret", "mailgate demo")
        print(r.stdout)
        if r.returncode != 0:
            raise SystemExit("swaks failed:\n" + r.stderr)
        dc.wait_log(r"lmtp\(alice\).*saved mail to INBOX", timeout=30)

        say("alice reads her INBOX through mailgate-imapd (Python imaplib over IMAPS)")
        m = imaplib.IMAP4_SSL("localhost", p_imaps, ssl_context=mgtest.client_context(), timeout=30)
        print(m.welcome.decode())
        m.login("alice", "secret")
        m.select("INBOX")
        typ, data = m.search(None, 'SUBJECT "mailgate demo"')
        typ, msg = m.fetch(data[0].split()[-1], "(BODY.PEEK[])")
        print(msg[0][1].decode("utf-8", "replace"))
        m.logout()

        say("What the servers logged")
        print("\n".join(l for l in pf.log().splitlines() if "client=" in l or "status=" in l))
        print("\n".join(l for l in dc.log().splitlines() if "Login:" in l or "saved mail" in l))
        for gw in (sgw, igw):
            gw.stop()
            started.remove(gw)
            print(gw.log())
        say("Done: submitted through mailgate-smtpd, delivered by Postfix to Dovecot, read through mailgate-imapd")
    finally:
        for p in reversed(started):
            p.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
