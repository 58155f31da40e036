#!/usr/bin/env bash
# Make a Docker engine answer on this machine, for the image tests (tests/deploy/test_image.py) and CI.
#
#   scripts/docker-engine.sh            (root; idempotent; called by the tests' `docker` session fixture)
#
# If `docker info` already answers, nothing happens. Otherwise: install Debian's docker.io (engine 20.10 and its
# /usr/bin/docker client) if dockerd is missing, then start
#   dockerd --storage-driver=overlay2 --iptables=false --ip6tables=false --bridge=none
# in the background, logging to $DOCKERD_LOG, and wait until it answers. These flags fit sandboxed CI machines
# (no iptables, no default bridge network): build and run with --network=host there. On a workstation, start
# your engine as usual instead. The engine keeps running after the tests, so later runs reuse it and its images.
set -euo pipefail

DOCKER="${DOCKER:-}"
if [[ -z "$DOCKER" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
LOG="${DOCKERD_LOG:-/var/log/bridge-dockerd.log}"

answers() { "$DOCKER" info >/dev/null 2>&1; }

answers && exit 0
if [[ "$(id -u)" != 0 ]]; then
  echo "docker-engine: no Docker engine answers and starting one needs root" >&2
  exit 1
fi

exec 9>/run/bridge-docker-engine.lock
flock -w 600 9
answers && exit 0  # another run started it while we waited for the lock

if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker-engine: installing docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq docker.io >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq docker.io >/dev/null; }
  [[ -x /usr/bin/docker ]] && DOCKER=/usr/bin/docker
fi

echo "docker-engine: starting dockerd (log: $LOG)" >&2
setsid dockerd --storage-driver=overlay2 --iptables=false --ip6tables=false --bridge=none \
  >>"$LOG" 2>&1 </dev/null 9>&- &
for _ in $(seq 1 120); do
  answers && exit 0
  sleep 0.5
done
echo "docker-engine: dockerd did not answer within 60 s; last lines of $LOG:" >&2
tail -20 "$LOG" >&2
exit 1
