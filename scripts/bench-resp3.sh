#!/usr/bin/env bash
# RESP3 beside RESP2 through ferrule, beside twemproxy (RESP2 only) in the same run: the issue's speed criterion
# (RESP3 clients within 5% of RESP2 clients on the same GET/SET workload; the RESP2 path no slower than before,
# as a ratio against twemproxy). redis-benchmark (`-c 50 -d 32 -r 100000 -t get|set -P 1|16`, `-3` for RESP3) pinned
# to LOADGEN_CPU, twemproxy and ferrule (one worker each) pinned to PROXY_CPU, two redis-servers floating. Each round
# runs every contender once per workload, the order rotating from round to round. Prints every run, then medians:
# ops/s, p50/p99, proxy CPU us/req; ratios resp3/resp2 and each ferrule against twemproxy.
#
# Usage: scripts/bench-resp3.sh [ROUNDS]      (default 6; about 45 s per round, 60 s with FERRULE_BEFORE)
# Environment: N (requests per run, default 200000), CLIENTS (default 50), PIPELINES (default "1 16"), TESTS
#   (default "get set"), LOADGEN_CPU (default 0), PROXY_CPU (default 1), FERRULE (binary to run instead of building
#   this tree's), FERRULE_BEFORE (optional: a second ferrule binary, e.g. the build before a change, run as the
#   contender `before` over RESP2 beside the others, on the same CPU, started the same way).
# Needs redis-server, redis-benchmark (package redis-tools, 7.0 or later for -3) and nutcracker.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-6}"
N="${N:-200000}"
CLIENTS="${CLIENTS:-50}"
PIPELINES="${PIPELINES:-1 16}"
TESTS="${TESTS:-get set}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
need_tools "apt-get install -y redis-server redis-tools nutcracker" redis-server redis-benchmark nutcracker
redis-benchmark --help 2>&1 | grep -q -- ' -3 ' || { echo "bench-resp3.sh: this redis-benchmark has no -3 (RESP3): needs 7.0 or later" >&2; exit 1; }
ensure_ferrule

DIR="$(mktemp -d)"
CLEANUP_DIR=$DIR
start_redis_pair
start_proxy_pair "$PROXY_CPU" redis "$DIR" "$R1" "$R2"
CONTENDERS="twemproxy resp2 resp3"
if [ -n "${FERRULE_BEFORE:-}" ]; then
    alloc_ports BE be_admin
    sed -e "s/127.0.0.1:$FE\"/127.0.0.1:$BE\"/" -e "s/^admin = .*/admin = \"127.0.0.1:$be_admin\"/" \
        "$DIR/ferrule.toml" >"$DIR/before.toml"
    "$FERRULE_BEFORE" -c "$DIR/before.toml" --no-watch 2>"$DIR/before.log" &
    BE_PID=$!
    PIDS+=("$BE_PID")
    wait_port "$BE" "$BE_PID" || { echo "FERRULE_BEFORE did not start: $(tail -3 "$DIR/before.log")" >&2; exit 1; }
    CONTENDERS="$CONTENDERS before"
fi
echo "ferrule $("$FERRULE" --version) at $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"

echo "round,P,test,contender,ops_per_s,p50_ms,p99_ms,proxy_cpu_us_per_req"
RUNS="$DIR/runs.csv"
read -r -a ORDER <<<"$CONTENDERS"
for round in $(seq "$ROUNDS"); do
    for P in $PIPELINES; do
        for t in $TESTS; do
            # Rotate the order by one each round, so no contender always runs first (or right after another).
            k=$(( (round - 1) % ${#ORDER[@]} ))
            for who in "${ORDER[@]:$k}" "${ORDER[@]:0:$k}"; do
                flags=()
                case $who in
                    twemproxy) port=$TW; pid=$TW_PID ;;
                    resp2) port=$FE; pid=$FE_PID ;;
                    resp3) port=$FE; pid=$FE_PID; flags=(-3) ;;
                    before) port=$BE; pid=$BE_PID ;;
                esac
                t0=$(proc_cpu_ticks "$pid")
                line=$(taskset -c "$LOADGEN_CPU" redis-benchmark -p "$port" "${flags[@]}" -c "$CLIENTS" -n "$N" -P "$P" \
                    -t "$t" -d 32 -r 100000 --csv 2>/dev/null | tail -1 | tr -d '"')
                t1=$(proc_cpu_ticks "$pid")
                # redis-benchmark --csv: test,rps,avg,min,p50,p95,p99,max
                echo "$line" | awk -F, -v r="$round" -v P="$P" -v t="$t" -v x="$who" -v n="$N" -v hz="$CLK_TCK" \
                    -v pc=$((t1 - t0)) '{printf "%s,%s,%s,%s,%.0f,%s,%s,%.2f\n", r, P, t, x, $2, $5, $7, pc*1e6/hz/n}' \
                    | tee -a "$RUNS"
            done
        done
    done
done

echo
echo "medians over $ROUNDS rounds:"
med() { awk -F, -v P="$1" -v t="$2" -v x="$3" -v c="$4" '$2==P && $3==t && $4==x {print $c}' "$RUNS" | median; }
for P in $PIPELINES; do
    for t in $TESTS; do
        out="$(echo "$t" | tr a-z A-Z) P=$P:"
        for who in $CONTENDERS; do
            out="$out $who $(med "$P" "$t" "$who" 5) ops/s (p50 $(med "$P" "$t" "$who" 6) p99 $(med "$P" "$t" "$who" 7) ms, cpu $(med "$P" "$t" "$who" 8) us/req);"
        done
        tw=$(med "$P" "$t" twemproxy 5); r2=$(med "$P" "$t" resp2 5); r3=$(med "$P" "$t" resp3 5)
        out="$out resp3/resp2 $(awk -v a="$r3" -v b="$r2" 'BEGIN{printf "%.3f", a/b}')"
        out="$out resp2/twemproxy $(awk -v a="$r2" -v b="$tw" 'BEGIN{printf "%.2f", a/b}')"
        out="$out resp3/twemproxy $(awk -v a="$r3" -v b="$tw" 'BEGIN{printf "%.2f", a/b}')"
        if [ -n "${FERRULE_BEFORE:-}" ]; then
            be=$(med "$P" "$t" before 5)
            out="$out before/twemproxy $(awk -v a="$be" -v b="$tw" 'BEGIN{printf "%.2f", a/b}') resp2/before $(awk -v a="$r2" -v b="$be" 'BEGIN{printf "%.3f", a/b}')"
        fi
        echo "$out"
    done
done
# Per-round resp3/resp2, to show the spread behind the medians.
echo
echo "per-round resp3/resp2 ops/s:"
for P in $PIPELINES; do
    for t in $TESTS; do
        printf '%s P=%s:' "$(echo "$t" | tr a-z A-Z)" "$P"
        for round in $(seq "$ROUNDS"); do
            awk -F, -v r="$round" -v P="$P" -v t="$t" '$1==r && $2==P && $3==t && $4=="resp2" {a=$5} $1==r && $2==P && $3==t && $4=="resp3" {b=$5} END {printf " %.3f", b/a}' "$RUNS"
        done
        echo
    done
done
