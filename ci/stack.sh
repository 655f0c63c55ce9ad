#!/usr/bin/env bash
# Brings up the whole stack (containers and every rtmc component) and prints
# where to connect. Arguments go to rtmc-stack (see --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/ci/setup.sh"
cargo build --locked --release -p rtmc-system -p rtmc-testkit --bins
exec "$ROOT/target/release/rtmc-stack" "$@"
