#!/usr/bin/env bash
# Install Debian's `redis-server` for the tests (they start private servers on free ports); idempotent, starts no
# service. Usage: scripts/install-redis.sh
set -euo pipefail
bash "$(dirname "$0")/apt-install.sh" redis-server redis-server
