#!/bin/sh
# mkpki.sh DIR - a throw-away PKI for tests and the demo, made with
# GnuTLS certtool: a test CA (ECDSA P-256), the gateway's server
# certificates for "localhost" (ECDSA P-256 and RSA-2048, both with
# DNS:localhost and IP:127.0.0.1), and an upstream server certificate
# "upstream.test" for STARTTLS/implicit TLS towards the upstream.
# Keys are written mode 0600. Existing files are kept (idempotent).
set -eu
dir=${1:?usage: mkpki.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

tmpl() { printf '%s\n' "$@" > "$1.tmpl.tmp"; }

if [ ! -f ca.pem ]; then
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile ca.key 2>/dev/null
  cat > ca.tmpl <<T
cn = "mailgate test CA"
organization = "mailgate tests"
serial = 1
expiration_days = 3650
ca
cert_signing_key
crl_signing_key
T
  certtool --generate-self-signed --load-privkey ca.key --template ca.tmpl --outfile ca.pem 2>/dev/null
fi

server_cert() { # name keytype cn dns...
  name=$1; keytype=$2; cn=$3; shift 3
  [ -f "$name.pem" ] && return 0
  if [ "$keytype" = rsa ]; then
    certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "$name.key" 2>/dev/null
  else
    certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$name.key" 2>/dev/null
  fi
  {
    echo "cn = \"$cn\""
    echo "serial = $(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
    echo "expiration_days = 365"
    for d in "$@"; do
      case $d in
        [0-9]*.[0-9]*) echo "ip_address = \"$d\"" ;;
        *) echo "dns_name = \"$d\"" ;;
      esac
    done
    echo "tls_www_server"
    echo "signing_key"
    [ "$keytype" = rsa ] && echo "encryption_key"
  } > "$name.tmpl"
  certtool --generate-certificate --load-privkey "$name.key" --load-ca-certificate ca.pem \
    --load-ca-privkey ca.key --template "$name.tmpl" --outfile "$name.pem" 2>/dev/null
}

server_cert server-ecdsa ecdsa localhost localhost 127.0.0.1
server_cert server-rsa rsa localhost localhost 127.0.0.1
server_cert upstream ecdsa upstream.test upstream.test localhost
chmod 600 ./*.key
chmod 644 ./*.pem
