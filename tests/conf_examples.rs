//! The route examples users bring, as shipped in conf/ (mcrouter's replicated pool, mcrouter's gradual migration,
//! Envoy's redis prefix routes with a write mirror): each file is loaded as written, with its listener and server
//! ports replaced by ephemeral ones backed by real memcached / redis-server, and checked end to end.

mod common;
use common::*;
use ferrule::protocol::memcache::Command;
use std::time::Duration;

/// An example file running: ferrule on it, and a real server for each server address it names (in file order).
struct Example {
    ferrule: Ferrule,
    port: u16,
    servers: Vec<Proc>,
}

fn run_example(file: &str, listen: &str, start_server: fn() -> Proc) -> Example {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    let (port, admin) = (free_port(), free_port());
    assert!(text.contains(listen), "{file} listens on {listen}");
    text = text.replace(listen, &format!("127.0.0.1:{port}"));
    // Server specs are "127.0.0.1:PORT:WEIGHT" inside `servers = [...]` lines.
    let mut servers = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("servers = [") {
            let mut l = line.to_owned();
            for spec in line.split('"').filter(|s| s.starts_with("127.0.0.1:")) {
                let p = start_server();
                let weight = spec.rsplit(':').next().unwrap();
                l = l.replace(spec, &format!("127.0.0.1:{}:{weight}", p.port));
                servers.push(p);
            }
            out.push_str(&l);
        } else {
            out.push_str(line);
        }
        out.push('\n');
        if line == "[proxy]" {
            out.push_str(&format!("admin = \"127.0.0.1:{admin}\"\n"));
        }
    }
    let ferrule = Ferrule::start_config(&out, port, admin);
    Example { ferrule, port, servers }
}

fn metric(f: &Ferrule, family: &str, route: &str) -> u64 {
    let (_, body) = f.admin("GET", "/metrics");
    let prefix = format!("{family}{{route=\"{route}\"");
    body.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
}

fn mc(p: &Proc, line: &str, cmd: Command) -> String {
    Client::connect(p.port).mc(line, cmd)
}

fn rd(p: &Proc, args: &[&str]) -> String {
    Client::connect(p.port).redis_str(args)
}

/// conf/routes-replicated.toml: writes reach both servers, reads fail over when the first server is killed.
#[test]
fn replicated_pool_example() {
    let mut ex = run_example("conf/routes-replicated.toml", "127.0.0.1:22141", memcached);
    let mut c = Client::connect(ex.port);
    assert_eq!(c.mc("set k 0 0 2\r\nv1\r\n", Command::Set), "STORED\r\n");
    for s in &ex.servers {
        assert!(eventually(Duration::from_secs(5), || mc(s, "get k\r\n", Command::Get).contains("v1")));
    }
    assert_eq!(c.mc("get k\r\n", Command::Get), "VALUE k 0 2\r\nv1\r\nEND\r\n");
    assert_eq!(metric(&ex.ferrule, "ferrule_route_failovers_total", "reads"), 0);
    drop(ex.servers.remove(0));
    // The first server is gone: reads are answered by the second, writes too.
    for _ in 0..3 {
        assert_eq!(c.mc("get k\r\n", Command::Get), "VALUE k 0 2\r\nv1\r\nEND\r\n");
    }
    assert_eq!(c.mc("set k2 0 0 1\r\nx\r\n", Command::Set), "STORED\r\n");
    assert!(mc(&ex.servers[0], "get k2\r\n", Command::Get).contains("VALUE k2"));
    assert!(metric(&ex.ferrule, "ferrule_route_failovers_total", "reads") >= 1);
    assert!(metric(&ex.ferrule, "ferrule_route_requests_total", "writes") >= 2);
}

/// conf/routes-migration.toml: new_users: and sessions: live on the new cluster, the rest on the old.
#[test]
fn gradual_migration_example() {
    let ex = run_example("conf/routes-migration.toml", "127.0.0.1:22151", memcached);
    let (old, new) = (&ex.servers[..2], &ex.servers[2]);
    let mut c = Client::connect(ex.port);
    assert_eq!(c.mc("set new_users:1 0 0 1\r\na\r\n", Command::Set), "STORED\r\n");
    assert_eq!(c.mc("set sessions:9 0 0 1\r\nb\r\n", Command::Set), "STORED\r\n");
    assert_eq!(c.mc("set other:5 0 0 1\r\nc\r\n", Command::Set), "STORED\r\n");
    assert!(mc(new, "get new_users:1\r\n", Command::Get).contains("VALUE"));
    assert!(mc(new, "get sessions:9\r\n", Command::Get).contains("VALUE"));
    assert_eq!(mc(new, "get other:5\r\n", Command::Get), "END\r\n");
    let on_old = old.iter().filter(|p| mc(p, "get other:5\r\n", Command::Get).contains("VALUE")).count();
    assert_eq!(on_old, 1, "other keys stay on the old cluster");
    assert_eq!(
        c.mc("get other:5 new_users:1 sessions:9\r\n", Command::Get),
        "VALUE other:5 0 1\r\nc\r\nVALUE new_users:1 0 1\r\na\r\nVALUE sessions:9 0 1\r\nb\r\nEND\r\n",
        "a multi-get across both clusters, in request order"
    );
}

/// conf/routes-envoy.toml: prefix routes, and every write mirrored (reads are not).
#[test]
fn envoy_prefix_routes_with_a_write_mirror_example() {
    let mut ex = run_example("conf/routes-envoy.toml", "127.0.0.1:22161", redis_server);
    let [a, b, catch_all, mirror] = &ex.servers[..] else { panic!() };
    let mut c = Client::connect(ex.port);
    assert_eq!(c.redis_str(&["SET", "user:1", "u"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["SET", "session:2", "s"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["SET", "other", "o"]), "+OK\r\n");
    assert_eq!(rd(a, &["GET", "user:1"]), "$1\r\nu\r\n");
    assert_eq!(rd(b, &["GET", "session:2"]), "$1\r\ns\r\n");
    assert_eq!(rd(catch_all, &["GET", "other"]), "$1\r\no\r\n");
    assert_eq!(rd(a, &["EXISTS", "session:2", "other"]), ":0\r\n");
    for k in ["user:1", "session:2", "other"] {
        assert!(eventually(Duration::from_secs(5), || rd(mirror, &["EXISTS", k]) == ":1\r\n"), "{k} mirrored");
    }
    // Reads go to the prefix routes only: a value only the mirror has is not seen.
    rd(mirror, &["SET", "only_mirror", "m"]);
    assert_eq!(c.redis_str(&["GET", "only_mirror"]), "$-1\r\n");
    assert_eq!(c.redis_str(&["GET", "user:1"]), "$1\r\nu\r\n");
    assert_eq!(metric(&ex.ferrule, "ferrule_route_background_sent_total", "mirrored"), 3);
    assert_eq!(metric(&ex.ferrule, "ferrule_route_requests_total", "mirrored"), 3);
    // A dead mirror costs the clients nothing; its copies count as failed.
    drop(ex.servers.pop());
    for i in 0..5 {
        assert_eq!(c.redis_str(&["SET", &format!("user:{i}"), "x"]), "+OK\r\n");
    }
    assert!(eventually(Duration::from_secs(5), || {
        metric(&ex.ferrule, "ferrule_route_background_failed_total", "mirrored")
            + metric(&ex.ferrule, "ferrule_route_background_dropped_total", "mirrored")
            >= 5
    }));
}
