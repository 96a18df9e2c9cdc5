#!/bin/sh
# run-all.sh [--sanitizers]: installs what is needed (Debian 12, as root),
# builds mailgate out of tree with -Werror (or with ASan+UBSan) and runs
# the whole test suite: CUnit unit tests, fuzz-corpus replays and the
# integration tests against real Postfix, Dovecot, smtp-sink, swaks,
# gnutls-cli, Python smtplib/imaplib and mbsync on 127.0.0.1 high ports,
# then a testssl.sh scan of the default TLS configuration.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/tests/tools/install-deps.sh"
flags="--enable-werror"
build="$top/build-check"
if [ "${1:-}" = "--sanitizers" ]; then
  flags="--enable-werror --enable-sanitizers"
  build="$top/build-asan"
fi
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] && [ configure -nt Makefile.am ] || autoreconf -fi
mkdir -p "$build"
cd "$build"
"$top/configure" -q $flags
make -j"$(nproc)"
if ! make -j"$(nproc)" check; then
  echo "=== failing test logs ===" >&2
  for f in $(grep -l -E '^(FAIL|ERROR)' tests/*/*.log tests/*.log 2>/dev/null); do
    echo "--- $f" >&2
    tail -n 80 "$f" >&2
  done
  exit 1
fi
# The default TLS configuration as a scanner sees it (not a property of
# the build flags: scanned once, in the -Werror build).
if [ "${1:-}" != "--sanitizers" ] && [ "${MG_SKIP_TESTSSL:-}" != 1 ]; then
  sh "$top/tests/tls/testssl.sh" "$build"
fi
echo "run-all: all tests passed ($flags)"
