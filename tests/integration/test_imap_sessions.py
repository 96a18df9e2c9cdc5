"""mailgate-imapd sessions after login and under stress, against a real
Dovecot: a 5 MB APPEND/FETCH round trip byte for byte, IDLE seeing a
message appended from a second session, COMPRESS=DEFLATE passing through,
timeout_idle's "* BYE Autologout", 200 concurrent sessions, mbsync syncing
a mailbox, user_map routing to a second Dovecot, and upstream failures
(down: NO [UNAVAILABLE]; a PREAUTH greeting from a real Dovecot imap
process: a configuration error). A client's half-close (its FIN, over
plain TCP or under TLS with or without close_notify) before, during and
after login still gets every reply to what it sent."""
import imaplib
import os
import shutil
import subprocess
import threading
import time
import zlib

from mgtest import (BioTls, GatewayTest, Imap, LoopbackServer, client_context, free_port, imapd_conf, listener, main,
                    need)


class Sessions(GatewayTest):
    def start(self, extra="", dovecot_extra="", users=None):
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users=users or {"alice": "secret", "bob": "hunter2"},
                               extra=dovecot_extra)
        self.p_imaps = free_port()
        self.gw = self.imap_gateway(imapd_conf(self.pki, self.dc_port,
                                               listener("imaps", self.p_imaps, "implicit", "max_per_ip = 500"),
                                               extra=extra), [self.p_imaps])

    def login(self, user="alice", password="secret"):
        m = imaplib.IMAP4_SSL("localhost", self.p_imaps, ssl_context=client_context(), timeout=30)
        m.login(user, password)
        return m

    def test_append_fetch_5mb_byte_exact(self):
        self.start()
        body = os.urandom(5 * 1024 * 1024 // 2).hex().encode()
        lines = b"\r\n".join(body[i:i + 76] for i in range(0, len(body), 76))
        msg = b"From: a@test.example\r\nTo: alice@test.example\r\nSubject: big\r\n\r\n" + lines + b"\r\n"
        m = self.login()
        typ, _ = m.append("INBOX", None, None, msg)
        self.assertEqual(typ, "OK")
        m.select("INBOX")
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], msg)
        m.logout()

    def test_idle_sees_append(self):
        self.start()
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.cmd("a", "LOGIN alice secret")
        c.cmd("b", "SELECT INBOX")
        c.send("c IDLE\r\n")
        self.assertTrue(c.line().startswith("+ "))
        t0 = time.time()
        other = self.login()
        other.append("INBOX", None, None, b"Subject: poke\r\n\r\nwake up\r\n")
        other.logout()
        c.sock.settimeout(10)
        seen = c.line()
        self.assertRegex(seen, r"^\* \d+ EXISTS")
        self.assertLess(time.time() - t0, 8)
        c.send("DONE\r\n")
        self.assertEqual(c.until_tagged("c")[-1][:4], "c OK")

    def test_compress_deflate_passes(self):
        self.start(dovecot_extra="protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n")
        c = Imap(self.p_imaps, tls=True)
        c.line()
        lines = c.cmd("a", "LOGIN alice secret")
        if "COMPRESS=DEFLATE" not in lines[-1]:
            self.skipTest("Dovecot without COMPRESS")
        self.assertEqual(c.cmd("b", "COMPRESS DEFLATE")[-1][:4], "b OK")
        comp = zlib.compressobj(wbits=-15)
        dec = zlib.decompressobj(wbits=-15)
        c.send(comp.compress(b"c NOOP\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
        out = b""
        c.sock.settimeout(10)
        while b"c OK" not in out:
            out += dec.decompress(c.sock.recv(65536))
        self.assertIn(b"c OK", out)

    def test_idle_timeout_autologout(self):
        self.start(extra="timeout_idle = 2")
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.cmd("a", "LOGIN alice secret")
        self.assertEqual(c.cmd("b", "NOOP")[-1][:4], "b OK")
        t0 = time.time()
        c.sock.settimeout(6)
        self.assertEqual(c.line(), "* BYE Autologout")
        self.assertTrue(c.closed())
        self.assertGreater(time.time() - t0, 1.5)
        self.gw.wait_log(r"user=alice .*result=timeout")

    def test_idle_timeout_after_compress_writes_nothing(self):
        self.start(extra="timeout_idle = 2",
                   dovecot_extra="protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n")
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.cmd("a", "LOGIN alice secret")
        self.assertEqual(c.cmd("b", "COMPRESS DEFLATE")[-1][:4], "b OK")
        c.sock.settimeout(6)
        data = c.sock.recv(4096)          # the stream is compressed: no BYE of ours
        self.assertEqual(data, b"")

    def test_compress_split_across_reads_still_seen(self):
        """COMPRESS arriving in two reads (two TLS records, a pause between)
        is still seen: the gateway never writes its plain BYE into the
        compressed stream."""
        self.start(extra="timeout_idle = 2",
                   dovecot_extra="protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n")
        c = Imap(self.p_imaps, tls=True)
        c.line()
        c.cmd("a", "LOGIN alice secret")
        c.send("b comp")
        time.sleep(0.5)              # the gateway reads and relays the first piece alone
        c.send("ress deflate\r\n")
        self.assertEqual(c.until_tagged("b")[-1][:4], "b OK")
        # The upstream stream sits at a line end ("b OK ...\r\n"), so only
        # knowing about COMPRESS keeps the gateway from writing its BYE.
        c.sock.settimeout(6)
        data = c.sock.recv(4096)          # idle timeout: nothing of ours, just the close
        self.assertEqual(data, b"")
        self.gw.wait_log(r"user=alice .*result=timeout")

    def test_preauth_deadline(self):
        self.start(extra="timeout_preauth = 2")
        c = Imap(self.p_imaps, tls=True)
        c.line()
        t0 = time.time()
        c.cmd("a", "NOOP")
        time.sleep(1.0)
        c.cmd("b", "NOOP")          # activity does not extend the deadline
        c.sock.settimeout(5)
        self.assertEqual(c.line(), "* BYE Disconnected for inactivity")
        self.assertTrue(c.closed())
        self.assertLess(time.time() - t0, 4)

    def test_concurrent_200(self):
        # Dovecot allows 10 sessions per user and client address by
        # default; 200 at once from 127.0.0.1 would test that limit (and
        # the machine's speed), not the gateway.
        self.start(dovecot_extra="protocol imap {\n  mail_max_userip_connections = 1000\n}\n")
        errors = []

        def one(i):
            try:
                m = self.login("alice" if i % 2 else "bob", "secret" if i % 2 else "hunter2")
                typ, _ = m.select("INBOX")
                assert typ == "OK"
                m.logout()
            except Exception as e:   # noqa: BLE001 - collected and reported
                errors.append(repr(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        logins = self.dc.log().count("Login: user=<")
        self.assertGreaterEqual(logins, 200)
        print("200 logins/logouts through the gateway in %.1f s" % (time.time() - t0))

    def test_mbsync(self):
        need("mbsync")
        self.start()
        m = self.login()
        for i in range(3):
            m.append("INBOX", None, None, ("Subject: sync %d\r\n\r\nbody %d\r\n" % (i, i)).encode())
        m.logout()
        local = self.tmp.file("Mail")
        os.makedirs(local)
        rc = self.tmp.file("mbsyncrc", """IMAPAccount gw
Host localhost
Port {port}
User alice
Pass secret
SSLType IMAPS
CertificateFile {pki}/ca.pem

IMAPStore remote
Account gw

MaildirStore local
Path {local}/
Inbox {local}/INBOX

Channel inbox
Far :remote:INBOX
Near :local:INBOX
Sync Pull
Create Near
SyncState *
""".format(port=self.p_imaps, pki=self.pki, local=local))
        r = subprocess.run(["mbsync", "-c", rc, "-a"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        got = []
        for root, _, files in os.walk(os.path.join(local, "INBOX")):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    got.append(fh.read())
        self.assertEqual(sorted(g.splitlines()[0] for g in got if g.startswith(b"Subject")),
                         [b"Subject: sync 0", b"Subject: sync 1", b"Subject: sync 2"])

    def test_user_map_routes(self):
        second_port = free_port()
        second = self.dovecot(imap_port=second_port, users={"bob": "hunter2"})
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret"})
        umap = self.tmp.file("user_map", "# per-user routing\nbob second\n")
        self.p_imaps = free_port()
        conf = imapd_conf(self.pki, self.dc_port, listener("imaps", self.p_imaps, "implicit",
                                                          'upstream = "dovecot"'),
                          extra='user_map = "%s"\nupstream "second" {\n  address = "127.0.0.1:%d"\n}\n'
                                % (umap, second_port))
        self.gw = self.imap_gateway(conf, [self.p_imaps])
        self.login("alice", "secret").logout()
        self.login("bob", "hunter2").logout()
        self.dc.wait_log(r"Login: user=<alice>")
        second.wait_log(r"Login: user=<bob>")
        self.assertNotIn("user=<bob>", self.dc.log())

    def test_upstream_down_then_back(self):
        self.start()
        self.dc.stop()
        c = Imap(self.p_imaps, tls=True)
        c.line()
        self.assertEqual(c.cmd("a", "LOGIN alice secret")[-1],
                         "a NO [UNAVAILABLE] Upstream server unavailable, try again later")
        # Not an authentication failure: more attempts are allowed.
        for t in ("b", "c", "d"):
            self.assertRegex(c.cmd(t, "LOGIN alice secret")[-1], r"NO \[UNAVAILABLE\]")
        self.assertEqual(c.cmd("e", "NOOP")[-1], "e OK NOOP completed")
        self.gw.wait_log(r"upstream unavailable")

    def test_preauth_upstream_is_refused(self):
        """A real Dovecot imap process started pre-authenticated (as with
        `imap` behind ssh) greets with PREAUTH: the gateway must refuse."""
        self.start()
        home = self.tmp.file("preauth-home")
        os.makedirs(home)
        shutil.chown(home, "nobody", "nogroup")

        def serve(conn):        # a pre-authenticated imap process on the connection
            env = {"USER": "alice", "HOME": home, "MAIL": "maildir:~/Maildir", "PATH": "/usr/bin:/bin"}
            subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "/usr/lib/dovecot/imap", "-c", self.dc.conf],
                             stdin=conn, stdout=conn, stderr=subprocess.DEVNULL, env=env)

        with LoopbackServer(serve, serial=True, backlog=5) as srv:
            self.gw.stop()
            self.procs.remove(self.gw)
            conf = imapd_conf(self.pki, srv.port, listener("imaps", self.p_imaps, "implicit"))
            self.gw = self.imap_gateway(conf, [self.p_imaps])
            c = Imap(self.p_imaps, tls=True)
            c.line()
            self.assertEqual(c.cmd("a", "LOGIN alice secret")[-1][:19], "a NO [UNAVAILABLE] ")
            c.close()
            self.gw.wait_log(r"configuration error: the upstream greets with PREAUTH")



class HalfClose(GatewayTest):
    """A client that sends its commands and then shuts down its write side
    (a TCP half-close, what `printf ... | nc -N` and many scripts do) gets
    the replies to everything it sent before the gateway closes."""

    def setUp(self):
        super().setUp()
        self.dc_port = free_port()
        self.dc = self.dovecot(imap_port=self.dc_port, users={"alice": "secret"})
        self.p_imaps, self.p_plain = free_port(), free_port()
        self.gw = self.imap_gateway(imapd_conf(self.pki, self.dc_port,
                                               listener("imaps", self.p_imaps, "implicit") +
                                               listener("plain", self.p_plain, "none")),
                                    [self.p_imaps, self.p_plain])

    def clients(self):
        """(label, connect) for plain TCP, TLS cut by a bare FIN, and TLS
        closed with close_notify then FIN; connect() returns a client past
        the greeting whose half_close() ends its sending side."""
        def plain():
            c = Imap(self.p_plain)
            c.line()
            return c

        def tls(close_notify):
            def connect():
                c = BioTls(self.p_imaps)
                c.line()
                half = c.half_close
                c.half_close = lambda: half(close_notify=close_notify)
                return c
            return connect
        return (("plain", plain), ("tls-fin", tls(False)), ("tls-close-notify", tls(True)))

    def test_before_login_pipelined_commands_answered(self):
        for label, connect in self.clients():
            c = connect()
            c.send("a NOOP\r\nb CAPABILITY\r\nc ID NIL\r\nd NOO")   # d never completes
            c.half_close()
            got = c.read_to_end().decode().split("\r\n")
            caps = "IMAP4rev1 SASL-IR ID LITERAL+ AUTH=PLAIN"
            self.assertEqual(got, ["a OK NOOP completed", "* CAPABILITY " + caps, "b OK Capability completed",
                                   "* ID NIL", "c OK ID completed", ""], label)
        self.gw.wait_log(r"(?s)(?:session=\S+ listener=(?:imaps|plain) .*result=ok\n.*){3}")

    def test_during_login_outcome_and_held_commands_answered(self):
        for label, connect in self.clients():
            c = connect()
            c.send("a LOGIN alice wrong\r\nb NOOP\r\n")
            c.half_close()
            got = c.read_to_end().decode().split("\r\n")
            self.assertRegex(got[0], r"^a NO \[AUTHENTICATIONFAILED\]", label)
            self.assertEqual(got[1:], ["b OK NOOP completed", ""], label)
            c = connect()
            c.send("a LOGIN alice secret\r\nb SELECT INBOX\r\nc LOGOUT\r\n")
            c.half_close()
            got = c.read_to_end().decode().split("\r\n")
            self.assertRegex(got[0], r"^a OK \[CAPABILITY IMAP4rev1 ", label)
            self.assertTrue(any(l.startswith("b OK [READ-WRITE]") for l in got), (label, got))
            self.assertEqual(got[-3], "* BYE Logging out", (label, got))
            self.assertRegex(got[-2], r"^c OK Logout completed", (label, got))
            self.assertEqual(got[-1], "", (label, got))

    def test_after_login_answer_in_flight_delivered(self):
        import imaplib
        body = b"\r\n".join(b"%07d " % i + b"x" * 68 for i in range(12000))   # about 900 KiB
        msg = b"From: a@test.example\r\nSubject: big\r\n\r\n" + body + b"\r\n"
        m = imaplib.IMAP4("127.0.0.1", self.dc_port, timeout=30)
        m.login("alice", "secret")
        self.assertEqual(m.append("INBOX", None, None, msg)[0], "OK")
        m.logout()
        for label, connect in self.clients():
            c = connect()
            c.send("a LOGIN alice secret\r\n")
            while not c.line().startswith("a OK "):
                pass
            c.send("b SELECT INBOX\r\n")
            while not c.line().startswith("b OK "):
                pass
            # No LOGOUT: only the FIN passed on tells Dovecot we are done.
            c.send("c FETCH 1 BODY.PEEK[]\r\n")
            c.half_close()
            got = c.read_to_end()
            head = b"* 1 FETCH (BODY[] {%d}\r\n" % len(msg)
            self.assertTrue(got.startswith(head), (label, got[:100]))
            self.assertEqual(got[len(head):len(head) + len(msg)], msg, label)
            self.assertRegex(got[len(head) + len(msg):].decode(), r"^\)\r\nc OK Fetch completed.*\r\n$", label)
        # Dovecot saw each client's end as its own FIN, after the FETCH.
        self.dc.wait_log(r"(?s)(?:imap\(alice\).*Disconnected: Connection closed \(FETCH finished.*){3}")
        self.gw.wait_log(r"(?s)(?:listener=(?:imaps|plain) .*user=alice .*result=ok\n.*){3}")


if __name__ == "__main__":
    main()
