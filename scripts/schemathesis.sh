#!/usr/bin/env bash
# Installs schemathesis (from PyPI, a pinned version) into a virtualenv of its own at
# ${XDG_CACHE_HOME:-$HOME/.cache}/strata/schemathesis, where the api's contract test
# (crates/strata-api/tests/api/schemathesis.rs) looks for `bin/st`. Does nothing when that
# version is there already. Needs python3 with venv (installed from Debian's packages when
# missing). Developers and `.ci/run` use this same script. Prints the path of `st`.
set -euo pipefail

VERSION=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/strata/schemathesis"

log() { printf '== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -x "$venv/bin/st" ] && "$venv/bin/st" --version 2>/dev/null | grep -q "version $VERSION\$"; then
  log "schemathesis $VERSION is installed"
else
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    log "installing python3-venv"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  log "installing schemathesis $VERSION into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi
echo "$venv/bin/st"
