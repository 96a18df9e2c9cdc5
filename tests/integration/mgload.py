"""mgload: the load tests' helpers - loadgen (tests/bench/loadgen.c, built
by make check) run against a gateway, with its one JSON line parsed, and
held sessions (the idle script) running in the background until stopped.
Stopped by PID, like every process the tests start."""
import json
import os
import signal
import subprocess
import unittest

import mgtest

LOADGEN = os.environ.get("MG_LOADGEN") or os.path.join(mgtest.BUILDDIR, "tests", "bench", "loadgen")


def need_loadgen():
    if not os.access(LOADGEN, os.X_OK):
        raise unittest.SkipTest("loadgen not built (make tests/bench/loadgen)")


def loadgen(port, *args, timeout=120):
    """One loadgen run against 127.0.0.1:port; its JSON result."""
    argv = [LOADGEN, "--json", "-q", *[str(a) for a in args], "127.0.0.1:%d" % port]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError("loadgen failed (rc %d): %s\n%s" % (p.returncode, " ".join(argv), p.stderr[-2000:]))
    return json.loads(lines[-1])


class Held:
    """n sessions of the idle script held open (handshake and greeting
    done) until stop(); ready() waits for loadgen's READY line."""

    def __init__(self, port, n, *args, hold=600):
        argv = [LOADGEN, "--json", "-q", "-s", "idle", "-c", str(n), "--hold", str(hold),
                *[str(a) for a in args], "127.0.0.1:%d" % port]
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        self.result = None

    def ready(self):
        """(held, failed) once every session is up or has failed."""
        line = self.p.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise AssertionError("loadgen idle: %r" % line)
        f = dict(kv.split("=") for kv in line.split()[1:])
        return int(f["held"]), int(f["failed"])

    def stop(self):
        """Ends the hold; loadgen's JSON result (errors: sessions lost)."""
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
        try:
            out, _ = self.p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            out, _ = self.p.communicate()
        lines = [line for line in (out or "").splitlines() if line.startswith("{")]
        self.result = json.loads(lines[-1]) if lines else {}
        return self.result
