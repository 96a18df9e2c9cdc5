#!/bin/sh
# replay.sh: make check's fuzz step - replays each target's seed corpus
# (and every prefix of every seed) through the standalone build of the
# target, under whatever sanitizers the build uses.
set -eu
top=${MG_SRCDIR:-$(dirname "$0")/../..}
bld=${MG_BUILDDIR:-$top}
for t in smtp_parse smtp_data smtp_reply conf_value conf_strip imap_parser imap_resp imap_watch proxyproto metrics_http; do
  echo "== $t"
  "$bld/tests/fuzz/replay_$t" "$top/tests/fuzz/corpus/$t"
done
