#!/usr/bin/env bash
# TEST-ONLY fallback: build a local stand-in for the `python:3.11-slim` base image from Debian packages,
# for machines that cannot pull from a container registry (the CI machines of this project). Users build the
# real image on the real base: never push an image built on this stand-in.
#
#   scripts/standin-base.sh [TAG]        (default TAG: python:3.11-slim; needs root, debootstrap, a docker engine)
#
# What it builds: `debootstrap --variant=minbase bookworm` (Debian 12, whose python3 is 3.11) from the machine's
# own Debian mirror, with python3, python3-venv, python3-pip, ca-certificates, netbase and tzdata; `python`
# resolves to python3. Where HTTPS is intercepted by a local certificate authority (CA certificates added under
# /usr/local/share/ca-certificates), those are copied in and trusted, and pip is pointed at the system CA bundle
# in /etc/pip.conf, so `pip install` works inside `docker build` as on the host. About a minute.
# The image's comment (docker history / inspect) says it is this stand-in.
set -euo pipefail

TAG="${1:-python:3.11-slim}"
DOCKER="${DOCKER:-docker}"
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,netbase,tzdata

mirror() {
  # The first Debian archive this machine's apt uses (deb822 sources or sources.list), else the public one.
  local uri=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [[ -z "$uri" && -r /etc/apt/sources.list ]]; then
    uri="$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)"
  fi
  echo "${DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

if [[ "$(id -u)" != 0 ]]; then
  echo "standin-base: debootstrap needs root" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/standin-base.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

MIRROR="$(mirror)"
echo "standin-base: debootstrap $SUITE from $MIRROR (TEST-ONLY stand-in for $TAG)" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -30 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"

ln -sf python3 "$ROOTFS/usr/bin/python"
shopt -s nullglob
local_cas=(/usr/local/share/ca-certificates/*.crt)
if ((${#local_cas[@]})); then
  cp "${local_cas[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
fi
chroot "$ROOTFS" update-ca-certificates >/dev/null
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$ROOTFS/etc/pip.conf"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
  "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/*

tar -C "$ROOTFS" --numeric-owner -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "TEST-ONLY stand-in for $TAG: Debian $SUITE python3 built by scripts/standin-base.sh" \
  - "$TAG" >/dev/null
echo "standin-base: built $TAG (stand-in)" >&2
