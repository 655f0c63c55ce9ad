#!/usr/bin/env bash
# README "Measured here": rtmc against the Redis floor, NATS core and
# JetStream at 1k × 100, 5k × 50 and 10k × 20 msg/s, 3 interleaved rounds
# each, plus the raw loopback blaster. About 25 minutes, alone.
# Usage: ci/measure/rounds.sh [ROUNDS] [DURATION_SECS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROUNDS="${1:-3}"
DURATION="${2:-15}"
measure_prepare "$@"
for load in 1k 5k 10k; do
  extra=()
  [ "$load" = 10k ] && extra=(--connects-per-sec 1000)
  measure_run "rounds-$load" "$LOADGEN" run --profile "loadgen/profiles/$load.toml" \
    --rounds "$ROUNDS" --peers floor,nats,jetstream --duration "$DURATION" --blaster \
    "${extra[@]}" --out "$OUT/$load"
done
echo "[measure] reports in $OUT/{1k,5k,10k}/ (report.md: medians [min–max] per kind)"
