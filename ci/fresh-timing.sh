#!/usr/bin/env bash
# Times a newcomer's path as on a fresh machine: clone → first loadgen report
# (ci/run.sh), then ci/stack.sh until the stack is up. The clone gets an
# empty cargo registry (its own CARGO_HOME) and a new image tag and base
# image, so crates are downloaded and debootstrap and every image are built.
# The Docker engine package itself is assumed installed. Measure alone: any
# other build on these 2 cores inflates the figures.
#
# Usage: ci/fresh-timing.sh [WORKDIR]   (default /tmp/rtmc-fresh; removed first)
set -u
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/rtmc-fresh}"
TAG="fresh$(date +%s)"
rm -rf "$WORK"
mkdir -p "$WORK"
export CARGO_HOME="$WORK/cargo-home"
export PATH="$HOME/.cargo/bin:$PATH"
export RTMC_BASE_IMAGE="rtmc-debian-base:$TAG"
now() { date +%s.%N; }

t0=$(now)
git clone -q "$SRC" "$WORK/rtmc"
cd "$WORK/rtmc" || exit 1
echo "$TAG" > testkit/images/TAG
ci/run.sh >"$WORK/run.log" 2>&1
rc=$?
t1=$(now)
echo "ci/run.sh exit $rc; clone -> first report: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}') s (log: $WORK/run.log)"
grep -m1 "Finished .release" "$WORK/run.log"

t2=$(now)
ci/stack.sh >"$WORK/stack.log" 2>&1 &
stack=$!
for _ in $(seq 1 600); do
  grep -q "rtmc stack is up" "$WORK/stack.log" 2>/dev/null && break
  sleep 0.5
done
t3=$(now)
echo "ci/stack.sh -> stack up: $(awk -v a="$t2" -v b="$t3" 'BEGIN{printf "%.1f", b-a}') s; crates compiled: $(grep -c Compiling "$WORK/stack.log")"
kill -INT "$stack" 2>/dev/null
pkill -INT -f "$WORK/rtmc/target/release/rtmc-stack" 2>/dev/null
sleep 5
for svc in redis rabbitmq postgres; do docker rmi -f "rtmc-$svc:$TAG" >/dev/null 2>&1; done
docker rmi -f "$RTMC_BASE_IMAGE" >/dev/null 2>&1
exit "$rc"
