#!/usr/bin/env bash
# The test command: prepares the machine (Docker engine, images) and runs
# every test of the workspace against real RabbitMQ, Redis and PostgreSQL.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/ci/setup.sh"
cleanup() { docker ps -aq --filter name=rtmc-kit- | xargs -r docker rm -f >/dev/null 2>&1 || true; }
trap cleanup EXIT
# Child-process suites run the rtmc binary; build it first.
cargo build --locked -p rtmc-system --bins
cargo test --locked --workspace "$@"
