#!/bin/sh
# install-bench-deps.sh: installs the peers `make bench` compares mailgate
# with (nginx with its mail module, HAProxy, stunnel) and the upstreams
# (Postfix's smtp-sink, Dovecot), if any is missing. Like
# tests/tools/install-deps.sh, no system service is started or enabled: a
# policy-rc.d that exits 101 is in place during the install (a temporary
# one when the machine has none), so nothing listens on the system's ports
# and the bench starts private instances on 127.0.0.1 high ports.
set -eu
PKGS="nginx libnginx-mod-mail haproxy stunnel4 postfix dovecot-core dovecot-imapd
 libgnutls28-dev libev-dev pkg-config procps util-linux python3"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Any nginx flavour (nginx, nginx-full, ...) with the mail module will do.
case "$missing" in
  *" nginx "*|*" nginx") if [ -x /usr/sbin/nginx ]; then missing=$(echo "$missing " | sed 's/ nginx / /; s/ *$//'); fi ;;
esac
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-bench-deps: missing packages:$missing (run as root to install them)" >&2
  exit 1
fi
echo "install-bench-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
if [ "${MG_APT_UPDATED:-}" != 1 ]; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq
fi
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
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing >/dev/null
