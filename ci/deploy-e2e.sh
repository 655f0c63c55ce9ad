#!/usr/bin/env bash
# End-to-end proof of the compose deployments (ci/deploy.sh). Slow (it starts
# a whole deployment, the single-node one twice), so it is not part of
# ci/test.sh; run it by hand:
#
#   ci/deploy-e2e.sh [--no-build]      (--no-build: use target/release as is)
#   ci/deploy-e2e.sh --ha [--no-build] the deployment on clusters (below)
#
# The release binary is read from $CARGO_TARGET_DIR/release (default
# target/release).
#
# It removes any previous rtmc-deploy deployment with its volumes, then:
#  1. `ci/deploy.sh up` (timed from start to every service healthy);
#  2. two terminal clients (`rtmc client`) log in, alice on server node 1
#     (with node 2 as failover), a second user on server node 2;
#  3. alice types a line (TCP publish) and the gateway gets a POST (HTTP
#     publish); both clients print both messages;
#  4. server1's container restarts; a message published meanwhile reaches
#     alice once her client has reconnected and resumed, exactly once, and
#     a line she types afterwards reaches the other client;
#  5. PostgreSQL holds every message's row (the sync worker copied them);
#  6. `ci/deploy.sh down` (volumes kept) and `up` again: the rows and the
#     user are still there;
#  7. `ci/deploy.sh down --volumes`.
#
# With --ha it removes any previous rtmc-deploy-ha deployment with its
# volumes, then:
#  1. `ci/deploy.sh up --ha` (timed);
#  2. alice logs in (terminal client on server node 1, node 2 as failover),
#     types a line (TCP) and the gateway gets a POST (HTTP): she prints both,
#     and PostgreSQL holds both rows;
#  3. one engine at a time, its leader is SIGKILLed (`docker kill`): the
#     RabbitMQ node that leads the queue, the Redis primary, the PostgreSQL
#     primary. A message POSTed right after each kill (retried while the
#     gateway answers 503) reaches alice and its row reaches PostgreSQL, and
#     another node takes the lead; the script prints how long each took;
#  4. a new user, added after the three failovers, logs in on server node 2
#     and gets a line alice types; alice printed every message exactly once;
#  5. `ci/deploy.sh down --ha --volumes`.
# Exit 0 only when every check passed; each failure names what was missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HA=0
UP_ARGS=()
for a in "$@"; do
  case "$a" in
    --ha) HA=1 ;;
    --no-build) UP_ARGS+=(--no-build) ;;
    *) echo "usage: ci/deploy-e2e.sh [--ha] [--no-build]" >&2; exit 2 ;;
  esac
done
set -a
# shellcheck disable=SC1091
source ci/deploy/rtmc.env
if [ "$HA" = 1 ]; then
  # shellcheck disable=SC1091
  source ci/deploy/rtmc-ha.env
  UP_ARGS+=(--ha)
fi
set +a
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/rtmc"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rtmc-deploy-e2e.XXXXXX")"
PIDS=()
GATEWAY="http://127.0.0.1:$DEPLOY_GATEWAY_PORT"
HA_FLAG=()
if [ "$HA" = 1 ]; then
  GATEWAY="http://$DEPLOY_GATEWAY_HOST:$DEPLOY_GATEWAY_PORT"
  HA_FLAG=(--ha)
fi

log() { printf '[deploy-e2e] %s\n' "$*" >&2; }
fail() {
  log "FAILED: $*"
  for f in "$WORK"/*.out "$WORK"/*.err; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}
finish() {
  local code=$? kept
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$code" != 0 ]; then
    # The services' states and logs outlive the deployment, for the post-mortem.
    kept="$(mktemp "${TMPDIR:-/tmp}/rtmc-deploy-e2e-logs.XXXXXX")"
    { ci/deploy.sh status ${HA_FLAG[@]+"${HA_FLAG[@]}"}; ci/deploy.sh logs ${HA_FLAG[@]+"${HA_FLAG[@]}"}; } >"$kept" 2>&1 || true
    log "the services' states and logs: $kept"
  fi
  ci/deploy.sh down ${HA_FLAG[@]+"${HA_FLAG[@]}"} --volumes >/dev/null 2>&1 \
    || log "ci/deploy.sh down ${HA_FLAG[*]} --volumes failed"
  rm -rf "$WORK"
  [ "$code" = 0 ] && log "PASSED" || log "exit $code"
}
trap finish EXIT

PG=(psql -h 127.0.0.1 -p "$DEPLOY_POSTGRES_PORT" -U postgres -d "$DEPLOY_DATABASE" -tA)
sql() { "${PG[@]}" -c "$1"; }

# waits (bounded) until FILE has LINE (a fixed string) $3 times (default 1)
wait_line() {
  local file=$1 text=$2 want=${3:-1} secs=${4:-30} n
  for _ in $(seq 1 $((secs * 5))); do
    n="$(grep -cF -- "$text" "$file" 2>/dev/null || true)"
    [ "${n:-0}" -ge "$want" ] && return 0
    sleep 0.2
  done
  fail "$file did not show \"$text\" within ${secs}s"
}

# starts a terminal client; its stdin is a fifo kept open on fd $4
start_client() {
  local name=$1 user=$2 fd=$3
  shift 3
  mkfifo "$WORK/$name.in"
  "$BIN" client "$@" --user "$user" --password "$DEPLOY_PASSWORD" \
    <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  eval "exec $fd>\"$WORK/$name.in\""
  for _ in $(seq 1 100); do
    grep -qs "logged in as" "$WORK/$name.out" "$WORK/$name.err" && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || fail "client $name exited"
    sleep 0.1
  done
  fail "client $name did not log in within 10 s"
}

post() {
  local code
  code="$(curl -s -o "$WORK/post.body" -w '%{http_code}' -X POST \
    "$GATEWAY/v1/service/messages" -H "X-Api-Key: $DEPLOY_API_KEY" \
    -H 'content-type: application/json' -d "{\"sender\":\"e2e-http\",\"body\":\"$1\"}")"
  [ "$code" = 202 ] || fail "POST /v1/service/messages gave $code: $(cat "$WORK/post.body")"
}

# The script's own tools, from Debian's packages when missing (as ci/setup.sh does).
need=()
command -v curl >/dev/null || need+=(curl)
command -v psql >/dev/null || need+=(postgresql-client)
command -v jq >/dev/null || need+=(jq) # ci/deploy.sh leader --ha reads rabbitmqctl's JSON
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
    || fail "could not install ${need[*]} (apt-get install -y ${need[*]})"
fi


# --- the deployment on clusters (--ha) ---------------------------------------

# POSTs body $1 until the gateway accepts it (202), for up to $2 seconds: while
# a failover is under way it may refuse (503) or not answer; anything else
# fails at once.
post_until_accepted() {
  local body=$1 secs=${2:-90} code deadline
  deadline=$((SECONDS + secs))
  while :; do
    code="$(curl -s --max-time 10 -o "$WORK/post.body" -w '%{http_code}' -X POST \
      "$GATEWAY/v1/service/messages" -H "X-Api-Key: $DEPLOY_API_KEY" \
      -H 'content-type: application/json' -d "{\"sender\":\"e2e-http\",\"body\":\"$body\"}")" || true
    case "$code" in
      202) return 0 ;;
      503 | 502 | 504 | 000) ;;
      *) fail "POST /v1/service/messages gave $code: $(cat "$WORK/post.body" 2>/dev/null)" ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || fail "the gateway did not accept \"$body\" within ${secs}s (last: $code)"
    sleep 0.5
  done
}

# SQL on the PostgreSQL node that takes writes now.
ha_sql() {
  local node host port
  for node in "$DEPLOY_PG1_HOST:$DEPLOY_PG1_PORT" "$DEPLOY_PG2_HOST:$DEPLOY_PG2_PORT"; do
    host=${node%:*} port=${node##*:}
    [ "$(psql -h "$host" -p "$port" -U postgres -d "$DEPLOY_DATABASE" -tA -c \
      "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'" 2>/dev/null)" = t ] \
      || continue
    psql -h "$host" -p "$port" -U postgres -d "$DEPLOY_DATABASE" -tA -c "$1"
    return
  done
  return 1
}

# Waits (bounded) until PostgreSQL holds $1 rows of this run's messages.
wait_rows() {
  local want=$1 secs=${2:-90} rows=0 deadline
  deadline=$((SECONDS + secs))
  while [ "$SECONDS" -lt "$deadline" ]; do
    rows="$(ha_sql "SELECT count(*) FROM messages WHERE body LIKE '%$tag'" 2>/dev/null)" || rows="?"
    [ "$rows" = "$want" ] && return 0
    sleep 0.5
  done
  fail "PostgreSQL holds $rows of the $want messages after ${secs}s"
}

# Waits (bounded) until ENGINE is led by a service other than $2; prints it.
wait_new_leader() {
  local engine=$1 old=$2 now="" deadline
  deadline=$((SECONDS + 90))
  while [ "$SECONDS" -lt "$deadline" ]; do
    now="$(ci/deploy.sh leader --ha "$engine" 2>/dev/null)" || now=""
    [ -n "$now" ] && [ "$now" != "$old" ] && { echo "$now"; return 0; }
    sleep 1
  done
  fail "no $engine node other than $old leads 90 s after the kill (last: ${now:-none})"
}

run_ha() {
  log "removing any previous rtmc-deploy-ha deployment (with volumes)"
  ci/deploy.sh down --ha --volumes >/dev/null 2>&1 || true
  t0=$SECONDS
  ci/deploy.sh up "${UP_ARGS[@]}" >"$WORK/up.out" 2>"$WORK/up.err" || fail "ci/deploy.sh up --ha failed"
  log "deploy up --ha until healthy: $((SECONDS - t0)) s ($(grep -o 'every service healthy.*' "$WORK/up.err" | head -1))"
  cat "$WORK/up.out"
  [ -x "$BIN" ] || fail "$BIN missing"
  ci/deploy.sh status --ha >&2 || fail "ci/deploy.sh status --ha failed"

  tag="e2e-$$-$RANDOM"
  s1="$DEPLOY_SERVER1_HOST:$DEPLOY_SERVER1_PORT"
  s2="$DEPLOY_SERVER2_HOST:$DEPLOY_SERVER2_PORT"
  start_client alice "$DEPLOY_USER" 5 --addr "$s1" --addr "$s2"
  echo "tcp-1 $tag" >&5
  post "http-1 $tag"
  wait_line "$WORK/alice.out" "$DEPLOY_USER: tcp-1 $tag"
  wait_line "$WORK/alice.out" "e2e-http: http-1 $tag"
  wait_rows 2
  log "alice logged in on $s1; the TCP and the HTTP message reached her and PostgreSQL"

  local engine leader id killed_at accepted delivered stored rows=2 next
  for engine in rabbitmq redis postgres; do
    leader="$(ci/deploy.sh leader --ha "$engine")" || fail "no $engine leader found"
    id="$(docker ps -q --filter label=com.docker.compose.project=rtmc-deploy-ha \
      --filter "label=com.docker.compose.service=$leader" | head -n 1)"
    [ -n "$id" ] || fail "no running container for $leader"
    docker kill "$id" >/dev/null || fail "docker kill $leader"
    killed_at=$SECONDS
    log "killed the $engine leader $leader (SIGKILL)"
    post_until_accepted "after-$engine $tag" 90
    accepted=$((SECONDS - killed_at))
    wait_line "$WORK/alice.out" "e2e-http: after-$engine $tag" 1 90
    delivered=$((SECONDS - killed_at))
    rows=$((rows + 1))
    wait_rows "$rows" 90
    stored=$((SECONDS - killed_at))
    next="$(wait_new_leader "$engine" "$leader")"
    log "$engine: $next leads now; the message sent after the kill was accepted after ${accepted}s, delivered after ${delivered}s, in PostgreSQL after ${stored}s"
  done
  ci/deploy.sh status --ha >&2 || true

  local bob="bob-$tag"
  RTMC_POSTGRES__URLS="postgres://postgres@$DEPLOY_PG1_HOST:$DEPLOY_PG1_PORT/$DEPLOY_DATABASE,postgres://postgres@$DEPLOY_PG2_HOST:$DEPLOY_PG2_PORT/$DEPLOY_DATABASE" \
    "$BIN" user add "$bob" --password "$DEPLOY_PASSWORD" >/dev/null || fail "adding user $bob after the failovers"
  start_client bob "$bob" 6 --addr "$s2"
  echo "tcp-2 $tag" >&5
  wait_line "$WORK/bob.out" "$DEPLOY_USER: tcp-2 $tag" 1 60
  wait_line "$WORK/alice.out" "$DEPLOY_USER: tcp-2 $tag"
  for m in tcp-1 http-1 after-rabbitmq after-redis after-postgres tcp-2; do
    n="$(grep -cF -- "$m $tag" "$WORK/alice.out")"
    [ "$n" = 1 ] || fail "alice printed \"$m $tag\" $n times (want exactly once)"
  done
  wait_rows 6
  log "after the three failovers $bob logged in on $s2 and got alice's line; alice printed every message once; PostgreSQL holds all 6"
  log "total $((SECONDS - t0)) s"
}

if [ "$HA" = 1 ]; then
  run_ha
  exit 0
fi

log "removing any previous rtmc-deploy deployment (with volumes)"
ci/deploy.sh down --volumes >/dev/null 2>&1 || true

t0=$SECONDS
ci/deploy.sh up "${UP_ARGS[@]}" >"$WORK/up.out" 2>"$WORK/up.err" || fail "ci/deploy.sh up failed"
log "deploy up until healthy: $((SECONDS - t0)) s ($(grep -o 'every service healthy.*' "$WORK/up.err" | head -1))"
cat "$WORK/up.out"
[ -x "$BIN" ] || fail "$BIN missing"

tag="e2e-$$-$RANDOM"
bob="bob-$tag"
RTMC_POSTGRES__URL="postgres://postgres@127.0.0.1:$DEPLOY_POSTGRES_PORT/$DEPLOY_DATABASE" \
  "$BIN" user add "$bob" --password "$DEPLOY_PASSWORD" >/dev/null || fail "adding user $bob"

s1="127.0.0.1:$DEPLOY_SERVER1_PORT"
s2="127.0.0.1:$DEPLOY_SERVER2_PORT"
start_client alice "$DEPLOY_USER" 5 --addr "$s1" --addr "$s2"
start_client bob "$bob" 6 --addr "$s2"
log "alice on $s1, $bob on $s2"

echo "tcp-1 $tag" >&5
post "http-1 $tag"
for c in alice bob; do
  wait_line "$WORK/$c.out" "$DEPLOY_USER: tcp-1 $tag"
  wait_line "$WORK/$c.out" "e2e-http: http-1 $tag"
done
log "both clients saw the TCP and the HTTP message"

# alice's TCP connection (local and peer address), to show it is replaced
conn_of() { ss -tnpH state established 2>/dev/null | grep "pid=$1," | awk '{print $3 "->" $4}' | head -n 1; }
alice_pid="${PIDS[0]}"
before="$(conn_of "$alice_pid")"
[ -n "$before" ] || fail "no TCP connection of alice's client (pid $alice_pid) found"
log "restarting server1 (alice's connection: $before)"
docker-compose -p rtmc-deploy --env-file ci/deploy/rtmc.env -f ci/deploy/docker-compose.yml \
  restart server1 >/dev/null 2>&1 || fail "restarting server1"
post "http-2 $tag"
wait_line "$WORK/alice.out" "e2e-http: http-2 $tag" 1 60
wait_line "$WORK/bob.out" "e2e-http: http-2 $tag"
echo "tcp-2 $tag" >&5
wait_line "$WORK/bob.out" "$DEPLOY_USER: tcp-2 $tag" 1 30
wait_line "$WORK/alice.out" "$DEPLOY_USER: tcp-2 $tag"
for m in "tcp-1" "http-1" "http-2" "tcp-2"; do
  n="$(grep -cF -- "$m $tag" "$WORK/alice.out")"
  [ "$n" = 1 ] || fail "alice printed \"$m $tag\" $n times (want exactly once)"
done
after="$(conn_of "$alice_pid")"
[ -n "$after" ] && [ "$after" != "$before" ] \
  || fail "alice's connection was not replaced by the restart (before $before, after ${after:-none})"
log "alice reconnected ($after) and resumed after server1's restart: every message once"

rows=0
for _ in $(seq 1 100); do
  rows="$(sql "SELECT count(*) FROM messages WHERE body LIKE '%$tag'")"
  [ "$rows" = 4 ] && break
  sleep 0.2
done
[ "$rows" = 4 ] || fail "PostgreSQL holds $rows of the 4 messages after 20 s"
log "PostgreSQL holds the 4 rows"

for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
PIDS=()
exec 5>&- 6>&-

log "down (volumes kept), up again"
ci/deploy.sh down >/dev/null 2>&1 || fail "ci/deploy.sh down"
ci/deploy.sh up --no-build >"$WORK/up2.out" 2>"$WORK/up2.err" || fail "second ci/deploy.sh up failed"
rows="$(sql "SELECT count(*) FROM messages WHERE body LIKE '%$tag'")"
[ "$rows" = 4 ] || fail "after down/up PostgreSQL holds $rows of the 4 rows"
users="$(sql "SELECT count(*) FROM users WHERE user_id IN ('$DEPLOY_USER', '$bob')")"
[ "$users" = 2 ] || fail "after down/up $users of the 2 users exist"
start_client alice2 "$bob" 7 --addr "$s1"
post "http-3 $tag"
wait_line "$WORK/alice2.out" "e2e-http: http-3 $tag"
log "after down/up: rows and users kept, messages flow"
log "total $((SECONDS - t0)) s"
