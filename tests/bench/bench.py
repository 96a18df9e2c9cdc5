"""bench.py: DESIGN.md §8 figures, measured against peers in the same run.

Servers (each pinned to CPU 1 with taskset when there are 2+ CPUs), all
with the same certificate, behind-end a smtp-sink on loopback:
  mailgate-smtpd (implicit TLS listener), nginx mail proxy (ngx_mail, smtp),
  HAProxy (tcp mode, ssl termination), stunnel.
Clients run on CPU 0 (Python ssl, OpenSSL). Metrics:
  cpu/session   server CPU (utime+stime of its processes) per full session
                (connect, TLS 1.3 handshake, greeting, QUIT), ECDSA P-256 and
                RSA-2048; "sessions/s" = 1 / cpu/session (one core, CPU-bound)
  rss/idle      RSS growth per idle TLS session (N sessions held open)
  data MB/cpu-s DATA throughput per server CPU-second, 1 MiB messages
Usage: python3 bench.py [--sessions N] [--idle N] [--messages N]
"""
import argparse
import http.server
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ["MG_SRCDIR"], "tests", "integration"))
import mgtest  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
MIN_CPU = 20.0 / TICK    # below this many ticks a CPU figure is noise: not reported
PIN_SERVER = ["taskset", "-c", "1"] if os.cpu_count() >= 2 and shutil.which("taskset") else []


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


class Server:
    def __init__(self, name, argv, port, tmp):
        self.name, self.port = name, port
        self.proc = mgtest.Proc(PIN_SERVER + argv, os.path.join(tmp.path, name + ".log"))
        if not mgtest.wait_port(port, timeout=15, proc=self.proc.p):
            raise RuntimeError("%s did not start:\n%s" % (name, self.proc.output()))
        time.sleep(0.3)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.stop()


def client_ctx(keytype):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if keytype == "rsa":
        # TLS 1.2 with an RSA suite is how a client makes the server sign with RSA.
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def read_reply(s):
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
        lines = buf.split(b"\r\n")
        for line in lines[:-1]:
            if len(line) >= 4 and line[3:4] == b" ":
                return buf


def one_session(port, ctx):
    raw = socket.create_connection(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    read_reply(s)
    s.sendall(b"QUIT\r\n")
    read_reply(s)
    s.close()


def bench_sessions(srv, ctx, n):
    one_session(srv.port, ctx)
    t0 = cpu_seconds(srv.pid)
    w0 = time.time()
    for _ in range(n):
        one_session(srv.port, ctx)
    cpu = cpu_seconds(srv.pid) - t0
    return (cpu / n if cpu >= MIN_CPU else float("nan")), n / (time.time() - w0)


def bench_idle(srv, ctx, n):
    time.sleep(0.5)
    r0 = rss_kib(srv.pid)
    held = []
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", srv.port))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        read_reply(s)
        held.append(s)
    time.sleep(1.0)
    r1 = rss_kib(srv.pid)
    for s in held:
        s.close()
    return (r1 - r0) / n


def bench_data(srv, ctx, messages):
    body = (b"x" * 998 + b"\r\n") * (1024 * 1024 // 1000)
    raw = socket.create_connection(("127.0.0.1", srv.port))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    read_reply(s)
    s.sendall(b"EHLO bench.test\r\n")
    read_reply(s)
    t0 = cpu_seconds(srv.pid)
    w0 = time.time()
    for _ in range(messages):
        s.sendall(b"MAIL FROM:<a@test.example>\r\n")
        read_reply(s)
        s.sendall(b"RCPT TO:<u@example.org>\r\n")
        read_reply(s)
        s.sendall(b"DATA\r\n")
        read_reply(s)
        s.sendall(body + b".\r\n")
        if not read_reply(s).startswith(b"250"):
            raise RuntimeError("%s: message refused" % srv.name)
    wall = time.time() - w0
    cpu = cpu_seconds(srv.pid) - t0
    s.sendall(b"QUIT\r\n")
    s.close()
    mb = messages * len(body) / 1e6
    return (mb / cpu if cpu >= MIN_CPU else float("nan")), mb / wall


class AuthHttp(http.server.BaseHTTPRequestHandler):
    """nginx's auth_http: always OK, send the session to the sink."""
    sink_port = 0

    def do_GET(self):
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", str(self.sink_port))
        self.end_headers()

    def log_message(self, *a):
        pass


def start_servers(tmp, pki, keytype, sink_port):
    """All four servers, or none: a failed start stops those already up."""
    servers = {}
    try:
        return _start_servers(tmp, pki, keytype, sink_port, servers)
    except Exception:
        for srv in servers.values():
            srv.stop()
        raise


def _start_servers(tmp, pki, keytype, sink_port, servers):
    cert, key = "%s/server-%s.pem" % (pki, keytype), "%s/server-%s.key" % (pki, keytype)
    both = tmp.file("both-%s.pem" % keytype, open(cert).read() + open(key).read(), mode=0o600)
    ports = {n: mgtest.free_port() for n in ("mailgate", "nginx", "haproxy", "stunnel")}
    conf = """hostname = "mx.bench.example"
log_target = "stderr"
log_level = "error"
tls "default" {{
  cert = "{cert}"
  key = "{key}"
  priority = "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-AES-256-GCM:-CHACHA20-POLY1305:%SERVER_PRECEDENCE"
}}
upstream "sink" {{
  address = "127.0.0.1:{sink}"
  xclient = false
}}
listener "smtps" {{
  address = "127.0.0.1:{port}"
  max_connections = 8000
  max_per_ip = 8000
}}
max_message_size = 104857600
accept_domains = "example.org"
""".format(cert=cert, key=key, sink=sink_port, port=ports["mailgate"])
    servers["mailgate"] = Server("mailgate", [mgtest.SMTPD, "-f", "-c", tmp.file("mg-%s.conf" % keytype, conf)],
                                 ports["mailgate"], tmp)
    if shutil.which("nginx") and os.path.exists("/usr/lib/nginx/modules/ngx_mail_module.so"):
        auth_port = mgtest.free_port()
        AuthHttp.sink_port = sink_port
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", auth_port), AuthHttp)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        nconf = tmp.file("nginx-%s.conf" % keytype, """load_module /usr/lib/nginx/modules/ngx_mail_module.so;
worker_processes 1;
worker_rlimit_nofile 16000;
pid {tmp}/nginx-{kt}.pid;
error_log {tmp}/nginx-{kt}-error.log error;
events {{ worker_connections 8000; }}
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
    listen 127.0.0.1:{port} ssl;
    protocol smtp;
    smtp_auth none;
  }}
}}
""".format(tmp=tmp.path, kt=keytype, auth=auth_port, cert=cert, key=key, port=ports["nginx"]))
        servers["nginx"] = Server("nginx", ["nginx", "-p", tmp.path, "-c", nconf, "-g", "daemon off;"],
                                  ports["nginx"], tmp)
    if shutil.which("haproxy"):
        hconf = tmp.file("haproxy-%s.cfg" % keytype, """global
    maxconn 8000
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
    nbthread 1
defaults
    mode tcp
    maxconn 8000
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend f
    bind 127.0.0.1:{port} ssl crt {both}
    default_backend b
backend b
    server sink 127.0.0.1:{sink}
""".format(port=ports["haproxy"], both=both, sink=sink_port))
        servers["haproxy"] = Server("haproxy", ["haproxy", "-db", "-f", hconf], ports["haproxy"], tmp)
    if shutil.which("stunnel4") or shutil.which("stunnel"):
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
""".format(port=ports["stunnel"], sink=sink_port, cert=cert, key=key))
        servers["stunnel"] = Server("stunnel", [shutil.which("stunnel4") or "stunnel", sconf],
                                    ports["stunnel"], tmp)
    return servers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=200)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if os.cpu_count() >= 2 and shutil.which("taskset"):
        os.sched_setaffinity(0, {0})
    tmp = mgtest.TempDir(prefix="mailgate-bench-")
    pki = mgtest.pki_dir()
    sink = mgtest.SmtpSink(tmp, args=("-m", "5000"), dump=False)
    results = {}
    try:
        for keytype in ("ecdsa", "rsa"):
            servers = start_servers(tmp, pki, keytype, sink.port)
            try:
                for name, srv in servers.items():
                    ctx = client_ctx(keytype)
                    cpu, rate = bench_sessions(srv, ctx, args.sessions)
                    results.setdefault(name, {})["cpu_" + keytype] = cpu
                    if keytype == "ecdsa":
                        results[name]["idle"] = bench_idle(srv, client_ctx("ecdsa"), args.idle)
                        results[name]["data"], results[name]["data_wall"] = bench_data(
                            srv, client_ctx("ecdsa"), args.messages)
                    print("%-9s %-5s done" % (name, keytype), file=sys.stderr, flush=True)
            finally:
                for s in servers.values():
                    s.stop()
    finally:
        sink.stop()
        tmp.cleanup()
    print("\nmailgate benchmark, %s, %d CPU(s); server pinned to one core; client: Python/OpenSSL"
          % (time.strftime("%Y-%m-%d"), os.cpu_count()))
    print("sessions=%d idle=%d messages=%d (1 MiB)\n" % (args.sessions, args.idle, args.messages))
    hdr = "%-9s %16s %14s %14s %14s %16s" % ("server", "ECDSA cpu/sess", "ECDSA sess/s", "RSA sess/s",
                                            "RSS/idle KiB", "DATA MB/cpu-s")
    print(hdr)
    print("-" * len(hdr))
    for name, r in results.items():
        print("%-9s %13.0f us %14.0f %14.0f %14.1f %16.0f" % (
            name, r["cpu_ecdsa"] * 1e6, 1 / r["cpu_ecdsa"], 1 / r["cpu_rsa"], r["idle"], r["data"]))
    mg = results["mailgate"]
    print("(nan: under %d CPU ticks were spent - too short to measure; use larger sizes)" % int(MIN_CPU * TICK))
    print("\nmailgate relative to each peer (>1 is better for mailgate):")
    for name, r in results.items():
        if name == "mailgate":
            continue
        print("  vs %-8s ECDSA cpu %.2fx  RSA %.2fx  RSS/idle %.2fx  DATA %.2fx" % (
            name, r["cpu_ecdsa"] / mg["cpu_ecdsa"], r["cpu_rsa"] / mg["cpu_rsa"],
            r["idle"] / mg["idle"] if mg["idle"] > 0 else float("inf"), mg["data"] / r["data"]))


if __name__ == "__main__":
    main()
