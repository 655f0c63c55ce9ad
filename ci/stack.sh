#!/usr/bin/env bash
# Brings up the whole stack (containers and every rtmc component) and prints
# where to connect. Arguments go to rtmc-stack (see --help); `ci/stack.sh --ha`
# runs it on the RabbitMQ, Redis and PostgreSQL clusters. Shares the one
# release build of every README script, so after ci/run.sh it compiles nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup_in_background
release_build
wait_for_setup
exec "$ROOT/target/release/rtmc-stack" "$@"
