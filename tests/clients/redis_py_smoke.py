"""redis-py through ferrule: ping/get/set/mget with the client's default protocol (RESP3 from redis-py 8 on),
and with protocol=3 and protocol=2 explicitly. Usage: redis_py_smoke.py <port>. Exits non-zero on any mismatch."""
import sys

import redis

port = int(sys.argv[1])
for protocol in (None, 3, 2):
    kwargs = {} if protocol is None else {"protocol": protocol}
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, **kwargs)
    label = f"protocol={protocol or 'default'}"
    assert r.ping() is True, label
    keys = [f"py:{protocol}:{i}" for i in range(20)]
    for i, k in enumerate(keys):
        assert r.set(k, f"v{i}") is True, label
    assert r.get(keys[0]) == b"v0", label
    assert r.get("py:missing") is None, label
    expected = [f"v{i}".encode() for i in range(20)] + [None]
    assert r.mget(keys + ["py:missing"]) == expected, label
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.get(k)
    assert pipe.execute() == expected[:-1], label
    assert r.delete(*keys) == 20, label
    hello = r.execute_command("HELLO")
    if isinstance(hello, list):  # RESP2: the flat array of field, value, ...
        hello = dict(zip(hello[::2], hello[1::2]))
    proto = hello.get(b"proto", hello.get("proto"))
    print(f"{label}: ok, proto {proto}, redis-py {redis.__version__}")
    r.close()
