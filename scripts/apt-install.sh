#!/usr/bin/env bash
# Install Debian packages that bring servers the tests start themselves, without starting their services.
# Usage: scripts/apt-install.sh COMMAND PACKAGE [SERVICE]     (as root, or with sudo available)
#   COMMAND  a binary the package provides: nothing is done when it is already on PATH (idempotent)
#   SERVICE  the init service the package would start (default: PACKAGE): stopped and disabled if it runs anyway
#
# The tests run their own server processes on free ports with temporary data, so a packaged service must neither
# start nor hold the default port: the install runs under a policy-rc.d that refuses every service start (the
# standard Debian mechanism honoured by invoke-rc.d and deb-systemd-invoke).
set -euo pipefail
COMMAND=$1 PACKAGE=$2 SERVICE=${3:-$2}
TAG="apt-install $PACKAGE"

if command -v "$COMMAND" >/dev/null 2>&1; then
  echo "$TAG: $COMMAND already installed ($(command -v "$COMMAND"))"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "$TAG: run as root (or install sudo): apt-get install -y $PACKAGE" >&2
    exit 1
  fi
  SUDO="sudo"
fi

POLICY=/usr/sbin/policy-rc.d
own_policy=""
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\n# temporary, from scripts/apt-install.sh: start no service while installing\nexit 101\n' \
    | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  own_policy=1
fi
cleanup() { if [[ -n "$own_policy" ]]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show "$PACKAGE" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
# No Recommends: extra services nobody asked for.
$SUDO apt-get install -y -qq --no-install-recommends "$PACKAGE" >/dev/null

# Belt and braces: whatever init system is there, leave no packaged daemon running.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  $SUDO systemctl disable --now "$SERVICE.service" >/dev/null 2>&1 || true
elif [[ -x "/etc/init.d/$SERVICE" ]]; then
  $SUDO "/etc/init.d/$SERVICE" stop >/dev/null 2>&1 || true
fi
command -v "$COMMAND" >/dev/null || { echo "$TAG: $COMMAND still missing after the install" >&2; exit 1; }
echo "$TAG: installed $("$COMMAND" --version 2>&1 | head -n 1) (no service started)"
