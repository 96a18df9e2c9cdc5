#!/bin/sh
# testssl.sh BUILDDIR: scans mailgate's default TLS configuration with
# testssl.sh (Debian package testssl.sh) on three listeners - SMTP with
# implicit TLS, SMTP STARTTLS and IMAPS - and fails on any finding of
# severity LOW or above that comes from mailgate's defaults. Findings
# about the test CA itself (no revocation URI, chain not publicly
# trusted, no CAA record, no OCSP staple configured) are excepted by name;
# everything else - protocols, cipher lists (e.g. cipherlist_AVERAGE for
# CBC), forward secrecy, server order, vulnerabilities (LUCKY13, ...) -
# counts. The three scans run in parallel (each takes minutes).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bld=${1:-$top/build-check}
command -v testssl >/dev/null || { echo "testssl: not installed (Debian: testssl.sh)"; exit 1; }
tmp=$(mktemp -d /tmp/mailgate-testssl.XXXXXX)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
pki="$bld/tests/pki"
[ -f "$pki/ca.pem" ] || sh "$top/tests/tools/mkpki.sh" "$pki" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p_smtps=$(port); p_sub=$(port); p_imaps=$(port)
common() {
  cat <<EOC
log_target = "stderr"
log_level = "warning"
tls "default" {
  cert = { "$pki/server-ecdsa.pem", "$pki/server-rsa.pem" }
  key = { "$pki/server-ecdsa.key", "$pki/server-rsa.key" }
}
EOC
}
{ common; cat <<EOC
hostname = "mx.test.example"
accept_domains = "example.org"
upstream "up" {
  address = "127.0.0.1:9"
  xclient = false
}
listener "smtps" {
  address = "127.0.0.1:$p_smtps"
  tls_mode = "implicit"
}
listener "submission" {
  address = "127.0.0.1:$p_sub"
  tls_mode = "starttls"
}
EOC
} > "$tmp/smtpd.conf"
{ common; cat <<EOC
hostname = "imap.test.example"
upstream "dovecot" {
  address = "127.0.0.1:9"
}
listener "imaps" {
  address = "127.0.0.1:$p_imaps"
  tls_mode = "implicit"
}
EOC
} > "$tmp/imapd.conf"
"$bld/smtpd/mailgate-smtpd" -f -c "$tmp/smtpd.conf" > "$tmp/smtpd.log" 2>&1 &
pids="$pids $!"
"$bld/imapd/mailgate-imapd" -f -c "$tmp/imapd.conf" > "$tmp/imapd.log" 2>&1 &
pids="$pids $!"
sleep 1
scan() {  # name, testssl arguments...
  name=$1; shift
  testssl --quiet --color 0 --warnings off -p -s -f -P -U \
    --jsonfile "$tmp/$name.json" "$@" > "$tmp/$name.out" 2>&1 || true
}
scan smtps "127.0.0.1:$p_smtps" &
s1=$!
scan starttls -t smtp "127.0.0.1:$p_sub" &
s2=$!
scan imaps "127.0.0.1:$p_imaps" &
s3=$!
wait $s1 $s2 $s3
python3 - "$tmp" <<'EOP'
import json, sys
# Findings about the throw-away test CA, not about mailgate's defaults.
EXCEPTED = {"cert_chain_of_trust", "cert_revocation", "DNS_CAArecord", "OCSP_stapling",
            "cert_trust", "cert_ocspURL", "cert_crlDistributionPoints", "cert_caIssuers"}
bad = 0
for name in ("smtps", "starttls", "imaps"):
    try:
        findings = json.load(open("%s/%s.json" % (sys.argv[1], name)))
    except (OSError, ValueError) as e:
        print("%s: no testssl result (%s)" % (name, e))
        print(open("%s/%s.out" % (sys.argv[1], name)).read()[-3000:])
        bad += 1
        continue
    ids = {f["id"] for f in findings}
    # The scan must have reached what it is here for.
    if not {"cipherlist_AVERAGE", "TLS1_3", "PFS", "LUCKY13"} <= ids:
        print("%s: the scan did not reach the cipher checks:" % name)
        print(open("%s/%s.out" % (sys.argv[1], name)).read()[-3000:])
        bad += 1
    for f in findings:
        if f.get("severity") in ("LOW", "MEDIUM", "HIGH", "CRITICAL") and f["id"] not in EXCEPTED \
                and not f["id"].startswith("scanProblem"):
            print("%s: %s %s: %s" % (name, f["severity"], f["id"], f.get("finding")))
            bad += 1
    print("%s: %d findings checked" % (name, len(findings)))
print("testssl: %s" % ("no finding of severity LOW or above" if not bad else "%d problem(s)" % bad))
sys.exit(1 if bad else 0)
EOP
