#!/bin/sh
# Starts one node of a RabbitMQ cluster bound to loopback, for the kit's
# RabbitCluster. It runs in the rtmc-rabbitmq image with this script as its
# command (`sh -c`), so the cluster needs no image of its own.
#
# Every node of the cluster shares the host (host networking), so each has
# its own AMQP port (RABBITMQ_NODE_PORT), its own distribution port
# (RABBITMQ_DIST_PORT) and its own node name, rabbit<AMQP port>@localhost.
# Name lookup: all nodes register with ONE epmd on ERL_EPMD_PORT, run by a
# container of its own that lives as long as the cluster (`-start_epmd
# false` here). Why not the alternatives: an epmd per node on its own port
# cannot see the other nodes (a node asks its own ERL_EPMD_PORT for a peer's
# name); `-erl_epmd_port` without epmd assumes every node listens on the same
# distribution port, impossible on one host; and letting the first node start
# the shared epmd ties it to that node's container, so killing that node
# wipes every registration and a restarted node can no longer find the
# survivors.
#
# The nodes join through classic-config peer discovery (all names listed);
# the kit starts the first node alone, then the others, so they join it
# instead of racing to form clusters of their own.
set -e
: "${RABBITMQ_NODE_PORT:?}" "${RABBITMQ_DIST_PORT:?}" "${ERL_EPMD_PORT:?}"
: "${RTMC_ERLANG_COOKIE:?}" "${RTMC_CLUSTER_NODES:?}"
NODENAME="rabbit${RABBITMQ_NODE_PORT}@localhost"
export HOME=/var/lib/rabbitmq
# One Erlang cookie for every node (and for rabbitmqctl run as this user).
printf '%s' "$RTMC_ERLANG_COOKIE" > "$HOME/.erlang.cookie"
chmod 400 "$HOME/.erlang.cookie"
{
  echo "listeners.tcp.default = 127.0.0.1:${RABBITMQ_NODE_PORT}"
  echo "loopback_users.guest = true"
  echo "log.console = true"
  echo "log.console.level = info"
  echo "cluster_formation.peer_discovery_backend = classic_config"
  i=1
  for node in $RTMC_CLUSTER_NODES; do
    echo "cluster_formation.classic_config.nodes.$i = $node"
    i=$((i + 1))
  done
} > /etc/rabbitmq/rabbitmq.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
exec su rabbitmq -s /bin/sh -c "exec env HOME=$HOME RABBITMQ_NODENAME=$NODENAME \
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$RABBITMQ_NODE_PORT \
  RABBITMQ_DIST_PORT=$RABBITMQ_DIST_PORT ERL_EPMD_PORT=$ERL_EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1 \
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false' \
  /usr/sbin/rabbitmq-server"
