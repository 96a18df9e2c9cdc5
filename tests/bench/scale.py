"""scale.py: memory at scale (DESIGN.md §8, issue 10 part 5).

Two figures, RSS growth of the gateway's worker processes (the master
excluded) divided by the sessions held:

  idle     N idle TLS sessions (handshake + greeting, then nothing) held on
           ONE worker of mailgate-smtpd (before MAIL) and of mailgate-imapd
           (before login), and on nginx mail's one worker in the same run.
  login    M IMAP sessions after LOGIN through mailgate-imapd, each with its
           upstream connection, spread over 4 upstream addresses
           (127.0.0.1 .. 127.0.0.4): one imapd listener per upstream
           section, one loadgen per listener. The upstream is a private
           Dovecot (mgtest.Dovecot) with four inet listeners, imap processes
           serving many clients each (client_limit), imap-login in
           high-performance mode; its RSS is reported beside ours.

The client is loadgen's idle script (--login for the second figure). Each
process may hold no more descriptors than the hard RLIMIT_NOFILE: a worker
of mailgate holds about (limit - linger budget) / 2 sessions (2 descriptors
reserved per session, common/fdlimit.c), so the login figure uses enough
workers for M, and the table says how many sessions were really held.

Usage: python3 scale.py [--idle N] [--login M] [--only idle,login]
       [--servers mailgate,nginx]
Runs from `make bench` too (MG_SRCDIR / MG_BUILDDIR set by the Makefile).
"""
import argparse
import math
import os
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (sets up mgtest's path)
from bench import mgtest, log, rss_kib, tree  # noqa: E402

NAN = float("nan")


def workers_of(pid):
    """The worker processes of a master (its children)."""
    return [p for p in tree(pid) if p != pid]


def workers_rss(pid):
    return sum(rss_kib_one(p) for p in workers_of(pid))


def rss_kib_one(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def hold(port, n, extra=(), timeout=600):
    """Starts loadgen's idle script holding n sessions; returns (proc, held)
    once they are all up (or failed)."""
    argv = [bench.LOADGEN, "--json", "-q", "-s", "idle", "-c", str(n), "--hold", "900", "--timeout", "120",
            "--ramp", "128"] + (["--cpus", "0"] if bench.PINNED else []) + list(extra) + ["127.0.0.1:%d" % port]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    ready = p.stdout.readline()    # "READY held=N failed=M seconds=S"
    if not ready.startswith("READY"):
        err = p.stderr.read()[-2000:] if p.poll() is not None else ""
        release(p)
        raise RuntimeError("loadgen idle: %r %s" % (ready, err))
    f = dict(kv.split("=") for kv in ready.split()[1:])
    log("  held %s of %d on port %d (%s failed) in %.1f s" % (f["held"], n, port, f["failed"], time.time() - t0))
    return p, int(f["held"])


def release(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()


def conf_common(pki, workers):
    return """hostname = "scale.bench.example"
log_target = "stderr"
log_level = "error"
workers = {w}
tls "default" {{
  cert = "{pki}/server-ecdsa.pem"
  key = "{pki}/server-ecdsa.key"
  priority = "{prio}"
}}
""".format(w=workers, pki=pki, prio=bench.MG_PRIORITY)


def start(tmp, name, argv, ports):
    srv = bench.Server(name, argv, {str(i): p for i, p in enumerate(ports)}, tmp)
    return srv


def idle_row(srv, port, n, warm_args=()):
    """Worker RSS growth per session with n idle sessions held."""
    bench.loadgen(port, ["-c", "8", "-n", "16"] + list(warm_args), 60)
    time.sleep(0.5)
    before = workers_rss(srv.pid)
    p, held = hold(port, n, warm_args)
    try:
        time.sleep(1.0)
        after = workers_rss(srv.pid)
    finally:
        release(p)
    return {"want": n, "held": held, "rss_before_kib": before, "rss_held_kib": after,
            "workers": len(workers_of(srv.pid)),
            "kib_per_session": (after - before) / held if held else NAN}


def run_idle(tmp, pki, a, wanted, results):
    fp = mgtest.free_port
    sink = mgtest.SmtpSink(tmp, dump=False)
    try:
        if "mailgate" in wanted:
            port = fp()
            conf = conf_common(pki, 1) + """upstream "sink" {{
  address = "127.0.0.1:{sink}"
  xclient = false
}}
listener "smtps" {{
  address = "127.0.0.1:{p}"
  max_connections = {n}
  max_per_ip = {n}
}}
accept_domains = "example.org"
""".format(sink=sink.port, p=port, n=a.idle + 100)
            srv = start(tmp, "mailgate-smtpd", [mgtest.SMTPD, "-f", "-c", tmp.file("scale-smtpd.conf", conf)], [port])
            try:
                results["smtpd idle"] = idle_row(srv, port, a.idle)
            finally:
                srv.stop()
            port = fp()
            conf = conf_common(pki, 1) + """upstream "dc" {{
  address = "127.0.0.1:{up}"
}}
listener "imaps" {{
  address = "127.0.0.1:{p}"
  tls_mode = "implicit"
  max_connections = {n}
  max_per_ip = {n}
}}
""".format(up=sink.port, p=port, n=a.idle + 100)
            srv = start(tmp, "mailgate-imapd", [mgtest.IMAPD, "-f", "-c", tmp.file("scale-imapd.conf", conf)], [port])
            try:
                results["imapd idle"] = idle_row(srv, port, a.idle, ["--imap"])
            finally:
                srv.stop()
        if "nginx" in wanted:
            auth_port = fp()
            servers = bench.start_servers(tmp, pki, "ecdsa", sink.port, 0, auth_port, ["nginx"])
            try:
                srv = servers.get("nginx")
                if srv:
                    results["nginx idle"] = idle_row(srv, srv.ports["smtps"], a.idle)
            finally:
                for s in servers.values():
                    s.stop()
    finally:
        sink.stop()


DOVECOT_SCALE = """mail_max_userip_connections = 1000000
default_process_limit = 2000
default_client_limit = {clients}
default_vsz_limit = 2G
service imap-login {{
  service_count = 0
  process_min_avail = 2
  client_limit = {clients}
{listeners}}}
service imap {{
  service_count = 0
  client_limit = 1000
  process_limit = 200
}}
service anvil {{
  client_limit = {clients}
}}
service auth {{
  client_limit = {clients}
}}
"""


def run_login(tmp, pki, a, results):
    fp = mgtest.free_port
    up_ports = [fp() for _ in range(4)]
    extra = DOVECOT_SCALE.format(clients=a.login + 2000, listeners="".join(
        "  inet_listener imap{i} {{\n    address = 127.0.0.{i}\n    port = {p}\n  }}\n".format(i=i + 1, p=p)
        for i, p in enumerate(up_ports[1:], 1)))
    dc = mgtest.Dovecot(tmp, users={"bench": "bench"}, imap_port=up_ports[0], extra=extra)
    try:
        for i, p in enumerate(up_ports):
            if not wait_addr("127.0.0.%d" % (i + 1), p):
                raise RuntimeError("dovecot: no listener on 127.0.0.%d:%d" % (i + 1, p))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        per_worker = max(1, (hard - 1024 - 64) // 2)    # common/fdlimit.c's share, linger budget 1024
        workers = max(1, math.ceil(a.login * 1.2 / per_worker))
        ports = [fp() for _ in range(4)]
        per = a.login // 4
        conf = conf_common(pki, workers)
        for i in range(4):
            conf += """upstream "dc{i}" {{
  address = "127.0.0.{h}:{up}"
  forward_id = false
}}
listener "imaps{i}" {{
  address = "127.0.0.1:{p}"
  tls_mode = "implicit"
  upstream = "dc{i}"
  max_connections = {n}
  max_per_ip = {n}
}}
""".format(i=i, h=i + 1, up=up_ports[i], p=ports[i], n=per + 100)
        srv = start(tmp, "mailgate-imapd-login", [mgtest.IMAPD, "-f", "-c", tmp.file("scale-login.conf", conf)],
                    ports)
        procs = []
        try:
            bench.loadgen(ports[0], ["-s", "greet", "--imap", "-c", "4", "-n", "16"], 60)
            time.sleep(0.5)
            before = workers_rss(srv.pid)
            dc_before = rss_kib(dc_master_pid(dc))
            held = 0
            for p in ports:
                proc, h = hold(p, per, ["--login", "--user", "bench", "--pass", "bench"])
                procs.append(proc)
                held += h
            time.sleep(1.0)
            after = workers_rss(srv.pid)
            dc_after = rss_kib(dc_master_pid(dc))
            results["imapd login"] = {
                "want": per * 4, "held": held, "rss_before_kib": before, "rss_held_kib": after,
                "workers": len(workers_of(srv.pid)),
                "kib_per_session": (after - before) / held if held else NAN,
                "dovecot_kib_per_session": (dc_after - dc_before) / held if held else NAN}
        finally:
            for proc in procs:
                release(proc)
            srv.stop()
    finally:
        dc.stop()


def wait_addr(host, port, timeout=15):
    import socket
    t = time.time() + timeout
    while time.time() < t:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def dc_master_pid(dc):
    with open(os.path.join(dc.run, "master.pid")) as f:
        return int(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser(description="RSS per held session at scale (DESIGN.md §8)")
    ap.add_argument("--idle", type=int, default=10000, help="idle TLS sessions per worker (default 10000)")
    ap.add_argument("--login", type=int, default=20000, help="logged-in IMAP sessions (default 20000)")
    ap.add_argument("--only", default="idle,login", help="idle,login")
    ap.add_argument("--servers", default="mailgate,nginx", help="idle row: mailgate,nginx")
    a = ap.parse_args()
    only = set(a.only.split(","))
    wanted = set(a.servers.split(","))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if bench.PINNED:
        os.sched_setaffinity(0, {0})
    tmp = mgtest.TempDir(prefix="mailgate-scale-")
    pki = mgtest.pki_dir()
    results = {}
    try:
        if "idle" in only:
            run_idle(tmp, pki, a, wanted, results)
        if "login" in only:
            try:
                run_login(tmp, pki, a, results)
            except Exception as e:
                log("scale: login row failed: %s" % e)
    finally:
        if os.environ.get("SCALE_KEEP"):
            log("scale: kept %s" % tmp.path)
        else:
            tmp.cleanup()
    print("\nRSS per held session, worker processes only (master excluded); hard RLIMIT_NOFILE %d; %s" % (
        hard, time.strftime("%Y-%m-%d %H:%M")))
    print("| case | held / wanted | workers | RSS growth | per session |")
    print("|---|---:|---:|---:|---:|")
    for k, r in results.items():
        extra = ""
        if "dovecot_kib_per_session" in r:
            extra = " (Dovecot upstream: %.1f KiB)" % r["dovecot_kib_per_session"]
        print("| %s | %d / %d | %d | %.1f MiB | %.2f KiB%s |" % (
            k, r["held"], r["want"], r["workers"], (r["rss_held_kib"] - r["rss_before_kib"]) / 1024.0,
            r["kib_per_session"], extra))
    if not results:
        sys.exit(1)


if __name__ == "__main__":
    main()
