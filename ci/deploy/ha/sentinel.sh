#!/bin/bash
# One Redis Sentinel of the deployment (docker-compose.ha.yml runs it in the
# rtmc-redis image with `bash`):
#   sentinel.sh HOST PORT MASTER_NAME PRIMARY_HOST PRIMARY_PORT QUORUM DOWN_AFTER_MS
#   sentinel.sh check HOST PORT MASTER_NAME   (the health check)
# A Sentinel rewrites its configuration file with what it learns (the current
# primary, the replicas, the other Sentinels), so the file is written only
# when the volume holds none yet; a restarted Sentinel keeps what it knew.
# It announces HOST:PORT to the other Sentinels (they find each other through
# the primary), so HOST must be the address the others reach it at.
set -euo pipefail
# Healthy once this Sentinel knows the whole group: both replicas and both
# other Sentinels. From then on it can agree on a failover and carry it out.
if [ "${1:-}" = check ]; then
  [ "$#" = 4 ] || { echo "usage: sentinel.sh check HOST PORT MASTER_NAME" >&2; exit 1; }
  info=$(redis-cli -h "$2" -p "$3" sentinel master "$4")
  awk '{ if (k == "num-slaves") r = $0 + 0; if (k == "num-other-sentinels") o = $0 + 0; k = $0 }
       END { if (r >= 2 && o >= 2) exit 0; print "knows " r + 0 " replicas and " o + 0 " other sentinels"; exit 1 }' <<<"$info"
  exit
fi
[ "$#" = 7 ] || { echo "usage: sentinel.sh HOST PORT MASTER_NAME PRIMARY_HOST PRIMARY_PORT QUORUM DOWN_AFTER_MS" >&2; exit 1; }
HOST=$1 PORT=$2 NAME=$3 PRIMARY_HOST=$4 PRIMARY_PORT=$5 QUORUM=$6 DOWN_AFTER_MS=$7
CONF=/data/sentinel.conf
if [ ! -s "$CONF" ]; then
  cat > "$CONF" <<CONF
port $PORT
bind $HOST
protected-mode no
dir /data
sentinel announce-ip $HOST
sentinel announce-port $PORT
sentinel monitor $NAME $PRIMARY_HOST $PRIMARY_PORT $QUORUM
sentinel down-after-milliseconds $NAME $DOWN_AFTER_MS
sentinel failover-timeout $NAME 10000
sentinel parallel-syncs $NAME 1
CONF
fi
exec redis-server "$CONF" --sentinel
