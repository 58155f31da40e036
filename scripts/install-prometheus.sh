#!/usr/bin/env bash
# Install Debian's `prometheus` package (the server and promtool) for the observability tests; idempotent, starts
# no service (the tests run their own prometheus on a free port). Usage: scripts/install-prometheus.sh
set -euo pipefail
here=$(dirname "$0")
bash "$here/apt-install.sh" prometheus prometheus
bash "$here/apt-install.sh" promtool prometheus
