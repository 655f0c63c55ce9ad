#!/bin/sh
# One member of a pg_auto_failover formation on 127.0.0.1 (host networking):
#   node.sh monitor PORT            the monitor, on PORT
#   node.sh postgres PORT MONITOR   a data node on PORT, registered with the
#                                   monitor on port MONITOR (the first to
#                                   register becomes primary, the next its
#                                   standby, with synchronous replication)
# Trust authentication on loopback, no TLS: the test kit's network never
# leaves 127.0.0.1. Health checks are made fast (1 s period, unhealthy after
# 3 s) so a suite's failover takes seconds, not the default 20 s or more.
set -e
ROLE="$1"; PORT="$2"; MONITOR="$3"
export PATH="/usr/lib/postgresql/15/bin:$PATH"
export PGDATA="/var/lib/rtmc-pg/$ROLE"
export XDG_CONFIG_HOME=/var/lib/rtmc-pg/config XDG_DATA_HOME=/var/lib/rtmc-pg/share
cd /var/lib/rtmc-pg
if [ "$ROLE" = monitor ]; then
  su postgres -c "pg_autoctl create monitor --pgdata $PGDATA --pgport $PORT --hostname 127.0.0.1 \
    --listen 127.0.0.1 --auth trust --no-ssl" >/var/lib/rtmc-pg/create.log 2>&1 || { cat /var/lib/rtmc-pg/create.log; exit 1; }
  su postgres -c "printf '%s\n' 'host all all 127.0.0.1/32 trust' >> $PGDATA/pg_hba.conf"
  su postgres -c "printf '%s\n' \
    'pgautofailover.health_check_period = 1000' \
    'pgautofailover.health_check_timeout = 1000' \
    'pgautofailover.health_check_max_retries = 1' \
    'pgautofailover.health_check_retry_delay = 500' \
    'pgautofailover.node_considered_unhealthy_timeout = 3000' \
    'pgautofailover.primary_demote_timeout = 5000' >> $PGDATA/postgresql.conf"
else
  su postgres -c "pg_autoctl create postgres --pgdata $PGDATA --pgport $PORT --hostname 127.0.0.1 \
    --listen 127.0.0.1 --auth trust --no-ssl --dbname postgres \
    --monitor postgres://autoctl_node@127.0.0.1:$MONITOR/pg_auto_failover?sslmode=disable" \
    >/var/lib/rtmc-pg/create.log 2>&1 || { cat /var/lib/rtmc-pg/create.log; exit 1; }
  su postgres -c "printf '%s\n' 'host all all 127.0.0.1/32 trust' 'host replication all 127.0.0.1/32 trust' >> $PGDATA/pg_hba.conf"
fi
# Postgres may still run from the create step: make it read the lines above.
su postgres -c "pg_ctl reload -D $PGDATA" >/dev/null 2>&1 || true
echo "rtmc: pg_autoctl $ROLE created; running"
exec su postgres -c "exec pg_autoctl run --pgdata $PGDATA"
