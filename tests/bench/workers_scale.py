"""workers_scale.py: sessions/s of mailgate-smtpd with workers = 1 and
workers = 2 (issue 10 part 6: the second worker should add >= 80 % of
the first one's rate).

For each worker count, loadgen (two threads, 64 sessions in flight) runs
full TLS 1.3 sessions (handshake, greeting, QUIT) against an implicit-TLS
listener for --duration seconds, --rounds times alternating. Reported:
sessions/s, server CPU per session (the workers' utime + stime), how
busy the workers were (CPUs' worth), loadgen's own CPU (CPUs' worth), and
the ratio of the two rates.

On a machine where loadgen shares the CPUs with the workers (this
project's 2-vCPU VM), the client takes about as much CPU per session as
the server, so workers = 2 cannot get two CPUs: the run is marked
client-bound when server + client used >= 90 % of the machine, and the
ratio is then a lower bound, not the scaling. What such a run does show
is whether a second worker costs anything per session (CPU per session
equal with 1 and 2 workers: no lock, no herd) - then the rate scales with
the CPUs the workers get.

With --key rsa the server signs RSA-2048 (about 1.5 ms of CPU a
session) while the client only verifies (loadgen measured about 0.45 ms a
session): the client then leaves more of a 2-vCPU machine to the
workers, though still not two whole CPUs (at most 2 / 1.3 of them).

Usage: MG_SRCDIR=... MG_BUILDDIR=... python3 workers_scale.py
       [--duration S] [--rounds N] [--concurrency N] [--key both|ecdsa|rsa]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["MG_SRCDIR"], "tests", "integration"))
import mgtest  # noqa: E402

LOADGEN = os.path.join(mgtest.BUILDDIR, "tests", "bench", "loadgen")
TICK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def children_cpu():
    """CPU seconds of this script's reaped children (loadgen)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(workers, args, tmp, pki, sink_port):
    port = mgtest.free_port()
    conf = mgtest.smtpd_conf(pki, sink_port,
                             mgtest.listener("smtps", port, "implicit",
                                             "max_per_ip = 100000\nmax_connections = 100000"),
                             extra="workers = %d\nlog_level = \"notice\"" % workers)
    conf = conf.replace('log_level = "debug"', "")
    if args.key != "both":    # one certificate: the server's signature is what costs
        conf = conf.replace('cert = { "%s/server-ecdsa.pem", "%s/server-rsa.pem" }' % (pki, pki),
                            'cert = "%s/server-%s.pem"' % (pki, args.key))
        conf = conf.replace('key = { "%s/server-ecdsa.key", "%s/server-rsa.key" }' % (pki, pki),
                            'key = "%s/server-%s.key"' % (pki, args.key))
        assert 'server-%s.pem"\n' % args.key in conf, "the test configuration's tls section changed"

    gw = mgtest.Gateway(tmp, conf, [port])
    try:
        pids = mgtest.worker_pids(gw.proc.pid, workers)
        cpu0 = sum(proc_cpu(p) for p in pids)
        cl0 = children_cpu()
        t0 = time.time()
        out = subprocess.run([LOADGEN, "-s", "greet", "-t", "2", "-c", str(args.concurrency),
                              "-d", str(args.duration), "--json", "-q", "127.0.0.1:%d" % port],
                             capture_output=True, text=True, check=True)
        wall = time.time() - t0
        cpu = sum(proc_cpu(p) for p in pids) - cpu0
        client = children_cpu() - cl0
        res = json.loads(out.stdout.strip().splitlines()[-1])
        n = res["sessions"] or 1
        return {"workers": workers, "sessions": res["sessions"], "errors": res.get("errors", 0),
                "rate": res["sessions"] / res.get("wall_s", wall),
                "cpu_us_per_session": 1e6 * cpu / n,
                "server_cpus": cpu / wall, "client_cpus": client / wall,
                "client_bound": (cpu + client) / wall >= 0.9 * NCPU}
    finally:
        gw.proc.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--key", choices=("both", "ecdsa", "rsa"), default="both",
                    help="server certificate: both (the client picks ECDSA), or only one (rsa: the "
                         "server's signature is most of a session's CPU, the client needs less)")
    args = ap.parse_args()
    tmp = mgtest.TempDir()
    pki = mgtest.pki_dir()
    sink = mgtest.SmtpSink(tmp)
    rows = []
    try:
        for _ in range(args.rounds):
            for w in (1, 2):
                rows.append(run(w, args, tmp, pki, sink.port))
    finally:
        sink.stop()
        tmp.cleanup()
    print("%7s %9s %11s %12s %12s %12s  %s" % ("workers", "sessions", "sessions/s", "CPU us/sess",
                                              "server CPUs", "client CPUs", ""))
    for r in rows:
        print("%7d %9d %11.0f %12.0f %12.2f %12.2f  %s" % (
            r["workers"], r["sessions"], r["rate"], r["cpu_us_per_session"], r["server_cpus"],
            r["client_cpus"], "client-bound" if r["client_bound"] else ""))
    best = {w: max(r["rate"] for r in rows if r["workers"] == w) for w in (1, 2)}
    cpu = {w: statistics.median(r["cpu_us_per_session"] for r in rows if r["workers"] == w) for w in (1, 2)}
    bound = any(r["client_bound"] for r in rows if r["workers"] == 2)
    print("workers = 2 / workers = 1, best rates: %.2fx%s" % (
        best[2] / best[1], " (client-bound: a lower bound, not the scaling)" if bound else ""))
    print("server CPU per session, median: %.0f us with 1 worker, %.0f us with 2 (%.2fx)"
          % (cpu[1], cpu[2], cpu[2] / cpu[1]))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
