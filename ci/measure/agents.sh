#!/usr/bin/env bash
# loadgen README, "Past one process": 2 loadgen agents × 15,000 clients, 30,000 in all, through
# one coordinator (`loadgen run --agents`) against the embedded stack with 2 server nodes (a
# process gets 20,000 open files here; rtmc's server does not raise its own limit, so each
# node holds half). Passes when loadgen passes (nothing lost, duplicated or reordered; every
# agent up to the end) AND the merged report's percentiles are those of an HdrHistogram
# merge of the agents' own interval logs, recomputed with Python's `hdrh` (PyPI package
# `hdrhistogram`, in a venv) by ci/measure/agents_merge_check.py.
#
# Measure alone on the machine (lib.sh refuses otherwise). A smoke run at a small size, with
# the debug binaries and without the release build:
#   RTMC_AGENTS_CLIENTS_PER_AGENT=100 RTMC_AGENTS_DURATION_SECS=3 RTMC_MEASURE_FORCE=1 \
#   RTMC_MEASURE_NO_BUILD=1 RTMC_LOADGEN=target/debug/loadgen ci/measure/agents.sh
#
# Environment:
#   RTMC_AGENTS_COUNT              agents (default 2)
#   RTMC_AGENTS_CLIENTS_PER_AGENT  receivers per agent (default 15000)
#   RTMC_AGENTS_RATE               messages per second over the whole run (default 10)
#   RTMC_AGENTS_DURATION_SECS      seconds of publishing (default 20)
#   RTMC_AGENTS_FIRST_PORT         the agents listen on 127.0.0.1:<port>, <port+1>, … (default 7701)
#   RTMC_LOADGEN                   the loadgen binary (default target/release/loadgen)
#   RTMC_HDRH_VENV                 venv for hdrh (default target/hdrh-venv)
#   RTMC_HDRH_VERSION              PyPI hdrhistogram version (default 0.10.8)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOADGEN="${RTMC_LOADGEN:-$LOADGEN}"
AGENTS="${RTMC_AGENTS_COUNT:-2}"
PER_AGENT="${RTMC_AGENTS_CLIENTS_PER_AGENT:-15000}"
RATE="${RTMC_AGENTS_RATE:-10}"
DURATION="${RTMC_AGENTS_DURATION_SECS:-20}"
FIRST_PORT="${RTMC_AGENTS_FIRST_PORT:-7701}"
VENV="${RTMC_HDRH_VENV:-$ROOT/target/hdrh-venv}"
HDRH_VERSION="${RTMC_HDRH_VERSION:-0.10.8}"
measure_prepare "$@"

# The agents, stopped by their pids when the script ends (then the kit's cleanup).
AGENT_PIDS=()
stop_agents() {
  for pid in "${AGENT_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  cleanup
}
trap stop_agents EXIT

addrs=()
for k in $(seq 0 $((AGENTS - 1))); do
  addr="127.0.0.1:$((FIRST_PORT + k))"
  "$LOADGEN" agent --listen "$addr" >"$OUT/agent-$k.log" 2>&1 &
  AGENT_PIDS+=($!)
  addrs+=("$addr")
done
for k in $(seq 0 $((AGENTS - 1))); do
  for _ in $(seq 1 100); do
    grep -q "listening on" "$OUT/agent-$k.log" && break
    sleep 0.1
  done
  grep -q "listening on" "$OUT/agent-$k.log" || { cat "$OUT/agent-$k.log" >&2; exit 1; }
done

agent_list="$(IFS=,; echo "${addrs[*]}")"
status=0
measure_run coordinator "$LOADGEN" run --agents "$agent_list" \
  --clients $((PER_AGENT * AGENTS)) --server-nodes 2 --rate "$RATE" --duration "$DURATION" \
  --connects-per-sec 2000 --drain-timeout-secs 30 --out "$OUT/run" || status=$?
[ "$status" = 0 ] || { echo "[measure] loadgen run --agents failed (exit $status)" >&2; exit "$status"; }

if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("hdrhistogram"))' 2>/dev/null)" != "$HDRH_VERSION" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "hdrhistogram==$HDRH_VERSION" >"$OUT/hdrh-install.log" 2>&1 \
    || { cat "$OUT/hdrh-install.log" >&2; exit 1; }
fi
measure_run merge-check "$VENV/bin/python" "$ROOT/ci/measure/agents_merge_check.py" "$OUT/run"
