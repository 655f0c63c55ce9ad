#!/bin/bash
# One member of the deployment's pg_auto_failover formation
# (docker-compose.ha.yml runs it in the rtmc-postgres-ha image in place of
# the test kit's node.sh, which it follows):
#   postgres-node.sh monitor  HOST PORT TRUST_CIDR
#   postgres-node.sh postgres HOST PORT TRUST_CIDR MONITOR_HOST MONITOR_PORT
# HOST is what pg_autoctl's --hostname and --listen get: the address this
# member listens on and the others (monitor, standby, health checks) reach
# it at. TRUST_CIDR is trusted in pg_hba.conf (all databases, replication):
# the loopback network here, no passwords, no TLS.
# The first data node to register becomes the primary, the next its
# synchronous standby. The monitor's health checks are fast (1 s period,
# unhealthy after 3 s) so a failover takes seconds; on a real network raise
# them (pg_auto_failover's defaults are 5 s and 20 s).
# The volume keeps the member: a restarted container runs it again without
# creating it anew.
set -euo pipefail
ROLE=${1:?role}; HOST=${2:?host}; PORT=${3:?port}; CIDR=${4:?trust cidr}
export PATH="/usr/lib/postgresql/15/bin:$PATH"
export PGDATA="/var/lib/rtmc-pg/$ROLE"
export XDG_CONFIG_HOME=/var/lib/rtmc-pg/config XDG_DATA_HOME=/var/lib/rtmc-pg/share
cd /var/lib/rtmc-pg
cfg="$XDG_CONFIG_HOME/pg_autoctl$PGDATA/pg_autoctl.cfg"
state="$XDG_DATA_HOME/pg_autoctl$PGDATA/pg_autoctl.state"
init="$XDG_DATA_HOME/pg_autoctl$PGDATA/pg_autoctl.init"
create() {
  su postgres -c "$1" >/var/lib/rtmc-pg/create.log 2>&1 || { cat /var/lib/rtmc-pg/create.log; exit 1; }
}
if [ "$ROLE" = monitor ]; then
  if [ -f "$PGDATA/PG_VERSION" ] && [ -f "$cfg" ]; then
    echo "rtmc: monitor exists; running"
  else
    create "pg_autoctl create monitor --pgdata $PGDATA --pgport $PORT --hostname $HOST \
      --listen $HOST --auth trust --no-ssl"
    su postgres -c "printf '%s\n' 'host all all $CIDR trust' >> $PGDATA/pg_hba.conf"
    su postgres -c "printf '%s\n' \
      'pgautofailover.health_check_period = 1000' \
      'pgautofailover.health_check_timeout = 1000' \
      'pgautofailover.health_check_max_retries = 1' \
      'pgautofailover.health_check_retry_delay = 500' \
      'pgautofailover.node_considered_unhealthy_timeout = 3000' \
      'pgautofailover.primary_demote_timeout = 5000' >> $PGDATA/postgresql.conf"
  fi
elif [ "$ROLE" = postgres ]; then
  MONITOR_HOST=${5:?monitor host}; MONITOR_PORT=${6:?monitor port}
  if [ -f "$state" ] && [ ! -f "$init" ]; then
    echo "rtmc: data node exists; running"
  else
    create "pg_autoctl create postgres --pgdata $PGDATA --pgport $PORT --hostname $HOST \
      --listen $HOST --auth trust --no-ssl --dbname postgres \
      --monitor postgres://autoctl_node@$MONITOR_HOST:$MONITOR_PORT/pg_auto_failover?sslmode=disable"
    su postgres -c "printf '%s\n' 'host all all $CIDR trust' 'host replication all $CIDR trust' >> $PGDATA/pg_hba.conf"
  fi
else
  echo "usage: postgres-node.sh monitor|postgres HOST PORT TRUST_CIDR [MONITOR_HOST MONITOR_PORT]" >&2
  exit 1
fi
# Postgres may still run from the create step: make it read the lines above.
su postgres -c "pg_ctl reload -D $PGDATA" >/dev/null 2>&1 || true
echo "rtmc: pg_autoctl $ROLE on $HOST:$PORT; running"
exec su postgres -c "exec pg_autoctl run --pgdata $PGDATA"
