#!/usr/bin/env bash
# The compose deployments of rtmc (ci/deploy/): RabbitMQ, Redis, PostgreSQL,
# migrations, two server nodes, the gateway, two consumers and the sync
# worker, each its own container, host networking on 127.0.0.1.
#
# Two deployments, told apart by --ha (anywhere in the arguments):
#   single node  docker-compose.yml, ports in rtmc.env (17xxx), compose
#                project rtmc-deploy
#   --ha         docker-compose.ha.yml on clusters: RabbitMQ 3 nodes (quorum
#                queues), Redis primary + 2 replicas + 3 Sentinels, PostgreSQL
#                under pg_auto_failover (monitor + 2 data nodes); every
#                node's address in rtmc-ha.env (18xxx, read after rtmc.env),
#                compose project rtmc-deploy-ha
# Both can run side by side; each command acts on one of them.
#
#   ci/deploy.sh up [--ha] [--no-build]  set up what is missing (Docker,
#                                 images, docker-compose, the release build,
#                                 the rtmc image), start, wait until every
#                                 service is healthy, create the first user,
#                                 print where to connect
#   ci/deploy.sh down [--ha] [--volumes] remove the containers; the data
#                                 volumes stay unless --volumes
#   ci/deploy.sh status [--ha]    each service's state and health (--ha: and
#                                 each node's role: the RabbitMQ queue
#                                 leader, the Redis primary, the PostgreSQL
#                                 primary)
#   ci/deploy.sh logs [--ha] [SERVICE…]  the services' logs (docker-compose
#                                 logs args)
#   ci/deploy.sh users [--ha] PREFIX N  create users PREFIX-0 … PREFIX-(N-1)
#                                 with the first user's password (for
#                                 loadgen; kept if they exist)
#   ci/deploy.sh leader --ha ENGINE  the service that leads ENGINE now
#                                 (rabbitmq: the queue's leader, redis: the
#                                 primary the Sentinels name, postgres: the
#                                 node that takes writes), for scripts
#
# Environment:
#   RTMC_DEPLOY_WAIT_SECS  bound on the wait for health (default 180, 300
#                          with --ha)
#   RTMC_DEPLOY_ENV        env file (default ci/deploy/rtmc.env)
#   RTMC_DEPLOY_HA_ENV     the --ha env file, read after it (default
#                          ci/deploy/rtmc-ha.env)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DEPLOY_DIR="$ROOT/ci/deploy"
IMAGE=rtmc:deploy
HA=0
ARGS=()
for a in "$@"; do
  if [ "$a" = --ha ]; then HA=1; else ARGS+=("$a"); fi
done
set -- ${ARGS[@]+"${ARGS[@]}"}
ENV_FILES=("${RTMC_DEPLOY_ENV:-$DEPLOY_DIR/rtmc.env}")
if [ "$HA" = 1 ]; then
  PROJECT=rtmc-deploy-ha
  COMPOSE_FILE="$DEPLOY_DIR/docker-compose.ha.yml"
  ENV_FILES+=("${RTMC_DEPLOY_HA_ENV:-$DEPLOY_DIR/rtmc-ha.env}")
  WAIT_SECS="${RTMC_DEPLOY_WAIT_SECS:-300}"
  # Long-running services, in start order; db-init and migrations run once.
  SERVICES=(rabbitmq-epmd rabbitmq1 rabbitmq2 rabbitmq3 redis1 redis2 redis3
    sentinel1 sentinel2 sentinel3 pg-monitor postgres1 postgres2
    server1 server2 gateway consumer1 consumer2 sync)
else
  PROJECT=rtmc-deploy
  COMPOSE_FILE="$DEPLOY_DIR/docker-compose.yml"
  WAIT_SECS="${RTMC_DEPLOY_WAIT_SECS:-180}"
  SERVICES=(rabbitmq redis postgres server1 server2 gateway consumer1 consumer2 sync)
fi
ONE_SHOT=(db-init migrations)
# The last env file is compose's --env-file; every value of every file is
# also exported, and compose substitutes exported values first.
ENV_FILE="${ENV_FILES[-1]}"

log() { printf '[deploy] %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

for f in "${ENV_FILES[@]}"; do
  [ -f "$f" ] || die "env file $f not found"
  set -a
  # shellcheck disable=SC1090
  source "$f"
  set +a
done
export DEPLOY_IMAGE="$IMAGE"

compose() {
  docker-compose -p "$PROJECT" --env-file "$ENV_FILE" -f "$COMPOSE_FILE" "$@"
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
  local binary="${CARGO_TARGET_DIR:-$ROOT/target}/release/rtmc" ctx want have
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

print_addresses_ha() {
  local gw="http://$DEPLOY_GATEWAY_HOST:$DEPLOY_GATEWAY_PORT" s1 s2 i
  s1="$DEPLOY_SERVER1_HOST:$DEPLOY_SERVER1_PORT"
  s2="$DEPLOY_SERVER2_HOST:$DEPLOY_SERVER2_PORT"
  echo "rtmc deployment on clusters is up (compose project $PROJECT)"
  echo "  TCP server 0  : $s1   (ops http://$DEPLOY_SERVER1_HOST:$DEPLOY_SERVER1_OPS_PORT/readyz)"
  echo "  TCP server 1  : $s2   (ops http://$DEPLOY_SERVER2_HOST:$DEPLOY_SERVER2_OPS_PORT/readyz)"
  echo "  HTTP gateway  : $gw   (X-Api-Key: $DEPLOY_API_KEY)"
  for i in 1 2 3; do
    echo "  RabbitMQ $i    : $(addr_of "rabbitmq$i")   ($(var "DEPLOY_RABBITMQ${i}_NODE"))"
  done
  for i in 1 2 3; do echo "  Redis $i       : $(addr_of "redis$i")"; done
  echo "  Sentinels     : $(addr_of sentinel1) $(addr_of sentinel2) $(addr_of sentinel3)   (master name $DEPLOY_REDIS_MASTER_NAME)"
  echo "  PostgreSQL    : $(addr_of postgres1) $(addr_of postgres2)   (monitor $(addr_of pg-monitor), database $DEPLOY_DATABASE)"
  echo "  users         : $DEPLOY_USER (password \"$DEPLOY_PASSWORD\")"
  echo
  echo "  chat:    ${CARGO_TARGET_DIR:-target}/release/rtmc client --addr $s1 --addr $s2 --user $DEPLOY_USER --password $DEPLOY_PASSWORD"
  echo "  publish: curl -s -X POST $gw/v1/service/messages -H 'X-Api-Key: $DEPLOY_API_KEY' -H 'content-type: application/json' -d '{\"sender\":\"curl\",\"body\":\"hello\"}'"
  echo "ci/deploy.sh status --ha | logs --ha [SERVICE] | down --ha [--volumes]"
}

# The value of the variable named $1 (empty when unset).
var() { printf '%s' "${!1:-}"; }

# host:port of an --ha service, from the env files.
addr_of() {
  local svc=$1 n
  case "$svc" in
    rabbitmq-epmd) echo "$DEPLOY_EPMD_ADDRESS:$DEPLOY_EPMD_PORT" ;;
    rabbitmq[123] | redis[123] | sentinel[123] | server[12])
      n="$(tr '[:lower:]' '[:upper:]' <<<"$svc")"
      echo "$(var "DEPLOY_${n}_HOST"):$(var "DEPLOY_${n}_PORT")" ;;
    pg-monitor) echo "$DEPLOY_PG_MONITOR_HOST:$DEPLOY_PG_MONITOR_PORT" ;;
    postgres[12]) echo "$(var "DEPLOY_PG${svc#postgres}_HOST"):$(var "DEPLOY_PG${svc#postgres}_PORT")" ;;
    gateway) echo "$DEPLOY_GATEWAY_HOST:$DEPLOY_GATEWAY_PORT" ;;
    consumer[12] | sync)
      n="$(tr '[:lower:]' '[:upper:]' <<<"$svc")"
      echo "$(var "DEPLOY_${n}_HOST"):$(var "DEPLOY_${n}_OPS_PORT") (ops)" ;;
    *) echo "-" ;;
  esac
}

# Runs a command in a service's running container, bounded to 20 s; fails
# when the container is not running or the command fails.
in_service() {
  local svc=$1 id
  shift
  id="$(container "$svc")"
  [ -n "$id" ] && [ "$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" = true ] || return 1
  timeout 20 docker exec "$id" "$@" 2>/dev/null
}

# The queue whose leader `status` and `leader rabbitmq` report: the lobby's.
QUEUE="${RTMC_RABBITMQ__QUEUE:-rtmc.messages}"

# "<leader node name> <member count>" of $QUEUE, asked of the first node
# that answers.
rabbit_leader() {
  local i out
  for i in 1 2 3; do
    out="$(in_service "rabbitmq$i" su rabbitmq -s /bin/sh -c \
      "HOME=/var/lib/rabbitmq ERL_EPMD_PORT=$DEPLOY_EPMD_PORT rabbitmqctl -q -t 15 -n $(var "DEPLOY_RABBITMQ${i}_NODE") list_queues name leader members --formatter json")" \
      || continue
    out="$(jq -r --arg q "$QUEUE" '.[] | select(.name == $q) | "\(.leader) \(.members | length)"' <<<"$out")" \
      || continue
    [ -n "$out" ] && { echo "$out"; return 0; }
  done
  return 1
}

# host:port of the Redis primary, as the first Sentinel that answers names it.
redis_primary() {
  local i out
  for i in 1 2 3; do
    out="$(in_service "sentinel$i" redis-cli -h "$(var "DEPLOY_SENTINEL${i}_HOST")" \
      -p "$(var "DEPLOY_SENTINEL${i}_PORT")" sentinel get-master-addr-by-name "$DEPLOY_REDIS_MASTER_NAME")" \
      || continue
    [ "$(wc -l <<<"$out")" = 2 ] || continue
    printf '%s:%s\n' "$(sed -n 1p <<<"$out")" "$(sed -n 2p <<<"$out")"
    return 0
  done
  return 1
}

# The role a Redis node states (ROLE): primary or replica.
redis_role() {
  local svc=$1 n role
  n="$(tr '[:lower:]' '[:upper:]' <<<"$svc")"
  role="$(in_service "$svc" redis-cli -h "$(var "DEPLOY_${n}_HOST")" -p "$(var "DEPLOY_${n}_PORT")" role | sed -n 1p)" \
    || return 1
  case "$role" in
    master) echo primary ;;
    slave) echo replica ;;
    *) echo "$role" ;;
  esac
}

# "host:port reportedstate" of every data node, as the pg_auto_failover
# monitor sees them.
pg_states() {
  in_service pg-monitor psql -h "$DEPLOY_PG_MONITOR_HOST" -p "$DEPLOY_PG_MONITOR_PORT" -U postgres \
    -d pg_auto_failover -tA -F ' ' -c "SELECT nodehost || ':' || nodeport, reportedstate FROM pgautofailover.node ORDER BY nodeid"
}

# Whether a PostgreSQL data node takes writes (out of recovery, not read-only).
pg_takes_writes() {
  local svc=$1 n=${1#postgres}
  [ "$(in_service "$svc" psql -h "$(var "DEPLOY_PG${n}_HOST")" -p "$(var "DEPLOY_PG${n}_PORT")" -U postgres -tAc \
    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'")" = t ]
}

# The role column of `status --ha`, for one service; RABBIT_LEADER
# ("node members"), SENTINELS_NAME and PG_STATES are asked once by
# cmd_status.
role_of() {
  local svc=$1 leader state id
  id="$(container "$svc")"
  if [ -z "$id" ] || [ "$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" != true ]; then
    echo "-"
    return
  fi
  case "$svc" in
    rabbitmq[123])
      leader="${RABBIT_LEADER%% *}"
      if [ -z "$leader" ]; then echo "? (no node lists queue $QUEUE)"
      elif [ "$leader" = "$(var "DEPLOY_${svc^^}_NODE")" ]; then
        echo "leader of $QUEUE (${RABBIT_LEADER##* } members)"
      else echo "member"; fi ;;
    redis[123]) redis_role "$svc" || echo "-" ;;
    sentinel[123]) echo "sentinels name primary ${SENTINELS_NAME:-?}" ;;
    postgres[12])
      state="$(awk -v a="$(addr_of "$svc")" '$1 == a { print $2 }' <<<"$PG_STATES")"
      if pg_takes_writes "$svc"; then echo "primary, takes writes (monitor: ${state:-?})"
      else echo "not primary (monitor: ${state:-?})"; fi ;;
    pg-monitor) echo "pg_auto_failover monitor" ;;
    rabbitmq-epmd) echo "Erlang port mapper" ;;
    *) echo "" ;;
  esac
}

# rabbitmqctl's JSON is read with jq.
need_jq() {
  command -v jq >/dev/null 2>&1 || die "jq is missing; install it (apt-get install jq)"
}

# `leader --ha ENGINE`: the service that leads ENGINE now.
cmd_leader() {
  [ "$HA" = 1 ] || die "leader: only for the --ha deployment (ci/deploy.sh leader --ha ENGINE)"
  need_jq
  local svc leader addr
  case "${1:-}" in
    rabbitmq)
      leader="$(rabbit_leader | cut -d' ' -f1)" || die "leader: no RabbitMQ node answered for queue $QUEUE"
      for svc in rabbitmq1 rabbitmq2 rabbitmq3; do
        [ "$leader" = "$(var "DEPLOY_${svc^^}_NODE")" ] && { echo "$svc"; return; }
      done
      die "leader: queue $QUEUE is led by $leader, not a node of rtmc-ha.env" ;;
    redis)
      addr="$(redis_primary)" || die "leader: no Sentinel answered"
      for svc in redis1 redis2 redis3; do
        [ "$addr" = "$(addr_of "$svc")" ] && { echo "$svc"; return; }
      done
      die "leader: the Sentinels name $addr, not a node of rtmc-ha.env" ;;
    postgres)
      for svc in postgres1 postgres2; do
        pg_takes_writes "$svc" && { echo "$svc"; return; }
      done
      die "leader: no PostgreSQL node takes writes" ;;
    *) die "usage: ci/deploy.sh leader --ha rabbitmq|redis|postgres" ;;
  esac
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
    -f "$COMPOSE_FILE" up -d --remove-orphans; then
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
  if [ "$HA" = 1 ]; then print_addresses_ha; else print_addresses; fi
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
  if [ "$HA" = 0 ]; then
    printf '%-11s %s\n' SERVICE STATE
    for svc in "${ONE_SHOT[@]}" "${SERVICES[@]}"; do
      printf '%-11s %s\n' "$svc" "$(health "$svc")"
    done
    return
  fi
  need_jq
  RABBIT_LEADER="$(rabbit_leader)" || RABBIT_LEADER=""
  SENTINELS_NAME="$(redis_primary)" || SENTINELS_NAME=""
  PG_STATES="$(pg_states)" || PG_STATES=""
  printf '%-14s %-12s %-28s %s\n' SERVICE STATE ADDRESS ROLE
  for svc in "${ONE_SHOT[@]}" "${SERVICES[@]}"; do
    printf '%-14s %-12s %-28s %s\n' "$svc" "$(health "$svc")" "$(addr_of "$svc")" "$(role_of "$svc")"
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
  leader) shift; cmd_leader "$@" ;;
  *) die "usage: ci/deploy.sh up [--no-build] | down [--volumes] | status | logs [SERVICE…] | users PREFIX COUNT (each with --ha for the deployment on clusters) | leader --ha rabbitmq|redis|postgres" ;;
esac
