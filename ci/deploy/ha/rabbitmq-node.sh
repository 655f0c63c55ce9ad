#!/bin/bash
# One node of the deployment's RabbitMQ cluster (docker-compose.ha.yml runs
# it in the rtmc-rabbitmq image with `sh`). The same approach as the test
# kit's testkit/images/rabbitmq/cluster-node.sh, with the addresses, the node
# name and the broker user taken from the env file so that a node can run on
# a host of its own:
#   RABBITMQ_NODE_PORT, RABBITMQ_DIST_PORT  AMQP and Erlang distribution ports
#   ERL_EPMD_PORT        the port mapper (the rabbitmq-epmd service) on this host
#   RTMC_NODE_HOST       the IP address AMQP and distribution bind to
#   RTMC_NODE_NAME       this node's Erlang name (rabbit<port>@localhost on one host)
#   RTMC_CLUSTER_NODES   every node's name, space-separated (classic-config discovery)
#   RTMC_ERLANG_COOKIE   the cluster's shared secret
#   RTMC_RABBITMQ_USER, RTMC_RABBITMQ_PASSWORD  the user created on first start
# Nodes do not start an epmd of their own (`-start_epmd false`): on one host
# all three register with the one rabbitmq-epmd, which outlives any node
# (cluster-node.sh says why); across hosts each host runs its own.
set -euo pipefail
: "${RABBITMQ_NODE_PORT:?}" "${RABBITMQ_DIST_PORT:?}" "${ERL_EPMD_PORT:?}" "${RTMC_NODE_HOST:?}"
: "${RTMC_NODE_NAME:?}" "${RTMC_CLUSTER_NODES:?}" "${RTMC_ERLANG_COOKIE:?}"
: "${RTMC_RABBITMQ_USER:?}" "${RTMC_RABBITMQ_PASSWORD:?}"
case "$RTMC_NODE_HOST" in
  *[!0-9.]* | "") echo "RTMC_NODE_HOST must be an IPv4 address, got '$RTMC_NODE_HOST'" >&2; exit 1 ;;
esac
export HOME=/var/lib/rabbitmq
printf '%s' "$RTMC_ERLANG_COOKIE" > "$HOME/.erlang.cookie"
chmod 400 "$HOME/.erlang.cookie"
{
  echo "listeners.tcp.default = ${RTMC_NODE_HOST}:${RABBITMQ_NODE_PORT}"
  echo "default_user = ${RTMC_RABBITMQ_USER}"
  echo "default_pass = ${RTMC_RABBITMQ_PASSWORD}"
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
chmod 0640 /etc/rabbitmq/rabbitmq.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
# The distribution listener on this node's address only: {a,b,c,d}.
interface="{$(printf '%s' "$RTMC_NODE_HOST" | tr . ,)}"
exec su rabbitmq -s /bin/sh -c "exec env HOME=$HOME RABBITMQ_NODENAME=$RTMC_NODE_NAME \
  RABBITMQ_NODE_IP_ADDRESS=$RTMC_NODE_HOST RABBITMQ_NODE_PORT=$RABBITMQ_NODE_PORT \
  RABBITMQ_DIST_PORT=$RABBITMQ_DIST_PORT ERL_EPMD_PORT=$ERL_EPMD_PORT \
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface $interface -start_epmd false' \
  /usr/sbin/rabbitmq-server"
