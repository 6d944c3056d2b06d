#!/usr/bin/env bash
# TLS cost, in one run: redis-benchmark GET/SET through ferrule (one worker) with TLS on neither side, on the client
# side, on the backend side and on both, and against redis's own TLS port directly (no proxy) for reference.
# One redis-server serves plaintext and TLS on two ports; certificates are made with the openssl CLI in a
# temporary directory. Prints redis-benchmark's CSV line per run (rps, latencies in ms including p99) and the
# ratio of each TLS figure to ferrule's plaintext one.
#
# Usage: scripts/bench-tls.sh            Environment: N (requests per run, default 200000), CLIENTS (default 50),
#   PIPELINES (default "1 16"), LOADGEN_CPU (default 0), PROXY_CPU (default 1), CARGO_TARGET_DIR.
# Needs redis-server and redis-benchmark built with TLS (Debian's are), openssl; builds ferrule in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-200000}"
CLIENTS="${CLIENTS:-50}"
PIPELINES="${PIPELINES:-1 16}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
for tool in redis-server redis-benchmark openssl; do
    command -v "$tool" >/dev/null || { echo "bench-tls.sh: $tool not found" >&2; exit 1; }
done
cargo build --release -q --bin ferrule
FERRULE="${CARGO_TARGET_DIR:-target}/release/ferrule"
DIR="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

# A private CA and one certificate for 127.0.0.1/localhost, used by redis and by ferrule's listener.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" > "$DIR/ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 \
    -extfile "$DIR/ext" -out "$DIR/server.pem" 2>/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
RP=$(port); RT=$(port)
redis-server --port "$RP" --tls-port "$RT" --bind 127.0.0.1 --save "" --appendonly no \
    --tls-cert-file "$DIR/server.pem" --tls-key-file "$DIR/server.key" --tls-ca-cert-file "$DIR/ca.pem" \
    --tls-auth-clients no >/dev/null 2>&1 &
PIDS+=("$!")
wait_port "$RP" && wait_port "$RT"

# ferrule with TLS on the client side ($1 = yes/no) and the backend side ($2 = yes/no); prints its port.
start_ferrule() {
    local name="$1-$2" lp; lp=$(port)
    local listener="" pool="servers = [\"127.0.0.1:$RP:1\"]"
    [ "$1" = yes ] && listener="tls_cert = \"$DIR/server.pem\"
tls_key = \"$DIR/server.key\""
    [ "$2" = yes ] && pool="servers = [\"127.0.0.1:$RT:1\"]
tls = true
tls_ca = \"$DIR/ca.pem\""
    cat > "$DIR/$name.toml" <<TOML
[proxy]
workers = 1
cpus = [$PROXY_CPU]
admin = "off"
[listeners.cache]
listen = "127.0.0.1:$lp"
protocol = "redis"
route = "main"
$listener
[pools.main]
$pool
TOML
    "$FERRULE" -c "$DIR/$name.toml" >"$DIR/$name.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$lp"
    echo "$lp"
}

run() { # label port tls(yes/no) pipeline test
    local tlsargs=()
    [ "$3" = yes ] && tlsargs=(--tls --cacert "$DIR/ca.pem")
    local line
    line=$(taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$2" "${tlsargs[@]}" -c "$CLIENTS" -n "$N" \
        -P "$4" -t "$5" --csv -q 2>/dev/null | grep -v '^"test"' | tail -1)
    echo "$1 P=$4 $line"
}

declare -A FP
FP[plain]=$(start_ferrule no no); FP[client]=$(start_ferrule yes no)
FP[backend]=$(start_ferrule no yes); FP[both]=$(start_ferrule yes yes)
echo "# label P=pipeline \"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\""
for P in $PIPELINES; do
    for t in get set; do
        base=""
        for label in plain client backend both; do
            tls=no; { [ "$label" = client ] || [ "$label" = both ]; } && tls=yes
            out=$(run "ferrule-tls-$label" "${FP[$label]}" "$tls" "$P" "$t")
            rps=$(echo "$out" | awk -F'","' '{print $2}')
            [ "$label" = plain ] && base=$rps
            echo "$out ratio=$(python3 -c "print(f'{float(\"$rps\")/float(\"$base\"):.2f}')" 2>/dev/null || echo ?)"
        done
        run "redis-tls-direct" "$RT" yes "$P" "$t"
        run "redis-plain-direct" "$RP" no "$P" "$t"
    done
done
