#!/bin/sh
# install-deps.sh: installs the Debian 12 packages mailgate needs to build,
# test and demo itself, if any is missing. Postfix and Dovecot are
# installed WITHOUT starting or enabling their system services (a
# temporary policy-rc.d that exits 101), so a mail server already running
# on this machine is left alone; the tests run private instances on
# 127.0.0.1 high ports.
set -eu
PKGS="build-essential autoconf automake pkg-config
 libgnutls28-dev libev-dev libconfuse-dev libcunit1-dev libidn2-dev libc-ares-dev
 gnutls-bin python3 swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl
 postfix dovecot-core dovecot-imapd dovecot-lmtpd isync clang procps testssl.sh
 faketime softhsm2"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages:$missing (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
if [ "${MG_APT_UPDATED:-}" != 1 ]; then
  apt-get update -qq
fi
# Postfix asks what to configure: nothing (we never touch the system's).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost.localdomain" | debconf-set-selections
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap 'if [ $created_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
