#!/usr/bin/env bash
# README "Other capacity figures": 15,000 clients on one server process, and
# the deliveries/s ramp at 1,000 clients.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
measure_prepare "$@"
measure_run clients-15k "$LOADGEN" run --profile loadgen/profiles/10k.toml --clients 15000 \
  --duration-secs 10 --no-floor --out "$OUT/clients-15k"
measure_run deliveries-ramp "$LOADGEN" ramp --clients 1000 --start-rate 500 --factor 1.5 \
  --max-rate 6000 --step-duration-secs 6 --slo-p99-ms 250 --tcp-publishers 4 --out "$OUT/deliveries-ramp"
