#!/usr/bin/env bash
# Side-by-side benchmark: each backend directly, twemproxy, mcrouter (when available) and ferrule,
# driven by ferrule-loadgen with the same workloads, closed loop (throughput) and open loop at a
# common rate (latency). Prints one markdown table and keeps the raw JSON, .hgrm/.hlog files and
# SVG percentile plots under results/<time>/. docs/benchmarks.md explains every figure.
#
# Usage: scripts/bench.sh [--quick] [--duration SECONDS] [--rate REQUESTS_PER_SEC] [--out DIR]
#                          [--no-build]
#   --quick      1 s per run (a smoke run; under 2 minutes once built)
#   --no-build   use the release binaries already built
#   --duration   seconds per run (default 10)
#   --rate       the common open-loop rate (default 20000 requests/s)
#   --out        results folder (default results/<date-time>)
# Environment: CARGO_TARGET_DIR is honoured; MCROUTER=/path/to/mcrouter to include mcrouter when it is not on PATH;
#   CONNECTIONS (default 50), KEYS (default 100000), VALUE_SIZE (default 32), BACKEND_CPUS (a taskset CPU list for
#   the backends; default: CPUs 2.. with 4 or more CPUs, every CPU with 2), BUSY_POLL_US (ferrule's
#   proxy.busy_poll_us, default 0).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=10
RATE=20000
OUT=""
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) DURATION=1 ;;
        --duration) DURATION="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (try --help)" >&2; exit 1 ;;
    esac
    shift
done
CONNECTIONS="${CONNECTIONS:-50}"
KEYS="${KEYS:-100000}"
VALUE_SIZE="${VALUE_SIZE:-32}"
OUT="${OUT:-results/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh

# --- Tools -----------------------------------------------------------------------------------
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v memcached >/dev/null || need+=(memcached)
command -v nutcracker >/dev/null || need+=(nutcracker)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
    echo "bench.sh: installing ${need[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
MCROUTER="${MCROUTER:-$(command -v mcrouter || true)}"

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
LOADGEN="$TARGET_DIR/release/ferrule-loadgen"
FERRULE="$TARGET_DIR/release/ferrule"
FERRULE_BUILT=1
if [ "$BUILD" = 1 ]; then
    echo "bench.sh: building (release)" >&2
    cargo build --release -q -p ferrule-loadgen
    # A ferrule that does not build gets "failed to start" rows; the others still run.
    cargo build --release -q -p ferrule --bin ferrule || FERRULE_BUILT=0
fi
[ -x "$FERRULE" ] || FERRULE_BUILT=0

# --- CPUs: the load generator and the proxy each get a CPU of their own ----------------------
CPUS=$(nproc)
REQUESTED_BACKEND_CPUS="${BACKEND_CPUS:-}"
if [ "$CPUS" -ge 4 ]; then
    LOADGEN_CPU=0; PROXY_CPU=1; BACKEND_CPUS="2-$((CPUS - 1))"
elif [ "$CPUS" -ge 2 ]; then
    # Two CPUs: the backends float; they are not what is being measured.
    LOADGEN_CPU=0; PROXY_CPU=1; BACKEND_CPUS="0-$((CPUS - 1))"
else
    LOADGEN_CPU=0; PROXY_CPU=0; BACKEND_CPUS=0
fi
# BACKEND_CPUS=1 (for example) pins the backends instead; docs/benchmarks.md compares placements.
BACKEND_CPUS="${REQUESTED_BACKEND_CPUS:-$BACKEND_CPUS}"

alloc_ports REDIS1 REDIS2 MEMCACHED1 MEMCACHED2 TW_REDIS TW_MEMCACHE TW_STATS \
    FR_REDIS FR_MEMCACHE FR_ADMIN MCR_PORT

start() { # NAME CPUS COMMAND...: starts in the background, records the pid in PID_<NAME>
    local name=$1 cpus=$2; shift 2
    taskset -c "$cpus" "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=("$!")
    printf -v "PID_$name" '%s' "$!"
}

# --- Backends --------------------------------------------------------------------------------
for port in "$REDIS1" "$REDIS2"; do
    start "redis_$port" "$BACKEND_CPUS" redis-server --port "$port" --bind 127.0.0.1 \
        --save "" --appendonly no
done
for port in "$MEMCACHED1" "$MEMCACHED2"; do
    start "memcached_$port" "$BACKEND_CPUS" memcached -p "$port" -l 127.0.0.1 -U 0 -t 1 -u root
done
for backend in "redis_$REDIS1" "redis_$REDIS2" "memcached_$MEMCACHED1" "memcached_$MEMCACHED2"; do
    if ! wait_port "${backend#*_}" "$(eval echo "\$PID_$backend")"; then
        echo "bench.sh: backend $backend did not start; see $OUT/$backend.log" >&2
        exit 1
    fi
done

# --- twemproxy: the same servers, hash and distribution as ferrule ---------------------------
cat >"$OUT/nutcracker.yml" <<EOF
redis:
  listen: 127.0.0.1:$TW_REDIS
  redis: true
  hash: fnv1a_64
  distribution: ketama
  timeout: 1000
  server_connections: 1
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:$REDIS1:1
   - 127.0.0.1:$REDIS2:1
memcache:
  listen: 127.0.0.1:$TW_MEMCACHE
  hash: fnv1a_64
  distribution: ketama
  timeout: 1000
  server_connections: 1
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:$MEMCACHED1:1
   - 127.0.0.1:$MEMCACHED2:1
EOF
STATUS_twemproxy=up
start twemproxy "$PROXY_CPU" nutcracker -c "$OUT/nutcracker.yml" -s "$TW_STATS" -a 127.0.0.1
wait_port "$TW_REDIS" "$PID_twemproxy" || STATUS_twemproxy="failed to start"

# --- mcrouter (memcache only), when a binary is available ------------------------------------
STATUS_mcrouter="not installed"
if [ -n "$MCROUTER" ] && [ -x "$MCROUTER" ]; then
    STATUS_mcrouter=up
    # Same servers; mcrouter hashes with its own Ch3 (furc) hash, so keys land differently.
    cat >"$OUT/mcrouter.json" <<EOF
{"pools": {"A": {"servers": ["127.0.0.1:$MEMCACHED1", "127.0.0.1:$MEMCACHED2"]}}, "route": "PoolRoute|A"}
EOF
    start mcrouter "$PROXY_CPU" "$MCROUTER" --config "file:$OUT/mcrouter.json" -p "$MCR_PORT" \
        --num-proxies=1 --async-dir="$OUT/mcrouter-async"
    wait_port "$MCR_PORT" "$PID_mcrouter" || STATUS_mcrouter="failed to start"
fi

# --- ferrule -----------------------------------------------------------------------------------
cat >"$OUT/ferrule.toml" <<EOF
[proxy]
workers = 1
admin = "127.0.0.1:$FR_ADMIN"
busy_poll_us = ${BUSY_POLL_US:-0}

[listeners.r]
listen = "127.0.0.1:$FR_REDIS"
protocol = "redis"
route = "r"

[listeners.m]
listen = "127.0.0.1:$FR_MEMCACHE"
protocol = "memcache"
route = "m"

[pools.r]
servers = ["127.0.0.1:$REDIS1:1", "127.0.0.1:$REDIS2:1"]
hash = "fnv1a_64"
distribution = "ketama"
timeout_ms = 1000

[pools.m]
servers = ["127.0.0.1:$MEMCACHED1:1", "127.0.0.1:$MEMCACHED2:1"]
hash = "fnv1a_64"
distribution = "ketama"
timeout_ms = 1000
EOF
STATUS_ferrule="failed to start"
if [ "$FERRULE_BUILT" = 1 ]; then
    STATUS_ferrule=up
    start ferrule "$PROXY_CPU" "$FERRULE" -c "$OUT/ferrule.toml"
    { wait_port "$FR_REDIS" "$PID_ferrule" && wait_port "$FR_MEMCACHE" "$PID_ferrule"; } ||
        STATUS_ferrule="failed to start"
fi

# --- Runs --------------------------------------------------------------------------------------
# proc_cpu_ticks (bench-common.sh): user+system clock ticks a process has used so far.
proc_rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "-"; }

declare -A OPS P50 P99 P999 CPU RSS NOTE

target_port() { # TARGET PROTOCOL
    case "$1.$2" in
        direct.redis) echo "$REDIS1" ;; direct.memcache) echo "$MEMCACHED1" ;;
        twemproxy.redis) echo "$TW_REDIS" ;; twemproxy.memcache) echo "$TW_MEMCACHE" ;;
        mcrouter.memcache) echo "$MCR_PORT" ;;
        ferrule.redis) echo "$FR_REDIS" ;; ferrule.memcache) echo "$FR_MEMCACHE" ;;
    esac
}
target_status() { # TARGET PROTOCOL: "up" or why not
    case "$1" in
        direct) echo up ;;
        mcrouter) [ "$2" = memcache ] && echo "$STATUS_mcrouter" || echo "memcache only" ;;
        *) eval echo "\$STATUS_$1" ;;
    esac
}
target_pid() { case "$1" in twemproxy|ferrule|mcrouter) eval echo "\${PID_$1:-}" ;; *) echo "" ;; esac; }

common=(-c "$CONNECTIONS" --keys "$KEYS" --value-size "$VALUE_SIZE" --cpus "$LOADGEN_CPU" --quiet)

prefill() { # PROTOCOL TARGET
    local port; port=$(target_port "$2" "$1")
    local code=0
    taskset -c "$LOADGEN_CPU" "$LOADGEN" --protocol "$1" --target "127.0.0.1:$port" "${common[@]}" \
        --prefill --requests 1 --ratio 0:1 >/dev/null 2>&1 || code=$?
    if [ "$code" = 130 ]; then interrupted; fi
}

run_case() { # WORKLOAD MODE RATE PROTOCOL TARGET LOADGEN-ARGS...
    local workload=$1 mode=$2 open_rate=$3 protocol=$4 target=$5; shift 5
    local key="$workload.$mode.$target" status port pid
    status=$(target_status "$target" "$protocol")
    if [ "$status" != up ]; then NOTE[$key]="$status"; return; fi
    port=$(target_port "$target" "$protocol")
    pid=$(target_pid "$target")
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then NOTE[$key]="exited"; return; fi
    local rate=() before=0 started finished
    if [ "$mode" = open ]; then rate=(--rate "$open_rate"); fi
    if [ -n "$pid" ]; then before=$(proc_cpu_ticks "$pid"); fi
    started=$(date +%s.%N)
    local code=0
    taskset -c "$LOADGEN_CPU" "$LOADGEN" --protocol "$protocol" --target "127.0.0.1:$port" \
        "${common[@]}" --duration "$DURATION" "${rate[@]}" "$@" \
        --json "$OUT/$key.json" --hdr-prefix "$OUT/$key" >"$OUT/$key.txt" 2>&1 || code=$?
    # The generator catches Ctrl-C to print its report, so the shell does not see the signal
    # itself: 130 says the user interrupted.
    if [ "$code" = 130 ]; then interrupted; fi
    if [ "$code" != 0 ]; then NOTE[$key]="no replies"; fi
    finished=$(date +%s.%N)
    if [ -n "$pid" ]; then
        CPU[$key]=$(awk -v a="$before" -v b="$(proc_cpu_ticks "$pid")" -v t="$CLK_TCK" \
            -v s="$started" -v e="$finished" 'BEGIN { printf "%.0f", (b - a) / t / (e - s) * 100 }')
        RSS[$key]=$(proc_rss_mib "$pid")
    fi
    [ -f "$OUT/$key.json" ] || return 0
    OPS[$key]=$(jq -r '.totals.ops_per_sec' "$OUT/$key.json")
    P50[$key]=$(jq -r '.totals.latency_ms.p50' "$OUT/$key.json")
    P99[$key]=$(jq -r '.totals.latency_ms.p99' "$OUT/$key.json")
    P999[$key]=$(jq -r '.totals.latency_ms.p99_9' "$OUT/$key.json")
    local errors; errors=$(jq -r '.totals.errors' "$OUT/$key.json")
    if [ "$errors" != 0 ]; then NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}, }$errors errors"; fi
    echo "  $key: $(printf '%.0f' "${OPS[$key]}") ops/s, p99 ${P99[$key]} ms ${NOTE[$key]:-}" >&2
}

# name|protocol|operation plotted|open-loop rate divisor|loadgen arguments
# Multi-key reads move 10 keys per request, so their open-loop rate is a quarter of --rate.
WORKLOADS=(
    "redis GET P=1|redis|get|1|--ratio 0:1 -P 1"
    "redis SET P=1|redis|set|1|--ratio 1:0 -P 1"
    "redis GET P=16|redis|get|1|--ratio 0:1 -P 16"
    "redis SET P=16|redis|set|1|--ratio 1:0 -P 16"
    "redis MGET 10|redis|mget|4|--ratio 0:1 --mget 10 -P 1"
    "memcache get|memcache|get|1|--ratio 0:1 -P 1"
    "memcache set|memcache|set|1|--ratio 1:0 -P 1"
    "memcache get 10 keys|memcache|mget|4|--ratio 0:1 --mget 10 -P 1"
)
TARGETS=(direct twemproxy mcrouter ferrule)
slug() { echo "$1" | tr 'A-Z =' 'a-z__' | tr -cd 'a-z0-9_'; }

echo "bench.sh: prefilling $KEYS keys" >&2
for protocol in redis memcache; do
    for target in "${TARGETS[@]}"; do
        if [ "$(target_status "$target" "$protocol")" = up ]; then prefill "$protocol" "$target"; fi
    done
done

for spec in "${WORKLOADS[@]}"; do
    IFS='|' read -r name protocol op divisor args <<<"$spec"
    workload=$(slug "$name")
    echo "bench.sh: $name" >&2
    for mode in closed open; do
        series=()
        for target in "${TARGETS[@]}"; do
            # shellcheck disable=SC2086 # args holds several words on purpose
            run_case "$workload" "$mode" "$((RATE / divisor))" "$protocol" "$target" $args
            hgrm="$OUT/$workload.$mode.$target.$op.hgrm"
            if [ -f "$hgrm" ]; then series+=("$target=$hgrm"); fi
        done
        if [ ${#series[@]} -gt 0 ]; then
            "$LOADGEN" plot -o "$OUT/$workload.$mode.svg" \
                --title "$name, $mode loop$([ "$mode" = open ] && echo " at $((RATE / divisor))/s")" "${series[@]}" ||
                true
        fi
    done
done

# --- The table -----------------------------------------------------------------------------------
ratio() { # VALUE BASE: VALUE/BASE as "1.23x", or "-"
    if [ -z "${1:-}" ] || [ -z "${2:-}" ]; then echo "-"; return; fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'
}
fmt() { if [ -z "${1:-}" ]; then echo "-"; else printf "%.3f" "$1"; fi; }
{
    echo "ferrule benchmark, $(date -u +%Y-%m-%dT%H:%MZ): $CPUS CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r)"
    echo "load generator on CPU $LOADGEN_CPU, proxies on CPU $PROXY_CPU, backends on CPUs $BACKEND_CPUS;" \
        "$CONNECTIONS connections, $KEYS keys, $VALUE_SIZE-byte values, ${DURATION} s per run," \
        "open loop at $RATE requests/s ($((RATE / 4))/s for 10-key reads)"
    echo
    echo "| workload | mode | target | ops/s | p50 ms | p99 ms | p99.9 ms | proxy CPU % | proxy RSS MiB | vs twemproxy | vs direct |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for spec in "${WORKLOADS[@]}"; do
        IFS='|' read -r name protocol op divisor args <<<"$spec"
        workload=$(slug "$name")
        for mode in closed open; do
            for target in "${TARGETS[@]}"; do
                key="$workload.$mode.$target"
                if [ "$target" = mcrouter ] && [ "$protocol" = redis ]; then continue; fi
                if [ -z "${OPS[$key]:-}" ]; then
                    echo "| $name | $mode | $target | ${NOTE[$key]:-no result} | | | | | | | |"
                    continue
                fi
                if [ "$mode" = closed ]; then
                    # Throughput: higher is better.
                    vs_tw=$(ratio "${OPS[$key]}" "${OPS[$workload.$mode.twemproxy]:-}")
                    vs_direct=$(ratio "${OPS[$key]}" "${OPS[$workload.$mode.direct]:-}")
                else
                    # Latency at the same offered rate: p99 ratio, lower is better.
                    vs_tw=$(ratio "${P99[$key]}" "${P99[$workload.$mode.twemproxy]:-}")
                    vs_direct=$(ratio "${P99[$key]}" "${P99[$workload.$mode.direct]:-}")
                fi
                note=""
                if [ -n "${NOTE[$key]:-}" ]; then note=" (${NOTE[$key]})"; fi
                printf '| %s | %s | %s%s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' \
                    "$name" "$mode" "$target" "$note" "${OPS[$key]}" "$(fmt "${P50[$key]}")" \
                    "$(fmt "${P99[$key]}")" "$(fmt "${P999[$key]}")" "${CPU[$key]:--}" "${RSS[$key]:--}" \
                    "$vs_tw" "$vs_direct"
            done
        done
    done
    echo
    echo "closed loop: ratios of throughput (higher is better); open loop: ratios of p99 latency (lower is better)."
    echo "Latencies from the intended send time (coordinated omission corrected). Raw files: $OUT/"
} | tee "$OUT/table.md"
