# Sourced by the README's scripts (ci/test.sh, ci/run.sh, ci/stack.sh, and the
# chaos and gate commands): go to the repository root, and remove the kit's
# orphaned containers when the script exits.
#
# Two helpers keep a newcomer's path short:
# - `setup_in_background` starts ci/setup.sh (Docker engine, base image,
#   service images: network- and disk-bound) while cargo compiles (CPU-bound);
#   `wait_for_setup` joins it and fails with its log when it failed.
# - `release_build` is the ONE release build every script shares: the same
#   package selection gives the same feature set, so switching from
#   `ci/run.sh` to `ci/stack.sh` (or any other script) rebuilds nothing.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Removes the kit's containers whose owning process is gone (names are
# rtmc-kit-<pid>-…): a test binary never drops its shared stack, and another
# job's live containers (a running stack, a parallel test) are left alone.
cleanup() {
  local name pid
  docker ps -a --format '{{.Names}}' --filter name=rtmc-kit- 2>/dev/null | while read -r name; do
    pid="${name#rtmc-kit-}"
    pid="${pid%%-*}"
    [ -d "/proc/$pid" ] || docker rm -f "$name" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

SETUP_LOG="${TMPDIR:-/tmp}/rtmc-setup.$$.log"
SETUP_PID=""

setup_in_background() {
  "$ROOT/ci/setup.sh" >"$SETUP_LOG" 2>&1 &
  SETUP_PID=$!
}

wait_for_setup() {
  [ -n "$SETUP_PID" ] || { "$ROOT/ci/setup.sh"; return; }
  if ! wait "$SETUP_PID"; then
    cat "$SETUP_LOG" >&2
    echo "[ci] ci/setup.sh failed (log above)" >&2
    exit 1
  fi
  cat "$SETUP_LOG" >&2
  rm -f "$SETUP_LOG"
  SETUP_PID=""
}

release_build() {
  cargo build --locked --release --workspace --bins
  release_has_no_test_hooks
}

# The test-only features of rtmc-system (test-broadcast-delay…) must never
# reach the release binary: their variable names would be in it.
release_has_no_test_hooks() {
  local bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/rtmc"
  if grep -aq RTMC_TEST_BROADCAST_DELAY_US "$bin"; then
    echo "[ci] $bin contains the test-only broadcast delay (feature test-broadcast-delay): a Cargo.toml enables it" >&2
    exit 1
  fi
  if grep -aq RTMC_TEST_FANOUT_CPU_PCT "$bin"; then
    echo "[ci] $bin contains the test-only fan-out CPU work (feature test-fanout-cpu): a Cargo.toml enables it" >&2
    exit 1
  fi
}
