#!/usr/bin/env bash
# GET/SET of two ferrule builds, each beside twemproxy, alternated: the "before and after" of a change in one run.
# Each pair runs scripts/bench-redis-benchmark.sh once per build (ROUNDS rounds each, twemproxy and ferrule
# alternating inside), the two builds in turns (which goes first alternates from pair to pair), so that load from
# elsewhere on the machine falls on both alike. Prints every row, then one table: per workload, each build's median
# ratio to twemproxy (and the per-invocation medians), ops/s and ferrule's CPU per request.
#
# Usage: scripts/bench-before-after.sh [PAIRS]         (default 3; about 2 x ROUNDS x 40 s per pair at N=300000)
# Environment: BEFORE, AFTER: a commit (built in release mode from `git archive` into /tmp) or the path of a ferrule
#   binary. Defaults: BEFORE = the first parent of the idle-memory merge (d407ac5), AFTER = HEAD.
#   ROUNDS (rounds per invocation, default 2), N (requests per run, default 200000), and whatever
#   scripts/bench-redis-benchmark.sh takes (CLIENTS, PIPELINES, TESTS, LOADGEN_CPU, PROXY_CPU, ...).
#   BUILD_DIR (default /tmp/ferrule-before-after): where the trees, the shared target dir and the binaries go.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS="${1:-3}"
ROUNDS="${ROUNDS:-2}"
export N="${N:-200000}"
BEFORE="${BEFORE:-d407ac5}"
AFTER="${AFTER:-HEAD}"
BUILD_DIR="${BUILD_DIR:-/tmp/ferrule-before-after}"
mkdir -p "$BUILD_DIR"

# A binary path as is; a commit built once (the binary is named after the commit, so a re-run reuses it).
binary_of() {
    local what=$1 sha tree
    if [ -x "$what" ] && [ -f "$what" ]; then
        echo "$what"
        return
    fi
    sha=$(git rev-parse --short=12 "$what^{commit}")
    if [ ! -x "$BUILD_DIR/ferrule-$sha" ]; then
        tree="$BUILD_DIR/tree-$sha"
        rm -rf "$tree" && mkdir -p "$tree"
        git archive "$sha" | tar -x -C "$tree"
        echo "building $what ($sha) in release mode..." >&2
        (cd "$tree" && CARGO_TARGET_DIR="$BUILD_DIR/target" cargo build --release -q --bin ferrule) >&2
        cp "$BUILD_DIR/target/release/ferrule" "$BUILD_DIR/ferrule-$sha"
        rm -rf "$tree"
    fi
    echo "$BUILD_DIR/ferrule-$sha"
}
BEFORE_BIN=$(binary_of "$BEFORE")
AFTER_BIN=$(binary_of "$AFTER")
echo "before: $BEFORE ($BEFORE_BIN)"
echo "after:  $AFTER ($AFTER_BIN)"
echo "machine: $(nproc) CPUs, $(uname -r), load average at the start: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"

ROWS="$(mktemp)"
trap 'rm -f "$ROWS"' EXIT
echo "pair,build,round,P,test,proxy,ops_per_s,p50_ms,p99_ms,proxy_cpu_us_per_req,machine_cpu_us_per_req,context_switches_per_req"
for pair in $(seq "$PAIRS"); do
    order="before after"
    [ $((pair % 2)) = 0 ] && order="after before"
    for build in $order; do
        bin=$BEFORE_BIN
        [ "$build" = after ] && bin=$AFTER_BIN
        FERRULE="$bin" scripts/bench-redis-benchmark.sh "$ROUNDS" | grep -E '^[0-9]+,' | sed "s/^/$pair,$build,/" |
            tee -a "$ROWS"
    done
    echo "# load average after pair $pair: $(cut -d' ' -f1-3 /proc/loadavg)"
done

# ratio per (pair, build, round, P, test): ferrule ops/s / twemproxy ops/s of the same round.
RATIOS="$(awk -F, '{ k = $1 "," $2 "," $3 "," $4 "," $5; if ($6 == "twemproxy") tw[k] = $7; else fe[k] = $7; cpu[k] = ($6 == "ferrule") ? $10 : cpu[k] }
    END { for (k in fe) if (tw[k] > 0) printf "%s,%.3f,%s,%s\n", k, fe[k] / tw[k], fe[k], cpu[k] }' "$ROWS")"
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ratio = ferrule / twemproxy ops/s in the same round; medians over $PAIRS invocations x $ROUNDS rounds per build"
echo
echo "| workload | before: ratio per invocation | before | after: ratio per invocation | after | ferrule ops/s before / after | ferrule CPU us/req before / after |"
echo "|---|---|---|---|---|---|---|"
for P in ${PIPELINES:-1 16}; do
    for t in ${TESTS:-get set}; do
        line="| $(echo "$t" | tr a-z A-Z) P=$P |"
        for build in before after; do
            per=""
            for pair in $(seq "$PAIRS"); do
                m=$(echo "$RATIOS" | awk -F, -v p="$pair" -v b="$build" -v P="$P" -v t="$t" '$1==p && $2==b && $4==P && $5==t {print $6}' | median)
                per="${per:+$per / }$(printf '%.2f' "$m")"
            done
            all=$(echo "$RATIOS" | awk -F, -v b="$build" -v P="$P" -v t="$t" '$2==b && $4==P && $5==t {print $6}' | median)
            line="$line $per | $(printf '%.2fx' "$all") |"
        done
        ops=""
        cpu=""
        for build in before after; do
            o=$(echo "$RATIOS" | awk -F, -v b="$build" -v P="$P" -v t="$t" '$2==b && $4==P && $5==t {print $7}' | median)
            c=$(echo "$RATIOS" | awk -F, -v b="$build" -v P="$P" -v t="$t" '$2==b && $4==P && $5==t {print $8}' | median)
            ops="${ops:+$ops / }$(printf '%.0f' "$o")"
            cpu="${cpu:+$cpu / }$c"
        done
        echo "$line $ops | $cpu |"
    done
done
