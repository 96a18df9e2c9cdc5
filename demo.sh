#!/bin/sh
# demo.sh: installs what is needed (Debian 12, as root), builds mailgate
# and runs the whole mail path on 127.0.0.1 high ports with a throw-away
# PKI: swaks submits over SMTPS with AUTH through mailgate-smtpd to a real
# Postfix (SASL by Dovecot; a wrong password is refused), Postfix delivers
# over LMTP into Dovecot, and the user reads the message through
# mailgate-imapd over IMAPS. Nothing of this machine's mail setup is used.
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
