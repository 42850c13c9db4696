#!/usr/bin/env bash
# Make sure the system library libopus is present (opuslib loads it with ctypes).
# Installs Debian's libopus0 when it is missing and we are root; otherwise says what to do.
set -euo pipefail
PY="${1:-python3}"
have_opus() {
  "$PY" -c 'import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library("opus") else 1)'
}
have_opus && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "callbridge: libopus missing; installing Debian package libopus0" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends libopus0 >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends libopus0 >/dev/null; }
  have_opus && exit 0
fi
echo "callbridge: libopus is required: install it with 'sudo apt-get install libopus0' (Debian/Ubuntu) or 'brew install opus' (macOS), then re-run." >&2
exit 1
