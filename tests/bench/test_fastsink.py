"""test_fastsink: the benchmark's SMTP backend (tests/bench/fastsink.c)
answers in order however the client pipelines, ends a message at the first
CRLF.CRLF wherever the reads split it (never at a dot-stuffed or partial
one), answers garbage with 500, closes on an over-long line, stops reading
while a client does not read its replies, and exits cleanly on SIGTERM
with the counts it reports to the bench."""
import os
import socket
import subprocess
import sys
import time

SINK = os.path.join(os.environ.get("MG_BUILDDIR", "."), "tests", "bench", "fastsink")


def main():
    p = subprocess.Popen([SINK], stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline().split()[1])
        run(port)
    finally:
        if p.poll() is None:
            p.terminate()
    out = p.communicate(timeout=10)[0]
    assert p.returncode == 0, p.returncode
    assert "10 messages, 100167 bytes" in out, out
    print("ok: fastsink")


def conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    return s, f


def reply(f):
    lines = []
    while True:
        line = f.readline()
        assert line, "connection closed"
        lines.append(line)
        if line[3:4] != b"-":
            return lines


def codes(f, n):
    return [reply(f)[0][:3] for _ in range(n)]


def run(port):
    s, f = conn(port)
    s.sendall(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    ehlo = reply(f)
    assert [line[4:].strip() for line in ehlo[1:]] == [b"PIPELINING", b"SIZE", b"8BITMIME"], ehlo
    assert codes(f, 3) == [b"250", b"250", b"354"]
    # 100023 octets, a dot-stuffed line in it; then commands pipelined behind the end
    body = b"Subject: x\r\n\r\n" + b"a" * 100000 + b"\r\n..dot\r\n"
    s.sendall(body + b".\r\nRSET\r\nNOOP\r\nFOO bar\r\n\x01\x02\r\n\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    assert codes(f, 9) == [b"250", b"250", b"250", b"250", b"500", b"500", b"250", b"250", b"354"]
    s.sendall(b".\r\n")    # an empty message
    assert codes(f, 1) == [b"250"]
    # 18 octets with false ends in it; the real end split at every offset,
    # sent whole or octet by octet
    msg = b"x\r\n.\rz\r\n..\r\n\r\n.y\r\n.\r\n"
    assert msg.count(b"\r\n.\r\n") == 1
    for split in range(8):
        s.sendall(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        assert codes(f, 3) == [b"250", b"250", b"354"]
        for piece in (msg[:len(msg) - split], msg[len(msg) - split:]):
            for chunk in ([piece[i:i + 1] for i in range(len(piece))] if split % 2 else [piece]):
                if chunk:
                    s.sendall(chunk)
                    time.sleep(0.001)
        assert codes(f, 1) == [b"250"], split
    s.sendall(b"XSTATS\r\n")
    st = reply(f)[0]
    assert b" messages=10 bytes=100167\r\n" in st, st
    s.sendall(b"QUIT\r\nNOOP\r\n")
    assert codes(f, 1) == [b"221"]
    assert f.read() == b""
    # an over-long line: 500, closed
    s, f = conn(port)
    s.sendall(b"A" * 5000 + b"\r\n")
    assert codes(f, 1) == [b"500"]
    assert f.read() == b""
    # a client that floods commands and never reads: the sink stops reading
    # (our send blocks) instead of queueing replies without bound
    s, f = conn(port)
    s.settimeout(3)
    try:
        s.sendall(b"NOOP\r\n" * 4000000)
        raise AssertionError("24 MB of pipelined NOOPs all taken by a sink whose replies are not read")
    except socket.timeout:
        pass
    s.close()
    # many connections at once
    cs = [conn(port) for _ in range(300)]
    for s, f in cs:
        s.sendall(b"QUIT\r\n")
    for s, f in cs:
        assert codes(f, 1) == [b"221"]
        s.close()


if __name__ == "__main__":
    sys.exit(main())
