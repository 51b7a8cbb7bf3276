#!/usr/bin/env bash
# The fuzz targets' short run (CI) or long run: installs cargo-fuzz when missing, builds every
# target once, then runs each for SECONDS (default 60), one after the other, from its seeds
# in fuzz/seeds/<target> (the corpus grows in fuzz/corpus/<target>, not checked in). Fails on
# the first target that crashes; libFuzzer saves the crashing input in fuzz/artifacts/<target>/
# and the run's log is fuzz/artifacts/<target>.log.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# The build uses nightly (libFuzzer's instrumentation) with overflow checks and debug
# assertions on, and no sanitizer: the crates forbid `unsafe`, so AddressSanitizer would
# slow the build and the runs for little.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

flags=(--sanitizer none --debug-assertions)
cargo +nightly fuzz build "${flags[@]}"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

mkdir -p artifacts
for target in "${targets[@]}"; do
    printf '== fuzz %s for %ss\n' "$target" "$seconds" >&2
    mkdir -p "corpus/$target"
    dict=()
    if [ -f "dicts/$target.dict" ]; then
        dict=("-dict=dicts/$target.dict")
    fi
    log="artifacts/$target.log"
    if ! cargo +nightly fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        printf '== fuzz %s: crashed (input in fuzz/artifacts/%s/)\n' "$target" "$target" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added):' "$log" \
        | tr '\n' ' ' >&2
    printf '\n' >&2
done
