"""Reproducers and guards from the hostile review of ca199b7..a42406c (the
DATA relay's zero-copy TLS input, min_data_rate, the smtpd junk-command
limit, imapd's login in flight past timeout_preauth).

  1. PausedDropHang (a finding): the chunk of a message whose relay pushes
     the upstream queue over its high-water mark (reading pauses, and
     data_paused is set) and which also carries a bare LF (or crosses
     max_message_size) drops the upstream (smtp_relay_drop) BEFORE
     smtp_body_input sets data_paused and stops reading. No UP_DRAINED can
     ever come from the freed upstream, and the DATA timeout handler
     re-arms timeout_data forever while data_paused is set: the worker
     never reads the client again, never answers the dot, and the slot is
     held for ever (neither timeout_data, min_data_rate nor timeout_reply
     ends it). The gateway must read on to the final dot and answer
     550 5.6.0 (as for any bare LF).
  2. AuthAfterDotSameRecord (guard, the code holds): DATA over TLS is
     read in place (tls_recv_view, a conn that is not sensitive), so the
     AUTH line a client pipelines behind its final dot in the same TLS
     record - whole, or cut across two records - sits in the record GnuTLS
     handed out while the session switches back to the (wiped) command
     phase. Neither the password nor its base64 may be left in the
     worker's memory afterwards. Releasing the record in
     tls_view_consume() without the wipe fails the whole-record case.
  3. HeloJunk (a finding): the junk-command limit counts NOOP, RSET, VRFY
     and HELP only, but EHLO and HELO do no more work (answered by the
     gateway, an upstream RSET at most): an EHLO every timeout_command - 1
     seconds still holds a slot for ever, which mailgate-smtpd(8) says
     commands that do no work cannot do. Beyond the limit they must count
     toward max_errors like the others: the one reaching it followed by
     421 4.7.0 and the close.
  4. PreauthExemptionBounds (guards, the code holds): imapd's exemption
     from timeout_preauth covers only a login in flight at the upstream
     (IMAP_LOGIN). An AUTHENTICATE waiting for the CLIENT's continuation
     is cut at the deadline (BYE) like an idle client; a login the
     upstream never answers ends at the upstream's timeout_reply with
     NO [UNAVAILABLE], then the BYE and the close - never held for ever.
     Extending the exemption to IMAP_SASL fails the first.
  5. EndOfDataAcrossRecords (guard, the code holds): with DATA read record
     by record in place, each TLS record is one scanner feed. The final
     CRLF.CRLF cut at every offset across two records, with a command
     pipelined behind it in the second and another in a third record sent
     while the dot's reply is awaited, ends the message there (250, then
     each command's own reply, in order) and the upstream gets the body
     byte for byte (dropping the unread rest of a record when the next is
     read fails it); a dot-stuffed line cut the same way is not an end; LF.CRLF,
     CRLF.LF, CR.CRLF and CRLF.CRCRLF cut anywhere are no end either: the
     bare CR/LF refuses the message (550 5.6.0) at the real end, and what
     followed them (RSET, a line) went nowhere as commands.
"""
import base64
import os
import threading
import time

from mgtest import (ehlo_until, GatewayTest, LoopbackServer, ScriptedSmtp, Imap, Smtp, free_port, imapd_conf, listener, main,
                    memory_find, smtpd_conf)

HIGH_WATER = 256 * 1024     # SMTP_UP_HIGH_WATER in smtpd/smtp_relay.c
TIMEOUT_REPLY = 2           # the stuck upstream's timeout_reply


class StuckUpstream(LoopbackServer):
    """An SMTP upstream that answers up to DATA's 354 and then never reads
    again (a small receive buffer, so the kernel absorbs little); with
    stick=False it takes the message (250) and offers AUTH (235)."""

    def __init__(self, stick=True):
        self.stick = stick
        self.stuck = threading.Event()
        super().__init__(backlog=8, rcvbuf=4096)

    def handle(self, c):
        c.sendall(b"220 stuck.test ESMTP\r\n")
        data = False
        for line in self.lines(c, chunk=1):     # a byte at a time: nothing past DATA is read
            line = line.strip().upper()
            if data:
                if line == b".":
                    data = False
                    c.sendall(b"250 queued\r\n")
            elif line.startswith(b"EHLO"):
                c.sendall(b"250-stuck.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n")
            elif line.startswith(b"AUTH"):
                c.sendall(b"235 2.7.0 ok\r\n")
            elif line == b"DATA":
                c.sendall(b"354 go\r\n")
                if not self.stick:
                    data = True
                    continue
                self.stuck.set()
                self.stopping.wait()
                return
            elif line == b"QUIT":
                c.sendall(b"221 bye\r\n")
                return
            else:
                c.sendall(b"250 ok\r\n")


def tcp_queues():
    """{(local_port, remote_port): (tx_queue, rx_queue)} for 127.0.0.1."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            lport = int(p[1].split(":")[1], 16)
            rport = int(p[2].split(":")[1], 16)
            tx, rx = (int(x, 16) for x in p[4].split(":"))
            out[(lport, rport)] = (tx, rx)
    return out


class PausedDropHang(GatewayTest):
    """See 1. above."""

    def pause_with(self, end):
        """A message whose chunk crossing the high-water mark ends in
        `end`; returns the reply to its final dot (fails on none)."""
        up = StuckUpstream()
        self.addCleanup(up.stop)
        port = free_port()
        conf = smtpd_conf(self.pki, up.port,
                          listener("l", port, "none", 'relay_networks = "127.0.0.1/32"'),
                          extra="timeout_data = 3\nmin_data_rate = 0\nmax_line = 65536",
                          upstream_extra="xclient = false\ntimeout_reply = %d" % TIMEOUT_REPLY)
        self.gateway(conf, [port])
        c = Smtp(port, timeout=10)
        self.assertEqual(c.reply()[0], 220)
        c.expect("EHLO x.test", 250)
        c.expect("MAIL FROM:<a@x.test>", 250)
        c.expect("RCPT TO:<b@example.org>", 250)
        c.expect("DATA", 354)
        self.assertTrue(up.stuck.wait(5))
        s = c.sock
        me = s.getsockname()[1]

        def gw_upstream_queued():
            q = tcp_queues()
            k = 0
            for (lp, rp), (tx, rx) in q.items():
                if rp == up.port:           # the gateway's side: unsent
                    k += tx
                elif lp == up.port:         # the upstream's side: unread
                    k += rx
            return k

        def gw_unread():
            return tcp_queues().get((port, me), (0, 0))[1]

        def wait_read():
            for _ in range(200):
                if gw_unread() == 0:
                    return True
                time.sleep(0.01)
            return False

        line = b"x" * 1022 + b"\r\n"
        big, small = line * 64, line * 16      # 64 and 16 KiB, clean
        sent = 0
        # Fill the kernel's buffers and the gateway's queue to just below
        # the high-water mark, one piece (one gateway read) at a time.
        while True:
            time.sleep(0.02)
            queued = sent - gw_upstream_queued()   # + the Received header
            piece = big if queued + len(big) < HIGH_WATER - 80 * 1024 else small
            if queued + len(piece) >= HIGH_WATER - 8 * 1024:
                break
            s.sendall(piece)
            sent += len(piece)
            self.assertTrue(wait_read(), "the gateway stopped reading below the high-water mark")
        # One piece that crosses the high-water mark and ends in a bare LF.
        n = HIGH_WATER - queued + 4 * 1024
        last = b"y" * (n - len(end)) + end
        s.sendall(last)
        time.sleep(0.3)
        # The rest of the message and its dot: the gateway must read on
        # (the message is refused, nothing is delivered) and answer. Had
        # the pause come from a clean chunk, the stuck upstream would be
        # dropped after its timeout_reply and the dot answered (451); the
        # upstream freed with the pause still set is never timed out.
        s.settimeout(10)
        s.sendall(b"\r\ntail\r\n.\r\n")
        c.sock.settimeout(TIMEOUT_REPLY + 6)
        try:
            code, text = c.reply()
        except OSError as e:
            self.fail("no reply to the final dot after a bare LF in the pausing chunk "
                      "(gateway unread: %d bytes): %r" % (gw_unread(), e))
        c.expect("QUIT", 221)
        return code, text

    def test_bare_lf_in_the_chunk_that_pauses_is_answered(self):
        """The bare LF refuses the message: 550 5.6.0 after the dot."""
        code, text = self.pause_with(b"\n")
        self.assertEqual(code, 550, text)

    def test_clean_chunk_that_pauses_ends_at_timeout_reply(self):
        """Guard for the above (it shows the pause is reached): the same
        pause from a clean chunk ends when the stuck upstream's
        timeout_reply drops it - 451 4.4.2 after the dot."""
        code, text = self.pause_with(b"y")
        self.assertEqual(code, 451, text)


class AuthAfterDotSameRecord(GatewayTest):
    """See 2. above."""

    def run_cut(self, cut):
        pw = ("Pw-%s-secret" % os.urandom(8).hex()).encode()
        plain = base64.b64encode(b"\0alice@example.org\0" + pw).decode()
        up = StuckUpstream(stick=False)
        self.addCleanup(up.stop)
        p = free_port()
        gw = self.gateway(smtpd_conf(self.pki, up.port,
                                     listener("l", p, "implicit", 'relay_networks = "127.0.0.1/32"')), [p])
        c = Smtp(p, tls=True, timeout=10)
        c.reply()
        ehlo_until(c, "AUTH", "x.test")    # until the start-up probe has seen AUTH
        c.expect("MAIL FROM:<a@x.test>", 250)
        c.expect("RCPT TO:<b@example.org>", 250)
        c.expect("DATA", 354)
        tail = ("Subject: t\r\n\r\n" + "body line\r\n" * 50 + ".\r\nAUTH PLAIN " + plain + "\r\n").encode()
        if cut is None:
            c.sock.sendall(tail)            # one TLS record
        else:
            i = tail.index(b"AUTH PLAIN ") + cut
            c.sock.sendall(tail[:i])        # two records, the AUTH line cut
            time.sleep(0.2)
            c.sock.sendall(tail[i:])
        self.assertEqual(c.reply()[0], 250)
        r = c.reply()
        self.assertEqual(r[0], 235, r)
        c.expect("NOOP", 250)
        needles = [pw, pw[-14:], plain.encode(), plain.encode()[-16:]]
        for n in needles:
            self.assertEqual(memory_find(gw.worker_pid(), n), [], "cut %r: %r after AUTH" % (cut, n))
        c.expect("QUIT", 221)
        c.close()

    def test_whole_record(self):
        self.run_cut(None)

    def test_auth_line_cut_across_records(self):
        self.run_cut(20)


class EndOfDataAcrossRecords(GatewayTest):
    """See 5. above."""

    def test_every_cut(self):
        up = self.sink()
        port = free_port()
        self.gateway(smtpd_conf(self.pki, up.port,
                                listener("l", port, "implicit", 'relay_networks = "127.0.0.1/32"'),
                                extra="max_errors = 100"), [port])
        c = Smtp(port, tls=True, timeout=10)
        c.reply()
        c.expect("EHLO x.test", 250)
        n, want = 0, []
        cases = [(b"\r\n.\r\n", b"line\n"), (b"\r\n..\r\n.\r\n", b"line\n.\n"),
                 (b"\n.\r\n", None), (b"\r\n.\n", None), (b"\r.\r\n", None), (b"\r\n.\r\r\n", None)]
        for term, delivered in cases:
            for k in range(len(term) + 1):
                c.expect("MAIL FROM:<a@x.test>", 250)
                c.expect("RCPT TO:<b@example.org>", 250)
                c.expect("DATA", 354)
                head = b"Subject: cut %d\r\n\r\nline" % n
                whole = head + term + (b"NOOP\r\n" if delivered else b"RSET\r\nsmuggled\r\n.\r\n")
                c.sock.sendall(whole[:len(head) + k])   # one TLS record each
                time.sleep(0.02)
                c.sock.sendall(whole[len(head) + k:])
                if delivered:   # while the dot's reply is awaited: a record
                    c.sock.sendall(b"NOOP\r\n")    # behind the unread rest
                code, text = c.reply()
                if delivered is None:
                    self.assertEqual(code, 550, (term, k, text))
                    continue
                self.assertEqual(code, 250, (term, k, text))
                self.assertEqual(c.reply()[0], 250, (term, k, "NOOP"))
                self.assertEqual(c.reply()[0], 250, (term, k, "second NOOP"))
                want.append(b"Subject: cut %d\n\n" % n + delivered)
                n += 1
            n += 1
        msgs = up.wait_messages(len(want))
        self.assertEqual(sorted(m.without_our_received()[0] for m in msgs), sorted(want))
        c.expect("QUIT", 221)


JUNK_LIMIT = 100     # SMTP_JUNK_LIMIT in smtpd/smtp_session.h
MAX_ERRORS = 3


class HeloJunk(GatewayTest):
    """See 3. above."""

    def run_verb(self, verb):
        up = self.sink()
        port = free_port()
        conf = smtpd_conf(self.pki, up.port,
                          listener("l", port, "none", 'relay_networks = "127.0.0.1/32"'),
                          extra="max_errors = %d" % MAX_ERRORS)
        self.gateway(conf, [port])
        c = Smtp(port, timeout=10)
        self.assertEqual(c.reply()[0], 220)
        n = 1 + JUNK_LIMIT + MAX_ERRORS     # the first EHLO/HELO of a session is free
        c.send(("%s junk.test\r\n" % verb) * (n + 5))
        codes = []
        try:
            for _ in range(n + 5):
                code, text = c.reply()
                codes.append(code)
                if code == 421:
                    self.assertIn("4.7.0", text[0])
                    break
        except (OSError, Exception) as e:
            self.fail("%s: closed without 421 after %d replies: %r" % (verb, len(codes), e))
        self.assertEqual(codes[-1], 421, "%d %s commands, all answered %s" % (len(codes), verb, set(codes)))
        self.assertEqual(len(codes), n + 1)
        self.assertTrue(c.closed())

    def test_ehlo_beyond_the_limit_counts(self):
        self.run_verb("EHLO")

    def test_helo_beyond_the_limit_counts(self):
        self.run_verb("HELO")


class SilentLoginImap(LoopbackServer):
    """An IMAP upstream that answers everything but a login (LOGIN or
    AUTHENTICATE), which it never answers; with keepalive, it sends an
    untagged "* OK" every 0.5 s after the login instead."""

    def __init__(self, keepalive=False):
        self.keepalive = keepalive
        super().__init__(backlog=8)

    def handle(self, c):
        c.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE AUTH=PLAIN] ready\r\n")
        for line in self.lines(c):
            words = line.split()
            if len(words) < 2:
                continue
            tag, verb = words[0], words[1].upper()
            if verb in (b"LOGIN", b"AUTHENTICATE"):
                if self.keepalive:
                    threading.Thread(target=self._keepalive, args=(c,), daemon=True).start()
                continue        # never answered
            if verb == b"CAPABILITY":
                c.sendall(b"* CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN\r\n")
            c.sendall(tag + b" OK done\r\n")

    def _keepalive(self, c):
        try:
            while not self.stopping.wait(0.5):
                c.sendall(b"* OK still thinking\r\n")
        except OSError:
            return


PREAUTH = 2          # timeout_preauth
TIMEOUT_REPLY_IMAP = 2
SLACK = 2.5


class PreauthExemptionBounds(GatewayTest):
    """See 4. above."""

    def setUp(self):
        super().setUp()
        self.up = SilentLoginImap()
        self.addCleanup(self.up.stop)
        self.port = free_port()
        conf = imapd_conf(self.pki, self.up.port, listener("imap", self.port, "none"),
                          extra="timeout_preauth = %d" % PREAUTH,
                          upstream_extra="timeout_reply = %d" % TIMEOUT_REPLY_IMAP)
        self.gw = self.imap_gateway(conf, [self.port])
        self.t0 = time.time()
        self.c = Imap(self.port, timeout=15)
        self.assertTrue(self.c.line().startswith("* OK"))

    def test_authenticate_waiting_for_the_client_is_cut(self):
        self.c.send("a1 AUTHENTICATE PLAIN\r\n")
        self.assertTrue(self.c.line().startswith("+"))
        self.assertEqual(self.c.line(), "* BYE Disconnected for inactivity")
        self.assertLess(time.time() - self.t0, PREAUTH + SLACK)
        self.assertTrue(self.c.closed(5))

    def test_login_never_answered_ends_at_timeout_reply(self):
        time.sleep(PREAUTH / 2)
        sent = time.time()
        self.c.send("a1 LOGIN alice secret\r\n")
        try:
            lines = self.c.until_tagged("a1")
        except OSError as e:
            self.fail("no answer to a login the upstream never answers: %r" % e)
        self.assertTrue(lines[-1].startswith("a1 NO [UNAVAILABLE]"), lines)
        self.assertGreater(time.time() - self.t0, PREAUTH, "answered before the deadline: nothing tested")
        self.assertLess(time.time() - sent, TIMEOUT_REPLY_IMAP + SLACK)
        self.assertEqual(self.c.line(), "* BYE Disconnected for inactivity")
        self.assertTrue(self.c.closed(5))


class PreauthExemptionHardBound(GatewayTest):
    """The login-in-flight exemption ends within the upstream's
    timeout_reply after timeout_preauth, also when the upstream keeps
    sending untagged lines (each restarted its own reply timer, and the
    session outlived the deadline for ever): NO [UNAVAILABLE], then the
    BYE and the close. (Found by the read-only review of the fixes.)"""

    def test_untagged_keepalives_do_not_extend_the_login(self):
        up = SilentLoginImap(keepalive=True)
        self.addCleanup(up.stop)
        port = free_port()
        conf = imapd_conf(self.pki, up.port, listener("imap", port, "none"),
                          extra="timeout_preauth = %d" % PREAUTH,
                          upstream_extra="timeout_reply = %d" % TIMEOUT_REPLY_IMAP)
        self.imap_gateway(conf, [port])
        t0 = time.time()
        c = Imap(port, timeout=15)
        self.assertTrue(c.line().startswith("* OK"))
        time.sleep(PREAUTH / 2)
        c.send("a1 LOGIN alice secret\r\n")
        lines = []
        limit = t0 + PREAUTH + TIMEOUT_REPLY_IMAP + SLACK
        while not lines or not lines[-1].startswith("a1 "):
            if time.time() > limit:
                self.fail("no tagged answer %.1f s after connect: %r" % (time.time() - t0, lines[-3:]))
            try:
                lines.append(c.line())
            except OSError as e:
                self.fail("no tagged answer: %r" % e)
        took = time.time() - t0
        self.assertTrue(lines[-1].startswith("a1 NO [UNAVAILABLE]"), lines)
        self.assertIn("* OK still thinking", lines)    # the keepalives were flowing
        self.assertGreater(took, PREAUTH + TIMEOUT_REPLY_IMAP - 0.5, lines)
        self.assertLess(took, PREAUTH + TIMEOUT_REPLY_IMAP + SLACK, lines)
        self.assertEqual(c.line(), "* BYE Disconnected for inactivity")
        self.assertTrue(c.closed(5))


class AuthCancelAnswered334(GatewayTest):
    """RFC 4954 §4: a "*" ends an AUTH exchange (the server answers 501).
    An upstream that answers it with another 334 is out of step with the
    gateway: relaying that 334 kept the client in the exchange, and the
    client's next line would have reached the upstream as a SASL response.
    The gateway answers 454 4.7.0 and drops that upstream; the next command
    goes to a fresh connection. (Found by fuzz_smtp_session.)"""

    def test_334_after_cancel_ends_the_upstream(self):
        up = ScriptedSmtp({"EHLO": b"250-scripted.test\r\n250 AUTH PLAIN LOGIN\r\n",
                           "AUTH": b"334 VXNlcm5hbWU6\r\n",
                           "*": b"334 UGFzc3dvcmQ6\r\n"})
        self.addCleanup(up.stop)
        p = free_port()
        self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none",
                                                            'relay_networks = "127.0.0.1/32"')), [p])
        c = Smtp(p)
        c.reply()
        ehlo_until(c, "AUTH", "x.test")    # until the start-up probe has seen AUTH
        c.expect("AUTH LOGIN", 334)
        code, lines = c.cmd("*")
        self.assertEqual(code, 454, lines)
        c.expect("MAIL FROM:<a@test.example>", 250)
        # The MAIL went out as a command on a new connection, never as a
        # SASL line after the "*".
        after = up.commands[up.commands.index("*") + 1:]
        self.assertIn("MAIL FROM:<a@test.example>", after, up.commands)
        self.assertEqual(after[0].split()[0], "EHLO", up.commands)
        c.expect("QUIT", 221)



class AuthCancelCounts(GatewayTest):
    """AUTH then "*" does no work: beyond the junk limit each cancelled
    exchange counts toward max_errors, so AUTH LOGIN / "*" every
    timeout_command - 1 seconds cannot hold a slot (the upstream's 501 to
    the "*" is relayed and, as a relayed reply, counted nowhere). And a
    cancel whose reply never came (the upstream went silent) does not make
    the next exchange's 334 look like an answer to a cancel."""

    def gateway_with(self, replies, upstream_extra="xclient = false"):
        up = ScriptedSmtp(dict({"EHLO": b"250-scripted.test\r\n250 AUTH PLAIN LOGIN\r\n",
                                "AUTH": b"334 VXNlcm5hbWU6\r\n"}, **replies))
        self.addCleanup(up.stop)
        p = free_port()
        self.gateway(smtpd_conf(self.pki, up.port, listener("local", p, "none"),
                                extra="max_errors = %d" % MAX_ERRORS, upstream_extra=upstream_extra), [p])
        c = Smtp(p, timeout=15)
        c.reply()
        ehlo_until(c, "AUTH", "x.test")    # until the start-up probe has seen AUTH
        return up, c

    def test_cancelled_exchanges_beyond_the_limit_count(self):
        up, c = self.gateway_with({"*": b"501 5.7.0 Authentication cancelled\r\n"})
        n = JUNK_LIMIT + MAX_ERRORS
        c.send("AUTH LOGIN\r\n*\r\n" * (n + 3))
        codes = []
        for _ in range(2 * (n + 3)):
            try:
                code, _ = c.reply()
            except (OSError, Exception) as e:
                self.fail("closed without 421 after %d replies: %r" % (len(codes), e))
            codes.append(code)
            if code == 421:
                break
        self.assertEqual(codes[-1], 421, set(codes))
        self.assertEqual(codes.count(501), n, codes[-6:])
        self.assertTrue(c.closed())

    def test_unanswered_cancel_does_not_spoil_the_next_exchange(self):
        # "*" gets no reply at all: the upstream is lost at timeout_reply.
        up, c = self.gateway_with({"*": b""}, upstream_extra="xclient = false\ntimeout_reply = 2")
        c.expect("AUTH LOGIN", 334)
        code, lines = c.cmd("*")
        self.assertEqual(code, 454, lines)
        c.expect("AUTH LOGIN", 334)    # a fresh upstream's 334 is a 334


if __name__ == "__main__":
    main()
