#!/bin/sh
# Starts PostgreSQL on 127.0.0.1:$1 as user postgres. fsync stays on: the
# durability suites rely on committed rows surviving a restart.
set -e
PORT="${1:-5432}"
exec su postgres -c "exec /usr/lib/postgresql/15/bin/postgres -D /var/lib/rtmc-pg/data -p $PORT -k /tmp \
  -c listen_addresses=127.0.0.1 -c max_connections=500 -c shared_buffers=128MB"
