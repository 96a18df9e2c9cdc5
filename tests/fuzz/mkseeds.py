#!/usr/bin/env python3
"""mkseeds: writes the seed corpora of the whole-session fuzzers
(tests/fuzz/corpus/smtp_session/ and imap_session/) from readable
transcripts, in the input format of tests/fuzz/session_harness.h.

Each seed is a conversation as the integration tests (tests/integration/)
have it: what the client says, what the upstream server answers, when
connects, TLS handshakes and clock ticks happen. The gateway's own lines
are not written here - it produces them; the seeds only have to give each
peer's side in an order that makes sense. Run it from anywhere:

    python3 tests/fuzz/mkseeds.py            # rewrites both corpora
    python3 tests/fuzz/mkseeds.py --check    # exit 1 if a file would change
"""
import base64
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Certificate status indices of the 'T' operation (session_harness.c).
NOCERT, VERIFIED, UNKNOWN_CA, EXPIRED = 0, 1, 2, 3
# Identities (session_harness.c idents[]).
ID_CLIENT, ID_PARTNER, ID_ALICE_CN, ID_EVIL, ID_BADNAMES, ID_BOB, ID_PINNED, ID_MASTER = range(8)
# Client addresses (world flags bits 0-1) and TLS record sizes (bits 2-3).
IP_DOC, IP_LOOPBACK, IP_V6, IP_OTHER = range(4)
REC_16K, REC_1, REC_7, REC_512 = (0 << 2), (1 << 2), (2 << 2), (3 << 2)


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class Seed:
    """One scenario. Methods append operations; bytes() is the file."""

    def __init__(self, variant, flags=0):
        self.b = bytearray([variant, flags])

    def _line(self, op, line):
        data = line.encode("latin-1") if isinstance(line, str) else bytes(line)
        if b"\n" in data:
            raise ValueError("a line op cannot hold LF; use raw()")
        self.b += op + data + b"\r\n"
        return self

    def C(self, *lines):            # the client sends lines (CRLF added)
        for line in lines:
            self._line(b"C", line)
        return self

    def U(self, *lines):            # the current upstream connection sends lines
        for line in lines:
            self._line(b"U", line)
        return self

    def raw(self, data, upstream=False):   # raw bytes, any content
        data = data.encode("latin-1") if isinstance(data, str) else bytes(data)
        while data:
            part, data = data[:65535], data[65535:]
            self.b += (b"u" if upstream else b"c") + struct.pack(">H", len(part)) + part
        return self

    def op(self, s):                # bare operation letters: K F h x r H X R + S Z N
        self.b += s.encode()
        return self

    def T(self, status=NOCERT, ident=ID_CLIENT, tls12=False, fail=False, on_cert=False, sni=False):
        a = status | (0x10 if tls12 else 0) | (0x20 if fail else 0) | (0x40 if on_cert else 0) | (0x80 if sni else 0)
        self.b += b"T" + bytes([a, ident])
        return self

    def t(self, fail=False):        # the upstream's TLS handshake
        self.b += b"t" + bytes([1 if fail else 0])
        return self

    def window(self, side, idx):    # side 0 client / 1 upstream; idx into 0,1,2,7,64,512,4096,inf
        self.b += b"w" + bytes([side, idx])
        return self

    def wait(self, seconds):
        self.b += b"~" + bytes([seconds])
        return self

    def policy(self, p):            # 0 pending, 1 refused at once, 2 no socket
        self.b += b"P" + bytes([p])
        return self

    def rdns(self, status, name=0):  # status 0 OK, 1 NONE, 2 TEMP
        self.b += b"D" + bytes([name * 3 + status])
        return self

    def bytes(self):
        return bytes(self.b)


# ---------------------------------------------------------------- SMTP

FULL_EXT = ["8BITMIME", "DSN", "SMTPUTF8", "AUTH PLAIN LOGIN", "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"]


def ehlo_reply(name, ext):
    lines = [name] + ["PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES"] + ext
    return ["250%s%s" % ("-" if i + 1 < len(lines) else " ", l) for i, l in enumerate(lines)]


def probe(s, ext=FULL_EXT, tls=None):
    """smtpd's start-up probe: connect, greeting, EHLO (and STARTTLS)."""
    s.op("K")
    if tls == "implicit":
        s.t()
    s.U("220 up.test.example ESMTP Postfix")
    if tls == "starttls":
        s.U(*ehlo_reply("up.test.example", ["STARTTLS"] + ext))
        s.U("220 2.0.0 Ready to start TLS").t()
    s.U(*ehlo_reply("up.test.example", ext))
    return s


def upstream(s, ext=FULL_EXT, tls=None, xclient_lines=2):
    """A session's upstream set-up through to its EHLO after XCLIENT."""
    s.op("K")
    if tls == "implicit":
        s.t()
    s.U("220 up.test.example ESMTP Postfix")
    if tls == "starttls":
        s.U(*ehlo_reply("up.test.example", ["STARTTLS"] + ext))
        s.U("220 2.0.0 Ready to start TLS").t()
    s.U(*ehlo_reply("up.test.example", ext))
    for _ in range(xclient_lines):
        s.U("220 up.test.example ESMTP Postfix")
    if xclient_lines:
        s.U(*ehlo_reply("up.test.example", ext))
    return s


def message(s, body_lines=("Subject: test", "", "Hello.")):
    s.C("DATA").U("354 End data with <CR><LF>.<CR><LF>")
    s.C("From: a@example.org", "To: b@example.org", *body_lines)
    s.C(".").U("250 2.0.0 Ok: queued as 4F1A2B")
    return s


def smtp_seeds():
    out = {}

    s = probe(Seed(0)).T().C("EHLO client.example").C("MAIL FROM:<a@example.org>")
    upstream(s).U("250 2.1.0 Ok").C("RCPT TO:<b@example.org>").U("250 2.1.5 Ok")
    message(s).C("QUIT").U("221 2.0.0 Bye")
    out["happy-implicit-xclient"] = s

    s = probe(Seed(0)).T(VERIFIED, ID_CLIENT).C("EHLO client.example")
    s.C("AUTH PLAIN " + b64("\0alice\0secret"))
    upstream(s).U("235 2.7.0 Authentication successful")
    s.C("MAIL FROM:<alice@example.org> BODY=8BITMIME SMTPUTF8").U("250 2.1.0 Ok")
    s.C("RCPT TO:<bob@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@remote.example").U("250 2.1.5 Ok")
    message(s).C("QUIT")
    out["auth-plain-initial-response"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "AUTH PLAIN")
    upstream(s).U("334 ").C(b64("\0alice\0secret")).U("235 2.7.0 Authentication successful")
    s.C("MAIL FROM:<alice@example.org> RET=HDRS ENVID=abc123").U("250 2.1.0 Ok").C("QUIT")
    out["auth-plain-continuation"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "AUTH LOGIN")
    upstream(s).U("334 VXNlcm5hbWU6").C(b64("alice")).U("334 UGFzc3dvcmQ6").C(b64("secret"))
    s.U("235 2.7.0 Authentication successful").C("AUTH PLAIN " + b64("\0x\0y")).C("QUIT")
    out["auth-login"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "AUTH LOGIN " + b64("alice"))
    upstream(s).U("334 UGFzc3dvcmQ6").C(b64("wrong")).U("535 5.7.8 Error: authentication failed")
    s.C("AUTH LOGIN").U("334 VXNlcm5hbWU6").C("*").U("501 5.7.0 Authentication aborted")
    s.C("AUTH PLAIN =").U("535 5.7.8 Error").C("AUTH CRAM-MD5", "AUTH PLAIN not-base64!").C("QUIT")
    out["auth-login-initial-response-failures"] = s

    # The stack-buffer-overflow in add_param (then smtpd/smtp_txn.c, fixed;
    # now smtpd/smtp_mail.c).
    s = probe(Seed(0)).T().C("EHLO client.example")
    s.C('MAIL FROM:<"' + "a" * 1250 + '"@example.org>' + " BODY=8BITMIME" * 16)
    out["crash-mail-quoted-local-part"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "MAIL FROM:<a@example.org>")
    upstream(s).U("250 2.1.0 Ok")
    s.C('RCPT TO:<"' + "a" * 1250 + '"@example.org> ORCPT=rfc822;x@example.org')
    out["crash-rcpt-quoted-local-part"] = s

    s = probe(Seed(0)).T()
    s.raw("EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
          "RCPT TO:<c@example.org>\r\nDATA\r\n")
    upstream(s).U("250 2.1.0 Ok", "250 2.1.5 Ok", "550 5.1.1 No such user", "354 go ahead")
    s.raw("Subject: pipelined\r\n\r\n..dot-stuffed\r\nbody\r\n.\r\nQUIT\r\n")
    s.U("250 2.0.0 queued", "221 Bye")
    out["pipelined-transaction"] = s

    s = probe(Seed(0)).T().C("NOOP", "HELP", "VRFY user", "MAIL FROM:<a@example.org>", "HELO bad host",
                             "HELO ok.test", "RCPT TO:<user@example.org>", "DATA", "BDAT 10 LAST",
                             "WHATEVER", "XCLIENT ADDR=1.2.3.4", "STARTTLS", "EHLO [192.0.2.1]",
                             "EHLO [IPv6:2001:db8::1]", "RSET", "RSET x", "MAIL FROM:<>",
                             "MAIL FROM:<a@example.org> SIZE=999999999999", "QUIT")
    out["local-commands"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "MAIL FROM:<a@example.org>")
    upstream(s).U("250 2.1.0 Ok").op("S").C("RCPT TO:<b@example.org>").U("250 2.1.5 Ok")
    message(s).C("MAIL FROM:<a@example.org>").op("Z")
    out["sigterm-mid-transaction"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", 'MAIL FROM:<"' + "q" * 60 + '"@example.org> BODY=8BITMIME')
    upstream(s).U("250 2.1.0 Ok").C('RCPT TO:<"john doe"@example.org> NOTIFY=NEVER').U("250 2.1.5 Ok")
    s.C("RSET").U("250 Ok").C("AUTH LOGIN").U("334 VXNlcm5hbWU6").C(b64("u" * 1000)).U("334 UGFzc3dvcmQ6")
    s.C(b64("p" * 1400)).U("535 no").C("QUIT")
    out["quoted-local-parts-long-sasl"] = s

    s = probe(Seed(0)).T().C("EHLO client.example").op("+++")
    out["timeout-command"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "MAIL FROM:<a@example.org>")
    upstream(s).U("250 2.1.0 Ok").C("RCPT TO:<b@example.org>").op("+")
    out["timeout-upstream-reply"] = s

    s = probe(Seed(0), ["8BITMIME"]).T(fail=True)
    out["implicit-handshake-fails"] = s

    s = Seed(0).op("F").T().C("EHLO client.example", "MAIL FROM:<a@example.org>").op("F")
    out["upstream-unreachable"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "MAIL FROM:<a@example.org> SIZE=1000 AUTH=<>")
    upstream(s).U("250 2.1.0 Ok").C("RCPT TO:<b@example.org> FOO=bar", "RCPT TO:<b@example.org>")
    s.U("250 2.1.5 Ok").C("DATA").U("354 go").C("Subject: lost", "", "line 1").op("X")
    s.C("line 2", ".", "RSET", "MAIL FROM:<a@example.org> SIZE=99999999999", "MAIL FROM:<a@example.org> SIZE=x",
        "QUIT")
    out["data-upstream-lost-and-size"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "AUTH PLAIN " + b64("\0a\0wrong"))
    upstream(s)
    for i in range(10):
        s.U("535 5.7.8 Error: authentication failed").C("AUTH LOGIN " + b64("user%d" % i))
        s.U("334 UGFzc3dvcmQ6").C(b64("wrong"))
    out["auth-failures-limit"] = s

    s = probe(Seed(0)).T().C("EHLO client.example", "MAIL FROM:<a@example.org>")
    upstream(s).U("250 2.1.0 Ok").C("RCPT TO:<b@example.org>").U("250 2.1.5 Ok").C("DATA").U("354 go")
    s.window(1, 0).raw("Subject: back-pressure\r\n\r\n" + ("x" * 78 + "\r\n") * 3600 + ".\r\n")
    s.window(1, 7).U("250 2.0.0 queued").C("QUIT")
    out["data-back-pressure"] = s

    # 1: submission with STARTTLS required; upstream STARTTLS, no XCLIENT, PROXY v1.
    s = probe(Seed(1), FULL_EXT, tls="starttls")
    s.C("EHLO client.example", "MAIL FROM:<a@example.org>", "AUTH PLAIN " + b64("\0a\0b"), "STARTTLS")
    s.T(VERIFIED, ID_CLIENT).C("EHLO client.example", "AUTH PLAIN " + b64("\0alice\0secret"))
    upstream(s, tls="starttls", xclient_lines=0).U("235 2.7.0 Ok")
    s.C("MAIL FROM:<alice@example.org>").U("250 2.1.0 Ok").C("RCPT TO:<x@remote.example>").U("250 2.1.5 Ok")
    message(s).C("QUIT").U("221 Bye")
    out["starttls-submission"] = s

    s = probe(Seed(1), tls="starttls").C("EHLO client.example")
    s.raw("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@remote.example>\r\n")
    s.T().C("EHLO client.example", "QUIT")
    out["starttls-injection"] = s

    s = probe(Seed(1), tls="starttls").C("EHLO client.example", "STARTTLS").T().C("EHLO client.example")
    s.C("AUTH PLAIN " + b64("\0alice\0secret")).op("K").U("220 up.test.example ESMTP")
    s.U(*ehlo_reply("up.test.example", ["8BITMIME"]))
    out["starttls-upstream-without-starttls"] = s

    s = probe(Seed(1), tls="starttls").C("EHLO c.example", "STARTTLS").T().C("EHLO c.example")
    s.C("AUTH PLAIN " + b64("\0alice\0secret"))
    upstream(s, tls="starttls", xclient_lines=0).U("235 2.7.0 Ok").C("MAIL FROM:<alice@example.org>")
    s.U("250 Ok").C("RCPT TO:<b@example.org>").U("250 Ok").C("DATA").U("354 go")
    s.raw("Subject: bare\r\n\r\nbare\nLF\r\n.\r\nMAIL FROM:<alice@example.org>\r\n")
    out["authed-data-fails-without-xclient"] = s

    # 2: local MTA on loopback (relay_networks), reverse DNS, implicit TLS upstream, PROXY v2.
    s = probe(Seed(2, IP_LOOPBACK), tls="implicit").C("EHLO localhost.example", "MAIL FROM:<root@example.org>")
    s.rdns(0, 0)
    upstream(s, tls="implicit").U("250 2.1.0 Ok").C("RCPT TO:<someone@remote.example>").U("250 2.1.5 Ok")
    message(s).C("QUIT").U("221 Bye")
    out["local-relay-rdns"] = s

    s = probe(Seed(2, IP_LOOPBACK | REC_7), tls="implicit").C("EHLO localhost.example", "MAIL FROM:<>").op("+")
    upstream(s, tls="implicit").U("250 2.1.0 Ok").C("RCPT TO:<postmaster>").U("250 2.1.5 Ok").C("QUIT")
    out["local-rdns-timeout"] = s

    s = probe(Seed(2, IP_DOC), tls="implicit").C("EHLO far.example", "MAIL FROM:<a@example.org>").rdns(2)
    upstream(s, tls="implicit").U("250 2.1.0 Ok").C("RCPT TO:<b@remote.example>", "RCPT TO:<b%c@example.org>",
                                                 "RCPT TO:<b@example.org>").U("250 2.1.5 Ok").C("QUIT")
    out["loopback-listener-relay-denied"] = s

    # 3: relay peers only, failover between two addresses.
    s = probe(Seed(3)).op("K")
    s.U("220 up2", *ehlo_reply("up2", FULL_EXT))
    s.T(VERIFIED, ID_PARTNER).C("EHLO mx2.partner.example", "MAIL FROM:<a@partner.example>")
    s.op("F")
    upstream(s, xclient_lines=3).U("250 2.1.0 Ok").C("RCPT TO:<x@remote.example>").U("250 2.1.5 Ok")
    message(s).C("QUIT")
    out["peer-relay-failover"] = s

    s = probe(Seed(3)).op("F").T(NOCERT).C("EHLO x.example", "MAIL FROM:<a@example.org>", "QUIT")
    out["peers-only-refused"] = s

    # 4: port-25 MX: STARTTLS optional, small limits, no Received header.
    s = probe(Seed(4), tls="starttls").C("EHLO mx.sender.example", "MAIL FROM:<a@sender.example>").rdns(1)
    upstream(s, tls="starttls").U("250 2.1.0 Ok").C("RCPT TO:<b@example.org>").U("250 2.1.5 Ok")
    s.C("DATA").U("354 go").C("Subject: big", "", "x" * 400, "y" * 400, "z" * 400, "w" * 400, "v" * 400,
                              "u" * 400, ".")
    s.C("MAIL FROM:<a@sender.example>", "QUIT")
    out["mx-oversize"] = s

    s = probe(Seed(4), tls="starttls").C("EHLO mx.sender.example", "MAIL FROM:<a@sender.example>").rdns(1)
    upstream(s, tls="starttls").U("250 2.1.0 Ok")
    s.raw("".join("RCPT TO:<u%d@example.org>\r\n" % i for i in range(101)))
    s.raw("".join("250 2.1.5 Ok\r\n" for i in range(100)), upstream=True).C("QUIT")
    out["mx-too-many-recipients"] = s

    s = probe(Seed(4), tls="starttls").C("EHLO mx.sender.example", "MAIL FROM:<a@sender.example>").rdns(0, 1)
    upstream(s, tls="starttls").U("250 2.1.0 Ok").C("RCPT TO:<b@example.org>").U("250 2.1.5 Ok")
    s.C("DATA").U("354 go").raw("Subject: smuggle\r\n\r\nbody\n.\r\nMAIL FROM:<evil@x>\r\n.\r\n")
    s.C("X" * 600, "QUIT")
    out["mx-bare-lf-and-long-line"] = s

    ext = ["8BITMIME", "AUTH PLAIN LOGIN EXTERNAL CRAM-MD5", "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"]
    s = probe(Seed(4), ext, tls="starttls").C("EHLO laptop.example", "STARTTLS").T(VERIFIED, ID_CLIENT)
    s.C("EHLO laptop.example", "AUTH EXTERNAL =").rdns(0)
    upstream(s, ext, tls="starttls").U("235 2.7.0 Authenticated")
    s.C("MAIL FROM:<alice@example.org>").U("250 Ok").C("RCPT TO:<x@remote.example>").U("250 Ok")
    s.C("AUTH CRAM-MD5", "QUIT").U("221 Bye")
    out["mx-starttls-auth-external"] = s

    # 5: client certificates required; at most two connections.
    s = probe(Seed(5)).T(UNKNOWN_CA, ID_PINNED).C("EHLO pinned.example", "MAIL FROM:<a@x.example>")
    upstream(s, xclient_lines=3).U("250 2.1.0 Ok").C("RCPT TO:<b@remote.example>").U("250 2.1.5 Ok")
    s.op("N").T(VERIFIED, ID_PARTNER).op("N").op("N").T(NOCERT).C("QUIT")
    out["mtls-pinned-and-limits"] = s

    s = probe(Seed(5)).T(EXPIRED, ID_CLIENT).op("N").T(VERIFIED, ID_CLIENT, fail=True, on_cert=True)
    out["mtls-rejected"] = s

    # 6: behind a load balancer.
    s = probe(Seed(6, IP_LOOPBACK)).raw("PROXY TCP4 192.0.2.55 127.0.0.1 5555 10027\r\nEHLO lb.example\r\n")
    s.C("MAIL FROM:<a@example.org>")
    upstream(s).U("250 2.1.0 Ok").C("RCPT TO:<b@remote.example>").U("250 2.1.5 Ok").C("QUIT")
    out["proxy-in-v1"] = s

    v2 = bytes.fromhex("0d0a0d0a000d0a515549540a") + bytes([0x21, 0x11, 0, 12]) + \
        bytes([198, 51, 100, 9, 127, 0, 0, 1]) + struct.pack(">HH", 4444, 10027)
    s = probe(Seed(6, IP_DOC)).raw(v2 + b"EHLO lb.example\r\nQUIT\r\n")
    out["proxy-in-v2"] = s

    s = probe(Seed(6, IP_OTHER)).raw("PROXY TCP4 192.0.2.55 127.0.0.1 5555 10027\r\n").op("+")
    out["proxy-in-untrusted"] = s

    # 7: STARTTLS required, no AUTH, no XCLIENT, short timeouts.
    s = probe(Seed(7)).C("EHLO c.example", "MAIL FROM:<a@example.org>", "STARTTLS").T(tls12=True, sni=True)
    s.C("EHLO c.example", "AUTH PLAIN " + b64("\0a\0b"), "MAIL FROM:<a@example.org>")
    upstream(s, xclient_lines=0).U("250 2.1.0 Ok").C("RCPT TO:<b@example.org>").U("250 2.1.5 Ok")
    s.C("DATA").U("354 go").C("Subject: slow", "").window(0, 0).op("Z+")
    out["starttls-shutdown-timeout"] = s

    s = probe(Seed(7, REC_1)).C("EHLO c.example", "STARTTLS").T().C("EHLO c.example", "MAIL FROM:<a@example.org>")
    upstream(s, xclient_lines=0).U("250 2.1.0 Ok").C("RCPT TO:<b@example.org>").U("250 2.1.5 Ok")
    s.C("DATA").U("354 go").window(1, 2).raw("Subject: back-pressure\r\n\r\n" + "line\r\n" * 300 + ".\r\n")
    s.window(1, 7).U("250 ok").C("QUIT")
    out["upstream-back-pressure"] = s
    return out


# ---------------------------------------------------------------- IMAP

def imap_up(s, caps="IMAP4rev1 SASL-IR AUTH=PLAIN", tls=None, greet_caps=True, forward_id=False, tags=1):
    """An upstream login through to the login command; returns the tag
    number the login command will carry."""
    s.op("K")
    if tls == "implicit":
        s.t()
    n = 1
    if tls == "starttls":
        s.U("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Dovecot ready.")
        s.U("M%d OK Begin TLS negotiation now." % n).t()
        n += 1
        s.U("* CAPABILITY " + caps, "M%d OK Pre-login capabilities listed." % n)
        n += 1
    elif greet_caps:
        s.U("* OK [CAPABILITY %s] Dovecot ready." % caps)
    else:
        s.U("* OK Dovecot ready.")
        s.U("* CAPABILITY " + caps, "M%d OK Capability completed." % n)
        n += 1
    if forward_id:
        s.U('* ID ("name" "Dovecot")', "M%d OK ID completed." % n)
        n += 1
    return n


def imap_seeds():
    out = {}

    s = Seed(0).T().C("a1 CAPABILITY", "a2 ID NIL", "a3 NOOP", "a4 LOGIN alice secret")
    n = imap_up(s, forward_id=True)
    s.U("M%d OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE] Logged in" % n)
    s.C("a5 SELECT INBOX").U("* 1 EXISTS", "* OK [UIDVALIDITY 1] UIDs valid", "a5 OK [READ-WRITE] Select completed.")
    s.C("a6 FETCH 1 BODY[]").U("* 1 FETCH (BODY[] {11}", "hello world)", "a6 OK Fetch completed.")
    s.C("a7 LOGOUT").U("* BYE Logging out", "a7 OK Logout completed.").op("X")
    out["login-select-logout"] = s

    s = Seed(0).T().C("a1 AUTHENTICATE PLAIN " + b64("\0alice\0secret"))
    n = imap_up(s, forward_id=True)
    s.U("M%d OK Logged in" % n).C("a2 IDLE").U("+ idling").op("~\x3c").C("DONE").U("a2 OK Idle completed.")
    out["authenticate-sasl-ir-idle"] = s

    s = Seed(0).T().C("a1 AUTHENTICATE PLAIN " + b64("z" * 200 + "\0" + "u" * 200 + "\0" + "p" * 1000))
    n = imap_up(s, forward_id=True)
    s.U("M%d NO [AUTHENTICATIONFAILED] no" % n).C("a2 LOGIN " + "u" * 250 + " " + "p" * 900)
    n = imap_up(s, caps="IMAP4rev1", forward_id=True)
    s.U("+ go", "+ go", "M%d OK in" % n)
    out["long-credentials"] = s

    s = Seed(0).T().C("a1 AUTHENTICATE PLAIN", b64("alice\0alice\0secret"))
    n = imap_up(s, forward_id=True)
    s.U("M%d NO [AUTHENTICATIONFAILED] Authentication failed." % n)
    s.C("a2 AUTHENTICATE PLAIN", "*", "a3 AUTHENTICATE PLAIN =", "a4 AUTHENTICATE CRAM-MD5")
    s.C("a5 LOGIN alice secret")
    n = imap_up(s, forward_id=True)
    s.U("M%d OK Logged in" % n).C("a6 LOGOUT")
    out["authenticate-continuation-retry"] = s

    s = Seed(0).T().C("a1 LOGIN {5}").C("alice {6+}", "secret").C("a2 LOGIN \"al\\\"ice\" \"p w\"")
    n = imap_up(s, caps="IMAP4rev1", greet_caps=False, forward_id=True)
    s.U("+ OK").U("+ OK").U("M%d OK Logged in" % n).C("a3 LOGOUT")
    out["literal-login-upstream-login"] = s

    s = Seed(0).T().C("a1 LOGIN alice secret")
    n = imap_up(s, forward_id=True)
    s.U("M%d OK Logged in" % n).C("a2 COMPRESS DEFLATE").U("a2 OK DEFLATE active")
    s.raw(bytes(range(256)))
    s.raw(bytes(range(255, -1, -1)), upstream=True)
    s.op("+")
    out["compress-then-idle-timeout"] = s

    s = Seed(0).T().C("a1 LOGIN alice secret", "a2 NOOP", "a3 CAPABILITY")
    n = imap_up(s, forward_id=True)
    s.U("* CAPABILITY IMAP4rev1", "M%d OK Logged in" % n).U("a2 OK", "a3 OK").op("+")
    out["held-bytes-after-login"] = s

    s = Seed(0).T().C("a1 LOGIN alice secret").op("K").U("* PREAUTH [CAPABILITY IMAP4rev1] welcome")
    s.C("a2 LOGIN alice secret").op("F").C("a3 LOGIN alice secret").op("K").U("* BYE go away")
    s.C("GARBAGE", "a4 BOGUS", "* a5", "a6 SELECT INBOX", "a7 LOGOUT")
    out["upstream-failures-and-garbage"] = s

    # Back-pressure both ways after login (over the 256 KiB high-water mark).
    s = Seed(0).T().C("a1 LOGIN alice secret")
    n = imap_up(s, forward_id=True)
    s.U("M%d OK Logged in" % n).C("a2 FETCH 1:* BODY[]").window(0, 0)
    s.raw("* 1 FETCH (BODY[] {270000}\r\n" + "f" * 270000 + ")\r\na2 OK done\r\n", upstream=True)
    s.window(0, 6).window(0, 7).window(1, 0).C("a3 APPEND INBOX {270000+}")
    s.raw("a" * 270000 + "\r\n").window(1, 7).U("a3 OK appended").C("a4 LOGOUT")
    out["relay-back-pressure"] = s

    s = Seed(0).T().C("a1 NOOP").raw("a2 " + "x" * 9000 + "\r\n")
    out["line-too-long"] = s
    s = Seed(0).T().C("a1 AUTHENTICATE PLAIN").raw("A" * 9000)
    out["sasl-line-too-long"] = s
    s = Seed(0).T().C("a1 LOGIN alice secret").raw("a2 NOOP\r\n" * 3300)
    out["too-much-input-during-login"] = s
    s = Seed(0).T().C("a1 LOGIN alice secret").op("K").U("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi")
    s.raw("* " + "z" * 70000 + "\r\n", upstream=True)
    out["oversized-upstream-response"] = s

    # 1: STARTTLS, EXTERNAL by email, STARTTLS upstream with PROXY v1, max_literal 256.
    s = Seed(1).C("a1 CAPABILITY", "a2 LOGIN alice secret", "a3 AUTHENTICATE PLAIN", "a4 STARTTLS")
    s.T(VERIFIED, ID_CLIENT).C("a5 CAPABILITY", "a6 AUTHENTICATE EXTERNAL =")
    n = imap_up(s, tls="starttls")
    s.U("M%d OK [CAPABILITY IMAP4rev1] Logged in" % n).C("a7 LOGOUT").U("* BYE", "a7 OK")
    out["starttls-external-email"] = s

    s = Seed(1).C("a1 STARTTLS").T(VERIFIED, ID_CLIENT).C("a2 AUTHENTICATE EXTERNAL")
    s.C(b64("alice@example.org"))
    n = imap_up(s, tls="starttls")
    s.U("M%d NO [AUTHENTICATIONFAILED] no" % n).C("a3 AUTHENTICATE EXTERNAL " + b64("bob@example.org"))
    s.C("a4 LOGIN master secret", "a5 LOGIN {300}", "x" * 300)
    out["external-authzid-and-master"] = s

    s = Seed(1).raw("a1 STARTTLS\r\na2 LOGIN alice secret\r\n").T().C("a3 CAPABILITY", "a4 LOGIN {999}")
    out["starttls-injection-and-big-literal"] = s

    # 2: loopback plain, user_map, implicit TLS upstream with PROXY v2.
    s = Seed(2, IP_LOOPBACK).C("a1 LOGIN bob secret").op("F")
    n = imap_up(s, greet_caps=False)
    s.U("M%d OK Logged in" % n).C("a2 LOGOUT")
    out["user-map-failover"] = s

    s = Seed(2, IP_LOOPBACK | REC_7).C("a1 LOGIN alice secret")
    n = imap_up(s, tls="implicit")
    s.U("M%d NO [AUTHENTICATIONFAILED] bad" % n).C("a2 LOGIN alice secret2")
    n = imap_up(s, tls="implicit")
    s.U("M%d NO [AUTHENTICATIONFAILED] bad" % n).C("a3 NOOP")
    out["auth-failures-bye"] = s

    # 3: certificates required, peers only, EXTERNAL by DNS name.
    s = Seed(3).T(VERIFIED, ID_PARTNER).C("a1 CAPABILITY", "a2 AUTHENTICATE EXTERNAL")
    s.C("")
    n = imap_up(s)
    s.U("M%d OK Logged in" % n).C("a3 LOGOUT")
    out["peer-external-dns"] = s

    s = Seed(3).T(VERIFIED, ID_CLIENT).op("N").T(NOCERT).op("N").T(UNKNOWN_CA, ID_PINNED).C("a1 CAPABILITY")
    out["peers-only-refusals"] = s

    # 4: EXTERNAL by CN, short timeouts, two connections at most.
    s = Seed(4).T(VERIFIED, ID_CLIENT).C("a1 AUTHENTICATE EXTERNAL " + b64("client.example.org"))
    n = imap_up(s, forward_id=True)
    s.U("M%d OK Logged in" % n).C("a2 IDLE").op("+")
    out["external-cn-idle-timeout"] = s

    s = Seed(4).T().C("a1 NOOP").op("N").T().op("N").op("S").op("+")
    out["limits-shutdown-preauth"] = s

    s = Seed(4).T().C("a1 LOGIN alice secret").op("K").op("Z")
    out["shutdown-timeout-during-login"] = s

    # 5: behind a load balancer, STARTTLS upstream.
    s = Seed(5, IP_LOOPBACK).raw("PROXY TCP6 2001:db8::55 ::1 5555 10145\r\na1 LOGIN alice secret\r\n")
    n = imap_up(s, tls="starttls")
    s.U("M%d OK Logged in" % n).C("a2 LOGOUT")
    out["proxy-in-starttls-upstream"] = s
    return out


def main():
    check = "--check" in sys.argv
    changed = []
    for target, seeds in (("smtp_session", smtp_seeds()), ("imap_session", imap_seeds())):
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, seed in sorted(seeds.items()):
            path = os.path.join(d, name)
            data = seed.bytes()
            old = open(path, "rb").read() if os.path.exists(path) else None
            if old == data:
                continue
            changed.append(path)
            if not check:
                with open(path, "wb") as f:
                    f.write(data)
    for path in changed:
        print(("would change: " if check else "wrote: ") + os.path.relpath(path, HERE))
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
