#!/usr/bin/env bash
# README "Ingest: each hop alone, and overload": every hop alone (classic and
# quorum queue, 3 rounds each), then RUNS TCP ramps past the knee (quorum
# queue) and RUNS HTTP ramps (http-overload.toml). About 20 minutes, alone.
# Usage: ci/measure/ingest.sh [RUNS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${1:-3}"
measure_prepare "$@"
for q in classic quorum; do
  measure_run "hops-$q" "$LOADGEN" hops --duration-secs 3 --rounds 3 --queue-type "$q" \
    --json "$OUT/hops-$q.json"
done
for run in $(seq 1 "$RUNS"); do
  RTMC_RABBITMQ__QUEUE_TYPE=quorum RTMC_SERVER__MAX_SENDS_PER_SEC=100000 \
    RTMC_SERVER__MAX_FRAMES_PER_SEC=200000 measure_run "tcp-ramp-$run" "$LOADGEN" ramp \
    --clients 10 --start-rate 5000 --factor 1.6 --max-rate 45000 --step-duration-secs 4 \
    --drain-timeout-secs 5 --through --tcp-publishers 8 --no-floor --out "$OUT/tcp-ramp-$run"
  measure_run "http-ramp-$run" "$LOADGEN" ramp --profile loadgen/profiles/http-overload.toml \
    --out "$OUT/http-ramp-$run"
done
echo "[measure] hops JSON and ramp reports in $OUT/"
