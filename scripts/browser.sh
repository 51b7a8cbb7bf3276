#!/usr/bin/env bash
# Installs Chromium and chromedriver from Debian's packages, for the browser tests
# (crates/strata/tests/browser). Does nothing when both are there. Developers and `.ci/run`
# use this same script. Prints chromedriver's version.
set -euo pipefail

log() { printf '== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  log "chromium and chromedriver are installed"
else
  log "installing chromium and chromium-driver"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi
/usr/bin/chromedriver --version
