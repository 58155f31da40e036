#!/usr/bin/env bash
# Install the Azurite storage emulator locally (no -g) into .tools/azurite; idempotent.
# Usage: scripts/install-azurite.sh [VERSION]     (default: the pinned version below)
# The launcher testbed/azurite.py looks for .tools/azurite/node_modules/.bin/azurite-blob.
set -euo pipefail

VERSION="${1:-${AZURITE_VERSION:-3.37.0}}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${AZURITE_PREFIX:-$ROOT/.tools/azurite}"
BIN="$PREFIX/node_modules/.bin/azurite-blob"

if ! command -v npm >/dev/null 2>&1; then
  echo "install-azurite: npm not found; install Node.js >= 18 first" >&2
  exit 1
fi

if [[ -x "$BIN" ]]; then
  installed="$(node -p "require('$PREFIX/node_modules/azurite/package.json').version" 2>/dev/null || true)"
  if [[ "$installed" == "$VERSION" ]]; then
    echo "install-azurite: azurite $installed already installed in $PREFIX"
    exit 0
  fi
  echo "install-azurite: found azurite ${installed:-unknown}, installing $VERSION"
fi

mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "azurite@$VERSION"
"$BIN" --version >/dev/null
echo "install-azurite: azurite $VERSION installed; blob service: $BIN"
