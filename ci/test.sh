#!/usr/bin/env bash
# The test command: prepares the machine (Docker engine, images, valgrind and
# gungraun-runner) while the tests compile, then runs every test of the
# workspace against real RabbitMQ, Redis and PostgreSQL, then every bench
# target once in test mode (criterion and gungraun run each benchmark once,
# unmeasured), so the benches keep compiling and running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export RTMC_BENCH_TOOLS=1
setup_in_background
# Child-process suites run the rtmc binary; build it with the tests.
cargo build --locked -p rtmc-system --bins
cargo test --locked --workspace --no-run "$@"
# `--workspace` resolves features as the line above does, so the bench
# targets reuse its dependencies instead of building a second set.
cargo test --locked --workspace --bench '*' --no-run
wait_for_setup
cargo test --locked --workspace "$@"
cargo test --locked --workspace --bench '*'
