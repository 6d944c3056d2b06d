//! The routes that move or copy data between clusters, end to end with real redis-server and memcached: `migrate`
//! (keys switch from one cluster to another over a time window), `warmup` (a cold cluster filled from a warm one,
//! the remaining TTL carried), `l1l2` (a small l1 filled from l2 with a configured TTL), and their per-route stats.

mod common;
use common::*;
use ferrule::protocol::memcache::Command;
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
        let port = free_port();
        let body = format!(
            "{}{}{}{}",
            listener_toml("mc", port, "memcache", "moving", ""),
            migrate_toml(start, interval),
            mc_pool("old", &old),
            mc_pool("new", &new)
        );
        let f = Ferrule::start(&body, port);
        let mut c = Client::connect(port);
        let from_new =
            (0..40).filter(|i| c.mc(&format!("get k{i}\r\n"), Command::Get).contains("\r\nnew\r\n")).count();
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
    let port = free_port();
    let body = format!(
        "{}{}{}{}",
        listener_toml("r", port, "redis", "moving", ""),
        migrate_toml(unix_now() - 1800, 3600),
        redis_pool("old", &old),
        redis_pool("new", &new)
    );
    let _f = Ferrule::start(&body, port);
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
