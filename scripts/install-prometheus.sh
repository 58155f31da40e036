#!/usr/bin/env bash
# Install Debian's `prometheus` package (the server and promtool) for the observability tests; idempotent.
# Usage: scripts/install-prometheus.sh        (as root, or with sudo available)
#
# The tests start their own prometheus on a free port with a temporary config and storage directory, so the
# package's own service must neither start nor hold port 9090: the install runs under a policy-rc.d that
# refuses every service start (the standard Debian mechanism honoured by invoke-rc.d and deb-systemd-invoke),
# and any prometheus service that is running afterwards anyway is stopped and disabled.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "install-prometheus: $(prometheus --version 2>&1 | head -n 1) already installed"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-prometheus: run as root (or install sudo): apt-get install -y prometheus" >&2
    exit 1
  fi
  SUDO="sudo"
fi

POLICY=/usr/sbin/policy-rc.d
own_policy=""
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\n# temporary, from scripts/install-prometheus.sh: start no service while installing\nexit 101\n' \
    | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  own_policy=1
fi
cleanup() { if [[ -n "$own_policy" ]]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
# No Recommends: the node exporter would be one more service nobody asked for.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null

# Belt and braces: whatever init system is there, leave no packaged prometheus daemon running.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/prometheus ]]; then
  $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

prometheus --version 2>&1 | head -n 1
promtool --version 2>&1 | head -n 1
echo "install-prometheus: installed (no service started)"
