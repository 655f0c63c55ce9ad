#!/usr/bin/env bash
# The main job: a load test end to end. Prepares the machine (Docker engine,
# images) while the shared release build compiles, then runs loadgen against
# its own embedded stack (containers + rtmc processes). Arguments go to
# `loadgen run` (default profile: loadgen/profiles/smoke.toml). Reports land
# in reports/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup_in_background
release_build
wait_for_setup
if [ "$#" -eq 0 ]; then
  set -- --profile loadgen/profiles/smoke.toml
fi
"$ROOT/target/release/loadgen" run "$@"
