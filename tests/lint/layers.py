"""layers: the code's layering rules, checked from the #include graph
(make check runs it):

  - a daemon's files (smtpd/, imapd/) never include <ev.h> or <gnutls/...>:
    libev and GnuTLS live in common/ only (conn, tls, listener, ...);
  - common/ never includes a header of smtpd/ or imapd/, and neither
    daemon includes the other's;
  - within each directory, the modules (x.c + x.h) form no include cycle:
    each module depends only on modules below it.
Prints what breaks a rule and exits 1."""
import os
import re
import sys

top = os.environ.get("MG_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
problems = []


def files(d):
    p = os.path.join(top, d)
    return sorted(f for f in os.listdir(p) if f.endswith((".c", ".h")))


def includes(d, f):
    with open(os.path.join(top, d, f), encoding="utf-8") as fh:
        return INCLUDE.findall(fh.read())


def module(f):
    """x.c, x.h and a private x_int.h / x_internal.h are one module."""
    m = f.rsplit(".", 1)[0]
    for suffix in ("_internal", "_int"):
        if m.endswith(suffix):
            return m[:-len(suffix)]
    return m


for d in ("smtpd", "imapd"):
    for f in files(d):
        for kind, h in includes(d, f):
            if h == "ev.h" or h.startswith("gnutls/"):
                problems.append("%s/%s includes <%s>: libev and GnuTLS belong to common/" % (d, f, h))

daemon_headers = {h for d in ("smtpd", "imapd") for h in files(d) if h.endswith(".h")}
common_headers = set(f for f in files("common") if f.endswith(".h"))
for f in files("common"):
    for kind, h in includes("common", f):
        if kind == '"' and h in daemon_headers and h not in common_headers:
            problems.append("common/%s includes %s, a daemon's header" % (f, h))


for d, other in (("smtpd", "imapd"), ("imapd", "smtpd")):
    theirs = set(f for f in files(other) if f.endswith(".h")) - common_headers
    for f in files(d):
        for kind, h in includes(d, f):
            if kind == '"' and h in theirs and h not in files(d):
                problems.append("%s/%s includes %s, a header of %s/" % (d, f, h, other))


def cycles(d):
    mods = {module(f) for f in files(d)}
    edges = {m: set() for m in mods}
    for f in files(d):
        for kind, h in includes(d, f):
            m = module(h)
            if kind == '"' and m in mods and m != module(f):
                edges[module(f)].add(m)
    state, stack, found = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m)
    return found


for d in ("common", "smtpd", "imapd"):
    for c in cycles(d):
        problems.append("%s/: include cycle %s" % (d, " -> ".join(c)))

for p in problems:
    print(p)
if problems:
    sys.exit(1)
print("ok: no libev/GnuTLS in daemon files, no daemon header in common/ or in the other daemon, no include cycles")
