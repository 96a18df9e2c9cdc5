"""bench.py: DESIGN.md §8 figures for mailgate against nginx's mail proxy,
HAProxy and stunnel, measured in the same run.

Servers: mailgate-smtpd (SMTPS and a STARTTLS listener), nginx mail (SMTPS,
SMTP STARTTLS, IMAPS), HAProxy (tcp mode, TLS termination), stunnel, and
mailgate-imapd (IMAPS and STARTTLS), all with the same certificate (ECDSA
P-256, then RSA-2048) and TLS 1.3 / X25519 / AES-128-GCM. Behind them:
tests/bench/fastsink for SMTP (a small epoll SMTP sink reading messages in
256 KiB chunks; --backend smtp-sink puts Postfix's smtp-sink back, which
reads line by line and saturated the client core in the DATA row) and a
private Dovecot (mgtest.Dovecot) holding one 10 MiB message for IMAP
(nginx reaches both through its auth_http, answered here). After each
DATA run the messages fastsink accepted are checked against the messages
loadgen saw delivered; a difference marks the figure "sink ≠".

With 2+ CPUs every server is pinned to CPU 1 (taskset) and everything else
(this script, loadgen, the SMTP backend, Dovecot) to CPU 0. The client is loadgen
(tests/bench/loadgen.c, C/GnuTLS). Server CPU is utime+stime of the
server's process tree from /proc, sampled around each loadgen run.

Figures:
  server CPU per full ECDSA session   greet sessions (handshake, greeting,
                                      QUIT), server CPU / sessions
  server CPU per resumed session      the same with TLS 1.3 tickets (the
                                      few full handshakes subtracted)
  RSA-2048 full sessions/s            measured rate with the RSA certificate
  DATA 1 MiB: MB per server CPU-s     smtp-data script
  IMAP FETCH 10 MiB: MB per CPU-s     imap-fetch via mailgate-imapd / nginx
  RSS per idle TLS session            server RSS growth with N sessions held
  first reply after the handshake     one connection, sessions in sequence
                                      (SMTPS ECDSA full and resumed, RSA; SMTP
                                      STARTTLS and IMAPS for mailgate and nginx)

Throughput rows in rounds: --rounds N runs DATA (and FETCH) N times with
the servers taking turns (round 1: nginx, mailgate, ...; round 2: ...), so
that drift in the machine's load hits every server alike. The table then
shows each server's median MB per CPU-second; a section after it gives
the range, the median server-core and client-core busy shares, the ratio
of the medians to nginx and each round's ratio. For example:
  make bench BENCH_ARGS="--only data --servers nginx,mailgate --rounds 5 --duration 10"
--data-c sets the DATA sessions in flight (default 16: enough for nginx,
whose reply to each message waits about 40 ms for a delayed ACK, to keep
its core busy).

A figure from a run in which loadgen used >= 90 % of its core is marked
client-bound (a lower bound, never a capacity). Raw numbers go to
tests/bench/last-run.json (the previous one is compared with, then kept as
last-run.prev.json).

Usage: python3 bench.py [--quick] [--duration S] [--concurrency N]
       [--idle N] [--latency N] [--servers a,b] [--json PATH] [--only rows]
       [--rounds N] [--data-c N] [--backend fastsink|smtp-sink]
(MG_SRCDIR and MG_BUILDDIR as make bench sets them; MG_BUILDDIR also picks
the mailgate binaries, MG_LOADGEN / MG_FASTSINK override the tools.)
"""
import argparse
import http.server
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ["MG_SRCDIR"], "tests", "integration"))
import mgtest  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
MIN_CPU = 20.0 / TICK    # below this many ticks a CPU figure is noise: not reported
PINNED = os.cpu_count() >= 2 and bool(shutil.which("taskset"))
PIN_SERVER = ["taskset", "-c", "1"] if PINNED else []
LOADGEN = os.environ.get("MG_LOADGEN") or os.path.join(mgtest.BUILDDIR, "tests", "bench", "loadgen")
FASTSINK = os.environ.get("MG_FASTSINK") or os.path.join(mgtest.BUILDDIR, "tests", "bench", "fastsink")
SERVERS = ("nginx", "haproxy", "stunnel", "mailgate")
NAN = float("nan")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- process-tree accounting ----

def tree(pid):
    """pid and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read().rsplit(")", 1)[1].split()
                kids.setdefault(int(st[1]), []).append(int(d))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read().rsplit(")", 1)[1].split()
            total += int(st[11]) + int(st[12])     # utime, stime
        except OSError:
            pass
    return total / TICK


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---- servers ----

class Server:
    def __init__(self, name, argv, ports, tmp):
        """ports: {"smtps": p, "smtp-starttls": p, "imaps": p, "imap-starttls": p} (some)."""
        self.name, self.ports = name, ports
        self.proc = mgtest.Proc(PIN_SERVER + argv, os.path.join(tmp.path, name + ".log"))
        for p in ports.values():
            if not mgtest.wait_port(p, timeout=15, proc=self.proc.p):
                self.proc.stop()
                raise RuntimeError("%s did not start:\n%s" % (name, self.proc.output()[-3000:]))
        time.sleep(0.3)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.stop()


class AuthHttp(http.server.BaseHTTPRequestHandler):
    """nginx's auth_http: always OK; SMTP to the sink, IMAP to Dovecot."""
    ports = {}

    def do_GET(self):
        proto = self.headers.get("Auth-Protocol", "smtp")
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", str(self.ports.get(proto, 0)))
        self.end_headers()

    def log_message(self, *a):
        pass


MG_PRIORITY = "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-AES-256-GCM:-CHACHA20-POLY1305:%SERVER_PRECEDENCE"


def start_servers(tmp, pki, keytype, sink_port, dovecot_port, auth_port, wanted):
    """The servers wanted (mailgate-imapd too, with ECDSA); a failed start
    stops those already up. Returns {name: Server}."""
    servers = {}
    try:
        _start_servers(tmp, pki, keytype, sink_port, dovecot_port, auth_port, wanted, servers)
        return servers
    except Exception:
        for srv in servers.values():
            srv.stop()
        raise


def _start_servers(tmp, pki, keytype, sink_port, dovecot_port, auth_port, wanted, servers):
    cert, key = "%s/server-%s.pem" % (pki, keytype), "%s/server-%s.key" % (pki, keytype)
    both = tmp.file("both-%s.pem" % keytype, open(cert).read() + open(key).read(), mode=0o600)
    fp = mgtest.free_port
    if "mailgate" in wanted:
        ports = {"smtps": fp(), "smtp-starttls": fp()}
        conf = """hostname = "mx.bench.example"
log_target = "stderr"
log_level = "error"
tls "default" {{
  cert = "{cert}"
  key = "{key}"
  priority = "{prio}"
}}
upstream "sink" {{
  address = "127.0.0.1:{sink}"
  xclient = false
}}
listener "smtps" {{
  address = "127.0.0.1:{p1}"
  max_connections = 12000
  max_per_ip = 12000
}}
listener "submission" {{
  address = "127.0.0.1:{p2}"
  tls_mode = "starttls"
  max_connections = 12000
  max_per_ip = 12000
}}
max_message_size = 104857600
accept_domains = "example.org"
""".format(cert=cert, key=key, prio=MG_PRIORITY, sink=sink_port, p1=ports["smtps"],
           p2=ports["smtp-starttls"])
        servers["mailgate"] = Server("mailgate-%s" % keytype,
                                     [mgtest.SMTPD, "-f", "-c", tmp.file("mg-%s.conf" % keytype, conf)],
                                     ports, tmp)
    if "mailgate" in wanted and dovecot_port and keytype == "ecdsa":
        ports = {"imaps": fp(), "imap-starttls": fp()}
        conf = """hostname = "imap.bench.example"
log_target = "stderr"
log_level = "error"
tls "default" {{
  cert = "{cert}"
  key = "{key}"
  priority = "{prio}"
}}
upstream "dovecot" {{
  address = "127.0.0.1:{dc}"
}}
listener "imaps" {{
  address = "127.0.0.1:{p1}"
  tls_mode = "implicit"
  max_connections = 12000
  max_per_ip = 12000
}}
listener "imap" {{
  address = "127.0.0.1:{p2}"
  tls_mode = "starttls"
  max_connections = 12000
  max_per_ip = 12000
}}
""".format(cert=cert, key=key, prio=MG_PRIORITY, dc=dovecot_port, p1=ports["imaps"],
           p2=ports["imap-starttls"])
        servers["mailgate-imapd"] = Server("mailgate-imapd-%s" % keytype,
                                           [mgtest.IMAPD, "-f", "-c", tmp.file("mgi-%s.conf" % keytype, conf)],
                                           ports, tmp)
    if "nginx" in wanted and shutil.which("nginx") and os.path.exists("/usr/lib/nginx/modules/ngx_mail_module.so"):
        ports = {"smtps": fp(), "smtp-starttls": fp()}
        imap = ""
        if dovecot_port:
            ports["imaps"] = fp()
            imap = """  server {{
    listen 127.0.0.1:{p} ssl;
    protocol imap;
  }}
""".format(p=ports["imaps"])
        nconf = tmp.file("nginx-%s.conf" % keytype, """load_module /usr/lib/nginx/modules/ngx_mail_module.so;
worker_processes 1;
worker_rlimit_nofile 19000;
pid {tmp}/nginx-{kt}.pid;
error_log {tmp}/nginx-{kt}-error.log error;
events {{ worker_connections 9000; }}
mail {{
  server_name mx.bench.example;
  auth_http 127.0.0.1:{auth}/auth;
  proxy on;
  xclient off;
  ssl_certificate {cert};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256;
  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
  ssl_session_cache off;
  server {{
    listen 127.0.0.1:{p1} ssl;
    protocol smtp;
    smtp_auth none;
  }}
  server {{
    listen 127.0.0.1:{p2};
    protocol smtp;
    smtp_auth none;
    starttls only;
  }}
{imap}}}
""".format(tmp=tmp.path, kt=keytype, auth=auth_port, cert=cert, key=key, p1=ports["smtps"],
           p2=ports["smtp-starttls"], imap=imap))
        servers["nginx"] = Server("nginx-%s" % keytype, ["nginx", "-p", tmp.path, "-c", nconf, "-g", "daemon off;"],
                                  ports, tmp)
    if "haproxy" in wanted and shutil.which("haproxy"):
        ports = {"smtps": fp()}
        hconf = tmp.file("haproxy-%s.cfg" % keytype, """global
    maxconn 9000
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
    nbthread 1
defaults
    mode tcp
    maxconn 9000
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend f
    bind 127.0.0.1:{port} ssl crt {both}
    default_backend b
backend b
    server sink 127.0.0.1:{sink}
""".format(port=ports["smtps"], both=both, sink=sink_port))
        servers["haproxy"] = Server("haproxy-%s" % keytype, ["haproxy", "-db", "-f", hconf], ports, tmp)
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if "stunnel" in wanted and stunnel:
        ports = {"smtps": fp()}
        sconf = tmp.file("stunnel-%s.conf" % keytype, """foreground = yes
pid =
debug = 0
[smtps]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{sink}
cert = {cert}
key = {key}
ciphersuites = TLS_AES_128_GCM_SHA256
ciphers = ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
sessionCacheSize = 1
""".format(port=ports["smtps"], sink=sink_port, cert=cert, key=key))
        servers["stunnel"] = Server("stunnel-%s" % keytype, [stunnel, sconf], ports, tmp)


# ---- the SMTP backend ----

class FastSink:
    """tests/bench/fastsink (C, epoll): the SMTP backend. It reads a
    message in 256 KiB chunks, where Postfix's smtp-sink reads line by line
    and saturated the client core before the servers did. stats() asks it
    (XSTATS) how many messages it has accepted."""

    def __init__(self, tmp):
        self.port = mgtest.free_port()
        self.proc = mgtest.Proc([FASTSINK, "--port", str(self.port)], os.path.join(tmp.path, "fastsink.log"))
        if not mgtest.wait_port(self.port, proc=self.proc.p):
            raise RuntimeError("fastsink did not start: " + self.proc.output())

    @property
    def pid(self):
        return self.proc.pid

    def stats(self):
        """{"connections", "messages", "bytes"} so far."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()                     # 220
            s.sendall(b"XSTATS\r\nQUIT\r\n")
            line = f.readline().decode()     # 250 connections=C messages=M bytes=B
        if not line.startswith("250 "):
            raise RuntimeError("fastsink XSTATS: %r" % line)
        return {k: int(v) for k, v in (w.split("=") for w in line.split()[1:])}

    def stop(self):
        self.proc.stop()


class PostfixSink(mgtest.SmtpSink):
    """Postfix's smtp-sink (--backend smtp-sink, the backend before
    fastsink): no counters to check the DATA row against."""

    def __init__(self, tmp):
        super().__init__(tmp, args=("-m", "16000"), dump=False)

    @property
    def pid(self):
        return self.proc.pid

    def stats(self):
        return None


# ---- Dovecot with one big message ----

def dovecot_with_message(tmp, size):
    port = mgtest.free_port()
    dc = mgtest.Dovecot(tmp, users={"bench": "bench"}, imap_port=port)
    home = os.path.join(dc.home, "bench")
    md = os.path.join(home, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    line = b"L" + bytes(range(65, 91)) * 2 + b"0123456789abcdefghijklmnopqrstuvwxyz"[:23] + b"\n"
    head = (b"From: <loadgen@bench.example>\nTo: <bench@example.org>\n"
            b"Subject: bench fetch\nMessage-ID: <fetch.bench@bench.example>\n\n")
    body = line * ((size - len(head)) // len(line))
    with open(os.path.join(md, "cur", "1700000000.M1P1.bench:2,S"), "wb") as f:
        f.write(head + body)
    for root, dirs, files in os.walk(home):
        for n in dirs + files:
            shutil.chown(os.path.join(root, n), "nobody", "nogroup")
    shutil.chown(home, "nobody", "nogroup")
    return dc, port


# ---- loadgen runs ----

def loadgen(port, args, timeout):
    argv = [LOADGEN, "--json", "-q"] + (["--cpus", "0"] if PINNED else []) + list(args) + ["127.0.0.1:%d" % port]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError("loadgen failed (rc %d): %s\n%s" % (p.returncode, " ".join(argv), p.stderr[-2000:]))
    r = json.loads(lines[-1])
    r["argv"] = " ".join(argv[1:])
    return r


def measured(srv, port, args, timeout=600):
    """A loadgen run with the server's CPU time around it."""
    c0 = cpu_seconds(srv.pid)
    r = loadgen(port, args, timeout)
    time.sleep(0.2)    # closes still being handled
    cpu = cpu_seconds(srv.pid) - c0
    r["server_cpu_s"] = cpu
    r["server_core_share"] = cpu / r["wall_s"] if r["wall_s"] > 0 else NAN
    return r


def per(cpu, n):
    return cpu / n if n and cpu >= MIN_CPU else NAN


def bench_full(srv, port, a, extra=()):
    loadgen(port, ["-c", "4", "-n", str(a.warmup)] + list(extra), 60)
    r = measured(srv, port, ["-c", str(a.concurrency), "-d", str(a.duration)] + list(extra))
    r["cpu_per_session"] = per(r["server_cpu_s"], r["sessions"])
    return r


def bench_resumed(srv, port, a, full_cpu):
    r = measured(srv, port, ["--resume", "-c", str(a.concurrency), "-d", str(a.duration)])
    full = r["handshakes"] - r["resumed"]
    cpu = r["server_cpu_s"] - (full * full_cpu if full_cpu == full_cpu else 0)
    r["cpu_per_session"] = per(cpu, r["resumed"]) if r["server_cpu_s"] >= MIN_CPU else NAN
    return r


def bench_data(srv, port, a, sink):
    """DATA 1 MiB; the messages the backend accepted must be the messages
    loadgen saw delivered (else the figure is marked: "sink ≠")."""
    args = ["-s", "smtp-data", "-b", str(1 << 20), "-k", str(a.data_k)]
    loadgen(port, args + ["-c", "1", "-n", "1"], 120)
    s0, b0 = sink.stats(), cpu_seconds(sink.pid)
    r = measured(srv, port, args + ["-c", str(a.data_c), "-d", str(a.duration)])
    r["backend_cpu_s"] = cpu_seconds(sink.pid) - b0
    s1 = sink.stats()
    if s0 is not None and s1 is not None:
        r["sink_messages"] = s1["messages"] - s0["messages"]
        r["sink_ok"] = r["sink_messages"] == r["messages"] or (
            r.get("errors", 0) > 0 and r["messages"] <= r["sink_messages"] <= r["messages"] + r["errors"] * a.data_k)
        if not r["sink_ok"]:
            log("bench: %s DATA: loadgen saw %d messages delivered, the backend accepted %d" % (
                srv.name, r["messages"], r["sink_messages"]))
    r["mb_per_cpu_s"] = r["payload_bytes"] / 1e6 / r["server_cpu_s"] if r["server_cpu_s"] >= MIN_CPU else NAN
    return r


def dovecot_pid(dc):
    """Dovecot's master (its imap processes are in its tree), or None."""
    try:
        with open(os.path.join(dc.run, "master.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError, AttributeError):
        return None


def bench_fetch(srv, port, a, dc=None):
    args = ["-s", "imap-fetch", "-k", str(a.fetch_k), "--user", "bench", "--pass", "bench"]
    loadgen(port, args + ["-c", "1", "-n", "1"], 120)
    dpid = dovecot_pid(dc)
    b0 = cpu_seconds(dpid) if dpid else 0
    r = measured(srv, port, args + ["-c", str(a.fetch_c), "-d", str(a.duration)])
    if dpid:
        r["backend_cpu_s"] = cpu_seconds(dpid) - b0
    r["mb_per_cpu_s"] = r["payload_bytes"] / 1e6 / r["server_cpu_s"] if r["server_cpu_s"] >= MIN_CPU else NAN
    return r


def bench_latency(srv, port, a, extra=()):
    loadgen(port, ["-c", "1", "-n", "5"] + list(extra), 60)
    return loadgen(port, ["-c", "1", "-n", str(a.latency)] + list(extra), 600)


def bench_idle(srv, port, a):
    """RSS growth of the server's tree per held session."""
    loadgen(port, ["-c", "8", "-n", "16"], 60)
    time.sleep(0.5)
    r0 = rss_kib(srv.pid)
    argv = [LOADGEN, "--json", "-q", "-s", "idle", "-c", str(a.idle), "--hold", "300", "--timeout", "60"] + \
        (["--cpus", "0"] if PINNED else []) + ["127.0.0.1:%d" % port]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held = 0
    try:
        ready = p.stdout.readline()    # "READY held=N failed=M seconds=S"
        if not ready.startswith("READY"):
            raise RuntimeError("loadgen idle: %r %s" % (ready, p.stderr.read()[-2000:] if p.poll() is not None else ""))
        held = int(ready.split()[1].split("=")[1])
        time.sleep(1.0)
        r1 = rss_kib(srv.pid)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    r = json.loads(lines[-1]) if lines else {}
    r.update(rss_before_kib=r0, rss_held_kib=r1, held=held,
             kib_per_session=(r1 - r0) / held if held else NAN)
    return r


# ---- report ----

ROWS = [    # key, table label, lower/higher is better, short name
    ("full_cpu", "server CPU per full ECDSA-P256 session", "lower", "CPU per full ECDSA session"),
    ("resumed_cpu", "server CPU per resumed session", "lower", "CPU per resumed session"),
    ("rsa_rate", "RSA-2048 full sessions/s, one core", "higher", "RSA-2048 sessions/s"),
    ("data", "DATA, 1 MiB messages: MB per server CPU-second", "higher", "DATA MB per CPU-second"),
    ("fetch", "IMAP FETCH 10 MiB: MB per server CPU-second", "higher", "FETCH MB per CPU-second"),
    ("idle", "RSS per idle TLS session (%s held)", "lower", "RSS per idle session"),
    ("lat_ecdsa", "first reply after the handshake, one connection, p50 / p99 (SMTPS, ECDSA)", "lower",
     "first reply p50, SMTPS ECDSA"),
    ("lat_resumed", "… (SMTPS, ECDSA, resumed sessions)", "lower", "first reply p50, resumed"),
    ("lat_rsa", "… (SMTPS, RSA)", "lower", "first reply p50, SMTPS RSA"),
    ("lat_quickack", "… (SMTPS, ECDSA, client ACKs at once: TCP_QUICKACK, a diagnostic)", "lower",
     "first reply p50, client quickack"),
    ("lat_starttls", "… (SMTP after STARTTLS → EHLO reply, ECDSA)", "lower", "first reply p50, STARTTLS"),
    ("lat_imaps", "… (IMAPS greeting, ECDSA)", "lower", "first reply p50, IMAPS"),
]


def fmt_cell(key, r):
    """(text, value for the ratio) of one table cell from its raw result."""
    if r is None:
        return "—", NAN
    mark = " †" if r.get("client_bound") else ""
    if r.get("errors"):
        mark += " (%d err)" % r["errors"]
    if key in ("full_cpu", "resumed_cpu"):
        v = r["cpu_per_session"]
        txt = "%.0f µs" % (v * 1e6) if v == v else "nan"
        if key == "resumed_cpu" and r.get("resumed_share", 1) < 0.5:
            txt += " (resumed %.0f %%)" % (r["resumed_share"] * 100)
        return txt + mark, v
    if key == "rsa_rate":
        v = r["sessions_per_s"]
        txt = "%.0f" % v
        if not r.get("client_bound") and r.get("server_core_share", 1) < 0.9:
            txt += " ‡"
        return txt + mark, v
    if key in ("data", "fetch"):
        v = r["mb_per_cpu_s"]
        if r.get("sink_ok") is False:
            mark += " (sink ≠)"
        if r.get("rounds"):
            mark += " (median of %d)" % len(r["rounds"])
        return ("%.0f" % v if v == v else "nan") + mark, v
    if key == "idle":
        v = r["kib_per_session"]
        return ("%.1f KiB" % v if v == v else "nan") + (" (%d held)" % r["held"] if r["held"] < r.get("want", r["held"]) else ""), v
    if key.startswith("lat_"):
        fr = r["first_reply_ms"]
        if not fr["n"]:
            return "nan" + mark, NAN
        return "%s / %s ms%s" % (fmt_ms(fr["p50"]), fmt_ms(fr["p99"]), mark), fr["p50"]
    return "?", NAN


def fmt_ms(v):
    return "%.2f" % v if v < 10 else "%.0f" % v


def table(results, a, servers):
    out = ["| per session | " + " | ".join(col_name(s) for s in servers) + " |",
           "|---|" + "---:|" * len(servers)]
    for key, label, better, _ in ROWS:
        if "%s" in label:
            label = label % "{:,}".format(a.idle)
        cells, base = [], NAN
        vals = {s: fmt_cell(key, results.get(s, {}).get(key)) for s in servers}
        base = vals.get("nginx", ("", NAN))[1]
        if all(results.get(s, {}).get(key) is None for s in servers):
            continue
        for s in servers:
            txt, v = vals[s]
            if s != "nginx" and v == v and base == base and base > 0 and txt != "—":
                txt += " (%.2f×)" % (v / base)
            cells.append(txt)
        out.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(out)


def col_name(s):
    return {"nginx": "nginx mail", "haproxy": "HAProxy", "stunnel": "stunnel", "mailgate": "mailgate"}[s]


def details(runs):
    hdr = ("%-9s %-13s %8s %9s %7s %7s %7s %8s %6s %9s %9s %9s %9s" %
           ("server", "test", "sessions", "per s", "srv cpu", "client", "cl.core", "cl.µs/s", "errors",
            "1st byte", "reply p50", "p90", "p99"))
    out = [hdr, "-" * len(hdr)]
    for (server, test), r in runs:
        fr = r.get("first_reply_ms", {"n": 0})
        fb = r.get("first_byte_ms", {"n": 0})
        share = r.get("server_core_share")
        n = r.get("sessions", 0)
        out.append("%-9s %-13s %8d %9.1f %7s %6.0f%% %7s %8s %6d %9s %9s %9s %9s%s" % (
            server, test, r.get("sessions", 0), r.get("sessions_per_s", 0),
            "%.0f%%" % (share * 100) if share is not None and share == share else "-",
            r.get("cpu_share", 0) * 100,
            "%.0f%%" % (r["pinned_cpu_busy"] * 100) if r.get("pinned_cpu_busy", -1) >= 0 else "-",
            "%.0f" % (r["cpu_s"] / n * 1e6) if n and "cpu_s" in r else "-",
            r.get("errors", 0),
            fmt_ms(fb["p50"]) if fb["n"] else "-",
            fmt_ms(fr["p50"]) if fr["n"] else "-", fmt_ms(fr["p90"]) if fr["n"] else "-",
            fmt_ms(fr["p99"]) if fr["n"] else "-",
            "  " + r["first_error"] if r.get("first_error") else ""))
    return "\n".join(out)


def compare(prev, results, servers):
    """mailgate's figures against the previous run's."""
    lines = []
    for key, label, better, short in ROWS:
        old = prev.get("results", {}).get("mailgate", {}).get(key)
        new = results.get("mailgate", {}).get(key)
        if old is None or new is None:
            continue
        _, vo = fmt_cell(key, old)
        _, vn = fmt_cell(key, new)
        if vo == vo and vn == vn and vo > 0:
            lines.append("  %-34s %.2f× the previous run (%s is better)" % (short, vn / vo, better))
    return "\n".join(lines)


def jsonable(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    return o


def versions():
    v = {}
    for name, argv in (("nginx", ["nginx", "-v"]), ("haproxy", ["haproxy", "-v"]),
                       ("stunnel", [shutil.which("stunnel4") or "stunnel", "-version"]),
                       ("gnutls", ["gnutls-cli", "--version"])):
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
            v[name] = next((line.strip() for line in p.stdout.splitlines()
                            if "version" in line.lower() or name in line.lower()), "")[:100]
        except (OSError, subprocess.SubprocessError):
            v[name] = None
    return v


# ---- main ----

def main():
    ap = argparse.ArgumentParser(description="mailgate vs nginx mail, HAProxy, stunnel (DESIGN.md §8)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every figure")
    ap.add_argument("--duration", type=float, help="seconds per CPU measurement (default 15; quick 2)")
    ap.add_argument("--concurrency", type=int, default=128, help="sessions in flight for the CPU runs")
    ap.add_argument("--idle", type=int, help="idle sessions held (default 5000; quick 500)")
    ap.add_argument("--latency", type=int, help="sessions for the one-connection latency (default 300; quick 40)")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    ap.add_argument("--json", help="raw results file (default tests/bench/last-run.json in the source tree)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the throughput rows (data, fetch) N times, the servers taking turns "
                    "(round 1: each server, round 2: each server, ...); the table shows each server's "
                    "median, a section after it the range, the ratio of medians to nginx and each "
                    "round's ratio (default 1)")
    ap.add_argument("--backend", choices=("fastsink", "smtp-sink"), default="fastsink",
                    help="the SMTP backend behind every server: tests/bench/fastsink (default) or "
                    "Postfix's smtp-sink (the earlier backend, line-by-line reads: it saturated the "
                    "client core in the DATA row)")
    ap.add_argument("--data-c", type=int, default=16,
                    help="DATA sessions in flight (default 16)")
    ap.add_argument("--only", default="", help="comma-separated subset of the figures (row keys: %s); "
                    "a partial run is not written to the default raw-numbers file" % ",".join(r[0] for r in ROWS))
    a = ap.parse_args()
    q = a.quick
    a.duration = a.duration or (2.0 if q else 15.0)
    a.idle = a.idle or (500 if q else 5000)
    a.latency = a.latency or (40 if q else 300)
    a.warmup = 20 if q else 100
    a.data_k = 5
    if a.rounds < 1 or a.data_c < 1:
        ap.error("--rounds and --data-c must be at least 1")
    a.fetch_k, a.fetch_c = 2, 4
    only = set(k for k in a.only.split(",") if k)
    for k in only:
        if k not in [r[0] for r in ROWS]:
            ap.error("unknown figure %r" % k)
    want = (lambda key: not only or key in only)
    wanted = [s for s in a.servers.split(",") if s]
    for s in wanted:
        if s not in SERVERS:
            ap.error("unknown server %r" % s)
    if "mailgate" not in wanted:
        ap.error("the table compares mailgate: keep it in --servers")
    if not os.access(LOADGEN, os.X_OK):
        sys.exit("bench: %s not built (make tests/bench/loadgen)" % LOADGEN)
    if a.backend == "fastsink" and not os.access(FASTSINK, os.X_OK):
        sys.exit("bench: %s not built (make tests/bench/fastsink)" % FASTSINK)
    json_path = os.path.normpath(a.json or os.path.join(mgtest.SRCDIR, "tests", "bench",
                                                        "last-run-partial.json" if only else "last-run.json"))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if PINNED:
        os.sched_setaffinity(0, {0})    # children (sink, Dovecot, loadgen) inherit CPU 0
    load0 = loadavg()
    t_start = time.time()
    tmp = mgtest.TempDir(prefix="mailgate-bench-")
    pki = mgtest.pki_dir()
    results, runs = {}, []
    sink = dc = httpd = None

    def record(server, test, key, r):
        results.setdefault(server, {})[key] = r
        runs.append(((server, test), r))
        log("  %-9s %-13s %s" % (server, test, one_line(key, r)))

    def throughput(servers):
        """data and fetch, a.rounds times, the servers taking turns."""
        rows = []
        for name in [s for s in SERVERS if s in servers]:
            srv = servers[name]
            if want("data"):
                rows.append(("data", "data 1MiB", name, srv, srv.ports["smtps"]))
            if want("fetch") and "imaps" in srv.ports:
                rows.append(("fetch", "fetch 10MiB", name, srv, srv.ports["imaps"]))
        imapd = servers.get("mailgate-imapd")
        if imapd and want("fetch"):
            rows.append(("fetch", "fetch 10MiB", "mailgate", imapd, imapd.ports["imaps"]))
        for key in ("data", "fetch"):
            mine = [row for row in rows if row[0] == key]
            rounds = {}
            for rnd in range(1, a.rounds + 1):
                for _, test, name, srv, port in mine:
                    r = bench_data(srv, port, a, sink) if key == "data" else bench_fetch(srv, port, a, dc)
                    rounds.setdefault(name, []).append(r)
                    label = test if a.rounds == 1 else "%s r%d" % (test.split()[0], rnd)
                    runs.append(((name, label), r))
                    log("  %-9s %-13s %s" % (name, label, one_line(key, r)))
            for name, rs in rounds.items():
                results.setdefault(name, {})[key] = rs[0] if len(rs) == 1 else over_rounds(rs)

    try:
        sink = FastSink(tmp) if a.backend == "fastsink" else PostfixSink(tmp)
        try:
            if not (want("fetch") or want("lat_imaps")):
                raise RuntimeError("not wanted (--only)")
            dc, dc_port = dovecot_with_message(tmp, 10 << 20)
        except Exception as e:    # IMAP rows are then left out
            log("bench: no Dovecot, IMAP rows skipped: %s" % e)
            dc, dc_port = None, 0
        auth_port = mgtest.free_port()
        AuthHttp.ports = {"smtp": sink.port, "imap": dc_port}
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", auth_port), AuthHttp)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        for keytype in ("ecdsa", "rsa"):
            if not any(want(k) for k, *_ in ROWS if k.endswith("rsa") == (keytype == "rsa")):
                continue
            servers = start_servers(tmp, pki, keytype, sink.port, dc_port, auth_port, wanted)
            try:
                for name in [s for s in SERVERS if s in servers]:
                    srv = servers[name]
                    port = srv.ports["smtps"]
                    if keytype == "ecdsa":
                        full = {"cpu_per_session": NAN}
                        if want("full_cpu") or want("resumed_cpu"):
                            full = bench_full(srv, port, a)
                            record(name, "full", "full_cpu", full)
                        if want("resumed_cpu"):
                            record(name, "resumed", "resumed_cpu",
                                   bench_resumed(srv, port, a, full["cpu_per_session"]))
                        if want("idle"):
                            idle = bench_idle(srv, port, a)
                            idle["want"] = a.idle
                            record(name, "idle", "idle", idle)
                        if want("lat_ecdsa"):
                            record(name, "latency", "lat_ecdsa", bench_latency(srv, port, a))
                        if want("lat_resumed"):
                            record(name, "lat resumed", "lat_resumed", bench_latency(srv, port, a, ["--resume"]))
                        # with no delayed ACK from the client a server's Nagle wait cannot last
                        if want("lat_quickack"):
                            record(name, "lat quickack", "lat_quickack",
                                   bench_latency(srv, port, a, ["--quickack"]))
                        if "smtp-starttls" in srv.ports and want("lat_starttls"):
                            record(name, "lat starttls", "lat_starttls",
                                   bench_latency(srv, srv.ports["smtp-starttls"], a, ["--starttls"]))
                        if "imaps" in srv.ports:
                            if want("lat_imaps"):
                                record(name, "lat imaps", "lat_imaps",
                                       bench_latency(srv, srv.ports["imaps"], a, ["--imap"]))
                    else:
                        if want("rsa_rate"):
                            record(name, "full rsa", "rsa_rate", bench_full(srv, port, a))
                        if want("lat_rsa"):
                            record(name, "latency rsa", "lat_rsa", bench_latency(srv, port, a))
                imapd = servers.get("mailgate-imapd")
                if keytype == "ecdsa":
                    throughput(servers)
                if imapd:
                    if want("lat_imaps"):
                        record("mailgate", "lat imaps", "lat_imaps",
                               bench_latency(imapd, imapd.ports["imaps"], a, ["--imap"]))
            finally:
                for s in servers.values():
                    s.stop()
    finally:
        if httpd:
            httpd.shutdown()
        if dc:
            dc.stop()
        if sink:
            sink.stop()
        tmp.cleanup()

    load1 = loadavg()
    cols = [s for s in SERVERS if s in results]
    print("\nmailgate benchmark, %s, %d CPU(s)%s; client: loadgen (C, GnuTLS)%s" % (
        time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(),
        ", servers pinned to CPU 1, everything else to CPU 0" if PINNED else ", NOT pinned",
        ", QUICK run (small sizes: a smoke test, not figures to quote)" if q else ""))
    print("TLS 1.3, X25519, AES-128-GCM; %.0f s per CPU run, %d sessions in flight (DATA %d); SMTP backend %s;"
          " load average %.2f -> %.2f%s\n" % (
        a.duration, a.concurrency, a.data_c, a.backend, load0, load1,
        " (machine NOT quiet: figures are noisy)" if max(load0, load1) > 0.7 else ""))
    print(table(results, a, cols))
    print("\n(×: ratio to nginx in the same run; CPU, RSS and latency: lower is better; sessions/s and MB per "
          "CPU-second: higher is better)")
    print("†: client-bound (loadgen used >= 90 %% of its core): a lower bound, not a capacity;"
          " ‡: the server's core was under 90 %% busy (neither side saturated: the machine is busy"
          " or the sessions wait on something); nan: under %d CPU ticks, too short to measure"
          % int(MIN_CPU * TICK))
    if a.rounds > 1:
        print("\n" + rounds_report(results, cols, a.rounds))
    print("\nruns (srv cpu: the server's core busy with it; client: loadgen's share of its core; cl.core: that\n"
          "core busy with anything; cl.µs/s: loadgen CPU per session; 1st byte / reply: ms after the handshake):\n"
          + details(runs))
    prev = None
    if os.path.exists(json_path):
        try:
            with open(json_path) as f:
                prev = json.load(f)
        except (OSError, ValueError):
            prev = None
    if prev:
        c = compare(prev, results, cols)
        if c:
            print("\nmailgate against the previous run (%s%s):\n%s" % (
                prev.get("meta", {}).get("date", "?"), ", quick" if prev.get("meta", {}).get("quick") else "", c))
        os.replace(json_path, json_path.replace(".json", ".prev.json"))
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpus": os.cpu_count(), "pinned": PINNED,
            "backend": a.backend, "rounds": a.rounds, "data_concurrency": a.data_c,
            "quick": q, "duration": a.duration, "concurrency": a.concurrency, "idle": a.idle,
            "latency_sessions": a.latency, "loadavg": [load0, load1], "seconds": time.time() - t_start,
            "versions": versions()}
    with open(json_path, "w") as f:
        json.dump(jsonable({"meta": meta, "results": results}), f, indent=1, sort_keys=True)
    print("\nraw numbers: %s" % json_path)
    bad = [s for s in cols for k in ("data",) if (results[s].get(k) or {}).get("sink_ok") is False]
    if bad:
        sys.exit("bench: the SMTP backend accepted a different number of messages than loadgen saw "
                 "delivered (%s): the DATA figures are not to be trusted" % ", ".join(bad))


def one_line(key, r):
    txt, _ = fmt_cell(key, r)
    extra = ""
    if "server_core_share" in r:
        extra = "  (%.0f sessions/s, server core %.0f %%, client %.0f %%, client core busy %s%s)" % (
            r["sessions_per_s"], r.get("server_core_share", 0) * 100, r.get("cpu_share", 0) * 100,
            "%.0f %%" % (r["pinned_cpu_busy"] * 100) if r.get("pinned_cpu_busy", -1) >= 0 else "-",
            ", backend %.0f %%" % (r["backend_cpu_s"] / r["wall_s"] * 100)
            if "backend_cpu_s" in r and r.get("wall_s") else "")
    return txt + extra


def finite(vals):
    return [v for v in vals if v is not None and v == v]


def over_rounds(rs):
    """One result for the table from several rounds of a throughput row:
    the round nearest the median, carrying the median MB per CPU-second,
    every round's figure and core shares."""
    vals = [r["mb_per_cpu_s"] for r in rs]
    ok = finite(vals)
    med = statistics.median(ok) if ok else NAN
    rep = min(rs, key=lambda r: abs(r["mb_per_cpu_s"] - med) if r["mb_per_cpu_s"] == r["mb_per_cpu_s"] else math.inf)
    out = dict(rep)
    out.update(mb_per_cpu_s=med, rounds=vals, range=[min(ok), max(ok)] if ok else [NAN, NAN],
               server_core_shares=[r.get("server_core_share", NAN) for r in rs],
               pinned_cpu_busy_rounds=[r.get("pinned_cpu_busy", NAN) for r in rs],
               client_bound=any(r.get("client_bound") for r in rs),
               errors=sum(r.get("errors", 0) for r in rs))
    if any("sink_ok" in r for r in rs):
        out["sink_ok"] = all(r.get("sink_ok", True) for r in rs)
    return out


def rounds_report(results, servers, n):
    """Median, range and ratios to nginx of the throughput rows run in rounds."""
    out = ["throughput over %d rounds, the servers taking turns (MB per server CPU-second; server core"
           " busy and client core busy: medians):" % n]
    for key, label in (("data", "DATA 1 MiB"), ("fetch", "IMAP FETCH 10 MiB")):
        base = results.get("nginx", {}).get(key)
        for s in servers:
            r = results.get(s, {}).get(key)
            if not r or "rounds" not in r:
                continue
            lo, hi = r["range"]
            shares = finite(r["server_core_shares"])
            busy = finite([b for b in r["pinned_cpu_busy_rounds"] if b is None or b >= 0])
            line = "  %-17s %-10s median %6.0f  range %4.0f-%-4.0f  server core %3.0f %%  client core %3.0f %%" % (
                label, col_name(s), r["mb_per_cpu_s"], lo, hi,
                statistics.median(shares) * 100 if shares else NAN,
                statistics.median(busy) * 100 if busy else NAN)
            if s != "nginx" and base and "rounds" in base and base["mb_per_cpu_s"] > 0:
                per_round = ["%.2f×" % (v / b) if v == v and b == b and b > 0 else "nan"
                             for v, b in zip(r["rounds"], base["rounds"])]
                line += "\n  %-17s %-10s median / nginx median %.2f×; each round: %s" % (
                    "", "", r["mb_per_cpu_s"] / base["mb_per_cpu_s"], " ".join(per_round))
            out.append(line)
    return "\n".join(out)


if __name__ == "__main__":
    main()
