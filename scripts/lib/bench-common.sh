# Shared by the benchmark scripts (bench.sh, bench-redis-benchmark.sh, bench-memaslap.sh, bench-cluster.sh,
# bench-resp3.sh, bench-routes.sh...); sourced from the repository's root, not run.
# Provides: tool checks, the release build of ferrule, process bookkeeping with cleanup on exit, free-port
# allocation, waiting for a port, two redis-servers, CPU and context-switch counters from /proc, and a median filter.

# --- What a script needs ---------------------------------------------------------------------
# need_tools HINT TOOL...: exits naming the first TOOL not on PATH (and HINT, how to install it, when not empty).
need_tools() {
    local hint=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$(basename "$0"): $tool not found${hint:+ ($hint)}" >&2; exit 1; }
    done
}
# ensure_ferrule: FERRULE names a binary to run, or else this tree's release build (built now).
ensure_ferrule() {
    if [ -z "${FERRULE:-}" ]; then
        cargo build --release -q --bin ferrule
        FERRULE="${CARGO_TARGET_DIR:-target}/release/ferrule"
    fi
}

# --- Everything a script starts is killed on exit, also on Ctrl-C ----------------------------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "${CLEANUP_DIR:-}" ]; then
        rm -rf "$CLEANUP_DIR"
    fi
}
interrupted() {
    echo "$(basename "$0"): interrupted" >&2
    exit 130
}
trap cleanup EXIT
trap interrupted INT TERM

# --- Ports -----------------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_taken() { # listening, or held by any socket (ss sees connections too)
    port_in_use "$1" && return 0
    command -v ss >/dev/null && [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
}
# Below the kernel's ephemeral range (32768 and up), so no client connection holds them.
NEXT_PORT=$((20000 + ($$ % 600) * 20))
alloc_ports() { # NAME...: sets each variable to a distinct port that is free now
    local name
    for name in "$@"; do
        while port_taken "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
        printf -v "$name" '%s' "$NEXT_PORT"
        NEXT_PORT=$((NEXT_PORT + 1))
    done
}
wait_port() { # PORT PID: true once PORT accepts, false if PID died or 10 s passed
    local tries=0
    while ! port_in_use "$1"; do
        kill -0 "$2" 2>/dev/null || return 1
        tries=$((tries + 1)); [ "$tries" -gt 200 ] && return 1
        sleep 0.05
    done
}

# --- Backends --------------------------------------------------------------------------------
# start_redis_pair [CPUS]: two redis-servers without persistence (pinned to CPUS when given) on free ports R1 and R2,
# their pids the next two in PIDS; waits until both accept.
start_redis_pair() {
    local p pin=()
    [ -n "${1:-}" ] && pin=(taskset -c "$1")
    alloc_ports R1 R2
    for p in "$R1" "$R2"; do
        "${pin[@]}" redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
        PIDS+=("$!")
    done
    wait_port "$R1" "${PIDS[-2]}" && wait_port "$R2" "${PIDS[-1]}" || { echo "a backend did not start" >&2; exit 1; }
}

# --- Counters --------------------------------------------------------------------------------
proc_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
context_switches() { awk '/^ctxt/ { print $2 }' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

# The median of the numbers on standard input, one per line.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# --- twemproxy and ferrule (one worker each, pinned to CPU $1) in front of two backends --------
# start_proxy_pair CPU PROTOCOL(redis|memcache) DIR BACKEND_PORT1 BACKEND_PORT2: sets TW/TW_PID (twemproxy) and
# FE/FE_PID (ferrule, the release binary in $FERRULE) and waits until both accept. Same hash and distribution.
# BUSY_POLL_US (default 0) sets ferrule's proxy.busy_poll_us.
start_proxy_pair() {
    local cpu=$1 protocol=$2 dir=$3 b1=$4 b2=$5 tw_stats fe_admin redis_line=""
    alloc_ports TW tw_stats FE fe_admin
    [ "$protocol" = redis ] && redis_line="  redis: true"
    cat >"$dir/nutcracker.yml" <<YAML
bench:
  listen: 127.0.0.1:$TW
  hash: fnv1a_64
  distribution: ketama
$redis_line
  servers:
   - 127.0.0.1:$b1:1
   - 127.0.0.1:$b2:1
YAML
    taskset -c "$cpu" nutcracker -c "$dir/nutcracker.yml" -s "$tw_stats" -a 127.0.0.1 -o "$dir/nutcracker.log" &
    TW_PID=$!
    PIDS+=("$TW_PID")
    cat >"$dir/ferrule.toml" <<TOML
[proxy]
workers = 1
cpus = [$cpu]
admin = "127.0.0.1:$fe_admin"
busy_poll_us = ${BUSY_POLL_US:-0}
[listeners.bench]
listen = "127.0.0.1:$FE"
protocol = "$protocol"
route = "bench"
[pools.bench]
protocol = "$protocol"
servers = ["127.0.0.1:$b1:1", "127.0.0.1:$b2:1"]
hash = "fnv1a_64"
distribution = "ketama"
TOML
    "$FERRULE" -c "$dir/ferrule.toml" --no-watch 2>"$dir/ferrule.log" &
    FE_PID=$!
    PIDS+=("$FE_PID")
    wait_port "$TW" "$TW_PID" || { echo "twemproxy did not start: $(tail -3 "$dir/nutcracker.log")" >&2; exit 1; }
    wait_port "$FE" "$FE_PID" || { echo "ferrule did not start: $(tail -3 "$dir/ferrule.log")" >&2; exit 1; }
}
