"""SIGHUP reload against real clients, a real smtp-sink and a real
Dovecot: a new certificate is served to new connections within a second
while an SMTP session of the old generation finishes its transaction and
an IMAP session in IDLE keeps receiving; a broken configuration is logged
with its FILE:LINE and the running one keeps serving; a CRL update
revokes a client certificate for new connections; listeners added by a
reload are bound and removed ones closed; session tickets resume across
workers and across a reload, and not after the ticket_key file is
replaced."""
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time

from mgtest import (GatewayTest, Imap, Smtp, client_context, free_port, imapd_conf, listener, main,
                    message, send_message, smtpd_conf, wait_port, worker_pids)

LOCAL = 'relay_networks = "127.0.0.1/32"'


def fingerprint(port, cert=None, key=None):
    ctx = client_context()
    if cert:
        ctx.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def file_fingerprint(pem):
    der = ssl.PEM_cert_to_DER_cert(open(pem).read())
    return hashlib.sha256(der).hexdigest()


class Reload(GatewayTest):
    def smtpd(self, cert, listeners, extra="", tls_extra=""):
        """An smtpd config whose tls section serves one certificate."""
        conf = smtpd_conf(self.pki, self.up.port, listeners, extra=extra, tls_extra=tls_extra)
        pair = '{ "%s/server-ecdsa.pem", "%s/server-rsa.pem" }' % (self.pki, self.pki)
        keys = '{ "%s/server-ecdsa.key", "%s/server-rsa.key" }' % (self.pki, self.pki)
        return conf.replace(pair, '"%s/%s.pem"' % (self.pki, cert)).replace(
            keys, '"%s/%s.key"' % (self.pki, cert))

    def reload(self, gw, conf):
        with open(gw.conf_path, "w") as f:
            f.write(conf)
        n = gw.log().count("SIGHUP: reloading")
        os.kill(gw.proc.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while gw.log().count("SIGHUP: reloading") <= n:
            self.assertLess(time.time(), deadline)
            time.sleep(0.02)

    def wait_reload_done(self, gw, n=1):
        deadline = time.time() + 10
        while gw.log().count("reload done") < n:
            self.assertLess(time.time(), deadline, gw.log()[-3000:])
            time.sleep(0.02)

    def test_new_cert_while_old_transaction_finishes(self):
        self.up = self.sink()
        p_tls, p_plain = free_port(), free_port()
        listeners = listener("smtps", p_tls, "implicit") + listener("local", p_plain, "none", LOCAL)
        gw = self.gateway(self.smtpd("server-ecdsa", listeners, "workers = 2"), [p_tls, p_plain])
        self.assertEqual(fingerprint(p_tls), file_fingerprint(self.pki + "/server-ecdsa.pem"))
        old = Smtp(p_plain)
        old.reply()
        old.expect("EHLO old.test", 250)
        old.expect("MAIL FROM:<a@test.example>", 250)
        old.expect("RCPT TO:<user@example.org>", 250)
        idle = Smtp(p_plain)     # between transactions when the reload comes
        idle.reply()
        idle.expect("EHLO idle.test", 250)
        old_workers = set(worker_pids(gw.proc.pid, 2))
        t0 = time.time()
        self.reload(gw, self.smtpd("server-rsa", listeners, "workers = 2"))
        want = file_fingerprint(self.pki + "/server-rsa.pem")
        while fingerprint(p_tls) != want:
            self.assertLess(time.time() - t0, 1.0, "the new certificate is not served within 1 s")
            time.sleep(0.02)
        self.wait_reload_done(gw)
        # The old session, served by an old worker, finishes normally.
        old.expect("DATA", 354)
        old.send(message("across the reload") + b".\r\n")
        self.assertEqual(old.reply()[0], 250)
        old.expect("QUIT", 221)
        msgs = self.up.wait_messages(1)
        self.assertIn(b"across the reload", msgs[0].message)
        # A session of the old generation between transactions goes on as
        # it was: no 421 at its next command.
        code, lines = send_message(idle, message("idle across the reload"))
        self.assertEqual(code, 250, lines)
        idle.expect("QUIT", 221)
        self.assertIn(b"idle across the reload", self.up.wait_messages(2)[1].message)
        # Then the old generation is gone and two new workers serve.
        deadline = time.time() + 10
        while set(mgtest_children(gw.proc.pid)) & old_workers:
            self.assertLess(time.time(), deadline, "old workers linger after their last session")
            time.sleep(0.05)
        self.assertEqual(len(worker_pids(gw.proc.pid, 2)), 2)

    def test_broken_config_keeps_serving(self):
        self.up = self.sink()
        p = free_port()
        conf = self.smtpd("server-ecdsa", listener("smtps", p, "implicit"))
        gw = self.gateway(conf, [p])
        workers = worker_pids(gw.proc.pid, 1)
        broken = conf.replace("log_level", "no_such_key = 1\nlog_level", 1)
        self.reload(gw, broken)
        m = gw.wait_log(r"reload: .*smtpd\.conf:(\d+): .*no_such_key")
        self.assertEqual(broken.splitlines()[int(m.group(1)) - 1], "no_such_key = 1")
        gw.wait_log(r"reload failed: the running configuration stays")
        self.assertEqual(fingerprint(p), file_fingerprint(self.pki + "/server-ecdsa.pem"))
        self.assertEqual(worker_pids(gw.proc.pid, 1), workers)
        # A key that does not match its certificate is refused too.
        bad_key = self.smtpd("server-ecdsa", listener("smtps", p, "implicit")).replace(
            "server-ecdsa.key", "server-rsa.key")
        self.reload(gw, bad_key)
        gw.wait_log(r"reload: .*does not match")
        self.assertEqual(fingerprint(p), file_fingerprint(self.pki + "/server-ecdsa.pem"))

    def test_crl_update_revokes_for_new_connections(self):
        self.up = self.sink()
        p = free_port()
        empty_crl = self.tmp.path + "/empty-crl.pem"
        tmpl = self.tmp.file("crl.tmpl", "crl_next_update = 30\ncrl_number = 7\n")
        subprocess.run(["certtool", "--generate-crl", "--load-ca-privkey", self.pki + "/ca.key",
                        "--load-ca-certificate", self.pki + "/ca.pem", "--template", tmpl,
                        "--outfile", empty_crl], check=True, capture_output=True)
        crl = self.tmp.file("current-crl.pem", open(empty_crl).read())
        tls_extra = 'client_ca = "%s/ca.pem"\n  crl = "%s"\n  client_cert = "require"' % (self.pki, crl)
        conf = self.smtpd("server-ecdsa", listener("smtps", p, "implicit"), tls_extra=tls_extra)
        gw = self.gateway(conf, [p])
        revoked = (self.pki + "/revoked.pem", self.pki + "/revoked.key")
        fingerprint(p, *revoked)    # accepted: not revoked yet
        with open(crl, "w") as f:
            f.write(open(self.pki + "/crl.pem").read())
        self.reload(gw, conf)
        self.wait_reload_done(gw)
        ctx = client_context()
        ctx.load_cert_chain(*revoked)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError, EOFError)):
            c = Smtp(p, tls=True, ctx=ctx)
            c.reply()
        gw.wait_log(r"reason=\"client certificate rejected: revoked\"")
        fingerprint(p, self.pki + "/peer.pem", self.pki + "/peer.key")    # others still fine

    def test_listeners_added_and_removed(self):
        self.up = self.sink()
        p1, p2 = free_port(), free_port()
        gw = self.gateway(self.smtpd("server-ecdsa", listener("one", p1, "none", LOCAL)), [p1])
        self.assertFalse(wait_port(p2, timeout=0.2))
        self.reload(gw, self.smtpd("server-ecdsa", listener("two", p2, "none", LOCAL)))
        self.wait_reload_done(gw)
        c = Smtp(p2)
        self.assertEqual(c.reply()[0], 220)
        c.expect("QUIT", 221)
        deadline = time.time() + 5
        while wait_port(p1, timeout=0.1):
            self.assertLess(time.time(), deadline, "the removed listener still accepts")
            time.sleep(0.05)

    def test_tickets_across_workers_and_reload(self):
        self.up = self.sink()
        p = free_port()
        key = self.tmp.file("ticket.key", os.urandom(64), mode=0o600)
        conf = self.smtpd("server-ecdsa", listener("smtps", p, "implicit"), "workers = 3",
                          tls_extra='ticket_key = "%s"' % key)
        gw = self.gateway(conf, [p])
        worker_pids(gw.proc.pid, 3)
        ctx = client_context()
        first = resumed_session(ctx, p, None)
        self.assertFalse(first[1])
        sess = first[0]
        # Enough connections that every worker gets some: all resume.
        for _ in range(12):
            self.assertTrue(resumed_session(ctx, p, sess)[1])
        self.reload(gw, conf)
        self.wait_reload_done(gw)
        for _ in range(6):
            self.assertTrue(resumed_session(ctx, p, sess)[1], "a ticket does not survive a reload")
        with open(key, "wb") as f:
            f.write(os.urandom(64))
        self.reload(gw, conf)
        self.wait_reload_done(gw, 2)
        for _ in range(6):
            self.assertFalse(resumed_session(ctx, p, sess)[1], "a ticket of the replaced key resumed")


class ReloadImap(GatewayTest):
    def test_idle_session_keeps_receiving_across_reload(self):
        dc_port = free_port()
        self.dovecot(imap_port=dc_port, users={"alice": "secret"})
        p = free_port()
        conf = imapd_conf(self.pki, dc_port, listener("imaps", p, "implicit"))
        gw = self.imap_gateway(conf, [p])
        c = Imap(p, tls=True)
        c.line()
        c.cmd("a", "LOGIN alice secret")
        c.cmd("b", "SELECT INBOX")
        c.send("c IDLE\r\n")
        self.assertTrue(c.line().startswith("+ "))
        old_worker = worker_pids(gw.proc.pid, 1)[0]
        pre = Imap(p, tls=True)     # connected, not logged in, when the reload comes
        pre.line()
        with open(gw.conf_path, "w") as f:
            f.write(conf.replace("log_level", 'timeout_handshake = 20\nlog_level', 1))
        os.kill(gw.proc.pid, signal.SIGHUP)
        gw.wait_log(r"reload done")
        # A new client logs in through the new generation and appends.
        other = Imap(p, tls=True)
        other.line()
        other.cmd("a", "LOGIN alice secret")
        other.send("b APPEND INBOX {25}\r\n")
        self.assertTrue(other.line().startswith("+"))
        other.send("Subject: poke\r\n\r\nwake up\r\n")
        self.assertEqual(other.until_tagged("b")[-1][:4], "b OK")
        other.cmd("z", "LOGOUT")
        # The old generation's IDLE session sees it.
        c.sock.settimeout(10)
        self.assertRegex(c.line(), r"^\* \d+ EXISTS")
        c.send("DONE\r\n")
        self.assertEqual(c.until_tagged("c")[-1][:4], "c OK")
        self.assertIn(old_worker, mgtest_children(gw.proc.pid))
        c.cmd("d", "LOGOUT")
        # The old generation's session that had not logged in yet goes on
        # too (no BYE): it logs in and reads.
        self.assertEqual(pre.cmd("a", "LOGIN alice secret")[-1][:4], "a OK")
        self.assertEqual(pre.cmd("b", "SELECT INBOX")[-1][:4], "b OK")
        pre.cmd("z", "LOGOUT")


def resumed_session(ctx, port, session):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost", session=session) as t:
            t.recv(100)    # the greeting; TLS 1.3 tickets arrive before it
            t.sendall(b"QUIT\r\n")
            t.recv(100)
            return t.session, t.session_reused


def mgtest_children(pid):
    import mgtest
    return mgtest.children(pid)


if __name__ == "__main__":
    main()
