#!/usr/bin/env bash
# GET/SET to a Redis Cluster two ways, in one run: straight, with a cluster-aware client (`redis-benchmark
# --cluster`, which reads the slot map and talks to each primary itself), and through ferrule (one worker, a
# `redis_cluster` pool, so a plain `redis-benchmark` without --cluster). `redis-benchmark -c 50 -t get|set -P 1|16`,
# alternating which way goes first in each round, several rounds. Prints every run and then the medians, with
# ferrule's CPU time per request (from /proc/PID/stat) and the whole machine's CPU time and context switches per
# request (from /proc/stat; straight, the machine's time is the client's and the nodes'; through ferrule it adds
# ferrule's).
#
# Usage: scripts/bench-cluster.sh [ROUNDS]      (default 4; about 40 s per round)
# Environment: N (requests per run, default 200000), CLIENTS (default 50), PIPELINES (default "1 16"),
#   TESTS (default "get set"), LOADGEN_CPU (default 0), PROXY_CPU (default 1), BACKEND_CPUS (default: every CPU, so
#   the nodes float), RUN_TIMEOUT (seconds one redis-benchmark run may take, default 120), CARGO_TARGET_DIR,
#   FERRULE (a ferrule binary to run instead of building this tree's).
# Needs redis-server 7+ and redis-cli/redis-benchmark (package redis-tools); builds ferrule in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-4}"
N="${N:-200000}"
CLIENTS="${CLIENTS:-50}"
PIPELINES="${PIPELINES:-1 16}"
TESTS="${TESTS:-get set}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
BACKEND_CPUS="${BACKEND_CPUS:-0-$(($(nproc) - 1))}"
RUN_TIMEOUT="${RUN_TIMEOUT:-120}"
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
need_tools "apt-get install -y redis-server redis-tools" redis-server redis-cli redis-benchmark
ensure_ferrule

DIR="$(mktemp -d)"
CLEANUP_DIR=$DIR

# --- Three primaries (no replicas: the benchmark measures the request path, not replication) --------------------
# A node also listens on its bus port, port + 10000, which must be free as well.
NODES=()
while [ "${#NODES[@]}" -lt 3 ]; do
    alloc_ports P
    port_taken $((P + 10000)) && continue
    NODES+=("$P")
done
for p in "${NODES[@]}"; do
    mkdir -p "$DIR/n$p"
    taskset -c "$BACKEND_CPUS" redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no \
        --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --dir "$DIR/n$p" >/dev/null 2>&1 &
    PIDS+=("$!")
done
for i in 0 1 2; do
    wait_port "${NODES[$i]}" "${PIDS[$i]}" || { echo "cluster node ${NODES[$i]} did not start" >&2; exit 1; }
done
timeout 60 redis-cli --cluster create "${NODES[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$DIR/create.log" 2>&1 ||
    { echo "redis-cli --cluster create failed: $(tail -5 "$DIR/create.log")" >&2; exit 1; }
all_ok() { local p; for p in "${NODES[@]}"; do redis-cli -p "$p" CLUSTER INFO | grep -q cluster_state:ok || return 1; done; }
tries=0
until all_ok; do
    tries=$((tries + 1)); [ "$tries" -gt 300 ] && { echo "the cluster never reported cluster_state:ok" >&2; exit 1; }
    sleep 0.1
done

# --- ferrule, one worker, in front of it ------------------------------------------------------------------------
alloc_ports FE FE_ADMIN
cat >"$DIR/ferrule.toml" <<TOML
[proxy]
workers = 1
cpus = [$PROXY_CPU]
admin = "127.0.0.1:$FE_ADMIN"
[listeners.bench]
listen = "127.0.0.1:$FE"
protocol = "redis"
route = "bench"
[pools.bench]
kind = "redis_cluster"
servers = ["127.0.0.1:${NODES[0]}"]
TOML
"$FERRULE" -c "$DIR/ferrule.toml" --no-watch 2>"$DIR/ferrule.log" &
FE_PID=$!
PIDS+=("$FE_PID")
wait_port "$FE" "$FE_PID" || { echo "ferrule did not start: $(tail -3 "$DIR/ferrule.log")" >&2; exit 1; }
tries=0
until out=$(redis-cli -p "$FE" GET warmup 2>&1) && ! echo "$out" | grep -q -e CLUSTERDOWN -e ERR -e refused; do
    tries=$((tries + 1)); [ "$tries" -gt 200 ] && { echo "ferrule never got the slot map: $(tail -3 "$DIR/ferrule.log")" >&2; exit 1; }
    sleep 0.05
done

echo "# $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "round,P,test,way,ops_per_s,p50_ms,p99_ms,ferrule_cpu_us_per_req,machine_cpu_us_per_req,context_switches_per_req"
RUNS="$DIR/runs.csv"
for round in $(seq "$ROUNDS"); do
    for P in $PIPELINES; do
        for t in $TESTS; do
            order="straight ferrule"
            [ $((round % 2)) = 0 ] && order="ferrule straight"
            for way in $order; do
                if [ "$way" = straight ]; then args=(-p "${NODES[0]}" --cluster); else args=(-p "$FE"); fi
                t0=$(proc_cpu_ticks "$FE_PID"); b0=$(machine_busy_ticks); c0=$(context_switches)
                line=$(timeout "$RUN_TIMEOUT" taskset -c "$LOADGEN_CPU" redis-benchmark "${args[@]}" -c "$CLIENTS" \
                    -n "$N" -P "$P" -t "$t" -d 32 -r 100000 --csv 2>/dev/null | grep "^\"$(echo "$t" | tr a-z A-Z)\"" | tail -1 | tr -d '"') ||
                    { echo "redis-benchmark ($way, P=$P, $t) failed or took over $RUN_TIMEOUT s" >&2; exit 1; }
                t1=$(proc_cpu_ticks "$FE_PID"); b1=$(machine_busy_ticks); c1=$(context_switches)
                fc=$((t1 - t0))
                [ "$way" = straight ] && fc=0
                # redis-benchmark --csv: test,rps,avg,min,p50,p95,p99,max
                row=$(echo "$line" | awk -F, -v r="$round" -v P="$P" -v t="$t" -v x="$way" -v n="$N" -v hz="$CLK_TCK" \
                    -v pc="$fc" -v mc=$((b1 - b0)) -v cs=$((c1 - c0)) \
                    '{printf "%s,%s,%s,%s,%.0f,%s,%s,%.2f,%.2f,%.2f", r, P, t, x, $2, $5, $7, pc*1e6/hz/n, mc*1e6/hz/n, cs/n}')
                echo "$row" | tee -a "$RUNS"
            done
        done
    done
done

# Every request went where it belonged: ferrule followed no redirect (its map was right) and failed nothing.
echo
echo "ferrule's cluster counters (GET /metrics): $(curl -s "http://127.0.0.1:$FE_ADMIN/metrics" 2>/dev/null | grep -E '^ferrule_cluster_(redirects|redirect_failures|unserved)' | tr '\n' ' ')"
echo "medians over $ROUNDS rounds (ratio = through ferrule / straight with --cluster):"
for P in $PIPELINES; do
    for t in $TESTS; do
        for col in 5 6 7 8 9 10; do
            for way in straight ferrule; do
                v=$(awk -F, -v P="$P" -v t="$t" -v x="$way" -v c="$col" '$2==P && $3==t && $4==x {print $c}' "$RUNS" | median)
                printf -v "m_${way}_$col" '%s' "$v"
            done
        done
        awk -v P="$P" -v t="$t" -v sr="$m_straight_5" -v fr="$m_ferrule_5" -v s50="$m_straight_6" -v f50="$m_ferrule_6" \
            -v s99="$m_straight_7" -v f99="$m_ferrule_7" -v fc="$m_ferrule_8" \
            -v sm="$m_straight_9" -v fm="$m_ferrule_9" -v ss="$m_straight_10" -v fs="$m_ferrule_10" \
            'BEGIN {printf "%s P=%s: ops/s straight %.0f ferrule %.0f (%.2fx) | p50 ms %s vs %s | p99 ms %s vs %s | ferrule CPU us/req %s | machine CPU us/req %s vs %s | context switches/req %s vs %s\n", toupper(t), P, sr, fr, fr/sr, s50, f50, s99, f99, fc, sm, fm, ss, fs}'
    done
done
