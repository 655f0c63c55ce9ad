#!/usr/bin/env bash
# The test command: prepares the machine (Docker engine, images) and runs
# every test of the workspace against real RabbitMQ, Redis and PostgreSQL.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# Child-process suites run the rtmc binary; build it first.
cargo build --locked -p rtmc-system --bins
cargo test --locked --workspace "$@"
