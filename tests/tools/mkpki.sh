#!/bin/sh
# mkpki.sh DIR - a throw-away PKI for tests and the demo, made with
# GnuTLS certtool:
#   ca.pem            test CA (ECDSA P-256)
#   ca2.pem           a second, "foreign" CA
#   server-ecdsa/-rsa the gateway's server certificates for localhost
#   upstream          a server certificate for "upstream.test" (and localhost)
#   client certificates (tls_www_client), from ca unless noted:
#     peer            partner-mx.test, email alice@example.org
#     stranger        stranger.test, a valid cert that no peer section names
#     foreign         partner-mx.test, but issued by ca2
#     expired         expired in 2020
#     notyet          valid only from 2040
#     revoked         revoked in crl.pem
#     selfsigned      self-signed pinned.test (for SPKI/fingerprint pins)
#     wildcard        DNS:*.partner.test only
#     cnonly          no SAN at all, CN=cn-only.test
#     critext         partner-mx.test with an unknown critical extension
#     longchain       partner-mx.test under 7 intermediate CAs (chain file)
#     weirdcn         CN 'Weird "Q" = N x' (quotes and '=' in the raw value)
#     longdns         CN partner-mx.test, its only dNSName 305 octets long
#     longemail       rfc822Names: one of 302 octets, then alice@example.org
#     manysans        127 URI SANs, then rfc822Names alice@ and bob@example.org
#     selfsigned2     self-signed pinned2.test (a peer pins it but names another)
#     multicn         three CNs (bob.test, alice, multicn.test)
#   noeku             a server certificate for upstream.test without any EKU
#   selfsigned-srv    self-signed pinned-srv.test, EKU serverAuth only
#   ocsp              an OCSP responder certificate from ca (EKU OCSPSigning:
#                     the responder ca delegated, for `openssl ocsp -rsigner`)
#   ocsp-foreign      the same from ca2 (a responder ca never delegated)
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

if [ ! -f ca2.pem ]; then
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile ca2.key 2>/dev/null
  printf 'cn = "foreign test CA"\nserial = 2\nexpiration_days = 3650\nca\ncert_signing_key\ncrl_signing_key\n' > ca2.tmpl
  certtool --generate-self-signed --load-privkey ca2.key --template ca2.tmpl --outfile ca2.pem 2>/dev/null
fi

client_cert() { # name issuer cn "template lines..."
  name=$1; issuer=$2; cn=$3; extra=$4
  [ -f "$name.pem" ] && return 0
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$name.key" 2>/dev/null
  {
    echo "cn = \"$cn\""
    echo "serial = $(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
    printf '%b\n' "$extra"
    echo "tls_www_client"
    echo "signing_key"
  } > "$name.tmpl"
  grep -q _date "$name.tmpl" || echo "expiration_days = 365" >> "$name.tmpl"
  if [ "$issuer" = self ]; then
    certtool --generate-self-signed --load-privkey "$name.key" --template "$name.tmpl" \
      --outfile "$name.pem" 2>/dev/null
  else
    certtool --generate-certificate --load-privkey "$name.key" --load-ca-certificate "$issuer.pem" \
      --load-ca-privkey "$issuer.key" --template "$name.tmpl" --outfile "$name.pem" 2>/dev/null
  fi
}

client_cert peer ca partner-mx.test 'dns_name = "partner-mx.test"\nemail = "alice@example.org"'
client_cert stranger ca stranger.test 'dns_name = "stranger.test"\nemail = "stranger@example.org"'
client_cert foreign ca2 partner-mx.test 'dns_name = "partner-mx.test"\nemail = "alice@example.org"'
client_cert expired ca expired.test 'dns_name = "partner-mx.test"\nactivation_date = "2019-01-01 00:00:00"\nexpiration_date = "2020-01-01 00:00:00"'
client_cert notyet ca notyet.test 'dns_name = "partner-mx.test"\nactivation_date = "2040-01-01 00:00:00"\nexpiration_date = "2041-01-01 00:00:00"'
client_cert revoked ca revoked.test 'dns_name = "partner-mx.test"\nemail = "alice@example.org"'
client_cert selfsigned self pinned.test 'dns_name = "pinned.test"'
client_cert wildcard ca wildcard.test 'dns_name = "*.partner.test"'
client_cert cnonly ca cn-only.test ''
client_cert critext ca partner-mx.test 'dns_name = "partner-mx.test"\nadd_critical_extension = "1.3.6.1.4.1.99999.1 0x0500"'

rep() { awk -v c="$1" -v n="$2" 'BEGIN { while (n-- > 0) printf "%s", c }'; }
label63=$(rep a 63)
longname="$label63.$label63.$label63.$label63.$(rep b 44).test"	# 305 octets
client_cert weirdcn ca 'Weird \"Q\" = N x' 'dns_name = "weird.test"'
client_cert longdns ca partner-mx.test "dns_name = \"$longname\""
client_cert longemail ca longemail.test "dns_name = \"longemail.test\"\nemail = \"$(rep x 290)@example.org\"\nemail = \"alice@example.org\""
client_cert manysans ca manysans.test "$(i=1; while [ $i -le 127 ]; do printf 'uri = "https://u%d.test/"\\n' $i; i=$((i + 1)); done)email = \"alice@example.org\"\nemail = \"bob@example.org\""
client_cert selfsigned2 self pinned2.test 'dns_name = "pinned2.test"'
client_cert multicn ca multicn.test 'dns_name = "multicn.test"\ndn = "CN=alice,CN=bob.test"'

if [ ! -f noeku.pem ]; then
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile noeku.key 2>/dev/null
  printf 'cn = "upstream.test"\nserial = 200\nexpiration_days = 365\ndns_name = "upstream.test"\nsigning_key\n' > noeku.tmpl
  certtool --generate-certificate --load-privkey noeku.key --load-ca-certificate ca.pem \
    --load-ca-privkey ca.key --template noeku.tmpl --outfile noeku.pem 2>/dev/null
fi

if [ ! -f selfsigned-srv.pem ]; then
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile selfsigned-srv.key 2>/dev/null
  printf 'cn = "pinned-srv.test"\nserial = 201\nexpiration_days = 365\ndns_name = "pinned-srv.test"\ntls_www_server\nsigning_key\n' \
    > selfsigned-srv.tmpl
  certtool --generate-self-signed --load-privkey selfsigned-srv.key --template selfsigned-srv.tmpl \
    --outfile selfsigned-srv.pem 2>/dev/null
fi

ocsp_responder() { # name issuer
  [ -f "$1.pem" ] && return 0
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1.key" 2>/dev/null
  printf 'cn = "mailgate test OCSP responder (%s)"\nserial = %s\nexpiration_days = 365\nsigning_key\nocsp_signing_key\n' \
    "$2" "$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')" > "$1.tmpl"
  certtool --generate-certificate --load-privkey "$1.key" --load-ca-certificate "$2.pem" \
    --load-ca-privkey "$2.key" --template "$1.tmpl" --outfile "$1.pem" 2>/dev/null
}
ocsp_responder ocsp ca
ocsp_responder ocsp-foreign ca2

if [ ! -f longchain.pem ]; then
  issuer=ca
  for i in 1 2 3 4 5 6 7; do
    certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "int$i.key" 2>/dev/null
    printf 'cn = "intermediate %s"\nserial = %s\nexpiration_days = 365\nca\ncert_signing_key\n' \
      "$i" "$((100 + i))" > "int$i.tmpl"
    certtool --generate-certificate --load-privkey "int$i.key" --load-ca-certificate "$issuer.pem" \
      --load-ca-privkey "$issuer.key" --template "int$i.tmpl" --outfile "int$i.pem" 2>/dev/null
    issuer=int$i
  done
  client_cert longleaf int7 partner-mx.test 'dns_name = "partner-mx.test"'
  cat longleaf.pem int7.pem int6.pem int5.pem int4.pem int3.pem int2.pem int1.pem > longchain.pem
  cp longleaf.key longchain.key
fi

if [ ! -f crl.pem ]; then
  printf 'crl_next_update = 365\ncrl_number = 1\n' > crl.tmpl
  certtool --generate-crl --load-ca-privkey ca.key --load-ca-certificate ca.pem \
    --load-certificate revoked.pem --template crl.tmpl --outfile crl.pem 2>/dev/null
fi

server_cert server-ecdsa ecdsa localhost localhost 127.0.0.1
server_cert server-rsa rsa localhost localhost 127.0.0.1
server_cert upstream ecdsa upstream.test upstream.test localhost
chmod 600 ./*.key
chmod 644 ./*.pem
