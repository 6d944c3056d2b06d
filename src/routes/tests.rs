//! The tree walk: selectors nest, strips add up, canned replies end the walk.

use super::*;
use crate::protocol::memcache::Command;

const TREE: &str = r#"
[listeners.r]
listen = "127.0.0.1:1"
protocol = "redis"
route = "main"

[routes.main]
type = "prefix"
prefixes = { "user:" = "by_op", "gone:" = "gone", "void:" = "void", "strip:" = "inner" }
strip_prefix = true

[routes.by_op]
type = "operation"
operations = { read = "a", write = "b" }

[routes.inner]
type = "prefix"
prefixes = { "x:" = "a" }
default = "spread"
strip_prefix = true

[routes.spread]
type = "hash"
children = ["a", "b"]

[routes.gone]
type = "error"
message = "this prefix is retired"

[routes.void]
type = "null"

[pools.a]
servers = ["127.0.0.1:6381:1"]

[pools.b]
servers = ["127.0.0.1:6382:1", "127.0.0.1:6383:1"]
"#;

fn redis(name: &str) -> Op {
    Op::Redis(redis::lookup(name.as_bytes()).expect(name))
}

#[test]
fn selectors_nest_down_to_a_leaf() {
    let cfg = Config::parse(TREE).expect("valid");
    let tree = RouteTree::build(&cfg);
    let top = cfg.listeners[0].target;
    let ctx = Ctx::default();
    let (a, b) = (cfg.pool_index("a").unwrap(), cfg.pool_index("b").unwrap());
    assert_eq!(tree.decide(top, redis("GET"), b"user:1", &ctx), Decision::Send { leaf: Leaf::Pool(a), strip: 5 });
    assert_eq!(
        tree.decide(top, redis("GET"), b"strip:x:9", &ctx),
        Decision::Send { leaf: Leaf::Pool(a), strip: 8 },
        "both prefixes are stripped"
    );
    let spread = tree.decide(top, redis("GET"), b"strip:other", &ctx);
    let Decision::Send { leaf: Leaf::Pool(p), strip: 6 } = spread else { panic!("{spread:?}") };
    let expected = [a, b][hash::jump(mix(u64::from(crate::hash::HashKind::Fnv1a_64.hash(b"other"))), 2)];
    assert_eq!(p, expected, "the hash route hashes the stripped key");
    assert_eq!(tree.decide(top, redis("SET"), b"user:1", &ctx), Decision::Send { leaf: Leaf::Pool(b), strip: 5 });
    // The walk names every route it enters, from the listener's down, for their request counters.
    let mut visited = Vec::new();
    tree.decide_visiting(top, redis("GET"), b"strip:other", &ctx, &mut |r| visited.push(cfg.routes[r].name.as_str()));
    assert_eq!(visited, ["main", "inner", "spread"]);
}

#[test]
fn canned_replies_end_the_walk() {
    let cfg = Config::parse(TREE).expect("valid");
    let tree = RouteTree::build(&cfg);
    let top = cfg.listeners[0].target;
    let ctx = Ctx::default();
    assert_eq!(
        tree.decide(top, redis("GET"), b"gone:1", &ctx),
        Decision::Reply(Canned::Error { route: cfg.route_index("gone").unwrap() })
    );
    assert_eq!(tree.decide(top, redis("GET"), b"void:1", &ctx), Decision::Reply(Canned::Null));
    assert_eq!(
        tree.decide(top, redis("GET"), b"nomatch", &ctx),
        Decision::Reply(Canned::NoRoute { route: cfg.route_index("main").unwrap() })
    );
    let mut out = Vec::new();
    canned_reply(
        &cfg,
        Canned::NoRoute { route: cfg.route_index("main").unwrap() },
        redis("GET"),
        1,
        crate::protocol::redis::Proto::Resp2,
        &mut out,
    );
    assert_eq!(out, b"-ERR ferrule: route 'main' has no destination for this request\r\n");
    out.clear();
    canned_reply(
        &cfg,
        Canned::Error { route: cfg.route_index("gone").unwrap() },
        redis("GET"),
        1,
        crate::protocol::redis::Proto::Resp2,
        &mut out,
    );
    assert_eq!(out, b"-ERR this prefix is retired\r\n");
    out.clear();
    canned_reply(&cfg, Canned::Null, Op::Memcache(Command::Get), 1, crate::protocol::redis::Proto::Resp2, &mut out);
    assert_eq!(out, b"END\r\n");
}

#[test]
fn a_pool_target_is_the_pool() {
    let cfg = Config::parse(TREE).expect("valid");
    let tree = RouteTree::build(&cfg);
    let d = tree.decide(Target::Pool(0), Op::Memcache(Command::Get), b"k", &Ctx::default());
    assert_eq!(d, Decision::Send { leaf: Leaf::Pool(0), strip: 0 });
}

#[test]
fn migrate_switches_by_the_clock_and_fans_deletes_out_in_the_window() {
    let text = r#"
[listeners.m]
listen = "127.0.0.1:1"
protocol = "memcache"
route = "moving"

[routes.moving]
type = "migrate"
from = "a"
to = "b"
start_time = 1000
interval_s = 100

[pools.a]
servers = ["127.0.0.1:11211:1"]

[pools.b]
servers = ["127.0.0.1:11212:1"]
"#;
    let cfg = Config::parse(text).expect("valid");
    let tree = RouteTree::build(&cfg);
    let top = cfg.listeners[0].target;
    let (a, b) = (cfg.pool_index("a").unwrap(), cfg.pool_index("b").unwrap());
    let at = |now| Ctx { now_unix: now, random: 0 };
    let get = Op::Memcache(Command::Get);
    assert_eq!(tree.decide(top, get, b"k", &at(999)), Decision::Send { leaf: Leaf::Pool(a), strip: 0 });
    assert_eq!(tree.decide(top, get, b"k", &at(1100)), Decision::Send { leaf: Leaf::Pool(b), strip: 0 });
    let del = Op::Memcache(Command::Delete);
    assert_eq!(tree.decide(top, del, b"k", &at(999)), Decision::Send { leaf: Leaf::Pool(a), strip: 0 });
    assert!(matches!(tree.decide(top, del, b"k", &at(1050)), Decision::Fan { .. }), "deletes reach both in the window");
    assert_eq!(tree.decide(top, del, b"k", &at(1100)), Decision::Send { leaf: Leaf::Pool(b), strip: 0 });
}

#[test]
fn fill_routes_send_plain_writes_on_to_the_first_child_and_fan_out_reads_and_deletes() {
    let text = r#"
[listeners.m]
listen = "127.0.0.1:1"
protocol = "memcache"
route = "warm"

[routes.warm]
type = "warmup"
cold = "a"
warm = "b"

[pools.a]
servers = ["127.0.0.1:11211:1"]

[pools.b]
servers = ["127.0.0.1:11212:1"]
"#;
    let cfg = Config::parse(text).expect("valid");
    let tree = RouteTree::build(&cfg);
    let top = cfg.listeners[0].target;
    let a = cfg.pool_index("a").unwrap();
    let ctx = Ctx::default();
    let to_cold = Decision::Send { leaf: Leaf::Pool(a), strip: 0 };
    assert_eq!(tree.decide(top, Op::Memcache(Command::Set), b"k", &ctx), to_cold);
    assert_eq!(tree.decide(top, Op::Memcache(Command::Gets), b"k", &ctx), to_cold);
    assert!(matches!(tree.decide(top, Op::Memcache(Command::Get), b"k", &ctx), Decision::Fan { .. }));
    assert!(matches!(tree.decide(top, Op::Memcache(Command::Delete), b"k", &ctx), Decision::Fan { .. }));
}
