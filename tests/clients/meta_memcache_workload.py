"""The `memcache` PyPI client (meta commands only) running one workload against two addresses: ferrule (over
two memcached servers) and one memcached straight. Every operation's outcome is recorded, and the two transcripts
must be equal. Usage: meta_memcache_workload.py FERRULE_PORT DIRECT_PORT [SEED]

Outcomes that differ by server and not by proxy (cas tokens, remaining TTLs) are recorded as what a client relies
on: that the token works, that the TTL is set.
"""

import asyncio
import base64
import random
import sys

import memcache
from memcache import MemcacheError, MetaCommand
from memcache.memcache import Connection


def outcome(f):
    try:
        return ("ok", f())
    except MemcacheError as e:
        return ("error", str(e))


def raw(conn, cm, key, flags, value=None):
    """One meta command through the client's own connection and reply parser: (code, flags, value)."""
    datalen = None if value is None else len(value)
    r = conn.execute_meta_command(MetaCommand(cm=cm, key=key, datalen=datalen, flags=flags, value=value))
    return (r.rc, r.flags, r.value)


def raw_line(conn, line, value=None):
    """A request written and its reply read as bytes, for replies whose flags the client's parser cannot take
    (it reads any token after the code as a length)."""
    conn.stream.write(line)
    if value is not None:
        conn.stream.write(value + b"\r\n")
    conn.stream.flush()
    header = conn.stream.readline()
    if header.startswith(b"VA "):
        return header + conn.stream.read(int(header.split()[1]) + 2)
    return header


def multi_get(conn, keys):
    """A pipelined meta multi-get as memcached's docs describe it: quiet mg per key, then mn; only hits answer."""
    for k in keys:
        conn.stream.write(MetaCommand(cm=b"mg", key=k, flags=[b"q", b"k", b"v", b"f"]).dump_header())
    conn.stream.write(b"mn\r\n")
    conn.stream.flush()
    found = []
    while True:
        r = conn._receive_meta_result()
        if r.rc == b"MN":
            return found
        found.append((r.rc, sorted(r.flags), r.value))


def workload(port, seed):
    rng = random.Random(seed)
    mc = memcache.Memcache(("127.0.0.1", port))
    conn = Connection(("127.0.0.1", port))
    log = []
    keys = [f"py:{i}" for i in range(60)]
    counters = [f"py:n{i}" for i in range(5)]
    for c in counters:
        mc.set(c, 100)
    for step in range(1500):
        key = rng.choice(keys)
        op = rng.randrange(12)
        if op < 3:
            value = rng.choice(["text", 42, b"bytes", {"a": [1, 2]}, "x" * rng.randrange(1, 3000)])
            log.append((step, "set", key, outcome(lambda: mc.set(key, value))))
        elif op < 6:
            log.append((step, "get", key, outcome(lambda: mc.get(key))))
        elif op == 6:
            log.append((step, "delete", key, outcome(lambda: mc.delete(key))))
        elif op == 7:
            c = rng.choice(counters + ["py:nothing"])
            n = rng.randrange(1, 5)
            # Calls that raise go through a Connection: the client's pool does not take back a connection whose
            # call raised.
            f = (lambda: conn.incr(c, n)) if rng.random() < 0.6 else (lambda: conn.decr(c, n))
            log.append((step, "incr/decr", c, outcome(f)))
        elif op == 8:
            # gets then cas: the token works once, a stale one fails.
            def cas_round():
                got = conn.gets(key)
                if got is None:
                    return None
                conn.cas(key, "swapped", got[1])
                stale = outcome(lambda: conn.cas(key, "again", got[1]))
                return (got[0], mc.get(key), stale)

            log.append((step, "gets/cas", key, outcome(cas_round)))
        elif op == 9:
            # touch (mg with T) and the remaining TTL (t) it leaves.
            def touch():
                code, _, _ = raw(conn, b"mg", key, [b"T600"])
                code2, flags, _ = raw(conn, b"mg", key, [b"t", b"v"])
                ttl = [int(f[1:]) for f in flags if f.startswith(b"t")]
                return (code, code2, [0 < t <= 600 for t in ttl])

            log.append((step, "touch", key, outcome(touch)))
        elif op == 10:
            picked = rng.sample(keys, rng.randrange(1, 12)) + ["py:never"]
            log.append((step, "multi-get", picked, outcome(lambda: multi_get(conn, picked))))
        else:
            # A base64 key (b) reaches the item its decoded bytes name; O and k come back.
            b64 = base64.b64encode(key.encode())
            line = b"mg %s b v k O%d\r\n" % (b64, step)
            log.append((step, "b64", key, outcome(lambda: raw_line(conn, line))))
    # Big values: just under memcached's 1 MiB item limit, and one over it.
    big = bytes(rng.randrange(256) for _ in range(1000 * 1000))
    log.append(("big", outcome(lambda: (mc.set("py:big", big), mc.get("py:big") == big))))
    huge = b"x" * (2 * 1024 * 1024)
    log.append(("too big", outcome(lambda: raw_line(conn, b"ms py:huge %d T0\r\n" % len(huge), huge))))
    log.append(("after too big", outcome(lambda: mc.get("py:big") == big)))
    log.append(("missing", [outcome(lambda: mc.get(f"py:missing{i}")) for i in range(20)]))
    # The asyncio client: many connections at once (in rounds of 20: its pool holds 23).

    async def concurrent():
        amc = memcache.AsyncMemcache(("127.0.0.1", port))
        got = []
        for r in range(5):
            ids = range(r * 20, r * 20 + 20)
            await asyncio.gather(*(amc.set(f"py:async{i}", i) for i in ids))
            got += await asyncio.gather(*(amc.get(f"py:async{i}") for i in ids))
        return got

    log.append(("async", outcome(lambda: asyncio.run(concurrent()))))
    return log


def main():
    via, direct = int(sys.argv[1]), int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    a, b = workload(via, seed), workload(direct, seed)
    for x, y in zip(a, b):
        if x != y:
            print(f"DIFFERENT (seed {seed}):\n  through ferrule: {x!r}\n  direct: {y!r}")
            sys.exit(1)
    if len(a) != len(b):
        print(f"DIFFERENT lengths {len(a)} {len(b)}")
        sys.exit(1)
    kinds = {}
    for entry in a:
        name = entry[1] if len(entry) > 2 else entry[0]
        kinds[name] = kinds.get(name, 0) + 1
    misses = sum(1 for e in a if len(e) > 2 and e[1] == "get" and e[3] == ("ok", None))
    errors = sum(1 for e in a if len(e) > 2 and e[3][0] == "error")
    print(f"ok: {len(a)} operations, the same through ferrule and direct; {kinds}; get misses {misses}; "
          f"client errors {errors}")
    print("big:", a[-5][1], "too big:", a[-4][1])


if __name__ == "__main__":
    main()
