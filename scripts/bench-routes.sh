#!/usr/bin/env bash
# Issue 13's criterion: plain pool routing must not get slower with routes. In one run, in front of the same two
# redis-servers: twemproxy, ferrule BEFORE routes (the parent of the first commit adding src/routes), ferrule AFTER
# (this tree) on a plain pool listener, and AFTER on a listener whose route is a prefix route in front of that pool
# (`prefixed`: the keys match no prefix and go to the default, the pool). Each ferrule runs one worker pinned to
# PROXY_CPU, as twemproxy is; `redis-benchmark -c CLIENTS -n N -P 1|16 -t get|set` pinned to LOADGEN_CPU, the order
# of the four rotated every round. Prints every run, then medians and ratios to BEFORE.
#
# Usage: scripts/bench-routes.sh [ROUNDS]     (default 4; about 4 x 16 runs)
# Environment: BEFORE (a commit; default the one described above), FERRULE_BEFORE / FERRULE_AFTER (binaries to run
#   instead of building them), BENCH_TARGET (cargo target dir for both release builds, where the binaries are
#   kept: ferrule-<BEFORE> is reused by later runs; default /tmp/ferrule-bench-target), N (default 300000), CLIENTS (50), PIPELINES ("1 16"), TESTS ("get set"),
#   LOADGEN_CPU (0), PROXY_CPU (1).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-4}"
N="${N:-300000}"
CLIENTS="${CLIENTS:-50}"
PIPELINES="${PIPELINES:-1 16}"
TESTS="${TESTS:-get set}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
BENCH_TARGET="${BENCH_TARGET:-/tmp/ferrule-bench-target}"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
need_tools "" redis-server redis-benchmark nutcracker
if [ -z "${BEFORE:-}" ]; then
    first=$(git log --reverse --format=%H --diff-filter=A -- src/routes/mod.rs | head -1)
    BEFORE=$(git rev-parse "$first^")
fi
AFTER=$(git rev-parse HEAD)
# Both built in one target dir (the dependencies once), each binary copied out as it is built.
if [ -z "${FERRULE_BEFORE:-}" ]; then
    FERRULE_BEFORE="$BENCH_TARGET/ferrule-$BEFORE"
    if [ ! -x "$FERRULE_BEFORE" ]; then
        src="$BENCH_TARGET/src-$BEFORE"
        [ -d "$src" ] || { mkdir -p "$src" && git archive "$BEFORE" | tar -x -C "$src"; }
        (cd "$src" && CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release -q --bin ferrule)
        cp "$BENCH_TARGET/release/ferrule" "$FERRULE_BEFORE"
    fi
fi
if [ -z "${FERRULE_AFTER:-}" ]; then
    CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release -q --bin ferrule
    FERRULE_AFTER="$BENCH_TARGET/ferrule-after"
    cp "$BENCH_TARGET/release/ferrule" "$FERRULE_AFTER"
fi

DIR="$(mktemp -d)"
CLEANUP_DIR=$DIR
start_redis_pair
alloc_ports TW TW_STATS FB FB_ADMIN FA FP FA_ADMIN
cat >"$DIR/nutcracker.yml" <<YAML
bench:
  listen: 127.0.0.1:$TW
  hash: fnv1a_64
  distribution: ketama
  redis: true
  servers:
   - 127.0.0.1:$R1:1
   - 127.0.0.1:$R2:1
YAML
taskset -c "$PROXY_CPU" nutcracker -c "$DIR/nutcracker.yml" -s "$TW_STATS" -a 127.0.0.1 -o "$DIR/nutcracker.log" &
TW_PID=$!
PIDS+=("$TW_PID")
pool_toml() {
    printf '[pools.bench]\nprotocol = "redis"\nservers = ["127.0.0.1:%s:1", "127.0.0.1:%s:1"]\nhash = "fnv1a_64"\ndistribution = "ketama"\n' "$R1" "$R2"
}
proxy_toml() { # ADMIN_PORT
    printf '[proxy]\nworkers = 1\ncpus = [%s]\nadmin = "127.0.0.1:%s"\n' "$PROXY_CPU" "$1"
}
{
    proxy_toml "$FB_ADMIN"
    printf '[listeners.bench]\nlisten = "127.0.0.1:%s"\nprotocol = "redis"\nroute = "bench"\n' "$FB"
    pool_toml
} >"$DIR/before.toml"
{
    proxy_toml "$FA_ADMIN"
    printf '[listeners.bench]\nlisten = "127.0.0.1:%s"\nprotocol = "redis"\nroute = "bench"\n' "$FA"
    printf '[listeners.prefixed]\nlisten = "127.0.0.1:%s"\nprotocol = "redis"\nroute = "main"\n' "$FP"
    printf '[routes.main]\ntype = "prefix"\nprefixes = { "moved:" = "bench" }\ndefault = "bench"\n'
    pool_toml
} >"$DIR/after.toml"
"$FERRULE_BEFORE" -c "$DIR/before.toml" --no-watch 2>"$DIR/before.log" &
FB_PID=$!
PIDS+=("$FB_PID")
"$FERRULE_AFTER" -c "$DIR/after.toml" --no-watch 2>"$DIR/after.log" &
FA_PID=$!
PIDS+=("$FA_PID")
for pp in "$R1:${PIDS[0]}" "$R2:${PIDS[1]}" "$TW:$TW_PID" "$FB:$FB_PID" "$FA:$FA_PID" "$FP:$FA_PID"; do
    wait_port "${pp%%:*}" "${pp##*:}" || { echo "port ${pp%%:*} did not open: $(tail -3 "$DIR"/*.log)" >&2; exit 1; }
done

echo "# $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "# before $BEFORE ($FERRULE_BEFORE), after $AFTER$(git diff --quiet HEAD || echo ' + uncommitted changes') ($FERRULE_AFTER)"
echo "# redis-benchmark -c $CLIENTS -n $N -d 32 -r 100000 -P P -t T; loadgen CPU $LOADGEN_CPU, proxies CPU $PROXY_CPU"
echo "round,P,test,proxy,ops_per_s,p50_ms,p99_ms,proxy_cpu_us_per_req"
RUNS="$DIR/runs.csv"
PROXIES=(twemproxy before after prefixed)
for round in $(seq "$ROUNDS"); do
    for P in $PIPELINES; do
        for t in $TESTS; do
            for k in 0 1 2 3; do
                proxy=${PROXIES[$(((k + round) % 4))]}
                case $proxy in
                    twemproxy) port=$TW; pid=$TW_PID ;;
                    before) port=$FB; pid=$FB_PID ;;
                    after) port=$FA; pid=$FA_PID ;;
                    prefixed) port=$FP; pid=$FA_PID ;;
                esac
                t0=$(proc_cpu_ticks "$pid")
                line=$(taskset -c "$LOADGEN_CPU" redis-benchmark -p "$port" -c "$CLIENTS" -n "$N" -P "$P" -t "$t" \
                    -d 32 -r 100000 --csv 2>/dev/null | tail -1 | tr -d '"')
                t1=$(proc_cpu_ticks "$pid")
                echo "$line" | awk -F, -v r="$round" -v P="$P" -v t="$t" -v x="$proxy" -v n="$N" -v hz="$CLK_TCK" \
                    -v pc=$((t1 - t0)) '{printf "%s,%s,%s,%s,%.0f,%s,%s,%.2f\n", r, P, t, x, $2, $5, $7, pc*1e6/hz/n}' \
                    | tee -a "$RUNS"
            done
        done
    done
done

echo
echo "medians over $ROUNDS rounds (ratio: to ferrule before):"
for P in $PIPELINES; do
    for t in $TESTS; do
        out="$(echo "$t" | tr a-z A-Z) P=$P:"
        for col in 5 8; do
            b=$(awk -F, -v P="$P" -v t="$t" -v c="$col" '$2==P && $3==t && $4=="before" {print $c}' "$RUNS" | median)
            for proxy in "${PROXIES[@]}"; do
                v=$(awk -F, -v P="$P" -v t="$t" -v x="$proxy" -v c="$col" '$2==P && $3==t && $4==x {print $c}' "$RUNS" | median)
                out+=$(awk -v x="$proxy" -v v="$v" -v b="$b" -v c="$col" \
                    'BEGIN {printf " %s %s %s (%.2f)", (c==5 ? "ops/s" : "cpu_us/req"), x, v, (b > 0 ? v / b : 0)}')
            done
            out+=" |"
        done
        echo "$out"
    done
done
