#!/usr/bin/env bash
# The main job: a load test end to end. Prepares the machine (Docker engine,
# images), builds release binaries, and runs loadgen against its own
# embedded stack (containers + rtmc processes). Arguments go to `loadgen run`
# (default profile: loadgen/profiles/smoke.toml). Reports land in reports/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cargo build --locked --release -p rtmc-system -p rtmc-loadgen --bins
if [ "$#" -eq 0 ]; then
  set -- --profile loadgen/profiles/smoke.toml
fi
"$ROOT/target/release/loadgen" run "$@"
