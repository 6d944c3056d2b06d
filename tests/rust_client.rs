//! The Rust `redis` crate (a real client library) through ferrule, RESP2 and RESP3, against three real
//! redis-servers, and straight to one redis for comparison: get/set, mget/mset across servers, a pipeline, hashes,
//! a transaction with hash tags, a blocking pop fed by a producer, pub/sub with a pattern, a full SCAN, scripts,
//! CLIENT and auth.

mod common;
use common::*;
use std::collections::HashSet;

fn setup() -> (Vec<Proc>, Ferrule, u16) {
    let backends: Vec<Proc> = (0..3).map(|_| redis_server()).collect();
    let specs: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let users = "users = [{ name = \"app\", password = \"app-pw\" }, \
                 { name = \"ro\", password = \"ro-pw\", permissions = \"read-only\" }]";
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", users),
        redis_pool_toml("main", &specs, "hash = \"md5\"\nhash_tag = \"{}\"")
    );
    let f = Ferrule::start(&body, port);
    (backends, f, port)
}

/// `tag` keeps each run's keys apart (FLUSHDB is not something the proxy runs on the whole pool).
fn workload(url: &str, tag: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection_with_timeout(std::time::Duration::from_secs(5)).unwrap();
    con.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg("rust-client").query(&mut con).unwrap();
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name.as_deref(), Some("rust-client"));

    let _: () = redis::cmd("SET").arg(format!("{tag}greeting")).arg("hello").query(&mut con).unwrap();
    let got: Option<String> = redis::cmd("GET").arg(format!("{tag}greeting")).query(&mut con).unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut con).unwrap();
    assert_eq!(missing, None);

    let keys: Vec<String> = (0..50).map(|i| format!("{tag}k{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for k in &keys {
        mset.arg(k).arg(format!("v-{k}"));
    }
    let _: () = mset.query(&mut con).unwrap();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).arg("absent").query(&mut con).unwrap();
    assert_eq!(values.len(), 51);
    assert_eq!(values[7].as_deref(), Some(format!("v-{tag}k7").as_str()));
    assert_eq!(values[50], None);

    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("INCR").arg(format!("{tag}counter{}", i % 10));
    }
    let counts: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(counts.len(), 100);
    assert_eq!(counts[99], 10);

    let mut seen = HashSet::new();
    let mut cursor: u64 = 0;
    for _ in 0..1000 {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(20).query(&mut con).unwrap();
        seen.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(cursor, 0, "SCAN ended");
    for k in keys.iter().chain([format!("{tag}greeting")].iter()) {
        assert!(seen.contains(k), "SCAN missed {k}");
    }

    // redis::Script sends EVALSHA and falls back to EVAL on NOSCRIPT; after SCRIPT LOAD through ferrule it never
    // needs to, on any server.
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let _: String = script.prepare_invoke().load(&mut con).unwrap();
    for k in &keys {
        let n: i64 =
            redis::cmd("EVALSHA").arg(script.get_hash()).arg(1).arg(format!("s-{k}")).arg(5).query(&mut con).unwrap();
        assert_eq!(n, 5);
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert!(n >= 111, "{n}");

    let _: () = redis::cmd("HSET").arg(format!("{tag}h")).arg("a").arg(1).arg("b").arg(2).query(&mut con).unwrap();
    let h: std::collections::HashMap<String, i64> =
        redis::cmd("HGETALL").arg(format!("{tag}h")).query(&mut con).unwrap();
    assert_eq!(h, [("a".to_string(), 1), ("b".to_string(), 2)].into_iter().collect());

    // A transaction whose keys share a hash tag.
    let acct = format!("{{{tag}acct}}");
    let (b, a): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(format!("{acct}:a"))
        .arg(10)
        .ignore()
        .cmd("INCRBY")
        .arg(format!("{acct}:b"))
        .arg(5)
        .cmd("DECRBY")
        .arg(format!("{acct}:a"))
        .arg(3)
        .query(&mut con)
        .unwrap();
    assert_eq!((b, a), (5, 7));

    // A blocking pop fed by a producer on another connection.
    let producer_url = url.to_string();
    let jobs = format!("{tag}jobs");
    let producer = std::thread::spawn({
        let jobs = jobs.clone();
        move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut p = redis::Client::open(producer_url).unwrap().get_connection().unwrap();
            let _: i64 = redis::cmd("RPUSH").arg(jobs).arg("job-1").query(&mut p).unwrap();
        }
    });
    let popped: (String, String) = redis::cmd("BLPOP").arg(&jobs).arg(10).query(&mut con).unwrap();
    assert_eq!(popped, (jobs.clone(), "job-1".to_string()));
    producer.join().unwrap();
}

/// Pub/sub with the crate's PubSub: a channel and a pattern, published from another connection (RESP2: the sync
/// PubSub of redis 0.27 is a RESP2 subscriber; RESP3 pushes are covered by redis-py and tests/pubsub.rs).
fn pubsub(url: &str, tag: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut sub_con = client.get_connection().unwrap();
    let mut publisher = client.get_connection().unwrap();
    let mut sub = sub_con.as_pubsub();
    sub.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    sub.subscribe(format!("{tag}news")).unwrap();
    sub.psubscribe(format!("{tag}ev:*")).unwrap();
    let n: i64 = redis::cmd("PUBLISH").arg(format!("{tag}news")).arg("hello").query(&mut publisher).unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("PUBLISH").arg(format!("{tag}ev:1")).arg("x").query(&mut publisher).unwrap();
    assert_eq!(n, 1);
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = sub.get_message().unwrap();
        let pattern: Option<String> = m.get_pattern().ok();
        got.push((m.get_channel_name().to_string(), pattern, m.get_payload::<String>().unwrap()));
    }
    got.sort();
    assert_eq!(
        got,
        [
            (format!("{tag}ev:1"), Some(format!("{tag}ev:*")), "x".to_string()),
            (format!("{tag}news"), None, "hello".to_string()),
        ]
    );
    sub.unsubscribe(format!("{tag}news")).unwrap();
    sub.punsubscribe(format!("{tag}ev:*")).unwrap();
}

#[test]
fn rust_redis_crate_resp2_and_resp3() {
    let (_backends, _f, port) = setup();
    // What the workload asserts is what one redis does.
    let reference = redis_server();
    workload(&format!("redis://127.0.0.1:{}/", reference.port), "d2:");
    workload(&format!("redis://127.0.0.1:{}/?protocol=resp3", reference.port), "d3:");
    pubsub(&format!("redis://127.0.0.1:{}/", reference.port), "d2:");
    workload(&format!("redis://app:app-pw@127.0.0.1:{port}/"), "r2:");
    workload(&format!("redis://app:app-pw@127.0.0.1:{port}/?protocol=resp3"), "r3:");
    pubsub(&format!("redis://app:app-pw@127.0.0.1:{port}/"), "r2:");
    // A read-only user reads and is refused writes with redis' NOPERM.
    let client = redis::Client::open(format!("redis://ro:ro-pw@127.0.0.1:{port}/")).unwrap();
    let mut con = client.get_connection().unwrap();
    let got: Option<String> = redis::cmd("GET").arg("r2:k1").query(&mut con).unwrap();
    assert_eq!(got.as_deref(), Some("v-r2:k1"));
    let err = redis::cmd("SET").arg("r2:k1").arg("x").query::<()>(&mut con).unwrap_err();
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
    // Wrong password: the library recognises redis' WRONGPASS as an authentication failure.
    let bad = redis::Client::open(format!("redis://app:wrong@127.0.0.1:{port}/")).unwrap();
    let err = bad.get_connection().err().expect("refused");
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
}
