#!/usr/bin/env bash
# Runs ferrule on conf/ferrule.toml in front of two redis and two memcached servers on loopback,
# shows a few commands going through it, and keeps everything running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v memcached >/dev/null || need+=(memcached)
if [ ${#need[@]} -gt 0 ]; then
    echo "demo.sh: installing ${need[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo build --release --quiet
dir=$(mktemp -d)
pids=()
cleanup() {
    trap - INT TERM EXIT
    echo; echo "demo.sh: stopping"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup INT TERM EXIT

for port in 6381 6382; do
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize no >"$dir/redis-$port.log" 2>&1 &
    pids+=($!)
done
for port in 11311 11312; do
    memcached -l 127.0.0.1 -p "$port" -U 0 -u "$(id -un)" >"$dir/memcached-$port.log" 2>&1 &
    pids+=($!)
done
sleep 0.5
target/release/ferrule -c conf/ferrule.toml &
pids+=($!)

# Wait for the proxy to accept.
for _ in $(seq 1 50); do
    redis-cli -p 22121 ping >/dev/null 2>&1 && break
    sleep 0.1
done

echo "--- redis through ferrule (127.0.0.1:22121)"
set -x
redis-cli -p 22121 set greeting hello
redis-cli -p 22121 get greeting
redis-cli -p 22121 mset a 1 b 2 c 3 d 4
redis-cli -p 22121 mget a b c d
redis-cli -p 22121 del a b c d
set +x
echo "where the keys went: 6381 has $(redis-cli -p 6381 dbsize) keys, 6382 has $(redis-cli -p 6382 dbsize)"
echo "--- memcached through ferrule (127.0.0.1:22122)"
printf 'set k1 0 0 2\r\nv1\r\nset k2 0 0 2\r\nv2\r\nget k1 k2 k3\r\nquit\r\n' | timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/22122; cat >&3; cat <&3'
echo "--- admin: curl http://127.0.0.1:22222/stats"
curl -s http://127.0.0.1:22222/stats || true
echo
echo "ferrule is running on conf/ferrule.toml; press Ctrl-C to stop everything."
wait "${pids[-1]}"
