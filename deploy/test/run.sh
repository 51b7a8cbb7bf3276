#!/usr/bin/env bash
# The cluster fault tests in one command: builds what they need and runs them.
#
#   deploy/test/run.sh                    # short form: each fault once (what CI runs)
#   CLUSTER_ROUNDS=3 deploy/test/run.sh   # long form: each fault three times in its run
#   deploy/test/run.sh api_container_killed     # one test (a cargo test filter)
#
# 1. the base and service images, from Debian's packages when they are missing
#    (deploy/images/build.sh: no registry needed);
# 2. the strata image from deploy/Dockerfile, as `strata:dev` (`CLUSTER_IMAGE` to name
#    another; `BUILD=0` uses the image as it is);
# 3. `cargo test -p strata --test cluster`: each test brings up deploy/compose.yaml under its
#    own project, loads it through the gateway, injects its fault, checks the invariants and
#    removes the project (crates/strata/tests/cluster/).
#
# Prints each fault's figures as it ends; the last line is one JSON object with all of them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CLUSTER_IMAGE=${CLUSTER_IMAGE:-strata:dev}
BUILD=${BUILD:-1}

log() { printf '== %s\n' "$*" >&2; }

bash "$ROOT/deploy/images/build.sh"
if [[ $BUILD == 1 ]] || ! docker image inspect "$CLUSTER_IMAGE" >/dev/null 2>&1; then
    log "building $CLUSTER_IMAGE from deploy/Dockerfile"
    docker build -q -f "$ROOT/deploy/Dockerfile" -t "$CLUSTER_IMAGE" "$ROOT" >/dev/null
fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT
log "cluster tests"
(cd "$ROOT" && CLUSTER_REPORT=$report cargo test -p strata --test cluster -- \
    --test-threads=1 "$@")
python3 -c '
import json, sys
faults = {}
for line in open(sys.argv[1]):
    entry = json.loads(line)
    faults[entry.pop("fault")] = entry
print(json.dumps({"faults": faults}))
' "$report"
