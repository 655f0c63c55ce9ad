#!/bin/bash
# One-shot set-up of the deployment's PostgreSQL formation
# (docker-compose.ha.yml's db-init, in the rtmc-postgres-ha image):
#   postgres-init.sh MONITOR_HOST MONITOR_PORT DATABASE NODE_HOST:PORT…
# Waits (bounded) until the monitor has one node settled as `primary` and
# every other as `secondary` (from then on a commit is on both and the
# standby can be promoted), then creates DATABASE on the node that takes
# writes when it does not exist yet (the standby gets it by replication).
set -euo pipefail
MONITOR_HOST=${1:?monitor host}; MONITOR_PORT=${2:?monitor port}; DB=${3:?database}
shift 3
[ "$#" -ge 1 ] || { echo "postgres-init.sh: no data node given" >&2; exit 1; }
WAIT_SECS=${RTMC_PG_SETTLE_SECS:-180}
want_secondaries=$(($# - 1))
states=""
i=0
while :; do
  states=$(psql -h "$MONITOR_HOST" -p "$MONITOR_PORT" -U postgres -d pg_auto_failover -tAc \
    "SELECT count(*) FILTER (WHERE reportedstate = 'primary' AND goalstate = 'primary') || ' ' ||
            count(*) FILTER (WHERE reportedstate = 'secondary' AND goalstate = 'secondary')
       FROM pgautofailover.node" 2>&1) || true
  [ "$states" = "1 $want_secondaries" ] && break
  i=$((i + 1))
  if [ "$i" -ge "$WAIT_SECS" ]; then
    echo "postgres-init: the formation did not settle within ${WAIT_SECS}s (primaries secondaries: $states)" >&2
    psql -h "$MONITOR_HOST" -p "$MONITOR_PORT" -U postgres -d pg_auto_failover -c \
      "SELECT nodeid, nodehost, nodeport, reportedstate, goalstate FROM pgautofailover.node" >&2 || true
    exit 1
  fi
  sleep 1
done
for node in "$@"; do
  host=${node%:*}; port=${node##*:}
  writes=$(psql -h "$host" -p "$port" -U postgres -tAc \
    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'" 2>/dev/null) || continue
  [ "$writes" = t ] || continue
  if [ "$(psql -h "$host" -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" = 1 ]; then
    echo "postgres-init: database $DB exists on the primary $node"
  else
    psql -h "$host" -p "$port" -U postgres -c "CREATE DATABASE \"$DB\""
    echo "postgres-init: created database $DB on the primary $node"
  fi
  exit 0
done
echo "postgres-init: no node of $* takes writes" >&2
exit 1
