//! Meta commands (mg, ms, md, ma) through the multi-destination routes (failover, miss_failover, all_*, shadow)
//! with real memcached: the same combining rules as the text commands, quiet mode decided on the combined reply,
//! `O` and `k` in every reply (ferrule's default replies included), `mn` after every earlier reply.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn mc_pool(name: &str, ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}:1\"")).collect();
    format!(
        "[pools.{name}]\nprotocol = \"memcache\"\nservers = [{}]\ntimeout_ms = 300\nconnect_timeout_ms = 300\n\n",
        list.join(", ")
    )
}

/// Sends `requests` (pipelined, ending with `mn`) and returns every reply up to and including `MN`.
fn exchange(port: u16, requests: &str) -> String {
    assert!(requests.ends_with("mn\r\n"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(requests.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    while !buf.ends_with(b"MN\r\n") {
        match s.read(&mut tmp) {
            Ok(0) => panic!("closed; got {:?}", String::from_utf8_lossy(&buf)),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("{e}; got {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    String::from_utf8(buf).unwrap()
}

/// Polls `f` for up to 5 s: background copies land after the client's reply.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn has(p: &Proc, key: &str, value: &str) -> bool {
    exchange(p.port, &format!("mg {key} v\r\nmn\r\n")) == format!("VA {}\r\n{value}\r\nMN\r\n", value.len())
}

fn set_direct(p: &Proc, key: &str, value: &str) {
    let got = exchange(p.port, &format!("ms {key} {}\r\n{value}\r\nmn\r\n", value.len()));
    assert_eq!(got, "HD\r\nMN\r\n");
}

/// One listener, a prefix route per kind, every kind over the replicated pool `p` (servers a and b, each a child).
fn start(a: &Proc, b: &Proc, c: &Proc) -> (Ferrule, u16) {
    let port = free_port();
    let dead = free_port();
    let body = format!(
        "{}[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"s:\" = \"sync\", \"a:\" = \"async\", \"i:\" = \"initial\", \
         \"x:\" = \"fastest\", \"j:\" = \"majority\", \"f:\" = \"failover\", \"m:\" = \"misses\", \"h:\" = \"mirrored\", \
         \"n:\" = \"with_null\", \"d:\" = \"all_dead\" }}\n\n\
         [routes.sync]\ntype = \"all_sync\"\nchildren = [\"p/*\"]\n\n\
         [routes.async]\ntype = \"all_async\"\nchildren = [\"p/*\"]\n\n\
         [routes.initial]\ntype = \"all_initial\"\nchildren = [\"p/*\"]\n\n\
         [routes.fastest]\ntype = \"all_fastest\"\nchildren = [\"p/*\"]\n\n\
         [routes.majority]\ntype = \"all_majority\"\nchildren = [\"p3/*\"]\n\n\
         [routes.failover]\ntype = \"failover\"\nchildren = [\"dead\", \"only_b\"]\n\n\
         [routes.misses]\ntype = \"miss_failover\"\nchildren = [\"p/*\"]\n\n\
         [routes.mirrored]\ntype = \"shadow\"\nchild = \"only_a\"\n\
         shadows = [{{ target = \"only_b\", key_fraction = [0.0, 1.0], request_fraction = 1.0 }}]\n\n\
         [routes.with_null]\ntype = \"all_sync\"\nchildren = [\"nothing\", \"only_b\"]\n\n\
         [routes.nothing]\ntype = \"null\"\n\n\
         [routes.all_dead]\ntype = \"failover\"\nchildren = [\"dead\"]\n\n{}{}{}{}{}",
        listener_toml("mc", port, "memcache", "main", ""),
        mc_pool("p", &[a.port, b.port]),
        mc_pool("p3", &[a.port, b.port, c.port]),
        mc_pool("only_a", &[a.port]),
        mc_pool("only_b", &[b.port]),
        mc_pool("dead", &[dead]),
    );
    (Ferrule::start(&body, port), port)
}

#[test]
fn meta_writes_reach_every_child_and_replies_combine_as_for_text() {
    let (a, b, c) = (memcached(), memcached(), memcached());
    let (_f, port) = start(&a, &b, &c);

    // all_sync: both servers stored it before the client hears HD; O and k come back as memcached sends them.
    let got = exchange(port, "ms s:1 2 O1 k T0\r\nhi\r\nmg s:1 v O2\r\nmn\r\n");
    assert_eq!(got, "HD O1 ks:1\r\nVA 2 O2\r\nhi\r\nMN\r\n");
    assert!(has(&a, "s:1", "hi") && has(&b, "s:1", "hi"));
    // The worst reply: a key only a holds reads as a miss, an add (ME) only b could do answers NS.
    set_direct(&a, "s:only_a", "x");
    let got = exchange(port, "mg s:only_a v O3 k\r\nms s:only_a 1 ME O4\r\ny\r\nmn\r\n");
    assert_eq!(got, "EN O3 ks:only_a\r\nNS O4\r\nMN\r\n");
    assert!(has(&b, "s:only_a", "y"), "b took the add");

    // all_async: the default reply at once (EN, NS, NF, with O and k), the write reaches both in the background.
    let got = exchange(port, "ms a:1 1 O5 k\r\nz\r\nmg a:1 v O6\r\nmd a:nope O7\r\nma a:n O8\r\nmn\r\n");
    assert_eq!(got, "NS O5 ka:1\r\nEN O6\r\nNF O7\r\nNF O8\r\nMN\r\n");
    assert!(eventually(|| has(&a, "a:1", "z") && has(&b, "a:1", "z")));

    // all_initial: the first child's reply; all_fastest: the first that is not a failure; both write to both.
    set_direct(&b, "i:only_b", "w");
    let got = exchange(port, "mg i:only_b v\r\nms x:1 1\r\nq\r\nmn\r\n");
    assert_eq!(got, "EN\r\nHD\r\nMN\r\n");
    assert!(eventually(|| has(&a, "x:1", "q") && has(&b, "x:1", "q")));

    // all_majority over three: two holding it is a hit, one is not.
    set_direct(&a, "j:two", "2");
    set_direct(&c, "j:two", "2");
    set_direct(&b, "j:one", "1");
    let got = exchange(port, "mg j:two v\r\nmg j:one v\r\nma j:two\r\nmn\r\n");
    assert_eq!(got, "VA 1\r\n2\r\nEN\r\nHD\r\nMN\r\n", "ma: a and c incremented, b has no such item");
    assert!(has(&a, "j:two", "3") && has(&c, "j:two", "3"));

    // A null child's reply (with O and k) is combined like any other: the worst of NS and HD.
    let got = exchange(port, "ms n:1 1 O9 k\r\nv\r\nmn\r\n");
    assert_eq!(got, "NS O9 kn:1\r\nMN\r\n");
    assert!(has(&b, "n:1", "v"));
}

#[test]
fn meta_reads_fail_over_and_miss_failover_reads_on_past_en() {
    let (a, b, c) = (memcached(), memcached(), memcached());
    let (_f, port) = start(&a, &b, &c);
    // failover: the first child is refused at once, the second answers, writes included.
    set_direct(&b, "f:k", "bee");
    let got = exchange(port, "mg f:k v k O1\r\nms f:w 1 O2\r\nw\r\nmg f:nope v\r\nmn\r\n");
    assert_eq!(got, "VA 3 kf:k O1\r\nbee\r\nHD O2\r\nEN\r\nMN\r\n");
    assert!(has(&b, "f:w", "w"));
    // Every child down: the last failure, and the connection goes on.
    let got = exchange(port, "mg d:k v\r\nmn\r\n");
    assert!(got.starts_with("SERVER_ERROR ") && got.ends_with("\r\nMN\r\n"), "{got:?}");

    // miss_failover: EN from the first child is a miss, so the read goes on to the second; md too (NF is a miss).
    set_direct(&b, "m:k", "only_b");
    set_direct(&b, "m:del", "x");
    let got = exchange(port, "mg m:k v O1 k\r\nmg m:none v O2\r\nmd m:del O3\r\nmn\r\n");
    assert_eq!(got, "VA 6 O1 km:k\r\nonly_b\r\nEN O2\r\nHD O3\r\nMN\r\n");
    assert!(!has(&b, "m:del", "x"), "the delete reached the second child");
    // Writes go to the first child only.
    let got = exchange(port, "ms m:w 1\r\nw\r\nmn\r\n");
    assert_eq!(got, "HD\r\nMN\r\n");
    assert!(has(&a, "m:w", "w") && !has(&b, "m:w", "w"));

    // shadow: the child answers, the copy lands on the shadow.
    let got = exchange(port, "ms h:1 1 O4\r\ns\r\nmg h:1 v\r\nmn\r\n");
    assert_eq!(got, "HD O4\r\nVA 1\r\ns\r\nMN\r\n");
    assert!(eventually(|| has(&b, "h:1", "s")));
}

/// Quiet requests are sent without `q` to every child, and the combined reply is hidden only if memcached would
/// hide it: hiding each child's reply before combining would lose all_sync's NS (an empty reply would rank worst).
#[test]
fn quiet_meta_requests_are_decided_on_the_combined_reply() {
    let (a, b, c) = (memcached(), memcached(), memcached());
    let (_f, port) = start(&a, &b, &c);
    set_direct(&a, "s:q_only_a", "x");
    set_direct(&b, "m:q", "found");
    let mut req = String::new();
    req.push_str("ms s:q1 1 q\r\n1\r\n"); // HD from both: hidden
    req.push_str("ms s:q_only_a 1 ME q O1\r\n2\r\n"); // NS (a) and HD (b): NS shown
    req.push_str("mg s:q1 v q k\r\n"); // a hit: shown
    req.push_str("mg s:never v q O2\r\n"); // EN from both: hidden
    req.push_str("md s:q1 q\r\n"); // HD: hidden
    req.push_str("md s:q1 q O3\r\n"); // NF: shown
    req.push_str("mg m:q v q\r\n"); // miss_failover: a's EN, then b's hit: shown
    req.push_str("mg m:never v q\r\n"); // EN from both: hidden
    req.push_str("mg a:q v q\r\n"); // all_async's default EN: hidden
    req.push_str("ms a:q 1 q O4\r\nz\r\n"); // all_async's default NS: shown
    req.push_str("ms h:q 1 q\r\nh\r\n"); // shadow's child HD: hidden
    req.push_str("mg n:q v q\r\n"); // null child EN and b's EN: hidden
    req.push_str("mn\r\n");
    let got = exchange(port, &req);
    assert_eq!(got, "NS O1\r\nVA 1 ks:q1\r\n1\r\nNF O3\r\nVA 5\r\nfound\r\nNS O4\r\nMN\r\n");
    assert!(!has(&a, "s:q1", "1") && !has(&b, "s:q1", "1"), "the quiet md deleted on both");
    assert!(eventually(|| has(&b, "h:q", "h")), "the shadow copy of a quiet ms lands");
}

/// Through `warmup`, meta requests take their text operation's path, except that `mg` does not read through: a cold
/// miss answers `EN` and nothing is copied; `md` reaches both children (so a later text read cannot refill it).
#[test]
fn meta_through_warmup_reads_cold_alone_and_deletes_both() {
    let (cold, warm) = (memcached(), memcached());
    set_direct(&warm, "w", "old");
    set_direct(&warm, "d", "x");
    set_direct(&cold, "d", "x");
    let port = free_port();
    let body = format!(
        "{}[routes.main]\ntype = \"warmup\"\ncold = \"cold\"\nwarm = \"warm\"\n\n{}{}",
        listener_toml("mc", port, "memcache", "main", ""),
        mc_pool("cold", &[cold.port]),
        mc_pool("warm", &[warm.port])
    );
    let _f = Ferrule::start(&body, port);
    assert_eq!(exchange(port, "mg w v\r\nmd d\r\nmn\r\n"), "EN\r\nHD\r\nMN\r\n");
    assert!(!has(&cold, "w", "old"), "a meta read does not fill");
    assert!(!has(&cold, "d", "x") && !has(&warm, "d", "x"), "md reaches cold and warm");
}
