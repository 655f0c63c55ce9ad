#!/usr/bin/env bash
# The compose deployment of rtmc (ci/deploy/): RabbitMQ, Redis, PostgreSQL,
# migrations, two server nodes, the gateway, two consumers and the sync
# worker, each its own container, host networking on 127.0.0.1 (ports in
# ci/deploy/rtmc.env). Compose project rtmc-deploy.
#
#   ci/deploy.sh up [--no-build]  set up what is missing (Docker, images,
#                                 docker-compose, the release build, the rtmc
#                                 image), start, wait until every service is
#                                 healthy, create the first user, print where
#                                 to connect
#   ci/deploy.sh down [--volumes] remove the containers; the data volumes stay
#                                 unless --volumes
#   ci/deploy.sh status           each service's state and health
#   ci/deploy.sh logs [SERVICE…]  the services' logs (docker-compose logs args)
#   ci/deploy.sh users PREFIX N   create users PREFIX-0 … PREFIX-(N-1) with the
#                                 first user's password (for loadgen; kept if
#                                 they exist)
#
# Environment:
#   RTMC_DEPLOY_WAIT_SECS  bound on the wait for health (default 180)
#   RTMC_DEPLOY_ENV        env file (default ci/deploy/rtmc.env)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DEPLOY_DIR="$ROOT/ci/deploy"
ENV_FILE="${RTMC_DEPLOY_ENV:-$DEPLOY_DIR/rtmc.env}"
PROJECT=rtmc-deploy
IMAGE=rtmc:deploy
WAIT_SECS="${RTMC_DEPLOY_WAIT_SECS:-180}"
# Long-running services, in start order; migrations and db-init run once.
SERVICES=(rabbitmq redis postgres server1 server2 gateway consumer1 consumer2 sync)
ONE_SHOT=(db-init migrations)

log() { printf '[deploy] %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

[ -f "$ENV_FILE" ] || die "env file $ENV_FILE not found"
set -a
# shellcheck disable=SC1090
source "$ENV_FILE"
set +a
export DEPLOY_IMAGE="$IMAGE"

compose() {
  docker-compose -p "$PROJECT" --env-file "$ENV_FILE" -f "$DEPLOY_DIR/docker-compose.yml" "$@"
}

ensure_compose() {
  command -v docker-compose >/dev/null 2>&1 && return
  [ "$(id -u)" = 0 ] || die "docker-compose is missing; install it (apt-get install docker-compose) or run as root"
  log "installing docker-compose"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
}

# Builds the rtmc image when it is missing or was built from another binary,
# Dockerfile, health script or config file (a hash of the four is its label).
ensure_image() {
  local binary="$ROOT/target/release/rtmc" ctx want have
  [ -x "$binary" ] || die "$binary is missing (run without --no-build)"
  want="$(cat "$binary" "$DEPLOY_DIR/Dockerfile" "$DEPLOY_DIR/rtmc-ready" "$DEPLOY_DIR/rtmc.toml" | sha256sum | cut -c1-16)"
  have="$(docker image inspect -f '{{index .Config.Labels "rtmc.deploy.hash"}}' "$IMAGE" 2>/dev/null || true)"
  [ "$want" = "$have" ] && return
  log "building image $IMAGE (${have:+stale: $have, }now $want)"
  ctx="$(mktemp -d "${TMPDIR:-/tmp}/rtmc-image.XXXXXX")"
  cp "$binary" "$DEPLOY_DIR/Dockerfile" "$DEPLOY_DIR/rtmc-ready" "$DEPLOY_DIR/rtmc.toml" "$ctx/"
  strip "$ctx/rtmc" 2>/dev/null || true # the release profile keeps debug info
  chmod 0755 "$ctx/rtmc" "$ctx/rtmc-ready"
  chmod 0644 "$ctx/rtmc.toml" "$ctx/Dockerfile"
  if ! DOCKER_BUILDKIT=0 docker build -q --label "rtmc.deploy.hash=$want" -t "$IMAGE" "$ctx" \
    >"$ctx.log" 2>&1; then
    cat "$ctx.log" >&2
    rm -rf "$ctx" "$ctx.log"
    die "building $IMAGE failed (log above)"
  fi
  rm -rf "$ctx" "$ctx.log"
  log "built $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

# The container of a service, by compose's labels (docker-compose itself takes
# a second per call, too slow for a polling loop).
container() {
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" 2>/dev/null | head -n 1
}

# health of a service's container: healthy, unhealthy, starting, exited(N), missing
health() {
  local id
  id="$(container "$1")"
  [ -n "$id" ] || { echo missing; return; }
  docker inspect -f '{{if eq .State.Status "running"}}{{if .State.Health}}{{.State.Health.Status}}{{else}}running{{end}}{{else}}{{.State.Status}}({{.State.ExitCode}}){{end}}' "$id" 2>/dev/null || echo missing
}

# why a service is not healthy: its last failed check, else its last log line
last_health_log() {
  local id why
  id="$(container "$1")"
  [ -n "$id" ] || return 0
  why="$(docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$id" 2>/dev/null | tail -n 1)"
  [ -n "$why" ] || why="log: $(docker logs --tail 1 "$id" 2>&1 | cut -c1-300)"
  printf '%s' "$why"
}

wait_healthy() {
  local deadline=$((SECONDS + WAIT_SECS)) pending svc h
  while :; do
    pending=()
    for svc in "${SERVICES[@]}"; do
      h="$(health "$svc")"
      case "$h" in
        healthy) ;;
        exited* | dead* | missing) die "service $svc is $h; see: ci/deploy.sh logs $svc" ;;
        *) pending+=("$svc:$h") ;;
      esac
    done
    [ "${#pending[@]}" = 0 ] && return
    if [ "$SECONDS" -ge "$deadline" ]; then
      for svc in "${pending[@]}"; do
        log "not healthy after ${WAIT_SECS}s: ${svc%%:*} (${svc#*:}); $(last_health_log "${svc%%:*}")"
      done
      die "giving up; see ci/deploy.sh status and ci/deploy.sh logs SERVICE"
    fi
    sleep 1
  done
}

check_one_shots() {
  local svc id code
  for svc in "${ONE_SHOT[@]}"; do
    id="$(container "$svc")"
    [ -n "$id" ] || die "one-shot service $svc did not run; see ci/deploy.sh logs $svc"
    code="$(docker inspect -f '{{.State.ExitCode}}' "$id")"
    [ "$code" = 0 ] || die "one-shot service $svc exited with $code; see ci/deploy.sh logs $svc"
  done
}

add_first_user() {
  local out
  if out="$(compose run --rm --no-deps -e RTMC_PASSWORD="$DEPLOY_PASSWORD" migrations user add "$DEPLOY_USER" 2>&1)"; then
    log "created user $DEPLOY_USER"
  elif grep -q "already exists" <<<"$out"; then
    log "user $DEPLOY_USER exists"
  else
    printf '%s\n' "$out" >&2
    die "creating user $DEPLOY_USER failed (output above)"
  fi
}

print_addresses() {
  local gw="http://127.0.0.1:$DEPLOY_GATEWAY_PORT"
  echo "rtmc deployment is up (compose project $PROJECT)"
  echo "  TCP server 0  : 127.0.0.1:$DEPLOY_SERVER1_PORT   (ops http://127.0.0.1:$DEPLOY_SERVER1_OPS_PORT/readyz)"
  echo "  TCP server 1  : 127.0.0.1:$DEPLOY_SERVER2_PORT   (ops http://127.0.0.1:$DEPLOY_SERVER2_OPS_PORT/readyz)"
  echo "  HTTP gateway  : $gw   (X-Api-Key: $DEPLOY_API_KEY)"
  echo "  RabbitMQ      : amqp://guest:guest@127.0.0.1:$DEPLOY_RABBITMQ_PORT/%2f"
  echo "  Redis         : redis://127.0.0.1:$DEPLOY_REDIS_PORT   (key prefix rtmc)"
  echo "  PostgreSQL    : postgres://postgres@127.0.0.1:$DEPLOY_POSTGRES_PORT/$DEPLOY_DATABASE"
  echo "  users         : $DEPLOY_USER (password \"$DEPLOY_PASSWORD\")"
  echo
  echo "  chat:    target/release/rtmc client --addr 127.0.0.1:$DEPLOY_SERVER1_PORT --addr 127.0.0.1:$DEPLOY_SERVER2_PORT --user $DEPLOY_USER --password $DEPLOY_PASSWORD"
  echo "  publish: curl -s -X POST $gw/v1/service/messages -H 'X-Api-Key: $DEPLOY_API_KEY' -H 'content-type: application/json' -d '{\"sender\":\"curl\",\"body\":\"hello\"}'"
  echo "ci/deploy.sh status | logs [SERVICE] | down [--volumes]"
}

cmd_up() {
  local build=1
  for a in "$@"; do
    case "$a" in
      --no-build) build=0 ;;
      *) die "up: unknown argument $a (expected --no-build)" ;;
    esac
  done
  local started=$SECONDS
  if [ "$build" = 1 ]; then
    setup_in_background
    release_build
    wait_for_setup
  else
    "$ROOT/ci/setup.sh"
  fi
  ensure_compose
  ensure_image
  log "starting (compose project $PROJECT)"
  local up_start=$SECONDS
  # compose itself waits for each dependency's health before starting the
  # services after it; bounded like the wait below.
  if ! timeout "$WAIT_SECS" docker-compose -p "$PROJECT" --env-file "$ENV_FILE" \
    -f "$DEPLOY_DIR/docker-compose.yml" up -d --remove-orphans; then
    compose ps >&2 || true
    for svc in "${SERVICES[@]}"; do
      case "$(health "$svc")" in
        healthy | running) ;;
        *) log "service $svc: $(health "$svc"); $(last_health_log "$svc")" ;;
      esac
    done
    die "docker-compose up failed or took over ${WAIT_SECS}s (states above); see ci/deploy.sh logs SERVICE"
  fi
  wait_healthy
  check_one_shots
  log "every service healthy $((SECONDS - up_start)) s after docker-compose up ($((SECONDS - started)) s in all)"
  add_first_user
  print_addresses
}

cmd_down() {
  local args=()
  for a in "$@"; do
    case "$a" in
      --volumes) args+=(--volumes) ;;
      *) die "down: unknown argument $a (expected --volumes)" ;;
    esac
  done
  compose down --remove-orphans "${args[@]}"
}

cmd_status() {
  local svc
  printf '%-11s %s\n' SERVICE STATE
  for svc in "${ONE_SHOT[@]}" "${SERVICES[@]}"; do
    printf '%-11s %s\n' "$svc" "$(health "$svc")"
  done
}

cmd_users() {
  local prefix="${1:-}" count="${2:-}"
  [ -n "$prefix" ] && [[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -gt 0 ] \
    || die "usage: ci/deploy.sh users PREFIX COUNT (COUNT a positive number)"
  [[ "$prefix" =~ ^[A-Za-z0-9_.-]+$ ]] || die "users: PREFIX may hold letters, digits, _ . - only"
  # One container for all of them; an existing user is not an error.
  compose run --rm --no-deps -e RTMC_PASSWORD="$DEPLOY_PASSWORD" --entrypoint bash migrations -c \
    "set -e; for i in \$(seq 0 $((count - 1))); do
       out=\$(rtmc user add $prefix-\$i 2>&1) || { case \"\$out\" in *'already exists'*) ;; *) echo \"\$out\" >&2; exit 1;; esac; }
     done" || die "creating users $prefix-0 … $prefix-$((count - 1)) failed (output above)"
  log "users $prefix-0 … $prefix-$((count - 1)) exist (password \"$DEPLOY_PASSWORD\")"
}

case "${1:-}" in
  up) shift; ensure_compose; cmd_up "$@" ;;
  down) shift; ensure_compose; cmd_down "$@" ;;
  status) ensure_compose; cmd_status ;;
  logs) shift; ensure_compose; compose logs --no-color "$@" ;;
  users) shift; ensure_compose; cmd_users "$@" ;;
  *) die "usage: ci/deploy.sh up [--no-build] | down [--volumes] | status | logs [SERVICE…] | users PREFIX COUNT" ;;
esac
