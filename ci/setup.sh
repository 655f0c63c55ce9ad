#!/usr/bin/env bash
# Prepares a Debian machine for rtmc's tests and stack: installs the Docker
# engine and debootstrap when missing (as root), starts dockerd when none runs,
# builds the offline Debian base image when it cannot be pulled, and builds the
# RabbitMQ, Redis and PostgreSQL images, and the nats-server image of loadgen's
# NATS peers, from testkit/images once (reused after).
# For the instruction-count benches it installs valgrind and gungraun-runner
# (built from crates.io, the version of the gungraun crate in Cargo.lock).
#
# Environment:
#   RTMC_BASE_IMAGE   base image for the service images (default rtmc-debian-base:bookworm)
#   RTMC_DEBIAN_MIRROR mirror for debootstrap (default http://deb.debian.org/debian)
#   RTMC_REBUILD=1    rebuild the service images even when they exist
#   RTMC_BENCH_TOOLS=1 also install gungraun-runner (the tests' instruction-count benches)
#   RTMC_SCHEMATHESIS=1 also install schemathesis (ci/schemathesis.sh sets it)
#   RTMC_SCHEMATHESIS_VENV venv for schemathesis (default target/schemathesis-venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${RTMC_BASE_IMAGE:-rtmc-debian-base:bookworm}"
MIRROR="${RTMC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE_TAG="$(cat "$ROOT/testkit/images/TAG")"

log() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "$1 requires root; run this script as root or install it yourself"
    exit 1
  fi
}

# 1. Packages.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
# promtool (Debian package prometheus) lints a /metrics scrape in the tests;
# python3-venv holds schemathesis for ci/schemathesis.sh.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  need_root "installing ${missing[*]}"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 1b. Only for the tests (RTMC_BENCH_TOOLS=1, set by ci/test.sh and .ci/run):
# building it costs minutes of CPU that ci/run.sh and ci/stack.sh do not need.
# gungraun-runner, the same version as the gungraun crate: the runner
# refuses a library of another version. Idempotent: only when missing or of
# another version. CPU-bound, so it builds while the steps below wait on the
# network and the engine; joined at the end.
gungraun_version="$(awk '$0 == "name = \"gungraun\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' "$ROOT/Cargo.lock")"
gungraun_pid=""
if [ "${RTMC_BENCH_TOOLS:-0}" = 1 ] && [ -n "$gungraun_version" ] \
  && [ "$(gungraun-runner --version 2>/dev/null)" != "gungraun-runner $gungraun_version" ]; then
  log "installing gungraun-runner $gungraun_version (cargo install)"
  cargo install --locked --quiet gungraun-runner --version "$gungraun_version" \
    >/tmp/rtmc-gungraun-runner.log 2>&1 &
  gungraun_pid=$!
fi

# 1c. Only with RTMC_SCHEMATHESIS=1 (set by ci/schemathesis.sh): schemathesis
# (PyPI) in a venv, the gateway fuzzed against its own /openapi.json.
SCHEMATHESIS_VERSION="${RTMC_SCHEMATHESIS_VERSION:-3.39.16}"
ST_VENV="${RTMC_SCHEMATHESIS_VENV:-$ROOT/target/schemathesis-venv}"
if [ "${RTMC_SCHEMATHESIS:-0}" = 1 ] \
  && [ "$("$ST_VENV/bin/st" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $ST_VENV"
  python3 -m venv "$ST_VENV"
  # hypothesis pinned: newer releases break schemathesis 3.39 ("'many' object has no attribute 'more'").
  "$ST_VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==6.122.3" \
    >/tmp/rtmc-schemathesis.log 2>&1 \
    || { log "installing schemathesis failed; see /tmp/rtmc-schemathesis.log"; exit 1; }
fi

# 2. Engine.
if ! docker info >/dev/null 2>&1; then
  need_root "starting dockerd"
  log "starting dockerd"
  nohup dockerd >/var/log/rtmc-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/rtmc-dockerd.log"; exit 1; }
fi

# 3. Base image: local, pulled, or bootstrapped offline.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if docker pull "$BASE_IMAGE" >/dev/null 2>&1; then
    log "pulled $BASE_IMAGE"
  else
    need_root "debootstrap"
    log "no registry reachable for $BASE_IMAGE: bootstrapping Debian bookworm (minbase) from $MIRROR"
    dir="$(mktemp -d /tmp/rtmc-base.XXXXXX)"
    debootstrap --variant=minbase bookworm "$dir" "$MIRROR" >/tmp/rtmc-debootstrap.log 2>&1 \
      || { log "debootstrap failed; see /tmp/rtmc-debootstrap.log"; exit 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb
    tar -C "$dir" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$dir"
    log "imported $BASE_IMAGE"
  fi
fi

# 4. Service images, built side by side (each is mostly apt downloads).
pids=()
for svc in redis rabbitmq postgres nats postgres-ha; do
  image="rtmc-$svc:$IMAGE_TAG"
  if [ "${RTMC_REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    continue
  fi
  log "building $image"
  DOCKER_BUILDKIT=0 docker build -q --network host --build-arg "BASE=$BASE_IMAGE" -t "$image" \
    "$ROOT/testkit/images/$svc" >"/tmp/rtmc-image-$svc.log" 2>&1 &
  pids+=("$!:$svc")
done
for entry in "${pids[@]}"; do
  if ! wait "${entry%%:*}"; then
    log "building rtmc-${entry#*:}:$IMAGE_TAG failed; see /tmp/rtmc-image-${entry#*:}.log"
    exit 1
  fi
done
if [ -n "$gungraun_pid" ] && ! wait "$gungraun_pid"; then
  log "installing gungraun-runner $gungraun_version failed; see /tmp/rtmc-gungraun-runner.log"
  exit 1
fi
tools=""
[ "${RTMC_BENCH_TOOLS:-0}" = 1 ] && tools=", gungraun-runner $gungraun_version"
log "ready: docker engine up, images rtmc-{redis,rabbitmq,postgres,nats,postgres-ha}:$IMAGE_TAG present$tools"
