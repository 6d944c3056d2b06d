"""A realistic workload with redis-py: its default protocol (RESP3 from redis-py 8 on), protocol=2, and its asyncio
client. get/set, pipelines, mget/mset, hashes, a transaction with hash tags, a blocking pop fed by a producer,
pub/sub (subscribe + publish from another connection, pattern subscribe), scripts, a full SCAN.
Usage: redis_py_workload.py <port> <tag>. The same script runs through ferrule and straight to one redis. Prints one
"<label>: ok" line per client and exits non-zero on any mismatch."""
import asyncio
import sys
import threading
import time

import redis
import redis.asyncio

port = int(sys.argv[1])
tag = sys.argv[2]


def wait_message(pubsub, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if m is not None:
            return m
    raise AssertionError("no message within the deadline")


def sync_workload(label, **kwargs):
    t = f"{tag}:{label}"
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=15, **kwargs)
    assert r.ping() is True
    assert r.set(f"{t}:greeting", "hello") is True
    assert r.get(f"{t}:greeting") == b"hello"
    assert r.get(f"{t}:missing") is None

    keys = [f"{t}:k{i}" for i in range(30)]
    assert r.mset({k: f"v-{k}" for k in keys}) is True
    assert r.mget(keys + [f"{t}:missing"]) == [f"v-{k}".encode() for k in keys] + [None]
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.incr(f"{t}:counter{i % 10}")
    results = pipe.execute()
    assert len(results) == 100 and results[-1] == 10, results[-10:]

    assert r.hset(f"{t}:h", mapping={"a": "1", "b": "2"}) == 2
    assert r.hgetall(f"{t}:h") == {b"a": b"1", b"b": b"2"}
    assert r.hincrby(f"{t}:h", "a", 5) == 6

    # A transaction whose keys share a hash tag, so they live on one server.
    acct = "{" + t + ":acct}"
    with r.pipeline(transaction=True) as tx:
        tx.set(f"{acct}:a", 10).incrby(f"{acct}:b", 5).decrby(f"{acct}:a", 3).get(f"{acct}:a")
        assert tx.execute() == [True, 5, 7, b"7"]
    # WATCH / MULTI / EXEC with a retry loop, as applications write it.
    with r.pipeline() as tx:
        tx.watch(f"{acct}:a")
        current = int(tx.get(f"{acct}:a"))
        tx.multi()
        tx.set(f"{acct}:a", current + 1)
        assert tx.execute() == [True]
    assert r.get(f"{acct}:a") == b"8"

    # A blocking pop fed by a producer on another connection.
    def produce():
        time.sleep(0.2)
        redis.Redis(host="127.0.0.1", port=port, **kwargs).rpush(f"{t}:jobs", "job-1")

    threading.Thread(target=produce).start()
    assert tuple(r.blpop([f"{t}:jobs"], timeout=10)) == (f"{t}:jobs".encode(), b"job-1")
    assert r.blpop([f"{t}:jobs"], timeout=1) is None

    # Pub/sub: a channel and a pattern, published from another connection.
    p = r.pubsub()
    p.subscribe(f"{t}:news")
    p.psubscribe(f"{t}:ev:*")
    for _ in range(2):
        assert p.get_message(timeout=5)["type"] in ("subscribe", "psubscribe")
    publisher = redis.Redis(host="127.0.0.1", port=port, **kwargs)
    assert publisher.publish(f"{t}:news", "hello") == 1
    m = wait_message(p)
    assert (m["type"], m["channel"], m["data"]) == ("message", f"{t}:news".encode(), b"hello"), m
    assert publisher.publish(f"{t}:ev:1", "x") == 1
    m = wait_message(p)
    assert (m["type"], m["pattern"], m["data"]) == ("pmessage", f"{t}:ev:*".encode(), b"x"), m
    assert publisher.pubsub_numsub(f"{t}:news") == [(f"{t}:news".encode(), 1)]
    p.unsubscribe()
    p.punsubscribe()
    p.close()

    # Scripts: EVAL by keys, and a registered script (EVALSHA, falling back to EVAL on NOSCRIPT).
    assert r.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, f"{t}:s", 4) == 4
    bump = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    for k in keys[:10]:
        assert bump(keys=[f"{k}:s"], args=[2]) == 2
    sha = r.script_load("return 7")
    assert r.script_exists(sha) == [True]
    assert r.evalsha(sha, 1, f"{t}:any") == 7

    seen = set(r.scan_iter(match=f"{t}:*", count=20))
    for k in keys + [f"{t}:greeting", f"{t}:h"]:
        assert k.encode() in seen, f"SCAN missed {k}"
    r.close()
    print(f"{label}: ok")


async def async_workload(label):
    t = f"{tag}:{label}"
    r = redis.asyncio.Redis(host="127.0.0.1", port=port, socket_timeout=15)
    assert await r.ping() is True
    assert await r.set(f"{t}:greeting", "hello") is True
    assert await r.get(f"{t}:greeting") == b"hello"
    keys = [f"{t}:k{i}" for i in range(30)]
    assert await r.mset({k: "v" for k in keys}) is True
    assert await r.mget(keys) == [b"v"] * 30
    async with r.pipeline(transaction=False) as pipe:
        for k in keys:
            pipe.incr(f"{k}:n")
        assert await pipe.execute() == [1] * 30
    assert await r.hset(f"{t}:h", "f", "v") == 1
    assert await r.hget(f"{t}:h", "f") == b"v"
    acct = "{" + t + ":acct}"
    async with r.pipeline(transaction=True) as tx:
        tx.incr(f"{acct}:a").incr(f"{acct}:b")
        assert await tx.execute() == [1, 1]

    async def produce():
        await asyncio.sleep(0.2)
        p = redis.asyncio.Redis(host="127.0.0.1", port=port)
        await p.rpush(f"{t}:jobs", "j")
        await p.aclose()

    producer = asyncio.create_task(produce())
    assert tuple(await r.blpop([f"{t}:jobs"], timeout=10)) == (f"{t}:jobs".encode(), b"j")
    await producer

    ps = r.pubsub()
    await ps.subscribe(f"{t}:news")
    await ps.psubscribe(f"{t}:ev:*")
    for _ in range(2):
        assert (await ps.get_message(timeout=5))["type"] in ("subscribe", "psubscribe")
    publisher = redis.asyncio.Redis(host="127.0.0.1", port=port)
    assert await publisher.publish(f"{t}:news", "a") == 1
    assert await publisher.publish(f"{t}:ev:2", "b") == 1
    got = []
    end = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < end:
        m = await ps.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if m is not None:
            got.append((m["type"], m["data"]))
    assert sorted(got) == [("message", b"a"), ("pmessage", b"b")], got
    await ps.aclose()
    await publisher.aclose()

    assert await r.eval("return #KEYS", 1, f"{t}:x") == 1
    seen = set()
    async for k in r.scan_iter(match=f"{t}:*", count=25):
        seen.add(k)
    for k in keys:
        assert k.encode() in seen, f"SCAN missed {k}"
    await r.aclose()
    print(f"{label}: ok")


sync_workload("resp3-default")
sync_workload("resp2", protocol=2)
asyncio.run(async_workload("asyncio"))
