#!/usr/bin/env bash
# The test command: prepares the machine (Docker engine, images, valgrind and
# gungraun-runner) while the tests compile, then runs every test of the
# workspace against real RabbitMQ, Redis and PostgreSQL, then every bench
# target once in test mode (criterion and gungraun run each benchmark once,
# unmeasured), so the benches keep compiling and running.
#
# The chaos stack suites run a CI subset (a few minutes); the long ones are
# `#[ignore = "full chaos set: …"]`. RTMC_CHAOS_FULL=1 ci/test.sh runs them
# too, after the rest (every crate's `it` binary with --ignored, so the
# dependencies are the ones already built; the gate's calibration table is
# skipped, it is a report, not a test).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export RTMC_BENCH_TOOLS=1
setup_in_background
# Child-process suites run the rtmc binary; build it with the tests. (Test
# builds of the workspace also enable rtmc-system's `test-consumer-drop`, a
# dev-dependency feature of rtmc-chaos that does nothing unless configured;
# this line and the release build never have it.)
cargo build --locked -p rtmc-system --bins
cargo test --locked --workspace --no-run "$@"
# `--workspace` resolves features as the line above does, so the bench
# targets reuse its dependencies instead of building a second set.
cargo test --locked --workspace --bench '*' --no-run
wait_for_setup
cargo test --locked --workspace "$@"
if [ "${RTMC_CHAOS_FULL:-0}" = 1 ]; then
  cargo test --locked --workspace --test it -- --ignored --skip calibration_table
fi
cargo test --locked --workspace --bench '*'
