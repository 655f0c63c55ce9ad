# Sourced by the measuring scripts in ci/measure/: the shared release build,
# a check that the machine is quiet, and a directory per measurement that
# records what was run, on which commit, when.
#
# Figures are only figures when measured alone (README, "Measured here"):
# each script refuses to start while a compiler, a test binary or another
# load runs, unless RTMC_MEASURE_FORCE=1.
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
LOADGEN="$ROOT/target/release/loadgen"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${RTMC_MEASURE_OUT:-$ROOT/reports/measure/$STAMP-$(basename "$0" .sh)}"

measure_prepare() {
  mkdir -p "$OUT"
  if [ "${RTMC_MEASURE_NO_BUILD:-0}" != 1 ]; then
    release_build
  fi
  "$ROOT/ci/setup.sh" >"$OUT/setup.log" 2>&1 || { cat "$OUT/setup.log" >&2; exit 1; }
  machine_is_quiet
  {
    echo "commit: $(git -C "$ROOT" rev-parse HEAD)$(git -C "$ROOT" diff --quiet || echo ' (+ uncommitted changes)')"
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "script: ci/measure/$(basename "$0") $*"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  } | tee "$OUT/measured.txt"
}

# Refuses to measure beside a build, a test binary or another loadgen.
machine_is_quiet() {
  [ "${RTMC_MEASURE_FORCE:-0}" = 1 ] && return
  local busy
  busy=$(pgrep -a -f 'rustc|cargo |/deps/it-|loadgen (run|ramp|hops)|gate ' | grep -v "$$" | grep -v pgrep || true)
  if [ -n "$busy" ]; then
    echo "[measure] not alone on the machine (RTMC_MEASURE_FORCE=1 to measure anyway):" >&2
    echo "$busy" >&2
    exit 1
  fi
}

# Runs one measured command, logging it to $OUT/commands.txt and its output
# to $OUT/<name>.log.
measure_run() {
  local name="$1"
  shift
  echo "$*" >>"$OUT/commands.txt"
  echo "[measure] $name: $*" >&2
  "$@" 2>&1 | tee "$OUT/$name.log"
}
