#!/usr/bin/env bash
# Fuzzes the HTTP gateway against its own OpenAPI document with schemathesis
# (installed by ci/setup.sh into a venv): starts a whole stack (rtmc-stack)
# on free loopback ports, runs `st run` on /openapi.json with every check,
# an API key and a session token, and fails when schemathesis finds a
# response the document does not describe or a 5xx.
#
# Environment:
#   RTMC_SCHEMATHESIS_VENV  the venv (default target/schemathesis-venv)
#   RTMC_STACK_BIN          an rtmc-stack binary to use instead of the release build
#   RTMC_SCHEMATHESIS_EXAMPLES  examples per operation (default 50)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export RTMC_SCHEMATHESIS=1
ST="${RTMC_SCHEMATHESIS_VENV:-$ROOT/target/schemathesis-venv}/bin/st"
STACK="${RTMC_STACK_BIN:-}"
if [ -z "$STACK" ]; then
  setup_in_background
  release_build
  wait_for_setup
  STACK="$ROOT/target/release/rtmc-stack"
else
  "$ROOT/ci/setup.sh"
fi
[ -x "$ST" ] || { echo "[schemathesis] $ST missing: run ci/setup.sh" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tcp="127.0.0.1:$(free_port)"
http="127.0.0.1:$(free_port)"
log="$(mktemp /tmp/rtmc-schemathesis-stack.XXXXXX)"
"$STACK" --server "$tcp" --gateway "$http" --users st-user --password st-password --run-secs 1800 >"$log" 2>&1 &
stack_pid=$!
stop_stack() {
  kill -INT "$stack_pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$stack_pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL "$stack_pid" 2>/dev/null || true
}
trap stop_stack EXIT

for _ in $(seq 1 360); do
  grep -q "rtmc stack is up" "$log" && break
  kill -0 "$stack_pid" 2>/dev/null || { cat "$log" >&2; echo "[schemathesis] the stack did not start" >&2; exit 1; }
  sleep 0.5
done
grep -q "rtmc stack is up" "$log" || { cat "$log" >&2; echo "[schemathesis] the stack did not start within 180 s" >&2; exit 1; }
key="$(sed -n 's/.*(X-Api-Key: \(.*\))$/\1/p' "$log" | head -1)"
token="$(curl -sf -X POST "http://$http/v1/login" -H 'content-type: application/json' \
  -d '{"user_id":"st-user","password":"st-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_token"])')"

# Each publishing route with its own credential: the API key for the
# service route, the session token for the user route.
run() {
  "$ST" run "http://$http/openapi.json" --checks all \
    --hypothesis-max-examples "${RTMC_SCHEMATHESIS_EXAMPLES:-50}" \
    --hypothesis-seed 8 --request-timeout 20000 --exitfirst "$@"
}
run --include-path /v1/service/messages -H "X-Api-Key: $key"
run --include-path /v1/messages -H "Authorization: Bearer $token"
run --include-path /v1/login
# The room routes likewise: the session token for the users' ones, the API
# key for the service's.
run --include-path-regex '^/v1/rooms' -H "Authorization: Bearer $token"
run --include-path-regex '^/v1/service/rooms/' -H "X-Api-Key: $key"
run --include-path-regex '^/(healthz|readyz|metrics|openapi.json)$'
echo "[schemathesis] the gateway matches its OpenAPI document"
