#!/bin/sh
# no-snprintf-arith: the rule that closed a pre-auth overflow (a MAIL
# command built with snprintf's return value as the next offset): outside
# common/strbuf.c - the bounded builder every wire and log line goes
# through - nothing uses what snprintf/vsnprintf return. A call is only
# allowed as a statement of its own (truncation of a human-readable text);
# anything that keeps, compares or adds its result fails this check.
set -eu
top=${MG_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top"
bad=$(grep -nE '\bv?snprintf[[:space:]]*\(' common/*.c common/*.h smtpd/*.c smtpd/*.h \
        imapd/*.c imapd/*.h \
      | grep -v '^common/strbuf\.c:' \
      | grep -vE '^[^:]+:[0-9]+:[[:space:]]*v?snprintf[[:space:]]*\(' \
      | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/\*|\*)' || true)
if [ -n "$bad" ]; then
  echo "snprintf's return value used outside common/strbuf.c (use the builder):"
  echo "$bad"
  exit 1
fi
echo "ok: no code outside common/strbuf.c uses snprintf's return value"
