"""mgload: loadgen (tests/bench/loadgen.c, built by make check) run
against a gateway from a test, with its one JSON result line parsed."""
import json
import os
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

