"""pkcs11_rsa.py: is RSA-2048 signing through SoftHSM2 (its OpenSSL
libcrypto backend, reached over PKCS#11) faster than GnuTLS's own (nettle)?

One mailgate-smtpd with an RSA-only SMTPS listener, run twice: the key
from its file, then the same key imported into a SoftHSM2 token and named
by a pkcs11: URL. loadgen runs full TLS 1.3 handshakes (connect,
handshake, greeting, QUIT) for --duration seconds each way; the server is
pinned to CPU 1 and loadgen to CPU 0 (with 2+ CPUs). Prints sessions/s and
server CPU per session for both, alternating --rounds times.

Usage: MG_SRCDIR=... MG_BUILDDIR=... python3 pkcs11_rsa.py [--duration S] [--rounds N]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["MG_SRCDIR"], "tests", "integration"))
import mgtest  # noqa: E402
from test_pkcs11 import SoftHsm  # noqa: E402

PINNED = (os.cpu_count() or 1) >= 2 and bool(shutil.which("taskset"))
LOADGEN = os.path.join(mgtest.BUILDDIR, "tests", "bench", "loadgen")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / TICK


def run(tmp, pki, key, env, duration, concurrency):
    port = mgtest.free_port()
    conf = mgtest.smtpd_conf(pki, mgtest.free_port(), mgtest.listener("smtps", port, "implicit",
                                                                      "max_per_ip = 10000"))
    conf = conf.replace('cert = { "%s/server-ecdsa.pem", "%s/server-rsa.pem" }' % (pki, pki),
                        'cert = { "%s/server-rsa.pem" }' % pki)
    conf = conf.replace('key = { "%s/server-ecdsa.key", "%s/server-rsa.key" }' % (pki, pki),
                        'key = { "%s" }' % key)
    conf = conf.replace('log_level = "debug"', 'log_level = "warning"')
    path = tmp.file("bench-%d.conf" % port, conf)
    argv = (["taskset", "-c", "1"] if PINNED else []) + [mgtest.SMTPD, "-f", "-c", path]
    gw = mgtest.Proc(argv, os.path.join(tmp.path, "bench-%d.log" % port), env=env)
    try:
        if not mgtest.wait_port(port, proc=gw.p):
            raise RuntimeError("gateway did not start:\n" + gw.output())
        time.sleep(0.3)
        c0 = cpu_seconds(gw.pid)
        lg = (["taskset", "-c", "0"] if PINNED else []) + [
            LOADGEN, "-q", "-s", "greet", "-c", str(concurrency), "-d", str(duration),
            "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-X25519:-CIPHER-ALL:+AES-128-GCM:"
                          "-SIGN-ALL:+SIGN-RSA-PSS-RSAE-SHA256",
            "--json", "127.0.0.1:%d" % port]
        out = subprocess.run(lg, capture_output=True, text=True, timeout=duration + 60)
        cpu = cpu_seconds(gw.pid) - c0
        res = json.loads(out.stdout.strip().splitlines()[-1])
        return res, cpu
    finally:
        gw.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    tmp = mgtest.TempDir("mgbench-p11-")
    try:
        pki = mgtest.pki_dir()
        hsm = SoftHsm(tmp, pki)
        ways = (("file (GnuTLS/nettle)", os.path.join(pki, "server-rsa.key"), None),
                ("pkcs11 (SoftHSM2/OpenSSL)", hsm.url("server-rsa"), hsm.env))
        for r in range(a.rounds):
            for name, key, env in ways:
                res, cpu = run(tmp, pki, key, env, a.duration, a.concurrency)
                n = res["sessions"]
                rate = res["sessions_per_s"]
                print("round %d  %-26s %6d sessions  %7.1f sessions/s  server CPU %6.2f s  %7.0f us/session  "
                      "errors %d%s" % (r + 1, name, n, rate, cpu, 1e6 * cpu / n if n else float("nan"),
                                       res["errors"], "  (client-bound)" if res["client_bound"] else ""),
                      flush=True)
    finally:
        tmp.cleanup()


if __name__ == "__main__":
    main()
