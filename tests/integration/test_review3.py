"""Reproducers from the hostile review of the slowloris / log changes
(8fd3d8d..1656210). Each test fails on the reviewed code (or, for the
timeout rules, with the line it guards removed); each docstring says what
the gateway must do.

  1. SyslogStream: a /dev/log that is a stream socket (syslog-ng's
     unix-stream; glibc's syslog() falls back to SOCK_STREAM on
     EPROTOTYPE) received nothing at all from syslog_send, which only
     tried SOCK_DGRAM: every log line was lost.
  2. LineActivityModes: timeout_command counts only complete lines from
     the greeting, also after a message (the final dot switches it back
     on), while in DATA any body byte is progress (timeout_data, with
     min_data_rate = 0; test_slot_holding.py covers the rate): a slow
     body line is not cut. No test guarded either switch.
"""
import re
import time

from mgtest import (SMTPD, GatewayTest, Smtp, free_port, listener, main, message, run_with_private_dev,
                    send_message, smtpd_conf)
from test_slowloris import peer_closed, trickle

TIMEOUT = 3
SLACK = 2.0


# Run by run_with_private_dev (a private /dev); /dev/log is a *stream* socket whose connections are read
# as NUL-terminated frames; one session runs.
SYSLOG_STREAM = r'''
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
s.listen(64)
frames, raw = [], []
def reader(c):
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        raw.append(d)
        buf += d
        while b"\0" in buf:
            f, _, buf = buf.partition(b"\0")
            frames.append(f)
def acceptor():
    while True:
        c, _ = s.accept()
        threading.Thread(target=reader, args=(c,), daemon=True).start()
threading.Thread(target=acceptor, daemon=True).start()
r = subprocess.run([smtpd, "-c", conf], capture_output=True, text=True)
res = {"start": [r.returncode, r.stderr]}
session(b"stream.test")
stop_when_logged(frames, b"helo=stream.test")
res["frames"] = [g.decode("utf-8", "replace") for g in list(frames)]
res["raw_bytes"] = sum(map(len, raw))
print(json.dumps(res))
'''


class SyslogStream(GatewayTest):
    def test_stream_dev_log_gets_the_lines(self):
        """/dev/log a stream socket: the lines arrive there, one
        NUL-terminated frame each, facility mail, tagged with the pid."""
        p = free_port()
        up = self.sink()
        conf = smtpd_conf(self.pki, up.port, listener("local", p, "none"))
        conf = conf.replace('log_target = "stderr"', 'log_target = "syslog"').replace(
            "hostname =", 'pidfile = "%s"\nhostname =' % self.tmp.file("s.pid"), 1)
        path = self.tmp.file("s.conf", conf)
        res = run_with_private_dev(self, self.tmp, "syslog_stream.py", SYSLOG_STREAM, SMTPD, path, p)
        self.assertEqual(res["start"][0], 0, res)
        frames = res["frames"]
        self.assertTrue(any(re.match(r"<22>\w{3} [ \d]\d \d\d:\d\d:\d\d mailgate-smtpd\[\d+\]: "
                                     r"session=\S+ listener=local .*helo=stream\.test", f) for f in frames),
                        res)
        # Every frame is one whole line: no frame holds a second header.
        self.assertFalse([f for f in frames if f.count("mailgate-smtpd[") != 1], frames)


class LineActivityModes(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p = free_port()
        conf = smtpd_conf(self.pki, self.up.port,
                          listener("local", self.p, "none", 'relay_networks = "127.0.0.1/32"'),
                          # min_data_rate off: a byte every 0.2 s is far
                          # below any rate; here only line_activity counts.
                          extra="timeout_command = %d\ntimeout_data = %d\nmin_data_rate = 0"
                          % (TIMEOUT, TIMEOUT))
        self.gw = self.gateway(conf, [self.p])

    def test_trickled_command_after_a_message_is_cut(self):
        """After the final dot, timeout_command again counts only complete
        lines: a command trickled a byte at a time is cut at the timeout."""
        c = Smtp(self.p)
        c.reply()
        c.expect("EHLO after-dot.test", 250)
        code, lines = send_message(c, message("first"))
        self.assertEqual(code, 250, lines)
        took, got = trickle(c.sock, b"MAIL FROM:<slow@test.example> SIZE=100", TIMEOUT + 10)
        self.assertIsNotNone(took, "a command trickled after a message was never cut")
        print("trickled command after a message: cut after %.2f s (timeout %d s)" % (took, TIMEOUT))
        self.assertGreater(took, TIMEOUT - 0.5)
        self.assertLess(took, TIMEOUT + SLACK)
        self.assertTrue(got.startswith(b"421 4.4.2 "), got)
        self.assertEqual(len(self.up.wait_messages(1)), 1)

    def test_slow_body_line_is_progress(self):
        """In DATA every body byte is activity (min_data_rate = 0): one
        body line trickled over twice timeout_data (a byte every 0.2 s) is
        not cut, and the message is delivered whole."""
        c = Smtp(self.p)
        c.reply()
        c.expect("EHLO slow-body.test", 250)
        c.expect("MAIL FROM:<a@test.example>", 250)
        c.expect("RCPT TO:<user@example.org>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: slow body\r\n\r\n")
        line = b"x" * int(2 * TIMEOUT / 0.2)
        t0 = time.time()
        for ch in line:
            c.send(bytes([ch]))
            time.sleep(0.2)
            closed, got = peer_closed(c.sock)
            self.assertFalse(closed or got, "cut %.1f s into a slowly sent body line: %r"
                             % (time.time() - t0, got))
        c.send(b"\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.expect("QUIT", 221)
        msgs = self.up.wait_messages(1)
        self.assertEqual(len(msgs), 1)
        self.assertIn(line, msgs[0].message)


if __name__ == "__main__":
    main()
