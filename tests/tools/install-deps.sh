#!/bin/sh
# install-deps.sh: installs the Debian 12 packages mailgate needs to build,
# test and demo itself, if any is missing. Postfix, Dovecot and HAProxy
# are installed WITHOUT starting their system services (a policy-rc.d that
# exits 101 is in place during the install - a temporary one when the
# machine has none), and the services of the ones this run installed are
# disabled again, so they do not start at the next boot either: a mail
# server or balancer already on this machine is left alone, and the tests
# run private instances on 127.0.0.1 high ports.
#
# Who needs what: gnutls-bin (gnutls-cli, certtool, ocsptool, p11tool) and
# openssl (s_client, the OCSP responder of test_ocsp.py, pkcs8) for the TLS
# tests; softhsm2 for test_pkcs11.py; haproxy for test_proxy.py and
# test_scaleout.py; postfix and dovecot for the upstream tests; faketime
# for test_ocsp.py's expired responses; python3-prometheus-client (the
# reference parser of the /metrics text) for test_metrics.py; isync
# (mbsync) and swaks as clients.
set -eu
PKGS="build-essential autoconf automake pkg-config
 libgnutls28-dev libev-dev libconfuse-dev libcunit1-dev libidn2-dev libc-ares-dev
 gnutls-bin openssl python3 swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl
 postfix dovecot-core dovecot-imapd dovecot-lmtpd haproxy isync clang procps testssl.sh
 faketime softhsm2 python3-prometheus-client"
# package:service of the daemons that must not run as system services
SERVICES="postfix:postfix dovecot-core:dovecot haproxy:haproxy"

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
# Not started at boot either (only what this run installed: a service the
# machine already had keeps its own settings).
for ps in $SERVICES; do
  case " $missing " in
    *" ${ps%%:*} "*) ;;
    *) continue ;;
  esac
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --quiet "${ps#*:}" >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d "${ps#*:}" disable >/dev/null 2>&1 || true
  fi
done
