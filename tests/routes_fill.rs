//! The routes that move or copy data between clusters, end to end with real redis-server and memcached: `migrate`
//! (keys switch from one cluster to another over a time window), `warmup` (a cold cluster filled from a warm one,
//! the remaining TTL carried), `l1l2` (a small l1 filled from l2 with a configured TTL), and their per-route stats.

mod common;
use common::*;
use ferrule::protocol::memcache::Command;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn redis_pool(name: &str, p: &Proc) -> String {
    redis_pool_toml(name, &[format!("127.0.0.1:{}:1", p.port)], "timeout_ms = 500")
}

fn mc_pool(name: &str, p: &Proc) -> String {
    redis_pool(name, p).replace("servers", "protocol = \"memcache\"\nservers")
}

fn mc_direct(p: &Proc, line: &str, cmd: Command) -> String {
    Client::connect(p.port).mc(line, cmd)
}

fn redis_direct(p: &Proc, args: &[&str]) -> String {
    Client::connect(p.port).redis_str(args)
}

/// ferrule with one listener of `protocol` whose route is `route` (defined by `route_toml`), in front of one-server
/// pools of that protocol, by name: what each test varies is the route's config and what the pools hold.
fn behind_route(protocol: &str, route: &str, route_toml: &str, pools: &[(&str, &Proc)]) -> (Ferrule, u16) {
    let port = free_port();
    let mut body = listener_toml("front", port, protocol, route, "") + route_toml;
    for (name, p) in pools {
        body += &if protocol == "redis" { redis_pool(name, p) } else { mc_pool(name, p) };
    }
    (Ferrule::start(&body, port), port)
}

fn migrate_toml(start: u64, interval: u64) -> String {
    format!(
        "[routes.moving]\ntype = \"migrate\"\nfrom = \"old\"\nto = \"new\"\nstart_time = {start}\ninterval_s = {interval}\n\n"
    )
}

/// Before the window every key is read from `from`, after it from `to`; inside it some keys have moved and some
/// not, and deletes reach both clusters.
#[test]
fn memcache_migrate_moves_keys_over_the_window_and_deletes_reach_both() {
    let (old, new) = (memcached(), memcached());
    for i in 0..40 {
        mc_direct(&old, &format!("set k{i} 0 0 3\r\nold\r\n"), Command::Set);
        mc_direct(&new, &format!("set k{i} 0 0 3\r\nnew\r\n"), Command::Set);
    }
    let reads = |start: u64, interval: u64| {
        let (f, port) =
            behind_route("memcache", "moving", &migrate_toml(start, interval), &[("old", &old), ("new", &new)]);
        let mut c = Client::connect(port);
        let from_new = (0..40).filter(|i| c.mc(&format!("get k{i}\r\n"), Command::Get).contains("\r\nnew\r\n")).count();
        (f, c, from_new)
    };
    let (_f, _, n) = reads(unix_now() + 3600, 3600);
    assert_eq!(n, 0, "before start_time every key is read from the old cluster");
    let (_f, _, n) = reads(unix_now() - 7200, 3600);
    assert_eq!(n, 40, "after start_time + interval_s every key is read from the new cluster");
    let (_f, mut c, n) = reads(unix_now() - 1800, 3600);
    assert!((5..35).contains(&n), "mid-window about half the keys moved: {n}");
    // A delete in the window reaches both clusters, whichever the key reads from.
    assert_eq!(c.mc("delete k1\r\n", Command::Delete), "DELETED\r\n");
    assert_eq!(mc_direct(&old, "get k1\r\n", Command::Get), "END\r\n");
    assert_eq!(mc_direct(&new, "get k1\r\n", Command::Get), "END\r\n");
    // Deleted on one side only: the worse reply (NOT_FOUND) answers.
    mc_direct(&old, "delete k2\r\n", Command::Delete);
    assert_eq!(c.mc("delete k2\r\n", Command::Delete), "NOT_FOUND\r\n");
    assert_eq!(mc_direct(&new, "get k2\r\n", Command::Get), "END\r\n");
    // Writes follow the key: a set lands where the key reads from.
    assert_eq!(c.mc("set k3 0 0 5\r\nfresh\r\n", Command::Set), "STORED\r\n");
    assert!(c.mc("get k3\r\n", Command::Get).contains("fresh"));
}

#[test]
fn redis_migrate_reads_and_deletes() {
    let (old, new) = (redis_server(), redis_server());
    for i in 0..40 {
        redis_direct(&old, &["SET", &format!("k{i}"), "old"]);
        redis_direct(&new, &["SET", &format!("k{i}"), "new"]);
    }
    let (_f, port) =
        behind_route("redis", "moving", &migrate_toml(unix_now() - 1800, 3600), &[("old", &old), ("new", &new)]);
    let mut c = Client::connect(port);
    let from_new = (0..40).filter(|i| c.redis_str(&["GET", &format!("k{i}")]) == "$3\r\nnew\r\n").count();
    assert!((5..35).contains(&from_new), "{from_new}");
    assert_eq!(c.redis_str(&["DEL", "k5"]), ":1\r\n");
    assert_eq!(redis_direct(&old, &["EXISTS", "k5"]), ":0\r\n");
    assert_eq!(redis_direct(&new, &["EXISTS", "k5"]), ":0\r\n");
    // A multi-key read splits per key between the clusters, in request order.
    let mget = c.redis_str(&["MGET", "k6", "k7", "k8"]);
    assert!(mget.starts_with("*3\r\n"), "{mget}");
}

fn warmup_toml(extra: &str) -> String {
    format!("[routes.warm]\ntype = \"warmup\"\ncold = \"cold\"\nwarm = \"old\"\n{extra}\n")
}

fn mc_ttl(p: &Proc, key: &str) -> i64 {
    let reply = mc_direct(p, &format!("mg {key} t\r\n"), Command::MetaGet);
    let t = reply.split_whitespace().find_map(|w| w.strip_prefix('t')).unwrap_or_else(|| panic!("{reply}"));
    t.parse().unwrap()
}

/// A metric's value from /metrics for one route.
fn route_metric(f: &Ferrule, family: &str, route: &str) -> u64 {
    let (_, body) = f.admin("GET", "/metrics");
    let prefix = format!("{family}{{route=\"{route}\"");
    body.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
}

/// memcache warmup: a cold miss is read from warm with `mg` (value, TTL, flags), answered, and added into cold
/// with the remaining TTL (not immortal); a value without expiry is copied without; writes go to cold only.
#[test]
fn memcache_warmup_fills_cold_carrying_ttl_and_flags() {
    let (cold, old) = (memcached(), memcached());
    mc_direct(&old, "set k 42 100 5\r\nhello\r\n", Command::Set);
    mc_direct(&old, "set forever 1 0 2\r\nhi\r\n", Command::Set);
    let (f, port) = behind_route("memcache", "warm", &warmup_toml(""), &[("cold", &cold), ("old", &old)]);
    let mut c = Client::connect(port);
    assert_eq!(c.mc("get k\r\n", Command::Get), "VALUE k 42 5\r\nhello\r\nEND\r\n", "the warm value, its flags");
    assert!(eventually(Duration::from_secs(5), || mc_direct(&cold, "get k\r\n", Command::Get).contains("hello")));
    assert_eq!(mc_direct(&cold, "get k\r\n", Command::Get), "VALUE k 42 5\r\nhello\r\nEND\r\n");
    let (warm_ttl, cold_ttl) = (mc_ttl(&old, "k"), mc_ttl(&cold, "k"));
    assert!(cold_ttl > 0 && (warm_ttl - cold_ttl).abs() <= 2, "cold TTL {cold_ttl} follows warm's {warm_ttl}");
    assert_eq!(c.mc("get forever\r\n", Command::Get), "VALUE forever 1 2\r\nhi\r\nEND\r\n");
    assert!(eventually(Duration::from_secs(5), || mc_direct(&cold, "get forever\r\n", Command::Get).contains("hi")));
    assert_eq!(mc_ttl(&cold, "forever"), -1, "no expiry at the source: none on the copy");
    // A miss in both is a miss; writes go to cold alone.
    assert_eq!(c.mc("get nowhere\r\n", Command::Get), "END\r\n");
    assert_eq!(c.mc("set w 0 0 1\r\nx\r\n", Command::Set), "STORED\r\n");
    assert!(mc_direct(&cold, "get w\r\n", Command::Get).contains("VALUE w"));
    assert_eq!(mc_direct(&old, "get w\r\n", Command::Get), "END\r\n");
    // Now cold answers by itself.
    mc_direct(&old, "set k 0 0 3\r\nnew\r\n", Command::Set);
    assert!(c.mc("get k\r\n", Command::Get).contains("hello"), "cold's copy answers once it is there");
    // Deletes reach both, so a deleted key is not filled back.
    assert_eq!(c.mc("delete k\r\n", Command::Delete), "DELETED\r\n");
    assert_eq!(c.mc("get k\r\n", Command::Get), "END\r\n");
    assert_eq!(route_metric(&f, "ferrule_route_fills_total", "warm"), 2);
    assert_eq!(route_metric(&f, "ferrule_route_background_sent_total", "warm"), 2);
    assert_eq!(route_metric(&f, "ferrule_route_background_failed_total", "warm"), 0);
    // Every request the route decided: five gets, the delete, and the set it sent on to cold alone.
    assert_eq!(route_metric(&f, "ferrule_route_requests_total", "warm"), 7);
    let (_, stats) = f.admin("GET", "/stats");
    assert!(stats.contains("\"routes\":{\"warm\":{\"type\":\"warmup\""), "{stats}");
}

/// redis warmup: GET and PTTL in one pipeline to warm; the copy is SET NX with PX the remaining TTL.
#[test]
fn redis_warmup_fills_cold_with_the_remaining_ttl() {
    let (cold, old) = (redis_server(), redis_server());
    redis_direct(&old, &["SET", "k", "hello", "EX", "100"]);
    redis_direct(&old, &["SET", "forever", "v"]);
    let (f, port) = behind_route("redis", "warm", &warmup_toml("exptime = 5"), &[("cold", &cold), ("old", &old)]);
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["GET", "k"]), "$5\r\nhello\r\n");
    assert!(eventually(Duration::from_secs(5), || redis_direct(&cold, &["GET", "k"]) == "$5\r\nhello\r\n"));
    let ttl =
        |p: &Proc, k: &str| -> i64 { redis_direct(p, &["PTTL", k]).trim_start_matches(':').trim().parse().unwrap() };
    let (w, k) = (ttl(&old, "k"), ttl(&cold, "k"));
    assert!(k > 0 && (w - k).abs() < 2000, "cold PTTL {k} follows warm's {w} (not the 5 s fallback)");
    assert_eq!(c.redis_str(&["GET", "forever"]), "$1\r\nv\r\n");
    assert!(eventually(Duration::from_secs(5), || redis_direct(&cold, &["GET", "forever"]) == "$1\r\nv\r\n"));
    assert_eq!(ttl(&cold, "forever"), -1);
    assert_eq!(c.redis_str(&["GET", "nowhere"]), "$-1\r\n");
    // SET NX never overwrites a value written into cold meanwhile.
    redis_direct(&old, &["SET", "raced", "old"]);
    redis_direct(&cold, &["DEL", "raced"]);
    assert_eq!(c.redis_str(&["SET", "raced", "fresh"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["GET", "raced"]), "$5\r\nfresh\r\n");
    assert_eq!(redis_direct(&old, &["GET", "raced"]), "$3\r\nold\r\n", "writes go to cold only");
    assert_eq!(route_metric(&f, "ferrule_route_fills_total", "warm"), 2);
}

fn l1l2_toml(extra: &str) -> String {
    format!("[routes.layered]\ntype = \"l1l2\"\nl1 = \"l1\"\nl2 = \"l2\"\nl1_ttl_s = 30\n{extra}\n")
}

#[test]
fn memcache_l1l2_fills_l1_with_its_ttl_and_writes_l2_when_asked() {
    let (l1, l2) = (memcached(), memcached());
    mc_direct(&l2, "set k 9 0 3\r\nabc\r\n", Command::Set);
    let (f, port) = behind_route("memcache", "layered", &l1l2_toml("write_l2 = true"), &[("l1", &l1), ("l2", &l2)]);
    let mut c = Client::connect(port);
    assert_eq!(c.mc("get k\r\n", Command::Get), "VALUE k 9 3\r\nabc\r\nEND\r\n");
    assert!(eventually(Duration::from_secs(5), || mc_direct(&l1, "get k\r\n", Command::Get).contains("abc")));
    let t = mc_ttl(&l1, "k");
    assert!((25..=30).contains(&t), "l1 copy expires after l1_ttl_s: {t}");
    assert_eq!(c.mc("set w 0 0 1\r\nx\r\n", Command::Set), "STORED\r\n");
    assert!(mc_direct(&l1, "get w\r\n", Command::Get).contains("VALUE w"));
    assert!(mc_direct(&l2, "get w\r\n", Command::Get).contains("VALUE w"), "write_l2");
    assert_eq!(c.mc("delete k\r\n", Command::Delete), "DELETED\r\n");
    assert_eq!(mc_direct(&l2, "get k\r\n", Command::Get), "END\r\n", "deletes reach l2");
    assert_eq!(route_metric(&f, "ferrule_route_fills_total", "layered"), 1);
}

#[test]
fn redis_l1l2_fills_l1_and_writes_only_l1_by_default() {
    let (l1, l2) = (redis_server(), redis_server());
    redis_direct(&l2, &["SET", "k", "abc"]);
    let (f, port) = behind_route("redis", "layered", &l1l2_toml(""), &[("l1", &l1), ("l2", &l2)]);
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["GET", "k"]), "$3\r\nabc\r\n");
    assert!(eventually(Duration::from_secs(5), || redis_direct(&l1, &["GET", "k"]) == "$3\r\nabc\r\n"));
    let t: i64 = redis_direct(&l1, &["TTL", "k"]).trim_start_matches(':').trim().parse().unwrap();
    assert!((25..=30).contains(&t), "{t}");
    assert_eq!(c.redis_str(&["SET", "w", "x"]), "+OK\r\n");
    assert_eq!(redis_direct(&l2, &["EXISTS", "w"]), ":0\r\n", "without write_l2 writes stay in l1");
    assert_eq!(route_metric(&f, "ferrule_route_fills_total", "layered"), 1);
    assert_eq!(route_metric(&f, "ferrule_route_background_dropped_total", "layered"), 0);
}

/// A memcache multi-get through warmup reads every key through on its own: cold hits, warm fills and misses
/// merged in request order; cold may be a sharded pool (keys on different servers).
#[test]
fn memcache_warmup_multi_get_reads_each_key_through() {
    let (c1, c2, old) = (memcached(), memcached(), memcached());
    let cold = format!("127.0.0.1:{}:1", c1.port);
    let cold2 = format!("127.0.0.1:{}:1", c2.port);
    let cold_pool = redis_pool_toml("cold", &[cold, cold2], "timeout_ms = 500")
        .replace("servers", "protocol = \"memcache\"\nservers");
    let port = free_port();
    let body = format!(
        "{}{}{}{}",
        listener_toml("mc", port, "memcache", "warm", ""),
        warmup_toml(""),
        cold_pool,
        mc_pool("old", &old)
    );
    let f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    for i in 0..6 {
        mc_direct(&old, &format!("set w{i} 0 60 2\r\nw{i}\r\n"), Command::Set);
    }
    assert_eq!(c.mc("set hot 0 0 3\r\nhot\r\n", Command::Set), "STORED\r\n");
    let reply = c.mc("get w0 hot missing w1 w2 w3 w4 w5\r\n", Command::Get);
    let expected = "VALUE w0 0 2\r\nw0\r\nVALUE hot 0 3\r\nhot\r\nVALUE w1 0 2\r\nw1\r\nVALUE w2 0 2\r\nw2\r\n\
                    VALUE w3 0 2\r\nw3\r\nVALUE w4 0 2\r\nw4\r\nVALUE w5 0 2\r\nw5\r\nEND\r\n";
    assert_eq!(reply, expected);
    assert!(eventually(Duration::from_secs(5), || route_metric(&f, "ferrule_route_fills_total", "warm") == 6));
    let on_cold = |k: &str| {
        [&c1, &c2].iter().filter(|p| mc_direct(p, &format!("get {k}\r\n"), Command::Get).contains("VALUE")).count()
    };
    assert_eq!(on_cold("w3"), 1, "the fill landed on the key's cold server");
    assert_eq!(c.mc("get w0 w1\r\n", Command::Get), "VALUE w0 0 2\r\nw0\r\nVALUE w1 0 2\r\nw1\r\nEND\r\n");
}

/// memcache l1l2: the l1 copy never outlives l2's item: l2 is read with `mg v t f`, and a key expiring in l2
/// before `l1_ttl_s` is copied with l2's remaining TTL; one living longer (or not expiring) with `l1_ttl_s`.
#[test]
fn memcache_l1l2_caps_the_l1_copy_at_l2s_remaining_ttl() {
    let (l1, l2) = (memcached(), memcached());
    mc_direct(&l2, "set short 3 8 2\r\nab\r\n", Command::Set);
    mc_direct(&l2, "set long 0 1000 2\r\ncd\r\n", Command::Set);
    mc_direct(&l2, "set never 0 0 2\r\nef\r\n", Command::Set);
    let (_f, port) = behind_route("memcache", "layered", &l1l2_toml(""), &[("l1", &l1), ("l2", &l2)]);
    let mut c = Client::connect(port);
    assert_eq!(c.mc("get short\r\n", Command::Get), "VALUE short 3 2\r\nab\r\nEND\r\n");
    assert_eq!(c.mc("get long\r\n", Command::Get), "VALUE long 0 2\r\ncd\r\nEND\r\n");
    assert_eq!(c.mc("get never\r\n", Command::Get), "VALUE never 0 2\r\nef\r\nEND\r\n");
    for k in ["short", "long", "never"] {
        assert!(eventually(Duration::from_secs(5), || mc_direct(&l1, &format!("get {k}\r\n"), Command::Get)
            .contains("VALUE")));
    }
    let t = mc_ttl(&l1, "short");
    assert!((1..=8).contains(&t), "capped at l2's remaining 8 s, not l1_ttl_s (30): {t}");
    let t = mc_ttl(&l1, "long");
    assert!((25..=30).contains(&t), "l2's item outlives l1_ttl_s: {t}");
    let t = mc_ttl(&l1, "never");
    assert!((25..=30).contains(&t), "no expiry in l2: l1_ttl_s: {t}");
    assert_eq!(mc_direct(&l1, "get short\r\n", Command::Get), "VALUE short 3 2\r\nab\r\nEND\r\n", "flags kept");
}

/// redis l1l2: a PTTL behind the GET of l2 caps the l1 copy at l2's remaining TTL.
#[test]
fn redis_l1l2_caps_the_l1_copy_at_l2s_remaining_ttl() {
    let (l1, l2) = (redis_server(), redis_server());
    redis_direct(&l2, &["SET", "short", "ab", "PX", "8000"]);
    redis_direct(&l2, &["SET", "long", "cd", "EX", "1000"]);
    redis_direct(&l2, &["SET", "never", "ef"]);
    let (_f, port) = behind_route("redis", "layered", &l1l2_toml(""), &[("l1", &l1), ("l2", &l2)]);
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["GET", "short"]), "$2\r\nab\r\n");
    assert_eq!(c.redis_str(&["GET", "long"]), "$2\r\ncd\r\n");
    assert_eq!(c.redis_str(&["GET", "never"]), "$2\r\nef\r\n");
    let pttl = |k: &str| -> i64 { redis_direct(&l1, &["PTTL", k]).trim_start_matches(':').trim().parse().unwrap() };
    for k in ["short", "long", "never"] {
        assert!(eventually(Duration::from_secs(5), || pttl(k) != -2), "{k} copied into l1");
    }
    let t = pttl("short");
    assert!((1..=8000).contains(&t), "capped at l2's remaining 8 s, not l1_ttl_s (30): {t} ms");
    let t = pttl("long");
    assert!((25_000..=30_000).contains(&t), "l2's key outlives l1_ttl_s: {t} ms");
    let t = pttl("never");
    assert!((25_000..=30_000).contains(&t), "no expiry in l2: l1_ttl_s: {t} ms");
}

/// A memcached older than the meta protocol, standing in for l2: `mg` is `ERROR` to it, `get` finds `k` (flags 5)
/// and nothing else. Counts the `mg` and `get` lines it was sent, over every connection.
fn old_memcached() -> (u16, Arc<(AtomicUsize, AtomicUsize)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let counts = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(16).flatten() {
            let counts = counts.clone();
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut out = conn.try_clone().unwrap();
                for line in BufReader::new(conn).lines().take(1000) {
                    let Ok(line) = line else { return };
                    let reply: &[u8] = match line.split_whitespace().collect::<Vec<_>>()[..] {
                        ["mg", ..] => {
                            counts.0.fetch_add(1, Ordering::SeqCst);
                            b"ERROR\r\n"
                        }
                        ["get", key] => {
                            counts.1.fetch_add(1, Ordering::SeqCst);
                            if key == "k" {
                                b"VALUE k 5 3\r\nabc\r\nEND\r\n"
                            } else {
                                b"END\r\n"
                            }
                        }
                        ["version"] => b"VERSION 1.4.0\r\n",
                        _ => b"ERROR\r\n",
                    };
                    if out.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// memcache l1l2 in front of an l2 without the meta protocol: the `mg` answered `ERROR` is read again with `get`, the
/// value (flags kept) answers the client and fills l1 with `l1_ttl_s` (l2's TTL cannot be learned), and from then
/// on l2 is read with `get` at once.
#[test]
fn memcache_l1l2_reads_an_l2_without_meta_with_get() {
    let l1 = memcached();
    let (l2_port, l2_seen) = old_memcached();
    let port = free_port();
    let body = listener_toml("front", port, "memcache", "layered", "")
        + &l1l2_toml("")
        + &mc_pool("l1", &l1)
        + &redis_pool_toml("l2", &[format!("127.0.0.1:{l2_port}:1")], "timeout_ms = 500")
            .replace("servers", "protocol = \"memcache\"\nservers");
    let f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    assert_eq!(c.mc("get k\r\n", Command::Get), "VALUE k 5 3\r\nabc\r\nEND\r\n");
    assert!(eventually(Duration::from_secs(5), || mc_direct(&l1, "get k\r\n", Command::Get).contains("abc")));
    assert_eq!(mc_direct(&l1, "get k\r\n", Command::Get), "VALUE k 5 3\r\nabc\r\nEND\r\n", "flags kept in l1");
    let t = mc_ttl(&l1, "k");
    assert!((25..=30).contains(&t), "l1 copy expires after l1_ttl_s: {t}");
    assert_eq!(route_metric(&f, "ferrule_route_fills_total", "layered"), 1);
    // Misses in both are misses; l2 is asked with `get` straight away now.
    assert_eq!(c.mc("get nothing\r\n", Command::Get), "END\r\n");
    assert_eq!(c.mc("get nada\r\n", Command::Get), "END\r\n");
    assert_eq!(l2_seen.0.load(Ordering::SeqCst), 1, "one mg, answered ERROR");
    assert_eq!(l2_seen.1.load(Ordering::SeqCst), 3, "every read of l2 after it a get");
    // The hit in l1 does not reach l2 at all.
    assert_eq!(c.mc("get k\r\n", Command::Get), "VALUE k 5 3\r\nabc\r\nEND\r\n");
    assert_eq!(l2_seen.1.load(Ordering::SeqCst), 3);
}
