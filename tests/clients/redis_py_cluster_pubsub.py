"""redis-py's PubSub through ferrule in front of a Redis Cluster, as through one server: SUBSCRIBE, PSUBSCRIBE and
SSUBSCRIBE of channels in slots of every primary, PUBLISH and SPUBLISH through the same ferrule, in RESP2 and RESP3.
Usage: redis_py_cluster_pubsub.py <port>. Exits non-zero on any mismatch."""
import sys
import time

import redis

port = int(sys.argv[1])


def next_message(p, label):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = p.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if m is not None:
            return m
    raise AssertionError(f"{label}: no message within 10 s")


for protocol in (2, 3):
    label = f"protocol={protocol}"
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, protocol=protocol)
    p = r.pubsub()
    channels = [f"py{protocol}:ch:{i}" for i in range(12)]
    p.subscribe(*channels)
    p.psubscribe(f"py{protocol}:pat:*")
    shard = [f"py{protocol}:s:{i}" for i in range(6)]
    for s in shard:
        p.ssubscribe(s)
    # Every confirmation is in before publishing (ferrule releases them once the nodes confirmed).
    for _ in range(len(channels) + 1 + len(shard)):
        m = p.get_message(timeout=5.0)
        assert m is not None and m["type"] in ("subscribe", "psubscribe", "ssubscribe"), (label, m)
    for i, ch in enumerate(channels):
        assert r.publish(ch, f"m{i}") >= 1, (label, ch)
        m = next_message(p, label)
        assert m["type"] == "message" and m["channel"] == ch.encode() and m["data"] == f"m{i}".encode(), (label, m)
    # A cluster's PUBLISH counts the receivers of the node it ran on (the channel's slot primary); the pattern's
    # subscription may be on another node, which the message reaches all the same.
    r.publish(f"py{protocol}:pat:x", "pm")
    m = next_message(p, label)
    assert m["type"] == "pmessage" and m["pattern"] == f"py{protocol}:pat:*".encode(), (label, m)
    assert m["channel"] == f"py{protocol}:pat:x".encode() and m["data"] == b"pm", (label, m)
    for i, s in enumerate(shard):
        assert r.spublish(s, f"s{i}") == 1, (label, s)
        m = next_message(p, label)
        assert m["type"] == "smessage" and m["channel"] == s.encode() and m["data"] == f"s{i}".encode(), (label, m)
    assert r.pubsub_numsub(channels[0]) == [(channels[0].encode(), 1)], label
    p.unsubscribe()
    p.punsubscribe()
    p.sunsubscribe()
    p.close()
    r.close()
    print(f"{label}: ok, redis-py {redis.__version__}")
