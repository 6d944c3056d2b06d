#!/usr/bin/env python3
"""Regenerates the captured seeds in fuzz/seeds/: real redis-server and memcached replies to real requests.

Usage: fuzz/capture_seeds.py   (starts redis-server and memcached on free loopback ports, stops them after)

Seeds for request parsers are the committed traffic captures (src/protocol/redis/testdata) and hand-written
requests; the reply seeds are what real servers answer to those, so the fuzzer starts from replies as they are.
Every seed starts with the read-size byte the targets take (fuzz/src/lib.rs, Reads), and memcache_reply seeds
with the commands the replies answer.
"""
import os
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
ROOT = os.path.dirname(HERE)

# Command::ALL order in src/protocol/memcache/command.rs.
MEMCACHE_COMMANDS = ["get", "gets", "gat", "gats", "set", "add", "replace", "append", "prepend", "cas", "incr",
                     "decr", "delete", "touch", "version", "quit", "stats", "flush_all", "verbosity"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, port):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{argv[0]} did not start")


def exchange(port, request, settle=0.3):
    """Sends `request`, returns every byte the server answers until it goes quiet."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        s.settimeout(settle)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
        return out


def write(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def capture_redis():
    port = free_port()
    proc = start(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], port)
    try:
        bench = open(os.path.join(ROOT, "src/protocol/redis/testdata/redis_benchmark.bin"), "rb").read()
        write("redis_reply", "redis_benchmark_replies", b"\x05" + exchange(port, bench))
        mixed = b"".join([
            resp("SET", "k", "v"), resp("GET", "k"), resp("GET", "missing"), resp("MGET", "k", "missing", "k"),
            resp("INCR", "k"), resp("RPUSH", "l", "a", "b", ""), resp("LRANGE", "l", "0", "-1"),
            resp("HSET", "h", "f", "1", "g", "2"), resp("HGETALL", "h"), resp("SADD", "s", "x"),
            resp("ZADD", "z", "1.5", "m"), resp("ZRANGE", "z", "0", "-1", "WITHSCORES"), resp("NOSUCH"),
            resp("BLPOP", "empty", "0.01"), resp("SCAN", "0"), resp("EXISTS", "k", "l"), resp("TYPE", "h"),
        ])
        write("redis_reply", "commands_resp2", b"\x03" + exchange(port, mixed))
        resp3 = resp("HELLO", "3") + mixed + resp("CLIENT", "TRACKING", "on") + resp("GET", "k") + \
            resp("SET", "k", "w") + resp("ZSCORE", "z", "m") + resp("SMEMBERS", "s") + resp("DEBUG", "PROTOCOL", "attrib")
        write("redis_reply", "commands_resp3", b"\x06" + exchange(port, resp3))
    finally:
        proc.terminate()
        proc.wait()


MEMCACHE_REQUESTS = [
    ["set a 0 0 1\r\nx\r\n", "get a\r\n", "gets a b\r\n", "add a 5 0 2\r\nyy\r\n", "append a 0 0 1\r\nz\r\n",
     "get a b c\r\n", "delete b\r\n", "incr n 1\r\n"],
    ["set n 7 60 2\r\n10\r\n", "incr n 5\r\n", "decr n 100\r\n", "touch n 10\r\n", "gat 10 n a\r\n",
     "gats 0 n\r\n", "cas n 0 0 1 1\r\nq\r\n", "replace zz 0 0 1\r\nq\r\n"],
    ["version\r\n", "stats\r\n", "stats settings\r\n", "stats slabs\r\n", "verbosity 1\r\n", "flush_all 0\r\n",
     "prepend a 0 0 3\r\nabc\r\n", "get a\r\n"],
    ["set big 0 0 300\r\n" + "v" * 300 + "\r\n", "get big a\r\n", "set a 0 0 bad\r\n", "incr a x\r\n",
     "get\r\n", "delete a 5\r\n", "touch a x\r\n", "set " + "k" * 251 + " 0 0 1\r\nx\r\n"],
]


def capture_memcache():
    port = free_port()
    user = ["-u", "root"] if os.getuid() == 0 else []  # memcached refuses to run as root unless told
    proc = start(["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0"] + user, port)
    try:
        for i, requests in enumerate(MEMCACHE_REQUESTS):
            commands = bytes(MEMCACHE_COMMANDS.index(r.split(" ")[0].split("\r")[0]) for r in requests)
            replies = b"".join(exchange(port, r.encode(), settle=0.1) for r in requests)
            seed = bytes([(i * 37 + 3) & 0xFF, len(commands) - 1]) + commands
            write("memcache_reply", f"memcached_replies_{i}", seed + replies)
            write("memcache_request", f"requests_{i}", bytes([i * 9 + 7]) + "".join(requests).encode())
    finally:
        proc.terminate()
        proc.wait()


REDIS_REQUESTS = [
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nv\r\nx\r\n*0\r\n*-1\r\n",
    b"PING\r\n\r\n  SET\t'a b' \"c d\"\r\nGET \"k\\n\"\r\n",
    b"*1\r\n$4\r\nPING\r\r",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n",
    b"*1048577\r\n",
    b"GET a\0b\r\n",
]

CONFIG_VARIANTS = [
    """[proxy]
workers = 2
cpus = [0, 1]
admin = "off"
stats_port = 22223
histogram_dir = "/tmp/h"
[listeners.r]
listen = "unix:/run/ferrule.sock"
protocol = "redis"
route = "p"
auth = "secret"
backlog = 128
[pools.p]
servers = ["[::1]:6379:1 a", "localhost:6380:2", "10.0.0.1:6381:1"]
hash = "murmur"
distribution = "modula"
hash_tag = "{}"
redis_auth = "pw"
redis_db = 3
batching = "eager"
""",
    """[listeners.m]
listen = "[::1]:11211"
protocol = "memcache"
route = "mc"
[pools.mc]
servers = ["127.0.0.1:11211:1"]
max_value_bytes = 1024
auto_eject_hosts = true
server_failure_limit = 3
[pools.idle]
protocol = "redis"
servers = ["127.0.0.1:6379:1"]
""",
    "[proxy]\nworkers = 0\n",
    "[pools.p]\nservers = [\"10.1.1.1:1:1\"]\nlisten = 1\n",
]


def static_seeds():
    for name in ["redis_benchmark.bin", "redis_cli.bin"]:
        data = open(os.path.join(ROOT, "src/protocol/redis/testdata", name), "rb").read()
        write("redis_request", name.removesuffix(".bin"), (b"\x05" if "benchmark" in name else b"\x00") + data)
    for i, request in enumerate(REDIS_REQUESTS):
        write("redis_request", f"hand_{i}", bytes([i * 41 + 2]) + request)
    for name in sorted(os.listdir(os.path.join(ROOT, "conf"))):
        write("config", name, open(os.path.join(ROOT, "conf", name), "rb").read())
    for i, text in enumerate(CONFIG_VARIANTS):
        write("config", f"variant_{i}.toml", text.encode())


if __name__ == "__main__":
    static_seeds()
    capture_redis()
    capture_memcache()
