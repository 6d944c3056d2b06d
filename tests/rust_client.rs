//! The Rust `redis` crate (a real client library) through ferrule, RESP2 and RESP3, against three real
//! redis-servers: get/set, mget/mset across servers, a pipeline, a full SCAN, a script by sha, CLIENT and auth.

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
        redis_pool_toml("main", &specs, "hash = \"md5\"")
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
}

#[test]
fn rust_redis_crate_resp2_and_resp3() {
    let (_backends, _f, port) = setup();
    workload(&format!("redis://app:app-pw@127.0.0.1:{port}/"), "r2:");
    workload(&format!("redis://app:app-pw@127.0.0.1:{port}/?protocol=resp3"), "r3:");
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
