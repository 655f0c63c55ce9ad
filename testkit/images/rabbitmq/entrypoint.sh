#!/bin/sh
# Starts a single RabbitMQ node bound to loopback. Ports come from the
# environment so several brokers can run with host networking.
set -e
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="${RABBITMQ_NODE_PORT:-5672}"
export RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-25672}"
export ERL_EPMD_PORT="${ERL_EPMD_PORT:-4369}"
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_NODENAME="${RABBITMQ_NODENAME:-rabbit${RABBITMQ_NODE_PORT}@localhost}"
export HOME=/var/lib/rabbitmq
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
# The default guest user may log in from loopback only, which is all we use.
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
listeners.tcp.default = 127.0.0.1:${RABBITMQ_NODE_PORT}
loopback_users.guest = true
log.console = true
log.console.level = info
CONF
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq 2>/dev/null || true
exec su rabbitmq -s /bin/sh -c "exec env HOME=/var/lib/rabbitmq RABBITMQ_NODENAME=$RABBITMQ_NODENAME RABBITMQ_NODE_PORT=$RABBITMQ_NODE_PORT RABBITMQ_DIST_PORT=$RABBITMQ_DIST_PORT ERL_EPMD_PORT=$ERL_EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=\"$RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS\" /usr/sbin/rabbitmq-server"
