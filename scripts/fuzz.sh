#!/usr/bin/env bash
# Coverage-guided fuzzing of ferrule's parsers with libFuzzer on the stable toolchain (docs/fuzzing.md).
#
# Usage: scripts/fuzz.sh TARGET|all [SECONDS] [libFuzzer flags...]
#   Builds the instrumented targets, replays the committed seeds (fuzz/seeds/TARGET) and the local corpus
#   (fuzz/corpus/TARGET, kept between runs, not committed), then fuzzes each target for SECONDS (default 60;
#   0 only replays). A crash stops the run with the input saved under fuzz/artifacts/TARGET/ and a non-zero exit;
#   reproduce it with: scripts/fuzz.sh TARGET 0 fuzz/artifacts/TARGET/crash-...
#   scripts/fuzz.sh list   prints the targets.
# Environment: FUZZ_JOBS=N runs N fuzzing processes per target (default 1: the CPU time is SECONDS x N).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(redis_request redis_reply memcache_request memcache_reply config cluster)

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
if [ "$1" = "list" ]; then
    printf '%s\n' "${TARGETS[@]}"
    exit 0
fi
which_targets=("$1")
[ "$1" = "all" ] && which_targets=("${TARGETS[@]}")
for target in "${which_targets[@]}"; do
    [[ " ${TARGETS[*]} " == *" $target "* ]] || { echo "fuzz.sh: unknown target $target (one of: ${TARGETS[*]} all)" >&2; exit 2; }
done
seconds="${2:-60}"
shift $(( $# < 2 ? $# : 2 ))

if ! command -v c++ >/dev/null; then
    echo "fuzz.sh: no C++ compiler (libfuzzer-sys compiles libFuzzer); install one: sudo apt-get install g++" >&2
    exit 1
fi

# libFuzzer's coverage instrumentation through rustc's stable -C flags, as cargo-fuzz passes them (without its
# default AddressSanitizer, which needs nightly; the parsers have no unsafe code). --target keeps these flags off
# build scripts and proc macros, which run on the host uninstrumented. `fuzzing` turns off DNS lookups in config.
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
echo "== fuzz: building the instrumented targets"
cargo build --locked --release --manifest-path fuzz/Cargo.toml --target "$host" --bins
bin_dir="fuzz/target/$host/release"

# Runs one libFuzzer command, showing its summary, or its whole tail and the saved input when it fails.
run() {
    if "$@" >"$log" 2>&1; then
        grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    else
        tail -n 40 "$log" >&2
        echo "fuzz.sh: $target failed; the input is in $artifacts/, the output in $log" >&2
        exit 1
    fi
}

for target in "${which_targets[@]}"; do
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    flags=(-artifact_prefix="$artifacts/" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    [ -f "fuzz/dicts/$target.dict" ] && flags+=(-dict="fuzz/dicts/$target.dict")
    if [ $# -gt 0 ] && [ -f "$1" ]; then
        # Reproduce given inputs.
        "$bin_dir/$target" "${flags[@]}" "$@"
        continue
    fi
    log="fuzz/artifacts/$target/last-run.log"
    echo "== fuzz: $target: replaying seeds and corpus"
    run "$bin_dir/$target" "${flags[@]}" -runs=0 "$corpus" "fuzz/seeds/$target" "$@"
    [ "$seconds" -gt 0 ] || continue
    echo "== fuzz: $target: fuzzing for ${seconds}s x ${FUZZ_JOBS:-1} process(es)"
    jobs=()
    [ "${FUZZ_JOBS:-1}" -gt 1 ] && jobs=(-fork="$FUZZ_JOBS")
    run "$bin_dir/$target" "${flags[@]}" "${jobs[@]}" -max_total_time="$seconds" "$corpus" "fuzz/seeds/$target" "$@"
done
echo "fuzz.sh: done"
