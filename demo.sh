#!/bin/sh
# demo.sh: installs what is needed (Debian 12, as root), builds mailgate
# and runs it end to end on 127.0.0.1 high ports with a throw-away PKI:
# swaks submits a message over SMTPS (certificate verified against the
# demo CA), mailgate-smtpd relays it to a real upstream (Postfix's
# smtp-sink), and the message is shown as the upstream received it.
set -eu
top=$(cd "$(dirname "$0")" && pwd)
sh "$top/tests/tools/install-deps.sh"
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] && [ configure -nt Makefile.am ] || autoreconf -fi
mkdir -p build-demo
cd build-demo
[ -f Makefile ] || "$top/configure" -q
make -j"$(nproc)" >/dev/null
MG_SRCDIR="$top" MG_BUILDDIR="$top/build-demo" exec python3 "$top/tests/tools/demo.py"
