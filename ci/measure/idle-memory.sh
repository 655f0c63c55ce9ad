#!/usr/bin/env bash
# README "Other capacity figures": server memory per idle client with 10,000
# connected idle clients. With OLD_RTMC given, runs old, new, old, new
# (RTMC_BIN), for a before/after figure.
# Usage: ci/measure/idle-memory.sh [OLD_RTMC]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OLD="${1:-}"
measure_prepare "$@"
NEW="$ROOT/target/release/rtmc"
sides=(new new)
[ -n "$OLD" ] && sides=(old new old new)
i=0
for side in "${sides[@]}"; do
  i=$((i + 1))
  bin="$NEW"
  [ "$side" = old ] && bin="$OLD"
  RTMC_BIN="$bin" measure_run "run$i-$side" "$LOADGEN" run --profile loadgen/profiles/10k.toml \
    --duration 5 --no-floor --connects-per-sec 1000 --out "$OUT/run$i-$side"
done
grep -h "per idle client" "$OUT"/run*.log || true
