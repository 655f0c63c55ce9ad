# Sourced by ci/test.sh and ci/run.sh: go to the repository root, prepare the
# machine (ci/setup.sh), and remove the kit's containers when the script exits.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/ci/setup.sh"
cleanup() { docker ps -aq --filter name=rtmc-kit- | xargs -r docker rm -f >/dev/null 2>&1 || true; }
trap cleanup EXIT
