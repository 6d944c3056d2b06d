//! Multi-destination routes end to end (failover, miss_failover, all_*, shadow) with real redis-server and
//! memcached behind ferrule, including children killed or stopped (SIGSTOP) mid-run.

mod common;
use common::*;
use ferrule::protocol::memcache::Command;
use std::time::{Duration, Instant};

/// How long a stopped server makes a request wait. Short, so a stopped server fails quickly, yet not reached by a
/// live one on a loaded machine (a false timeout there fails a request these tests expect to succeed).
const TIMEOUT_MS: u64 = 1000;

/// A pool of these servers (every one a child with "NAME/*").
fn pool_of(name: &str, servers: &[&Proc]) -> String {
    let list: Vec<String> = servers.iter().map(|p| format!("127.0.0.1:{}:1", p.port)).collect();
    redis_pool_toml(name, &list, &format!("timeout_ms = {TIMEOUT_MS}\nconnect_timeout_ms = {TIMEOUT_MS}"))
}

fn get_direct(p: &Proc, key: &str) -> String {
    Client::connect(p.port).redis_str(&["GET", key])
}

fn mc_get_direct(p: &Proc, key: &str) -> String {
    Client::connect(p.port).mc(&format!("get {key}\r\n"), Command::Get)
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

/// mcrouter's replicated-pool idiom for redis: writes to every server (all_fastest), reads that fail over; a server
/// killed mid-run costs neither reads nor writes.
#[test]
fn redis_replicated_pool_writes_to_all_and_reads_fail_over() {
    let (a, b) = (redis_server(), redis_server());
    let port = free_port();
    let body = format!(
        "{}[routes.replicated]\ntype = \"operation\"\noperations = {{ read = \"reads\", write = \"writes\" }}\n\n\
         [routes.writes]\ntype = \"all_fastest\"\nchildren = [\"pool_a/*\"]\n\n\
         [routes.reads]\ntype = \"failover\"\nchildren = [\"pool_a/*\"]\n\n{}",
        listener_toml("cache", port, "redis", "replicated", ""),
        pool_of("pool_a", &[&a, &b])
    );
    let _f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    assert_eq!(client.redis_str(&["SET", "k1", "v1"]), "+OK\r\n");
    assert!(eventually(|| get_direct(&a, "k1") == "$2\r\nv1\r\n" && get_direct(&b, "k1") == "$2\r\nv1\r\n"));
    assert_eq!(client.redis_str(&["GET", "k1"]), "$2\r\nv1\r\n");
    assert_eq!(client.redis_str(&["GET", "nope"]), "$-1\r\n", "a miss answers, it is no failure");
    // A multi-key read on one replicated server goes whole to each child.
    assert_eq!(client.redis_str(&["MGET", "k1", "nope"]), "*2\r\n$2\r\nv1\r\n$-1\r\n");
    drop(a);
    // Reads fail over to b; writes are answered by b; pipelined, every reply in request order.
    let mut pipeline = Vec::new();
    for i in 0..20 {
        pipeline
            .extend_from_slice(format!("*3\r\n$3\r\nSET\r\n$4\r\nk2-{}\r\n$1\r\n{}\r\n", i % 10, i % 10).as_bytes());
        pipeline.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n");
    }
    client.send(&pipeline);
    for _ in 0..20 {
        assert_eq!(client.redis_reply(), b"+OK\r\n");
        assert_eq!(client.redis_reply(), b"$2\r\nv1\r\n");
    }
    assert_eq!(get_direct(&b, "k2-3"), "$1\r\n3\r\n");
}

/// failover over a memcached pool with the first server stopped (SIGSTOP): the request times out there and is
/// answered by the next; exactly one reply per request, in order. miss_failover reads on past a miss.
#[test]
fn memcache_failover_past_a_stopped_server_and_miss_failover() {
    let (a, b) = (memcached(), memcached());
    let port = free_port();
    let body = format!(
        "{}[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"m:\" = \"misses\" }}\ndefault = \"reads\"\n\n\
         [routes.reads]\ntype = \"failover\"\nchildren = [\"pool_a/*\"]\n\n\
         [routes.misses]\ntype = \"miss_failover\"\nchildren = [\"pool_a/*\"]\n\n{}",
        listener_toml("mc", port, "memcache", "main", ""),
        pool_of("pool_a", &[&a, &b]).replace("servers", "protocol = \"memcache\"\nservers")
    );
    let _f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    // The first child takes writes while it answers.
    assert_eq!(client.mc("set k 0 0 1\r\nx\r\n", Command::Set), "STORED\r\n");
    assert!(mc_get_direct(&a, "k").contains("VALUE k"));
    assert!(!mc_get_direct(&b, "k").contains("VALUE"));
    // miss_failover: a key only the second server has is found there; failover would stop at the first's miss.
    Client::connect(b.port).mc("set m:1 0 0 2\r\nhi\r\n", Command::Set);
    assert_eq!(client.mc("get m:1\r\n", Command::Get), "VALUE m:1 0 2\r\nhi\r\nEND\r\n");
    Client::connect(b.port).mc("set only_b 0 0 1\r\ny\r\n", Command::Set);
    assert_eq!(client.mc("get only_b\r\n", Command::Get), "END\r\n", "failover does not go on after a miss");
    a.signal(libc::SIGSTOP);
    let started = Instant::now();
    client.send(b"get only_b\r\nset k2 0 0 1\r\nz\r\nget only_b\r\n");
    assert_eq!(client.mc_reply(Command::Get), b"VALUE only_b 0 1\r\ny\r\nEND\r\n");
    assert_eq!(client.mc_reply(Command::Set), b"STORED\r\n");
    assert_eq!(client.mc_reply(Command::Get), b"VALUE only_b 0 1\r\ny\r\nEND\r\n");
    // Three requests that each wait out the timeout on the stopped server (1 s), with room for a loaded machine;
    // stuck would be forever (the client's 10 s read timeout).
    assert!(started.elapsed() < Duration::from_secs(8), "failed over after the timeout, not stuck");
    assert!(mc_get_direct(&b, "k2").contains("VALUE k2"), "the write failed over to the second server");
    drop(a);
    drop(b);
    // Every child gone: the last failure answers.
    let reply = client.mc("get k\r\n", Command::Get);
    assert!(reply.starts_with("SERVER_ERROR"), "{reply}");
}

/// all_sync answers with the worst reply; all_majority with the majority's; all_initial with the first child's.
#[test]
fn redis_all_sync_majority_initial_combine_replies() {
    let (a, b, c) = (redis_server(), redis_server(), redis_server());
    let port = free_port();
    let body = format!(
        "{}[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"s:\" = \"sync\", \"m:\" = \"majority\", \"i:\" = \"initial\" }}\n\
         default = \"sync\"\n\n[routes.sync]\ntype = \"all_sync\"\nchildren = [\"p/*\"]\n\n\
         [routes.majority]\ntype = \"all_majority\"\nchildren = [\"p/*\"]\n\n\
         [routes.initial]\ntype = \"all_initial\"\nchildren = [\"p/*\"]\n\n{}",
        listener_toml("cache", port, "redis", "main", ""),
        pool_of("p", &[&a, &b, &c])
    );
    let _f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    for key in ["s:1", "m:1", "i:1"] {
        Client::connect(a.port).redis_str(&["SET", key, "a"]);
        Client::connect(b.port).redis_str(&["SET", key, "b"]);
    }
    assert_eq!(client.redis_str(&["GET", "s:1"]), "$-1\r\n", "c's nil is the worst");
    // Two values of three: a value, the first to arrive.
    let majority = client.redis_str(&["GET", "m:1"]);
    assert!(majority == "$1\r\na\r\n" || majority == "$1\r\nb\r\n", "{majority}");
    assert_eq!(client.redis_str(&["GET", "i:1"]), "$1\r\na\r\n", "the first child's");
    assert_eq!(client.redis_str(&["SET", "s:2", "v"]), "+OK\r\n");
    for p in [&a, &b, &c] {
        assert_eq!(get_direct(p, "s:2"), "$1\r\nv\r\n", "all_sync answered after every child");
    }
    // A wrong-type error on one server is worse than the others' values.
    Client::connect(c.port).redis_str(&["RPUSH", "s:3", "x"]);
    Client::connect(a.port).redis_str(&["SET", "s:3", "a"]);
    assert!(client.redis_str(&["GET", "s:3"]).starts_with("-WRONGTYPE"));
    // A child killed: all_sync reports the failure, all_majority still has a majority.
    drop(c);
    assert!(client.redis_str(&["GET", "s:1"]).starts_with("-ERR ferrule: backend"));
    let majority = client.redis_str(&["GET", "m:1"]);
    assert!(majority == "$1\r\na\r\n" || majority == "$1\r\nb\r\n", "{majority}");
}

/// all_async answers at once with the default reply and writes every child in the background; a stopped child
/// never delays the client.
#[test]
fn memcache_all_async_and_all_fastest_with_a_stopped_child() {
    let (a, b) = (memcached(), memcached());
    let port = free_port();
    let body = format!(
        "{}[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"f:\" = \"fastest\" }}\ndefault = \"async\"\n\n\
         [routes.async]\ntype = \"all_async\"\nchildren = [\"p/*\"]\n\n\
         [routes.fastest]\ntype = \"all_fastest\"\nchildren = [\"p/*\"]\n\n{}",
        listener_toml("mc", port, "memcache", "main", ""),
        pool_of("p", &[&a, &b]).replace("servers", "protocol = \"memcache\"\nservers")
    );
    let _f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    assert_eq!(client.mc("set k 0 0 1\r\nx\r\n", Command::Set), "NOT_STORED\r\n", "the default reply");
    assert!(eventually(|| mc_get_direct(&a, "k").contains("VALUE") && mc_get_direct(&b, "k").contains("VALUE")));
    assert_eq!(client.mc("get k\r\n", Command::Get), "END\r\n", "all_async reads answer the default too");
    assert_eq!(client.mc("set f:1 0 0 1\r\ny\r\n", Command::Set), "STORED\r\n");
    b.signal(libc::SIGSTOP);
    let started = Instant::now();
    for i in 0..20 {
        assert_eq!(client.mc(&format!("set f:{i} 0 0 1\r\nz\r\n"), Command::Set), "STORED\r\n");
        assert_eq!(client.mc(&format!("set k{i} 0 0 1\r\nz\r\n"), Command::Set), "NOT_STORED\r\n");
    }
    // Waiting on the stopped b costs the pool's timeout (1 s) per request: 40 requests that waited would take 40 s.
    // The bound is loose on purpose (a loaded CI machine), yet fails if even a tenth of them waited.
    assert!(started.elapsed() < Duration::from_secs(4), "answered by a without waiting for b: {:?}", started.elapsed());
    // all_async writes land in the background, after the client's reply.
    assert!(eventually(|| mc_get_direct(&a, "k19").contains("VALUE")));
    // noreply through all_* queues no waiter: the replies after it still reach their own requests.
    client.send(b"set nr 0 0 1 noreply\r\nn\r\nset f:nr 0 0 1 noreply\r\nn\r\n");
    assert_eq!(client.mc("get f:1\r\n", Command::Get), "VALUE f:1 0 1\r\nz\r\nEND\r\n");
    assert!(eventually(
        || mc_get_direct(&a, "nr").contains("VALUE nr") && mc_get_direct(&a, "f:nr").contains("VALUE f:nr")
    ));
}

/// shadow: the child answers; copies go to the shadow; a stopped shadow delays and fails nothing, its copies are
/// bounded by max_outstanding.
#[test]
fn redis_shadow_copies_writes_and_a_stopped_shadow_costs_nothing() {
    let (main, mirror) = (redis_server(), redis_server());
    let port = free_port();
    let body = format!(
        "{}[routes.mirrored]\ntype = \"shadow\"\nchild = \"main\"\nmax_outstanding = 4\n\
         shadows = [{{ target = \"mirror\", key_fraction = [0.0, 1.0], request_fraction = 1.0 }}]\n\n{}{}",
        listener_toml("cache", port, "redis", "mirrored", ""),
        pool_of("main", &[&main]),
        pool_of("mirror", &[&mirror])
    );
    let _f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    assert_eq!(client.redis_str(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(get_direct(&main, "k"), "$1\r\nv\r\n");
    assert!(eventually(|| get_direct(&mirror, "k") == "$1\r\nv\r\n"));
    mirror.signal(libc::SIGSTOP);
    let started = Instant::now();
    for i in 0..50 {
        assert_eq!(client.redis_str(&["SET", &format!("s{i}"), "x"]), "+OK\r\n");
    }
    // 50 requests that waited on the stopped shadow's timeout (1 s) would take 50 s; the bound is loose for loaded
    // machines and still fails if a twelfth of them waited.
    assert!(started.elapsed() < Duration::from_secs(4), "a stopped shadow delays nothing: {:?}", started.elapsed());
    drop(mirror);
    assert_eq!(client.redis_str(&["GET", "s49"]), "$1\r\nx\r\n", "a dead shadow fails nothing");
}

/// The keys of a multi-key request through a failover over two sharded pools are split by where each child sends
/// them: every group goes through the failover on its own (fails over on its own), and the replies are merged in
/// request order, with keys of the same request for a plain pool among them. A server killed mid-run sends only its
/// own keys to the second pool.
#[test]
fn redis_multi_key_requests_split_through_failover_over_sharded_pools() {
    let (a1, a2, b1, b2, c) = (redis_server(), redis_server(), redis_server(), redis_server(), redis_server());
    let port = free_port();
    let body = format!(
        "{}[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"f:\" = \"fo\" }}\ndefault = \"pool_c\"\n\n\
         [routes.fo]\ntype = \"failover\"\nchildren = [\"pool_a\", \"pool_b\"]\n\n{}{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        pool_of("pool_a", &[&a1, &a2]),
        pool_of("pool_b", &[&b1, &b2]),
        pool_of("pool_c", &[&c]),
    );
    let _f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    let keys: Vec<String> = (0..12).map(|i| format!("f:{i}:key")).collect();
    let mut mset = vec!["MSET"];
    let values: Vec<String> = keys.iter().map(|k| format!("a-{k}")).collect();
    for (k, v) in keys.iter().zip(&values) {
        mset.push(k);
        mset.push(v);
    }
    assert_eq!(client.redis_str(&mset), "+OK\r\n", "an MSET over both servers of the first child");
    // Each key landed on one server of pool_a; the keys are spread over both (what makes the split matter).
    let on_a1: Vec<bool> = keys.iter().map(|k| get_direct(&a1, k) != "$-1\r\n").collect();
    for (k, &one) in keys.iter().zip(&on_a1) {
        assert_eq!(get_direct(if one { &a2 } else { &a1 }, k), "$-1\r\n", "{k} on one server only");
    }
    assert!(on_a1.iter().any(|&x| x) && on_a1.iter().any(|&x| !x), "keys on both servers: {on_a1:?}");
    // pool_b holds every key on both of its servers, with its own values.
    for p in [&b1, &b2] {
        for k in &keys {
            Client::connect(p.port).redis_str(&["SET", k, &format!("b-{k}")]);
        }
    }
    Client::connect(c.port).redis_str(&["SET", "x:1", "c"]);
    let mget = |client: &mut Client| {
        let mut args = vec!["MGET", "x:1"];
        args.extend(keys.iter().map(String::as_str));
        args.push("f:none");
        client.redis_str(&args)
    };
    let expect = |from_b: &dyn Fn(usize) -> bool| {
        let mut out = format!("*{}\r\n$1\r\nc\r\n", keys.len() + 2);
        for (i, k) in keys.iter().enumerate() {
            let v = if from_b(i) { format!("b-{k}") } else { format!("a-{k}") };
            out.push_str(&format!("${}\r\n{v}\r\n", v.len()));
        }
        out + "$-1\r\n"
    };
    assert_eq!(mget(&mut client), expect(&|_| false), "every group answered by pool_a, in request order");
    drop(a1);
    // Pipelined, each reply in order: a1's keys fail over to pool_b, a2's are still answered by pool_a.
    for _ in 0..3 {
        assert_eq!(mget(&mut client), expect(&|i| on_a1[i]));
        assert_eq!(client.redis_str(&["GET", "x:1"]), "$1\r\nc\r\n");
    }
    // DEL sums its groups: a2's keys deleted on pool_a, a1's on pool_b (the failover's second child).
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    assert_eq!(client.redis_str(&del), format!(":{}\r\n", keys.len()));
    for (k, &one) in keys.iter().zip(&on_a1) {
        if one {
            let gone = [&b1, &b2].iter().filter(|p| get_direct(p, k) == "$-1\r\n").count();
            assert_eq!(gone, 1, "{k} deleted on its server of pool_b");
        } else {
            assert_eq!(get_direct(&a2, k), "$-1\r\n", "{k} deleted on pool_a");
        }
    }
    // A command whose keys must share a server and do not is refused.
    let reply = client.redis_str(&[
        "RENAME",
        &keys[on_a1.iter().position(|&x| x).unwrap()],
        &keys[on_a1.iter().position(|&x| !x).unwrap()],
    ]);
    assert!(reply.starts_with("-CROSSSLOT"), "{reply}");
}

/// A memcache multi-get through a failover over two sharded pools: split by server of each child, each group failing
/// over on its own, merged in request order; a key for a plain pool in the same request; a server killed mid-run.
#[test]
fn memcache_multi_get_split_through_failover_over_sharded_pools() {
    let (a1, a2, b1, b2, c) = (memcached(), memcached(), memcached(), memcached(), memcached());
    let port = free_port();
    let mc_pool =
        |name: &str, servers: &[&Proc]| pool_of(name, servers).replace("servers", "protocol = \"memcache\"\nservers");
    let body = format!(
        "{}[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"f:\" = \"fo\" }}\ndefault = \"pool_c\"\n\n\
         [routes.fo]\ntype = \"failover\"\nchildren = [\"pool_a\", \"pool_b\"]\n\n{}{}{}",
        listener_toml("mc", port, "memcache", "main", ""),
        mc_pool("pool_a", &[&a1, &a2]),
        mc_pool("pool_b", &[&b1, &b2]),
        mc_pool("pool_c", &[&c]),
    );
    let _f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    let keys: Vec<String> = (0..12).map(|i| format!("f:{i}:key")).collect();
    for k in &keys {
        assert_eq!(client.mc(&format!("set {k} 0 0 1\r\na\r\n"), Command::Set), "STORED\r\n");
        for p in [&b1, &b2] {
            Client::connect(p.port).mc(&format!("set {k} 0 0 1\r\nb\r\n"), Command::Set);
        }
    }
    Client::connect(c.port).mc("set x:1 0 0 1\r\nc\r\n", Command::Set);
    let on_a1: Vec<bool> = keys.iter().map(|k| mc_get_direct(&a1, k).contains("VALUE")).collect();
    assert!(on_a1.iter().any(|&x| x) && on_a1.iter().any(|&x| !x), "keys on both servers: {on_a1:?}");
    let line = format!("get x:1 {} f:none\r\n", keys.join(" "));
    let expect = |from_b: &dyn Fn(usize) -> bool| {
        let mut out = "VALUE x:1 0 1\r\nc\r\n".to_string();
        for (i, k) in keys.iter().enumerate() {
            out.push_str(&format!("VALUE {k} 0 1\r\n{}\r\n", if from_b(i) { "b" } else { "a" }));
        }
        out + "END\r\n"
    };
    assert_eq!(client.mc(&line, Command::Get), expect(&|_| false));
    drop(a1);
    for _ in 0..3 {
        assert_eq!(client.mc(&line, Command::Get), expect(&|i| on_a1[i]));
        assert_eq!(client.mc("get x:1\r\n", Command::Get), "VALUE x:1 0 1\r\nc\r\nEND\r\n");
    }
}

/// all_sync over two sharded pools: a redis MGET split by server of each child, each group's worst reply merged;
/// a server of one child stopped: its keys' group fails, and the MGET with it (nothing partial is merged).
#[test]
fn redis_mget_split_through_all_sync_and_a_failing_group_fails_the_request() {
    let (a1, a2, b1) = (redis_server(), redis_server(), redis_server());
    let port = free_port();
    let body = format!(
        "{}[routes.both]\ntype = \"all_sync\"\nchildren = [\"pool_a\", \"pool_b\"]\n\n{}{}",
        listener_toml("cache", port, "redis", "both", ""),
        pool_of("pool_a", &[&a1, &a2]),
        pool_of("pool_b", &[&b1]),
    );
    let _f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    let keys: Vec<String> = (0..12).map(|i| format!("k{i}:key")).collect();
    let mut mset = vec!["MSET"];
    for k in &keys {
        mset.push(k);
        mset.push("v");
    }
    assert_eq!(client.redis_str(&mset), "+OK\r\n", "written to both children, split over pool_a's servers");
    for k in &keys {
        assert_eq!(get_direct(&b1, k), "$1\r\nv\r\n");
    }
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let all_v = format!("*{}\r\n{}", keys.len(), "$1\r\nv\r\n".repeat(keys.len()));
    assert_eq!(client.redis_str(&mget), all_v);
    drop(a1);
    let reply = client.redis_str(&mget);
    assert!(reply.starts_with("-ERR"), "a failed group fails the MGET: {reply}");
    assert_eq!(client.redis_str(&["PING"]), "+PONG\r\n", "the client goes on");
}

/// The value of a route metric (0 when the route has none yet).
fn route_metric(f: &Ferrule, family: &str, route: &str) -> u64 {
    let (_, body) = f.admin("GET", "/metrics");
    let prefix = format!("{family}{{route=\"{route}\"");
    body.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

/// all_initial's other children keep running after the client was answered: at most `max_outstanding` of them in
/// flight per worker; the excess is not sent, and counted. A stopped child holds its places until it answers.
#[test]
fn all_initial_leftover_children_are_capped_and_the_excess_dropped() {
    let (a, b) = (redis_server(), redis_server());
    let port = free_port();
    // A long timeout: the stopped server's requests stay in flight for the whole test.
    let list: Vec<String> = [&a, &b].iter().map(|p| format!("127.0.0.1:{}:1", p.port)).collect();
    let body = format!(
        "{}[routes.writes]\ntype = \"all_initial\"\nchildren = [\"p/*\"]\nmax_outstanding = 2\n\n{}",
        listener_toml("cache", port, "redis", "writes", ""),
        redis_pool_toml("p", &list, "timeout_ms = 60000"),
    );
    let f = Ferrule::start(&body, port);
    let mut client = Client::connect(port);
    assert_eq!(client.redis_str(&["SET", "warm", "up"]), "+OK\r\n");
    assert!(eventually(|| get_direct(&b, "warm") == "$2\r\nup\r\n"), "b gets the write in the background");
    b.signal(libc::SIGSTOP);
    for i in 0..5 {
        // Answered by the first child, never delayed by the stopped one.
        assert_eq!(client.redis_str(&["SET", &format!("k{i}"), "v"]), "+OK\r\n");
    }
    assert!(eventually(|| route_metric(&f, "ferrule_route_background_dropped_total", "writes") == 3));
    assert_eq!(route_metric(&f, "ferrule_route_background_sent_total", "writes"), 3, "warm-up and k0, k1");
    b.signal(libc::SIGCONT);
    // Once b answered, its places are free again.
    assert!(eventually(|| get_direct(&b, "k1") == "$1\r\nv\r\n"));
    let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    let on_b: Vec<bool> = keys.iter().map(|k| get_direct(&b, k) != "$-1\r\n").collect();
    assert_eq!(on_b, [true, true, false, false, false], "the requests over the bound never reached b");
    assert!(eventually(|| {
        client.redis_str(&["SET", "later", "v"]);
        get_direct(&b, "later") == "$1\r\nv\r\n"
    }));
    assert_eq!(route_metric(&f, "ferrule_route_background_dropped_total", "writes"), 3);
}
