#!/bin/sh
# replay.sh: make check's fuzz step - replays each target's seed corpus
# (and prefixes of every seed) through the standalone build of the target,
# under whatever sanitizers the build uses. Every target runs even when an
# earlier one fails; the script fails if any did.
set -u
top=${MG_SRCDIR:-$(dirname "$0")/../..}
bld=${MG_BUILDDIR:-$top}
failed=""
for t in smtp_parse smtp_data smtp_reply conf_value conf_strip imap_parser imap_resp imap_watch proxyproto \
         metrics_http smtp_session imap_session; do
  echo "== $t"
  "$bld/tests/fuzz/replay_$t" "$top/tests/fuzz/corpus/$t" || failed="$failed $t"
done
if [ -n "$failed" ]; then
  echo "FAIL:$failed"
  exit 1
fi
