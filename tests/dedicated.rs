//! Commands that need a backend connection of the client's own (transactions, blocking commands), through ferrule
//! against real redis servers, compared with a direct connection to one redis where that says what is right.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Sends all the commands in one write and reads one reply each.
fn pipeline(c: &mut Client, commands: &[&[&str]]) -> Vec<String> {
    let out: Vec<u8> = commands.iter().flat_map(|a| resp(a)).collect();
    c.send(&out);
    commands.iter().map(|_| String::from_utf8_lossy(&c.redis_reply()).into_owned()).collect()
}

/// The backend (of two) that holds `key`, by asking each directly.
fn holder(backends: &[Proc; 2], key: &str) -> Option<u16> {
    backends.iter().map(|b| b.port).find(|&p| Client::connect(p).redis_str(&["EXISTS", key]) == ":1\r\n")
}

/// Two keys that ferrule places on different servers (found by writing them through it).
fn keys_on_two_servers(backends: &[Proc; 2], port: u16) -> (String, String) {
    let mut c = Client::connect(port);
    let first = "probe:0".to_string();
    c.redis_str(&["SET", &first, "x"]);
    let home = holder(backends, &first);
    for i in 1..200 {
        let k = format!("probe:{i}");
        c.redis_str(&["SET", &k, "x"]);
        if holder(backends, &k) != home {
            return (first, k);
        }
    }
    panic!("no two keys on different servers");
}

#[test]
fn a_transaction_with_hash_tags_runs_whole_as_on_one_redis() {
    let (backends, _f, port) = two_redis_behind_ferrule("");
    let mut c = Client::connect(port);
    let tx: &[&[&str]] = &[
        &["MULTI"],
        &["PING"],
        &["SET", "{acct}:a", "10"],
        &["INCRBY", "{acct}:b", "5"],
        &["DECRBY", "{acct}:a", "3"],
        &["GET", "{acct}:a"],
        &["EXEC"],
    ];
    let through = pipeline(&mut c, tx);
    // The same on a redis of its own, fresh like the pool's.
    let reference = redis_server();
    let mut direct = Client::connect(reference.port);
    let expected = pipeline(&mut direct, tx);
    assert_eq!(through, expected, "replies as one redis gives them");
    assert_eq!(
        through.last().unwrap(),
        "*5\r\n+PONG\r\n+OK\r\n:5\r\n:7\r\n$1\r\n7\r\n",
        "EXEC answers every queued command"
    );
    // Both keys are on the server of the tag, and the client is back to ordinary requests.
    let home = holder(&backends, "{acct}:a");
    assert!(home.is_some());
    assert_eq!(holder(&backends, "{acct}:b"), home);
    assert_eq!(c.redis_str(&["GET", "{acct}:b"]), "$1\r\n5\r\n");
    // DISCARD applies nothing.
    let r = pipeline(&mut c, &[&["MULTI"], &["SET", "{acct}:a", "99"], &["DISCARD"], &["GET", "{acct}:a"]]);
    assert_eq!(r, ["+OK\r\n", "+QUEUED\r\n", "+OK\r\n", "$1\r\n7\r\n"]);
    // A transaction of commands without keys runs too, and an empty one.
    assert_eq!(pipeline(&mut c, &[&["MULTI"], &["ECHO", "hi"], &["EXEC"]])[2], "*1\r\n$2\r\nhi\r\n");
    assert_eq!(pipeline(&mut c, &[&["MULTI"], &["EXEC"]])[1], "*0\r\n");
}

#[test]
fn watch_conflict_makes_exec_return_nil() {
    let (_backends, _f, port) = two_redis_behind_ferrule("");
    let mut c = Client::connect(port);
    let mut other = Client::connect(port);
    assert_eq!(c.redis_str(&["SET", "{w}:k", "1"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["WATCH", "{w}:k"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["GET", "{w}:k"]), "$1\r\n1\r\n");
    // Another client changes the watched key: the transaction must not apply.
    assert_eq!(other.redis_str(&["SET", "{w}:k", "2"]), "+OK\r\n");
    let r = pipeline(&mut c, &[&["MULTI"], &["SET", "{w}:k", "from-tx"], &["EXEC"]]);
    assert_eq!(r, ["+OK\r\n", "+QUEUED\r\n", "*-1\r\n"]);
    assert_eq!(c.redis_str(&["GET", "{w}:k"]), "$1\r\n2\r\n");
    // Without a conflict it applies; UNWATCH forgets.
    assert_eq!(c.redis_str(&["WATCH", "{w}:k"]), "+OK\r\n");
    let r = pipeline(&mut c, &[&["MULTI"], &["SET", "{w}:k", "3"], &["EXEC"]]);
    assert_eq!(r[2], "*1\r\n+OK\r\n");
    assert_eq!(c.redis_str(&["WATCH", "{w}:k"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["UNWATCH"]), "+OK\r\n");
    assert_eq!(other.redis_str(&["SET", "{w}:k", "4"]), "+OK\r\n");
    let r = pipeline(&mut c, &[&["MULTI"], &["SET", "{w}:k", "5"], &["EXEC"]]);
    assert_eq!(r[2], "*1\r\n+OK\r\n");
}

#[test]
fn crossslot_inside_multi_aborts_and_applies_nothing() {
    let (backends, _f, port) = two_redis_behind_ferrule("");
    let (a, b) = keys_on_two_servers(&backends, port);
    let mut c = Client::connect(port);
    let r = pipeline(&mut c, &[&["MULTI"], &["SET", &a, "tx"], &["SET", &b, "tx"], &["INCR", "n"], &["EXEC"]]);
    assert_eq!(r[0], "+OK\r\n");
    assert_eq!(r[1], "+QUEUED\r\n");
    assert!(r[2].starts_with("-CROSSSLOT "), "{}", r[2]);
    assert_eq!(r[4], "-EXECABORT Transaction discarded because of previous errors.\r\n");
    for k in [&a, &b] {
        assert_eq!(c.redis_str(&["GET", k]), "$1\r\nx\r\n", "{k} untouched");
    }
    // WATCH keys on two servers are refused the same way.
    assert!(c.redis_str(&["WATCH", &a, &b]).starts_with("-CROSSSLOT "));
    assert_eq!(c.redis_str(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
}

#[test]
fn a_client_that_leaves_mid_multi_leaves_nothing_applied() {
    let (backends, _f, port) = two_redis_behind_ferrule("max_dedicated_connections = 1");
    {
        let mut c = Client::connect(port);
        let r = pipeline(&mut c, &[&["MULTI"], &["SET", "{gone}:a", "1"], &["INCR", "{gone}:b"]]);
        assert_eq!(r, ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"]);
    }
    // The dedicated connection was closed (redis discarded the transaction), so the one slot is free again.
    let mut d = Client::connect(port);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = pipeline(&mut d, &[&["MULTI"], &["GET", "{gone}:a"], &["EXEC"]]);
        if r[2] == "*1\r\n$-1\r\n" {
            break;
        }
        assert!(r[1].contains("no dedicated connection available"), "{r:?}");
        assert!(Instant::now() < deadline, "the abandoned connection was never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(holder(&backends, "{gone}:a"), None);
    assert_eq!(holder(&backends, "{gone}:b"), None);
}

#[test]
fn a_blocked_client_never_stalls_the_shared_connection() {
    // timeout_ms is one the pipelining client's requests cannot reach on a loaded machine (200 ms was: they timed
    // out); the BLPOP blocks half as long again, so a block bounded by timeout_ms alone would fail it.
    let (_backends, _f, port) = two_redis_behind_ferrule("timeout_ms = 1000");
    let load = Pipeliner::start(port, "blk", 16);
    let mut blocked = Client::connect(port);
    let started = Instant::now();
    // Blocks for longer than timeout_ms: its request timeout is its block time plus timeout_ms.
    blocked.send(&resp(&["BLPOP", "{q}:jobs", "{q}:other", "0"]));
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let mut p = Client::connect(port);
        p.redis_str(&["RPUSH", "{q}:jobs", "job-1"])
    });
    let before = load.peek().replies;
    let reply = String::from_utf8_lossy(&blocked.redis_reply()).into_owned();
    assert_eq!(reply, "*2\r\n$8\r\n{q}:jobs\r\n$5\r\njob-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(1400), "it waited for the producer");
    assert_eq!(producer.join().unwrap(), ":1\r\n");
    let report = load.finish();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.ended.is_none(), "{:?}", report.ended);
    assert!(report.replies > before + 100, "the other client kept being served: {} then {}", before, report.replies);
    // A block that times out answers nil, not a proxy timeout; the client then works as usual.
    let t0 = Instant::now();
    assert_eq!(blocked.redis_str(&["BRPOP", "{q}:empty", "0.3"]), "*-1\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert_eq!(blocked.redis_str(&["BLMOVE", "{q}:empty", "{q}:dst", "LEFT", "RIGHT", "0.05"]), "*-1\r\n");
    assert_eq!(blocked.redis_str(&["XADD", "{q}:s", "1-1", "f", "v"]), "$3\r\n1-1\r\n");
    assert_eq!(
        blocked.redis_str(&["XREAD", "BLOCK", "100", "STREAMS", "{q}:s", "0"]),
        "*1\r\n*2\r\n$5\r\n{q}:s\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(blocked.redis_str(&["GET", "{q}:dst"]), "$-1\r\n");
    assert_eq!(blocked.redis_str(&["BLPOP", "x", "-1"]), "-ERR timeout is negative\r\n");
}

#[test]
fn blocking_keys_must_share_a_server() {
    let (backends, _f, port) = two_redis_behind_ferrule("");
    let (a, b) = keys_on_two_servers(&backends, port);
    let mut c = Client::connect(port);
    assert!(c.redis_str(&["BLPOP", &a, &b, "0"]).starts_with("-CROSSSLOT "));
    assert!(c.redis_str(&["XREAD", "BLOCK", "0", "STREAMS", &a, &b, "0", "0"]).starts_with("-CROSSSLOT "));
}

#[test]
fn max_dedicated_connections_exhausted_is_a_clear_error() {
    let (_backends, _f, port) = two_redis_behind_ferrule("max_dedicated_connections = 1");
    let mut first = Client::connect(port);
    first.send(&resp(&["BLPOP", "{x}:q", "0"]));
    let mut second = Client::connect(port);
    // The first one's BLPOP holds the only dedicated connection once it reaches the proxy.
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = second.redis_str(&["BLPOP", "{x}:q", "0.01"]);
        if r != "*-1\r\n" || Instant::now() > deadline {
            break r;
        }
    };
    assert!(r.starts_with("-ERR ferrule: backend main/"), "{r}");
    assert!(r.ends_with("has no dedicated connection available (max_dedicated_connections = 1)\r\n"), "{r}");
    assert!(pipeline(&mut second, &[&["MULTI"], &["SET", "{x}:k", "v"], &["EXEC"]])[1].contains("max_dedicated"));
    // Shared connections are unaffected.
    assert_eq!(second.redis_str(&["SET", "{x}:k", "v"]), "+OK\r\n");
    // A client that leaves while blocked frees its connection.
    drop(first);
    let mut third = Client::connect(port);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = third.redis_str(&["BLPOP", "{x}:q", "0.01"]);
        if r == "*-1\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the abandoned blocked connection was never freed: {r}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and its BLPOP is gone from the server: a push goes to nobody else.
    assert_eq!(third.redis_str(&["RPUSH", "{x}:q", "v"]), ":1\r\n");
    assert_eq!(third.redis_str(&["LLEN", "{x}:q"]), ":1\r\n");
}

#[test]
fn max_dedicated_connections_zero_refuses() {
    let (_backends, _f, port) = two_redis_behind_ferrule("max_dedicated_connections = 0");
    let mut c = Client::connect(port);
    let r = c.redis_str(&["BLPOP", "q", "1"]);
    assert!(r.ends_with("no dedicated connection available (max_dedicated_connections = 0)\r\n"), "{r}");
}

#[test]
fn transactions_and_blocking_in_resp3() {
    let (_backends, _f, port) = two_redis_behind_ferrule("");
    let mut c = Client::connect(port);
    assert!(c.redis_str(&["HELLO", "3"]).starts_with("%"));
    let r = pipeline(&mut c, &[&["MULTI"], &["SET", "{r3}:a", "1"], &["HGETALL", "{r3}:h"], &["EXEC"]]);
    assert_eq!(r[3], "*2\r\n+OK\r\n%0\r\n", "RESP3 inside EXEC");
    assert_eq!(c.redis_str(&["BLPOP", "{r3}:q", "0.01"]), "_\r\n");
}

/// A Python that has redis-py: `FERRULE_PYTHON`, else the virtualenv scripts/test.sh makes, else `python3`.
fn python_with_redis_py() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let python = std::env::var_os("FERRULE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        }
    });
    let found = Command::new(&python).args(["-c", "import redis"]).output();
    match found {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "redis-py is not installed for {}: run scripts/test.sh (it makes target/pyenv), or set FERRULE_PYTHON",
            python.display()
        ),
    }
}

#[test]
fn redis_py_transactions_and_blocking_pop() {
    let python = python_with_redis_py();
    let (_backends, _f, port) = two_redis_behind_ferrule("");
    let script = r#"
import sys, threading, time, redis
for proto in (2, 3):
    r = redis.Redis(port=int(sys.argv[1]), socket_timeout=10, protocol=proto)
    r.delete("{acct}:a", "{acct}:b")
    p = r.pipeline(transaction=True)
    p.incr("{acct}:a")
    p.incrby("{acct}:b", 10)
    p.get("{acct}:a")
    print(proto, "tx:", p.execute())
    def move(pipe):
        v = int(pipe.get("{acct}:b"))
        pipe.multi()
        pipe.set("{acct}:b", v - 1)
        pipe.incr("{acct}:a")
    print(proto, "watch:", r.transaction(move, "{acct}:b"))
    threading.Timer(0.3, lambda: redis.Redis(port=int(sys.argv[1]), protocol=proto).rpush("{q}", "job")).start()
    print(proto, "blpop:", list(r.blpop(["{q}"], timeout=5)))
    print(proto, "after:", r.mget("{acct}:a", "{acct}:b"))
"#;
    let out = Command::new(&python).args(["-c", script, &port.to_string()]).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    for proto in [2, 3] {
        assert!(stdout.contains(&format!("{proto} tx: [1, 10, b'1']")), "{stdout}");
        assert!(stdout.contains(&format!("{proto} watch: [True, 2]")), "{stdout}");
        assert!(stdout.contains(&format!("{proto} blpop: [b'{{q}}', b'job']")), "{stdout}");
        assert!(stdout.contains(&format!("{proto} after: [b'2', b'9']")), "{stdout}");
    }
}

/// A listener whose route is a prefix route over two pools of one server each: `a:` keys to one, the rest to the
/// other.
fn routed_setup() -> ([Proc; 2], Ferrule, u16) {
    let backends = [redis_server(), redis_server()];
    let port = free_port();
    let route = "[routes.front]\ntype = \"prefix\"\nprefixes = { \"a:\" = \"pa\" }\ndefault = \"pb\"\n\n";
    let body = format!(
        "{}{route}{}{}",
        listener_toml("cache", port, "redis", "front", ""),
        redis_pool_toml("pa", &[format!("127.0.0.1:{}:1", backends[0].port)], ""),
        redis_pool_toml("pb", &[format!("127.0.0.1:{}:1", backends[1].port)], ""),
    );
    (backends, Ferrule::start(&body, port), port)
}

#[test]
fn transactions_and_blocking_commands_run_on_a_route_that_reaches_one_server() {
    let (backends, _f, port) = routed_setup();
    let mut c = Client::connect(port);
    let tx: &[&[&str]] = &[&["MULTI"], &["SET", "a:x", "1"], &["INCR", "a:x"], &["EXEC"]];
    assert_eq!(pipeline(&mut c, tx), ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "*2\r\n+OK\r\n:2\r\n"]);
    assert_eq!(Client::connect(backends[0].port).redis_str(&["GET", "a:x"]), "$1\r\n2\r\n", "on the route's pool");
    // A queued command that the route sends to the other pool aborts the transaction, with nothing applied.
    let tx: &[&[&str]] = &[&["MULTI"], &["SET", "a:y", "1"], &["SET", "b:y", "1"], &["EXEC"]];
    let replies = pipeline(&mut c, tx);
    assert!(replies[2].starts_with("-CROSSSLOT"), "{replies:?}");
    assert_eq!(replies[3], "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(Client::connect(backends[0].port).redis_str(&["EXISTS", "a:y"]), ":0\r\n");
    // WATCH on the route's server: a write from another client makes EXEC answer nil.
    assert_eq!(c.redis_str(&["WATCH", "b:w"]), "+OK\r\n");
    assert_eq!(Client::connect(port).redis_str(&["SET", "b:w", "other"]), "+OK\r\n");
    assert_eq!(pipeline(&mut c, &[&["MULTI"], &["SET", "b:w", "mine"], &["EXEC"]])[2], "*-1\r\n");
    // A blocking pop on its own connection, fed by another client through the same route.
    let mut blocked = Client::connect(port);
    blocked.send(&resp(&["BLPOP", "b:q", "5"]));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.redis_str(&["GET", "b:w"]), "$5\r\nother\r\n", "the shared connection is not stalled");
    assert_eq!(Client::connect(port).redis_str(&["RPUSH", "b:q", "job"]), ":1\r\n");
    assert_eq!(String::from_utf8_lossy(&blocked.redis_reply()), "*2\r\n$3\r\nb:q\r\n$3\r\njob\r\n");
}

/// The sum over every server of a /metrics family (its samples' values).
fn metric_sum(f: &Ferrule, name: &str) -> u64 {
    let (code, body) = f.admin("GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits (up to 5 s) until the family sums to `want`.
fn await_metric(f: &Ferrule, name: &str, want: u64) {
    let ok = eventually(Duration::from_secs(5), || metric_sum(f, name) == want);
    assert!(ok, "{name} is {}, expected {want}", metric_sum(f, name));
}

#[test]
fn dedicated_and_subscriber_connections_are_counted_in_metrics_and_stats() {
    let (_backends, f, port) = two_redis_behind_ferrule("max_dedicated_connections = 1");
    await_metric(&f, "ferrule_server_dedicated_in_use", 0);
    // A blocked client holds its server's only dedicated connection ...
    let mut blocked = Client::connect(port);
    blocked.send(&resp(&["BLPOP", "{x}:q", "0"]));
    await_metric(&f, "ferrule_server_dedicated_in_use", 1);
    await_metric(&f, "ferrule_server_dedicated_opened_total", 1);
    // ... so another blocking command there is refused, and counted.
    let mut other = Client::connect(port);
    assert!(other.redis_str(&["BLPOP", "{x}:q", "0.01"]).contains("max_dedicated_connections = 1"));
    await_metric(&f, "ferrule_server_dedicated_refused_total", 1);
    // Answered, the connection goes back to the idle set.
    assert_eq!(other.redis_str(&["RPUSH", "{x}:q", "v"]), ":1\r\n");
    assert_eq!(String::from_utf8_lossy(&blocked.redis_reply()), "*2\r\n$5\r\n{x}:q\r\n$1\r\nv\r\n");
    await_metric(&f, "ferrule_server_dedicated_in_use", 0);
    await_metric(&f, "ferrule_server_dedicated_idle", 1);
    // A subscriber: one subscriber connection (taking the idle one's place if it lands on the same server).
    let mut sub = Client::connect(port);
    assert!(sub.redis_str(&["SUBSCRIBE", "news"]).starts_with("*3\r\n$9\r\nsubscribe\r\n"));
    await_metric(&f, "ferrule_server_subscriber_connections", 1);
    await_metric(&f, "ferrule_server_subscriber_connections_opened_total", 1);
    // The same figures per server in /stats (twemproxy's layout, ferrule's fields after its own).
    let (code, body) = f.admin("GET", "/stats");
    assert_eq!(code, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let servers: Vec<&serde_json::Value> =
        stats["main"].as_object().unwrap().values().filter(|v| v.get("dedicated_in_use").is_some()).collect();
    assert_eq!(servers.len(), 2, "{body}");
    let total = |k: &str| servers.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (
            total("dedicated_opened"),
            total("dedicated_refused"),
            total("subscriber_connections"),
            total("subscribers_opened")
        ),
        (1, 1, 1, 1),
        "{body}"
    );
    drop(sub);
    await_metric(&f, "ferrule_server_subscriber_connections", 0);
}
