#!/usr/bin/env bash
# README "Measured here": direct delivery against woken writers, interleaved
# in one job (D W D W D W), each run rtmc + the Redis floor, at 1k and 10k.
# Usage: ci/measure/direct-ab.sh [PAIRS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PAIRS="${1:-3}"
measure_prepare "$@"
for load in 1k 10k; do
  extra=()
  [ "$load" = 10k ] && extra=(--connects-per-sec 1000)
  for pair in $(seq 1 "$PAIRS"); do
    for direct in true false; do
      RTMC_SERVER__DIRECT_DELIVERY=$direct measure_run "$load-pair$pair-direct-$direct" \
        "$LOADGEN" run --profile "loadgen/profiles/$load.toml" --rounds 1 --peers floor \
        --duration 15 "${extra[@]}" --out "$OUT/$load/pair$pair-direct-$direct"
    done
  done
done
echo "[measure] reports in $OUT/<load>/pair<N>-direct-<true|false>/"
