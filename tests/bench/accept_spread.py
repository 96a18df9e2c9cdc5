"""accept_spread.py: how mailgate-smtpd's workers share new connections,
with one listening socket shared by every worker (reuseport = false, the
default) and with a socket per worker (reuseport = true, SO_REUSEPORT).

For each mode and each load (a few sessions in flight, then many), loadgen
runs full TLS sessions (handshake, greeting, QUIT) against an implicit-TLS
listener for a few seconds; the script reports sessions/s, how the
sessions spread over the workers (share of the busiest and of the idlest
worker, from the session-end log lines), server CPU per session and
voluntary context switches per session (a thundering herd shows as
wake-ups that find nothing to accept).

Usage: MG_SRCDIR=... MG_BUILDDIR=... python3 accept_spread.py [--workers N]
       [--duration S]
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["MG_SRCDIR"], "tests", "integration"))
import mgtest  # noqa: E402

LOADGEN = os.path.join(mgtest.BUILDDIR, "tests", "bench", "loadgen")
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def ctxt(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    return 0


def run(mode, workers, concurrency, duration, tmp, pki, sink_port):
    port = mgtest.free_port()
    conf = mgtest.smtpd_conf(pki, sink_port, mgtest.listener("smtps", port, "implicit", "max_per_ip = 100000\nmax_connections = 100000"),
                             extra="workers = %d\nreuseport = %s\nlog_level = \"info\"" %
                             (workers, "true" if mode == "reuseport" else "false"))
    conf = conf.replace('log_level = "debug"', "")
    gw = mgtest.Gateway(tmp, conf, [port])
    try:
        pids = mgtest.worker_pids(gw.proc.pid, workers)
        cpu0 = sum(proc_cpu(p) for p in pids)
        cs0 = sum(ctxt(p) for p in pids)
        out = subprocess.run([LOADGEN, "-s", "greet", "-c", str(concurrency), "-d", str(duration), "--json",
                              "-q", "127.0.0.1:%d" % port], capture_output=True, text=True, check=True)
        time.sleep(0.5)
        cpu = sum(proc_cpu(p) for p in pids) - cpu0
        cs = sum(ctxt(p) for p in pids) - cs0
        res = json.loads(out.stdout.strip().splitlines()[-1])
        per = collections.Counter(int(p) for p in re.findall(r"mailgate-smtpd\[(\d+)\]: info: session=", gw.log()))
        n = sum(per.values()) or 1
        shares = sorted((per.get(p, 0) / n for p in pids), reverse=True)
        return {
            "mode": mode, "workers": workers, "concurrency": concurrency,
            "sessions": n, "rate": res.get("sessions_per_s") or res.get("rate"),
            "max_share": shares[0], "min_share": shares[-1],
            "cpu_us_per_session": 1e6 * cpu / n, "ctxt_per_session": cs / n,
        }
    finally:
        gw.proc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5)
    args = ap.parse_args()
    tmp = mgtest.TempDir()
    pki = mgtest.pki_dir()
    sink = mgtest.SmtpSink(tmp)
    try:
        rows = []
        for conc in (4, 64):
            for mode in ("shared", "reuseport"):
                rows.append(run(mode, args.workers, conc, args.duration, tmp, pki, sink.port))
        print("%-10s %7s %11s %9s %10s %10s %12s %10s" % ("mode", "workers", "concurrency", "sessions",
                                                          "busiest", "idlest", "CPU us/sess", "wakeups"))
        for r in rows:
            print("%-10s %7d %11d %9d %9.0f%% %9.0f%% %12.0f %10.2f" % (
                r["mode"], r["workers"], r["concurrency"], r["sessions"], 100 * r["max_share"],
                100 * r["min_share"], r["cpu_us_per_session"], r["ctxt_per_session"]))
        print(json.dumps(rows))
    finally:
        sink.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
