#!/bin/sh
# Starts nats-server on 127.0.0.1:$1 with JetStream (file storage under
# /data/jetstream). Limits are raised, never lowered, so the server cuts no
# subscriber off where the Redis floor would not either (the floor turns
# Redis's pub/sub output-buffer limit off): max_pending, the bytes the server
# queues for one slow client before it disconnects it (default 64 MB), and
# write_deadline, how long one flush to a client may block (default 10 s).
# max_connections (default 65,536) and max_payload (1 MB) already suffice.
set -e
PORT="${1:-4222}"
cat > /etc/rtmc-nats.conf <<CONF
listen: 127.0.0.1:${PORT}
max_pending: 1GB
write_deadline: "60s"
jetstream {
  store_dir: "/data/jetstream"
}
CONF
exec nats-server -c /etc/rtmc-nats.conf
