//! Routes above pools, end to end: real redis-server and memcached behind ferrule; each test checks which real
//! server holds what ferrule wrote.

mod common;
use common::*;
use ferrule::protocol::memcache::Command;
use std::time::Duration;

fn pool(name: &str, backend: &Proc) -> String {
    redis_pool_toml(name, &[format!("127.0.0.1:{}:1", backend.port)], "")
}

/// Envoy's redis prefix routes: `user:` to cluster a, `session:` to cluster b, the rest to a catch-all.
fn envoy_body(port: u16, a: &Proc, b: &Proc, c: &Proc, main_extra: &str) -> String {
    format!(
        "{}[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"user:\" = \"a\", \"session:\" = \"b\", \"gone:\" = \"retired\", \
         \"void:\" = \"nothing\" }}\ndefault = \"c\"\n{main_extra}\n[routes.retired]\ntype = \"error\"\nmessage = \"gone: is retired\"\n\
         [routes.nothing]\ntype = \"null\"\n{}{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        pool("a", a),
        pool("b", b),
        pool("c", c)
    )
}

#[test]
fn redis_prefix_routes_send_each_prefix_to_its_cluster() {
    let (a, b, c) = (redis_server(), redis_server(), redis_server());
    let port = free_port();
    let _f = Ferrule::start(&envoy_body(port, &a, &b, &c, ""), port);
    let mut client = Client::connect(port);
    for key in ["user:1", "session:2", "other:3"] {
        assert_eq!(client.redis_str(&["SET", key, &format!("v-{key}")]), "+OK\r\n");
    }
    let holds = |p: &Proc, key: &str| Client::connect(p.port).redis_str(&["EXISTS", key]) == ":1\r\n";
    assert!(holds(&a, "user:1") && !holds(&b, "user:1") && !holds(&c, "user:1"));
    assert!(holds(&b, "session:2") && !holds(&a, "session:2") && !holds(&c, "session:2"));
    assert!(holds(&c, "other:3") && !holds(&a, "other:3") && !holds(&b, "other:3"));
    // One MGET across three routes, merged in request order, with a key no server has.
    assert_eq!(
        client.redis_str(&["MGET", "other:3", "user:1", "missing", "session:2"]),
        "*4\r\n$9\r\nv-other:3\r\n$8\r\nv-user:1\r\n$-1\r\n$11\r\nv-session:2\r\n"
    );
    // Canned routes: an error route, and a null route that answers like an empty cache.
    assert_eq!(client.redis_str(&["GET", "gone:1"]), "-ERR gone: is retired\r\n");
    assert_eq!(client.redis_str(&["GET", "void:1"]), "$-1\r\n");
    assert_eq!(client.redis_str(&["MGET", "void:1", "user:1"]), "*2\r\n$-1\r\n$8\r\nv-user:1\r\n");
    assert_eq!(client.redis_str(&["MGET", "gone:1", "user:1"]), "-ERR gone: is retired\r\n");
    assert_eq!(client.redis_str(&["DEL", "user:1", "session:2", "void:9", "nope"]), ":2\r\n");
    assert!(!holds(&a, "user:1") && !holds(&b, "session:2"));
    // Keys that must share a server are refused when the routes split them.
    assert!(client.redis_str(&["RENAME", "user:x", "session:x"]).starts_with("-CROSSSLOT"));
    // A RESP3 client gets RESP3 nils from the null route, alone and merged into an MGET.
    assert_eq!(client.redis_str(&["SET", "user:1", "v-user:1"]), "+OK\r\n");
    assert!(client.redis(&["HELLO", "3"]).starts_with(b"%7"));
    assert_eq!(client.redis_str(&["GET", "void:1"]), "_\r\n");
    assert_eq!(client.redis_str(&["MGET", "void:1", "user:1", "missing"]), "*3\r\n_\r\n$8\r\nv-user:1\r\n_\r\n");
    // The whole-pool commands need a pool listener.
    assert_eq!(client.redis_str(&["DBSIZE"]), "-ERR ferrule: DBSIZE needs a listener whose route is a pool\r\n");
}

#[test]
fn redis_strip_prefix_removes_the_routing_prefix_before_the_server_sees_the_key() {
    let (a, b, c) = (redis_server(), redis_server(), redis_server());
    let port = free_port();
    let _f = Ferrule::start(&envoy_body(port, &a, &b, &c, "strip_prefix = true\n"), port);
    let mut client = Client::connect(port);
    assert_eq!(client.redis_str(&["SET", "user:42", "x"]), "+OK\r\n");
    assert_eq!(Client::connect(a.port).redis_str(&["GET", "42"]), "$1\r\nx\r\n");
    assert_eq!(client.redis_str(&["MSET", "user:1", "u", "session:1", "s", "plain", "p"]), "+OK\r\n");
    assert_eq!(Client::connect(a.port).redis_str(&["GET", "1"]), "$1\r\nu\r\n");
    assert_eq!(Client::connect(b.port).redis_str(&["GET", "1"]), "$1\r\ns\r\n");
    assert_eq!(Client::connect(c.port).redis_str(&["GET", "plain"]), "$1\r\np\r\n", "the default strips nothing");
    assert_eq!(
        client.redis_str(&["MGET", "session:1", "user:1", "user:42"]),
        "*3\r\n$1\r\ns\r\n$1\r\nu\r\n$1\r\nx\r\n"
    );
}

/// mcrouter's gradual migration, and an operation selector, for memcache.
#[test]
fn memcache_prefix_and_operation_routes() {
    let (old, new, reads) = (memcached(), memcached(), memcached());
    let port = free_port();
    let body = format!(
        "{}[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"new_users:\" = \"new_cluster\", \"sessions:\" = \"by_op\" }}\n\
         default = \"old_cluster\"\n\n[routes.by_op]\ntype = \"operation\"\noperations = {{ get = \"reads\", delete = \"nothing\" }}\n\
         default = \"new_cluster\"\n\n[routes.nothing]\ntype = \"null\"\n{}{}{}",
        listener_toml("mc", port, "memcache", "main", ""),
        pool("old_cluster", &old),
        pool("new_cluster", &new),
        pool("reads", &reads)
    );
    let f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    assert_eq!(c.mc("set new_users:1 0 0 1\r\nn\r\n", Command::Set), "STORED\r\n");
    assert_eq!(c.mc("set u:1 0 0 1\r\no\r\n", Command::Set), "STORED\r\n");
    assert_eq!(c.mc("set sessions:1 0 0 1\r\ns\r\n", Command::Set), "STORED\r\n", "set: the default, new_cluster");
    let get = |p: &Proc, key: &str| Client::connect(p.port).mc(&format!("get {key}\r\n"), Command::Get);
    assert_eq!(get(&new, "new_users:1"), "VALUE new_users:1 0 1\r\nn\r\nEND\r\n");
    assert_eq!(get(&old, "new_users:1"), "END\r\n");
    assert_eq!(get(&old, "u:1"), "VALUE u:1 0 1\r\no\r\nEND\r\n");
    assert_eq!(get(&new, "sessions:1"), "VALUE sessions:1 0 1\r\ns\r\nEND\r\n");
    // Reads of sessions: go to the reads pool, which does not have it.
    assert_eq!(c.mc("get sessions:1\r\n", Command::Get), "END\r\n");
    Client::connect(reads.port).mc("set sessions:1 0 0 1\r\nr\r\n", Command::Set);
    assert_eq!(c.mc("get sessions:1\r\n", Command::Get), "VALUE sessions:1 0 1\r\nr\r\nEND\r\n");
    // A multi-get across three routes, in request order.
    assert_eq!(
        c.mc("get u:1 sessions:1 nope new_users:1\r\n", Command::Get),
        "VALUE u:1 0 1\r\no\r\nVALUE sessions:1 0 1\r\nr\r\nVALUE new_users:1 0 1\r\nn\r\nEND\r\n"
    );
    // delete of sessions: goes to the null route: nothing is deleted anywhere.
    assert_eq!(c.mc("delete sessions:1\r\n", Command::Delete), "NOT_FOUND\r\n");
    assert_eq!(get(&new, "sessions:1"), "VALUE sessions:1 0 1\r\ns\r\nEND\r\n");
    // Every request a route decided counts once there, forwarded straight to a pool or not, however many of its
    // keys it decided: main 3 sets, 2 gets, the multi-get, the delete; by_op the requests for sessions: (a set,
    // 2 gets, the multi-get, the delete); nothing the delete.
    let counts = || ["main", "by_op", "nothing"].map(|r| route_metric(&f, "ferrule_route_requests_total", r));
    assert!(eventually(Duration::from_secs(5), || counts() == [7, 5, 1]), "{:?}", counts());
}

/// A route metric's value (0 when absent).
fn route_metric(f: &Ferrule, family: &str, route: &str) -> u64 {
    let (_, body) = f.admin("GET", "/metrics");
    let prefix = format!("{family}{{route=\"{route}\"");
    body.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

/// A hash route over every server of a pool (`"POOL/*"`) spreads keys over the servers.
#[test]
fn hash_over_every_server_of_a_pool() {
    let servers: Vec<Proc> = (0..3).map(|_| redis_server()).collect();
    let specs: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}:1", s.port)).collect();
    let port = free_port();
    let body = format!(
        "{}[routes.spread]\ntype = \"hash\"\nchildren = [\"replicas/*\"]\n{}",
        listener_toml("cache", port, "redis", "spread", ""),
        redis_pool_toml("replicas", &specs, "")
    );
    let _f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    for k in &keys {
        assert_eq!(c.redis_str(&["SET", k, "1"]), "+OK\r\n");
    }
    let mut total = 0;
    for s in &servers {
        let n: usize = Client::connect(s.port).redis_str(&["DBSIZE"]).trim_start_matches(':').trim().parse().unwrap();
        assert!(n > 5, "every server holds some keys: {n}");
        total += n;
    }
    assert_eq!(total, keys.len(), "each key on exactly one server");
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    assert_eq!(c.redis(&args), format!("*60\r\n{}", "$1\r\n1\r\n".repeat(60)).into_bytes());
}

#[test]
fn reload_swaps_the_route_tree() {
    let (a, b, c) = (redis_server(), redis_server(), redis_server());
    let port = free_port();
    let f = Ferrule::start(&envoy_body(port, &a, &b, &c, ""), port);
    let mut client = Client::connect(port);
    assert_eq!(client.redis_str(&["SET", "user:1", "first"]), "+OK\r\n");
    // Move user: to cluster b; the open connection follows.
    let moved = envoy_body(port, &a, &b, &c, "").replace("\"user:\" = \"a\"", "\"user:\" = \"b\"");
    f.replace_config(&moved);
    assert!(f.wait_log("config applied", 1, Duration::from_secs(5)), "{}", f.log());
    assert_eq!(client.redis_str(&["SET", "user:2", "second"]), "+OK\r\n");
    assert_eq!(Client::connect(b.port).redis_str(&["GET", "user:2"]), "$6\r\nsecond\r\n");
    assert_eq!(Client::connect(a.port).redis_str(&["EXISTS", "user:2"]), ":0\r\n");
    // A route tree that does not validate is not applied.
    let broken = moved.replace("default = \"c\"", "default = \"nowhere\"");
    f.replace_config(&broken);
    assert!(f.wait_log("nowhere", 1, Duration::from_secs(5)), "{}", f.log());
    assert_eq!(client.redis_str(&["SET", "other:1", "x"]), "+OK\r\n");
    assert_eq!(Client::connect(c.port).redis_str(&["EXISTS", "other:1"]), ":1\r\n");
}

#[test]
fn test_config_prints_the_route_tree_and_refuses_what_cannot_run() {
    let dir = tempdir("routes-t");
    let path = dir.join("ferrule.toml");
    let body = "[listeners.mc]\nlisten = \"127.0.0.1:1\"\nprotocol = \"memcache\"\nroute = \"main\"\n\
                [routes.main]\ntype = \"prefix\"\nprefixes = { \"a:\" = \"p\" }\ndefault = \"gone\"\n\
                [routes.gone]\ntype = \"error\"\n[pools.p]\nservers = [\"127.0.0.1:11211:1\"]\n";
    std::fs::write(&path, body).unwrap();
    let out = std::process::Command::new(ferrule_bin()).arg("-t").arg("-c").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("listener mc (memcache, 127.0.0.1:1):\n  route main (prefix)\n    \"a:\" -> pool p"),
        "{stdout}"
    );
    assert!(stdout.contains("default -> route gone (error): \"ferrule: error route\""), "{stdout}");
    // Every kind runs (warmup prints its children), but not a multi-destination route below another.
    let warmup = body.replace("type = \"error\"", "type = \"warmup\"\ncold = \"p\"\nwarm = \"p\"");
    std::fs::write(&path, &warmup).unwrap();
    let out = std::process::Command::new(ferrule_bin()).arg("-t").arg("-c").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("default -> route gone (warmup)\n      cold -> pool p"), "{stdout}");
    let nested = format!("{warmup}[routes.outer]\ntype = \"failover\"\nchildren = [\"gone\"]\n")
        .replace("route = \"main\"", "route = \"outer\"");
    std::fs::write(&path, nested).unwrap();
    let out = std::process::Command::new(ferrule_bin()).arg("-t").arg("-c").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("a multi-destination route below another is not implemented yet"), "{stderr}");
}
