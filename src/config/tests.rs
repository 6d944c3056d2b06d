//! Tests of the whole config pipeline: examples, defaults, every error kind, redaction.

use super::*;

/// A valid config with one redis listener and pool; tests append or substitute lines.
const MINIMAL: &str = r#"
[listeners.cache]
listen = "127.0.0.1:22121"
protocol = "redis"
route = "main"

[pools.main]
servers = ["127.0.0.1:6381:1"]
"#;

fn parse_ok(text: &str) -> Config {
    Config::parse(text).unwrap_or_else(|err| panic!("config should parse: {err}\n{text}"))
}

/// Parses `text`, expecting an error about `key` at `line` whose message contains `fragment`.
fn assert_error(text: &str, key: &str, line: usize, fragment: &str) -> ConfigError {
    let err = match Config::parse(text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(err) => err,
    };
    let shown = err.to_string();
    assert_eq!(err.key(), Some(key), "wrong key in: {shown}");
    assert_eq!(err.line(), Some(line), "wrong line in: {shown}");
    assert!(shown.contains(&format!("line {line}, column ")), "{shown}");
    assert!(shown.contains(key), "{shown}");
    assert!(shown.contains(fragment), "expected {fragment:?} in: {shown}");
    err
}

/// MINIMAL with `extra` lines inserted right after `header` (prepended with it if absent).
fn with_lines(header: &str, extra: &str) -> String {
    insert_after(MINIMAL, header, extra)
}

fn insert_after(text: &str, header: &str, extra: &str) -> String {
    if !text.contains(header) {
        return format!("{header}\n{extra}\n{text}");
    }
    text.replacen(header, &format!("{header}\n{extra}"), 1)
}

#[test]
fn example_configs_parse() {
    for (name, text) in [
        ("ferrule.toml", include_str!("../../conf/ferrule.toml")),
        ("redis.toml", include_str!("../../conf/redis.toml")),
        ("memcache.toml", include_str!("../../conf/memcache.toml")),
        ("routes.toml", include_str!("../../conf/routes.toml")),
    ] {
        let config = Config::parse(text).unwrap_or_else(|err| panic!("conf/{name}: {err}"));
        assert!(config.warnings().is_empty(), "conf/{name}: {:?}", config.warnings());
        let reparsed = Config::parse(&config.to_redacted_toml()).expect(name);
        assert_eq!(reparsed, config, "conf/{name} does not round-trip");
    }
}

#[test]
fn default_config_matches_the_demo() {
    let config = parse_ok(include_str!("../../conf/ferrule.toml"));
    assert_eq!(config.proxy.workers, Workers::Count(1));
    assert_eq!(config.proxy.admin, Some(DEFAULT_ADMIN));
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["memcache", "redis"], "listeners are sorted by name");
    for listener in &config.listeners {
        let pool = &config.pools[listener.pool().expect("names a pool")];
        assert_eq!(pool.name, listener.route);
        assert_eq!(pool.protocol, listener.protocol);
    }
    let redis = config.pool("redis").expect("redis pool");
    assert_eq!(redis.protocol, Protocol::Redis);
    let addrs: Vec<String> = redis.servers.iter().map(|s| s.addr.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1:6381", "127.0.0.1:6382"]);
    let memcache = config.pool("memcache").expect("memcache pool");
    assert_eq!(memcache.protocol, Protocol::Memcache);
    let addrs: Vec<String> = memcache.servers.iter().map(|s| s.addr.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1:11311", "127.0.0.1:11312"]);
    assert_eq!(config.listeners[1].listen, ListenAddr::Tcp("127.0.0.1:22121".parse().unwrap()));
}

#[test]
fn defaults_fill_every_unset_key() {
    let config = parse_ok(MINIMAL);
    assert_eq!(config.proxy, ProxyConfig::default());
    assert_eq!(config.proxy.workers, Workers::Auto);
    assert_eq!(config.proxy.admin, Some("127.0.0.1:22222".parse().unwrap()));
    assert_eq!(config.proxy.admin_token, None);
    assert_eq!((config.proxy.admin_max_connections, config.proxy.admin_timeout_ms), (64, 5000));
    assert_eq!(config.proxy.shutdown_timeout_ms, 5000);
    assert_eq!(config.proxy.histogram_interval_s, 60);
    assert_eq!(config.proxy.client_max_inflight, 256);
    assert_eq!(config.proxy.client_max_unsent_bytes, 4 << 20);
    assert_eq!(config.proxy.client_max_buffered_bytes, 64 << 20);
    assert_eq!(config.proxy.client_buffers_max_bytes, 512 << 20);
    assert_eq!(config.proxy.backend_max_queued_bytes, 4 << 20);
    assert_eq!(config.proxy.io_memory_kib, 512);
    assert_eq!(config.proxy.busy_poll_us, 0);

    let listener = &config.listeners[0];
    assert_eq!(listener.name, "cache");
    assert_eq!(listener.backlog, 1024);
    assert_eq!(listener.auth, None);
    assert_eq!(listener.target, Target::Pool(0));

    let pool = &config.pools[0];
    assert_eq!(pool.protocol, Protocol::Redis);
    assert_eq!(pool.hash, HashKind::Fnv1a_64);
    assert_eq!(pool.distribution, DistributionKind::Ketama);
    assert_eq!(pool.hash_tag, None);
    assert_eq!(pool.timeout_ms, 1000);
    assert_eq!(pool.connect_timeout_ms, 1000);
    assert_eq!(pool.server_connections, 1);
    assert_eq!(pool.max_dedicated_connections, 64);
    assert!(!pool.preconnect);
    assert_eq!(pool.batching, Batching::Adaptive);
    assert_eq!(pool.batching_max_hold_us, 1000);
    assert_eq!(pool.redis_auth, None);
    assert_eq!(pool.redis_db, 0);
    assert!(!pool.auto_eject_hosts);
    assert_eq!(pool.server_failure_limit, 2);
    assert_eq!(pool.server_retry_timeout_ms, 30_000);
    assert_eq!(pool.max_value_bytes, 1 << 20);

    let server = &pool.servers[0];
    assert_eq!(server.host, "127.0.0.1");
    assert_eq!(server.port, 6381);
    assert_eq!(server.weight, 1);
    assert_eq!(server.name, None);
    assert_eq!(server.ident, "127.0.0.1:6381");
    assert_eq!(server.spec, "127.0.0.1:6381:1");
}

#[test]
fn every_key_can_be_set() {
    let config = parse_ok(
        r#"
[proxy]
workers = 2
cpus = [3, 1, 2]
admin = "off"
stats_port = 22223
admin_token = "admin-secret"
admin_max_connections = 8
admin_timeout_ms = 250
shutdown_timeout_ms = 0
histogram_dir = "/var/lib/ferrule"
upgrade_socket = "/run/ferrule/upgrade.sock"
histogram_interval_s = 10
client_max_inflight = 64
client_max_unsent_bytes = 65536
client_max_buffered_bytes = 1048576
client_buffers_max_bytes = 8388608
backend_max_queued_bytes = 65536
io_memory_kib = 1024
busy_poll_us = 200

[listeners.cache]
listen = "0.0.0.0:22121"
protocol = "redis"
route = "main"
auth = "client-secret"
backlog = 4096

[pools.main]
servers = ["10.0.0.1:6379:2 a", "10.0.0.2:6379:1 b"]
protocol = "redis"
hash = "murmur"
distribution = "modula"
hash_tag = "{}"
timeout_ms = 250
connect_timeout_ms = 100
server_connections = 2
max_dedicated_connections = 8
preconnect = true
batching = "eager"
batching_max_hold_us = 50
redis_auth = "backend-secret"
redis_db = 3
auto_eject_hosts = true
server_failure_limit = 5
server_retry_timeout_ms = 10000
"#,
    );
    let proxy = &config.proxy;
    assert_eq!(proxy.workers, Workers::Count(2));
    assert_eq!(proxy.cpus, Some(vec![3, 1, 2]));
    assert_eq!(proxy.admin, None);
    assert_eq!(proxy.stats_port, Some("127.0.0.1:22223".parse().unwrap()));
    assert_eq!(proxy.admin_token.as_deref(), Some("admin-secret"));
    assert_eq!((proxy.admin_max_connections, proxy.admin_timeout_ms), (8, 250));
    assert_eq!(proxy.shutdown_timeout_ms, 0);
    assert_eq!(proxy.histogram_dir.as_deref(), Some(std::path::Path::new("/var/lib/ferrule")));
    assert_eq!(proxy.upgrade_socket.as_deref(), Some(std::path::Path::new("/run/ferrule/upgrade.sock")));
    assert_eq!(proxy.histogram_interval_s, 10);
    assert_eq!(proxy.client_max_inflight, 64);
    assert_eq!(proxy.client_max_unsent_bytes, 65536);
    assert_eq!(proxy.client_max_buffered_bytes, 1 << 20);
    assert_eq!(proxy.client_buffers_max_bytes, 8 << 20);
    assert_eq!(proxy.backend_max_queued_bytes, 65536);
    assert_eq!(proxy.io_memory_kib, 1024);
    assert_eq!(proxy.busy_poll_us, 200);
    let listener = &config.listeners[0];
    assert_eq!(listener.auth.as_deref(), Some("client-secret"));
    assert_eq!(listener.backlog, 4096);
    let pool = &config.pools[0];
    assert_eq!(pool.hash, HashKind::Murmur);
    assert_eq!(pool.distribution, DistributionKind::Modula);
    assert_eq!(pool.hash_tag, Some(*b"{}"));
    assert_eq!((pool.timeout_ms, pool.connect_timeout_ms), (250, 100));
    assert_eq!(pool.server_connections, 2);
    assert_eq!(pool.max_dedicated_connections, 8);
    assert!(pool.preconnect && pool.auto_eject_hosts);
    assert_eq!(pool.batching, Batching::Eager);
    assert_eq!(pool.batching_max_hold_us, 50);
    assert_eq!(pool.redis_auth.as_deref(), Some("backend-secret"));
    assert_eq!(pool.redis_db, 3);
    assert_eq!(pool.server_failure_limit, 5);
    assert_eq!(pool.server_retry_timeout_ms, 10000);
    let idents: Vec<&str> = pool.servers.iter().map(|s| s.ident.as_str()).collect();
    assert_eq!(idents, ["a", "b"]);
    assert_eq!(pool.servers[0].weight, 2);

    let mut expected = config.clone();
    expected.proxy.admin_token = Some(REDACTED.to_owned());
    expected.listeners[0].auth = Some(REDACTED.to_owned());
    expected.pools[0].redis_auth = Some(REDACTED.to_owned());
    let shown = config.to_redacted_toml();
    assert!(!shown.contains("admin-secret"), "{shown}");
    assert_eq!(parse_ok(&shown), expected);
}

#[test]
fn workers_auto_admin_variants_and_stats_address() {
    let text = with_lines("[proxy]", "workers = \"auto\"\nadmin = \"\"\nstats_port = \"[::1]:22223\"");
    let config = parse_ok(&text);
    assert_eq!(config.proxy.workers, Workers::Auto);
    assert_eq!(config.proxy.admin, None);
    assert_eq!(config.proxy.stats_port, Some("[::1]:22223".parse().unwrap()));
    let text = with_lines("[proxy]", "admin = \"localhost:9000\"");
    assert_eq!(parse_ok(&text).proxy.admin, Some("127.0.0.1:9000".parse().unwrap()));
}

#[test]
fn ipv6_servers_and_listeners() {
    let config = parse_ok(
        r#"
[listeners.v6]
listen = "[::1]:22121"
protocol = "redis"
route = "main"

[pools.main]
servers = ["[::1]:6379:1", "[2001:db8::7]:6379:2 far"]
"#,
    );
    assert_eq!(config.listeners[0].listen, ListenAddr::Tcp("[::1]:22121".parse().unwrap()));
    let servers = &config.pools[0].servers;
    assert_eq!(servers[0].addr, "[::1]:6379".parse().unwrap());
    assert_eq!(servers[0].host, "::1");
    assert_eq!(servers[0].ident, "[::1]:6379");
    assert_eq!(servers[1].addr, "[2001:db8::7]:6379".parse().unwrap());
    assert_eq!(servers[1].ident, "far");
    assert_eq!(servers[1].spec, "[2001:db8::7]:6379:2 far");
}

#[test]
fn unix_socket_listeners() {
    let text = MINIMAL.replace("127.0.0.1:22121", "/run/ferrule/redis.sock");
    assert_eq!(parse_ok(&text).listeners[0].listen, ListenAddr::Unix("/run/ferrule/redis.sock".into()));
    let text = MINIMAL.replace("127.0.0.1:22121", "unix:/tmp/f.sock");
    let config = parse_ok(&text);
    assert_eq!(config.listeners[0].listen, ListenAddr::Unix("/tmp/f.sock".into()));
    assert_eq!(config.listeners[0].listen.to_string(), "unix:/tmp/f.sock");
    assert_eq!(parse_ok(&config.to_redacted_toml()), config);

    let text = MINIMAL.replace("127.0.0.1:22121", "unix:relative.sock");
    assert_error(&text, "listeners.cache.listen", 3, "must be absolute");
    let long = format!("/{}", "s".repeat(120));
    let text = MINIMAL.replace("127.0.0.1:22121", &long);
    assert_error(&text, "listeners.cache.listen", 3, "the limit is 107");
}

/// Found by the config fuzz target: toml reports a control character in a comment with no text at all, which
/// left the operator with "line 2, column 4: " and nothing after it.
#[test]
fn control_characters_are_named_even_in_comments() {
    for (text, shown) in [("[proxy]\n# a\0b\n", "'\\0'"), ("# tab ok\t but not \x07\n", "'\\u{7}'")] {
        let err = Config::parse(&format!("{text}{MINIMAL}")).expect_err(text);
        assert!(err.message().contains("control character") && err.message().contains(shown), "{err}");
        assert!(err.line().is_some(), "{err}");
    }
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let text = with_lines("[proxy]", "worker = 2");
    let err = assert_error(&text, "proxy.worker", 2, "unknown key");
    assert!(err.message().contains("workers"), "lists the valid keys: {err}");

    let text = MINIMAL.replace("route = \"main\"", "route = \"main\"\nlisten_backlog = 5");
    assert_error(&text, "listeners.cache.listen_backlog", 6, "unknown key");

    let text = with_lines("[pools.main]", "timeout = 400");
    assert_error(&text, "pools.main.timeout", 8, "spells twemproxy's `timeout` as `timeout_ms`");

    let text = format!("{MINIMAL}\n[pool.extra]\nservers = []\n");
    assert_error(&text, "pool", 10, "unknown key `pool`");

    // The first unknown key in the file is reported, not the first in alphabetical order.
    let text = with_lines("[proxy]", "zzz = 1\naaa = 2");
    assert_error(&text, "proxy.zzz", 2, "unknown key");
}

#[test]
fn bad_server_specs_point_at_their_own_line() {
    let text = MINIMAL.replace(
        "servers = [\"127.0.0.1:6381:1\"]",
        "servers = [\n  \"127.0.0.1:6381:1\",\n  \"127.0.0.1:6382:0\",\n]",
    );
    assert_error(&text, "pools.main.servers[1]", 10, "weight \"0\"");

    let text = MINIMAL.replace("127.0.0.1:6381:1", "127.0.0.1:0:1");
    assert_error(&text, "pools.main.servers[0]", 8, "not a port");

    let text = MINIMAL.replace("127.0.0.1:6381:1", "127.0.0.1:6381");
    assert_error(&text, "pools.main.servers[0]", 8, "host:port:weight [name]");

    let text = MINIMAL.replace("127.0.0.1:6381:1", "127.0.0.1:6381:1 a b");
    assert_error(&text, "pools.main.servers[0]", 8, "unexpected \"b\"");

    let text = MINIMAL.replace("127.0.0.1:6381:1", "::1:6381:1");
    assert_error(&text, "pools.main.servers[0]", 8, "brackets");

    let text = MINIMAL.replace("[\"127.0.0.1:6381:1\"]", "[\"127.0.0.1:6381:1\", 5]");
    assert_error(&text, "pools.main.servers", 8, "servers[1] is not a string");

    let text = MINIMAL.replace("[\"127.0.0.1:6381:1\"]", "[]");
    assert_error(&text, "pools.main.servers", 8, "at least one server");
}

#[test]
fn duplicate_servers_are_rejected() {
    let text = MINIMAL.replace(
        "servers = [\"127.0.0.1:6381:1\"]",
        "servers = [\n  \"127.0.0.1:6381:1 a\",\n  \"127.0.0.1:6382:1 a\",\n]",
    );
    assert_error(&text, "pools.main.servers[1]", 10, "identity \"a\" is already used by servers[0]");

    let text =
        MINIMAL.replace("servers = [\"127.0.0.1:6381:1\"]", "servers = [\"127.0.0.1:6381:1\", \"127.0.0.1:6381:1\"]");
    assert_error(&text, "pools.main.servers[1]", 8, "already used by servers[0]");

    let text = MINIMAL
        .replace("servers = [\"127.0.0.1:6381:1\"]", "servers = [\"127.0.0.1:6381:1 a\", \"127.0.0.1:6381:1 b\"]");
    assert_error(&text, "pools.main.servers[1]", 8, "address 127.0.0.1:6381");
}

#[test]
fn bad_pool_values_are_rejected() {
    let cases = [
        ("hash = \"fnv\"", "hash", "unknown hash \"fnv\"; expected one of: one_at_a_time"),
        ("distribution = \"ring\"", "distribution", "expected one of: ketama, modula, random, ch3"),
        ("hash_tag = \"{\"", "hash_tag", "not two printable ASCII characters"),
        ("hash_tag = \"{}}\"", "hash_tag", "not two printable ASCII characters"),
        ("timeout_ms = 0", "timeout_ms", "must be at least 1, got 0"),
        ("timeout_ms = -5", "timeout_ms", "must be at least 1, got -5"),
        ("timeout_ms = \"1s\"", "timeout_ms", "expected an integer, found string \"1s\""),
        ("server_connections = 0", "server_connections", "must be from 1 to 1024"),
        ("max_dedicated_connections = -1", "max_dedicated_connections", "must be from 0 to 10000"),
        ("max_dedicated_connections = 10001", "max_dedicated_connections", "must be from 0 to 10000"),
        ("preconnect = 1", "preconnect", "expected true or false, found integer 1"),
        ("batching = \"nagle\"", "batching", "unknown batching \"nagle\"; expected adaptive or eager"),
        ("batching_max_hold_us = 0", "batching_max_hold_us", "must be from 1 to 1000000"),
        ("server_failure_limit = 0", "server_failure_limit", "at least 1"),
        ("redis_auth = \"\"", "redis_auth", "must not be empty"),
        ("protocol = \"http\"", "protocol", "unknown protocol \"http\""),
    ];
    for (line, key, fragment) in cases {
        let text = with_lines("[pools.main]", line);
        assert_error(&text, &format!("pools.main.{key}"), 8, fragment);
    }
}

#[test]
fn bad_proxy_values_are_rejected() {
    let cases = [
        ("workers = 0", "workers", "must be at least 1, got 0"),
        ("workers = \"many\"", "workers", "or \"auto\""),
        ("cpus = []", "cpus", "at least one CPU"),
        ("cpus = [0, -1]", "cpus", "cpus[1] is not a CPU number"),
        ("cpus = [1, 1]", "cpus", "CPU 1 is listed twice"),
        ("admin = \"127.0.0.1\"", "admin", "is not an address"),
        ("admin = \"127.0.0.1:0\"", "admin", "port 0 is not allowed"),
        ("stats_port = 0", "stats_port", "must be from 1 to 65535"),
        ("admin_token = \"\"", "admin_token", "must not be empty"),
        ("admin_token = \"two words\"", "admin_token", "printable ASCII without spaces"),
        ("admin_token = 5", "admin_token", "expected a string"),
        ("admin_max_connections = 0", "admin_max_connections", "at least 1"),
        ("admin_timeout_ms = 0", "admin_timeout_ms", "at least 1"),
        ("histogram_interval_s = 0", "histogram_interval_s", "at least 1"),
        ("client_max_inflight = 0", "client_max_inflight", "at least 1"),
        ("client_max_unsent_bytes = 100", "client_max_unsent_bytes", "at least 1024"),
        (
            "client_max_buffered_bytes = 1048576",
            "client_max_buffered_bytes",
            "must be at least client_max_unsent_bytes (4194304), got 1048576",
        ),
        ("client_buffers_max_bytes = 0", "client_buffers_max_bytes", "must be at least 1, got 0"),
        ("client_buffers_max_bytes = 4194303", "client_buffers_max_bytes", "at least client_max_unsent_bytes"),
        ("histogram_dir = \"\"", "histogram_dir", "must not be empty"),
        ("upgrade_socket = \"\"", "upgrade_socket", "must not be empty"),
        ("busy_poll_us = -1", "busy_poll_us", "must be from 0 to 1000000"),
        ("busy_poll_us = 2000000", "busy_poll_us", "must be from 0 to 1000000"),
    ];
    for (line, key, fragment) in cases {
        let text = with_lines("[proxy]", line);
        assert_error(&text, &format!("proxy.{key}"), 2, fragment);
    }
    // A smaller unsent bound lowers the defaults' floor with it; the caps default to their own values.
    let config = parse_ok(&with_lines("[proxy]", "client_max_unsent_bytes = 65536"));
    assert_eq!(config.proxy.client_max_buffered_bytes, 64 << 20);
    // A bigger one raises the caps' defaults so that they stay above it.
    let config = parse_ok(&with_lines("[proxy]", "client_max_unsent_bytes = 134217728"));
    assert_eq!(config.proxy.client_max_buffered_bytes, 128 << 20);
    assert_eq!(config.proxy.client_buffers_max_bytes, 512 << 20);
    let text = with_lines("[proxy]", "workers = 3\ncpus = [0, 1]");
    assert_error(&text, "proxy.workers", 2, "3 workers but cpus lists only 2 CPUs");
}

#[test]
fn listener_errors() {
    let text = MINIMAL.replace("route = \"main\"", "route = \"mian\"");
    assert_error(
        &text,
        "listeners.cache.route",
        5,
        "no pool or route named \"mian\"; defined pools: main; defined routes: none",
    );

    let text = MINIMAL.replace("listen = \"127.0.0.1:22121\"\n", "");
    assert_error(&text, "listeners.cache", 2, "missing required key `listen`");

    let text = MINIMAL.replace("protocol = \"redis\"", "protocol = \"memcache\"\nauth = \"x\"");
    assert_error(&text, "listeners.cache.auth", 5, "only for redis listeners");

    let text = MINIMAL.replace("127.0.0.1:22121", "127.0.0.1:0");
    assert_error(&text, "listeners.cache.listen", 3, "port 0 is not allowed");

    let text = MINIMAL.replace("route = \"main\"", "route = \"main\"\nbacklog = 0");
    assert_error(&text, "listeners.cache.backlog", 6, "must be from 1 to 65535");

    let text = MINIMAL.replace("[listeners.cache]", "[listeners.\"a b\"]");
    assert_error(&text, "listeners.a b", 2, "invalid name");
}

#[test]
fn duplicate_and_colliding_listen_addresses_are_rejected() {
    let second = "\n[listeners.other]\nlisten = \"127.0.0.1:22121\"\nprotocol = \"redis\"\nroute = \"main\"\n";
    let text = format!("{MINIMAL}{second}");
    assert_error(&text, "listeners.other.listen", 11, "collides with listeners.cache.listen = 127.0.0.1:22121");

    let text = format!("{MINIMAL}{}", second.replace("127.0.0.1:22121", "0.0.0.0:22121"));
    assert_error(&text, "listeners.other.listen", 11, "collides with");

    let text = format!("{MINIMAL}{}", second.replace("127.0.0.1:22121", "127.0.0.2:22121"));
    parse_ok(&text);

    let text = MINIMAL.replace("127.0.0.1:22121", "127.0.0.1:22222");
    assert_error(&text, "listeners.cache.listen", 3, "proxy.admin = 127.0.0.1:22222 (its default");

    let text = with_lines("[proxy]", "admin = \"127.0.0.1:9000\"\nstats_port = 9000");
    assert_error(&text, "proxy.stats_port", 3, "collides with proxy.admin");
}

#[test]
fn pool_protocol_comes_from_its_listeners() {
    let memcache_listener =
        "\n[listeners.mc]\nlisten = \"127.0.0.1:22122\"\nprotocol = \"memcache\"\nroute = \"main\"\n";
    let text = format!("{MINIMAL}{memcache_listener}");
    assert_error(
        &text,
        "listeners.mc.route",
        13,
        "this memcache listener routes to pool \"main\", which redis listener \"cache\" also uses",
    );

    let text = with_lines("[pools.main]", "protocol = \"memcache\"");
    assert_error(&text, "listeners.cache.route", 5, "which declares protocol = \"memcache\"");

    let text = with_lines("[pools.main]", "max_value_bytes = 100");
    assert_error(&text, "pools.main.max_value_bytes", 8, "only applies to memcache pools");

    let memcache = MINIMAL.replace("\"redis\"", "\"memcache\"");
    let text = insert_after(&memcache, "[pools.main]", "redis_db = 1");
    assert_error(&text, "pools.main.redis_db", 8, "only applies to redis pools");
    let text = insert_after(&memcache, "[pools.main]", "max_dedicated_connections = 1");
    assert_error(&text, "pools.main.max_dedicated_connections", 8, "only applies to redis pools");
}

#[test]
fn unrouted_pools_are_allowed_with_a_warning() {
    let idle = "\n[pools.spare]\nprotocol = \"memcache\"\nservers = [\"127.0.0.1:11211:1\"]\nmax_value_bytes = 2048\n";
    let config = parse_ok(&format!("{MINIMAL}{idle}"));
    let spare = config.pool("spare").expect("spare pool");
    assert_eq!(spare.protocol, Protocol::Memcache);
    assert_eq!(spare.max_value_bytes, 2048);
    assert_eq!(spare.servers[0].ident, "127.0.0.1");
    assert_eq!(config.pool_index("main"), Some(0));
    assert_eq!(config.pool_index("spare"), Some(1));
    assert_eq!(config.pool_index("nope"), None);
    assert_eq!(config.warnings().len(), 1);
    assert!(config.warnings()[0].contains("pools.spare"));

    let idle = "\n[pools.spare]\nservers = [\"127.0.0.1:6390:1\"]\n";
    assert_eq!(parse_ok(&format!("{MINIMAL}{idle}")).pools[1].protocol, Protocol::Redis);
}

#[test]
fn structural_errors() {
    let err = Config::parse("").unwrap_err();
    assert_eq!(err.key(), Some("listeners"));
    assert!(err.to_string().contains("no listeners"), "{err}");

    let text = MINIMAL.replace("[pools.main]", "[pools.main");
    let err = Config::parse(&text).unwrap_err();
    assert_eq!(err.line(), Some(7), "{err}");

    let text = with_lines("[proxy]", "workers = 1\nworkers = 2");
    let err = Config::parse(&text).unwrap_err();
    assert_eq!(err.line(), Some(3), "{err}");
    assert!(err.to_string().contains("duplicate key `workers`"), "{err}");

    let text = MINIMAL.replace("[listeners.cache]\n", "[listeners]\ncache.");
    let err = Config::parse(&text).unwrap_err();
    assert!(err.to_string().contains("dotted keys are not supported"), "{err}");
    assert!(err.line().is_some(), "{err}");

    let text = format!("{MINIMAL}\n[pools.service]\nservers = [\"127.0.0.1:7000:1\"]\n");
    assert_error(&text, "pools.service", 10, "reserved");

    let err = Config::parse("\n[[pools]]\nservers = []\n").unwrap_err();
    assert_eq!(err.line(), Some(2), "{err}");
    assert!(err.to_string().contains("expected a table"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Damaged configs are rejected with a located error or accepted; parsing never panics.
    #[test]
    fn damaged_configs_never_panic(start in 0usize..4000, len in 0usize..40, insert in "[ -~\n]{0,8}") {
        let text = include_str!("../../conf/ferrule.toml");
        let start = start.min(text.len());
        let end = (start + len).min(text.len());
        if text.is_char_boundary(start) && text.is_char_boundary(end) {
            let damaged = format!("{}{insert}{}", &text[..start], &text[end..]);
            if let Err(err) = Config::parse(&damaged) {
                proptest::prop_assert!(!err.to_string().is_empty());
            }
        }
    }
}

#[test]
fn redaction_hides_secrets_and_round_trips() {
    let text = MINIMAL
        .replace("route = \"main\"", "route = \"main\"\nauth = \"client-pass\"")
        .replace("[pools.main]", "[pools.main]\nredis_auth = \"server-pass\"\nhash_tag = \"{}\"");
    let config = parse_ok(&text);
    let shown = config.to_redacted_toml();
    assert!(!shown.contains("client-pass") && !shown.contains("server-pass"), "{shown}");
    assert!(shown.contains("auth = \"********\""), "{shown}");
    assert!(shown.contains("redis_auth = \"********\""), "{shown}");
    assert!(shown.contains("timeout_ms = 1000"), "defaults are spelled out: {shown}");

    let reparsed = parse_ok(&shown);
    assert_eq!(reparsed.listeners[0].auth.as_deref(), Some(REDACTED));
    assert_eq!(reparsed.pools[0].redis_auth.as_deref(), Some(REDACTED));
    let mut expected = config.clone();
    expected.listeners[0].auth = Some(REDACTED.to_owned());
    expected.pools[0].redis_auth = Some(REDACTED.to_owned());
    assert_eq!(reparsed, expected);
}

#[test]
fn load_names_the_file() {
    let missing = std::path::Path::new("/nonexistent/ferrule-test.toml");
    let err = Config::load(missing).unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent/ferrule-test.toml: cannot read"), "{err}");

    let path = std::env::temp_dir().join(format!("ferrule-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, with_lines("[pools.main]", "hash = \"nope\"")).unwrap();
    let result = Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    let err = result.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}: line 8, column 8: pools.main.hash: unknown hash", path.display())),
        "{shown}"
    );
    assert_eq!(err.origin(), Some(path.as_path()));
    assert_eq!(err.column(), Some(8));
}

#[test]
fn client_limits_idle_timeout_and_keepalive() {
    let config = parse_ok(MINIMAL);
    let listener = &config.listeners[0];
    assert_eq!((listener.client_connections, listener.client_idle_timeout_ms, listener.tcpkeepalive), (0, 0, false));
    assert_eq!(config.proxy.max_client_connections, 0);
    assert_eq!(config.descriptors_needed(2), None, "no client limit: nothing bounds what is needed");

    let text = MINIMAL.replace(
        "route = \"main\"",
        "route = \"main\"\nclient_connections = 1000\nclient_idle_timeout_ms = 30000\ntcpkeepalive = true",
    );
    let config = parse_ok(&text);
    let listener = &config.listeners[0];
    assert_eq!(
        (listener.client_connections, listener.client_idle_timeout_ms, listener.tcpkeepalive),
        (1000, 30000, true)
    );
    // 1000 clients, 1 server x 1 connection x 2 (RESP2 and RESP3) x 2 workers, 1 listener x 2 workers, margin.
    assert_eq!(config.descriptors_needed(2), Some(1000 + 4 + 2 + 64));

    let text = format!("[proxy]\nmax_client_connections = 500\n{text}");
    assert_eq!(parse_ok(&text).proxy.max_client_connections, 500);
    assert_eq!(parse_ok(&text).descriptors_needed(1), Some(500 + 2 + 1 + 64), "the smaller limit decides");

    let pool = parse_ok(&MINIMAL.replace("servers =", "tcpkeepalive = true\nservers ="));
    assert!(pool.pools[0].tcpkeepalive && !parse_ok(MINIMAL).pools[0].tcpkeepalive);

    let text = MINIMAL.replace("route = \"main\"", "route = \"main\"\nclient_connections = -1");
    assert_error(&text, "listeners.cache.client_connections", 6, "");
    let text = MINIMAL.replace("route = \"main\"", "route = \"main\"\ntcpkeepalive = 1");
    assert_error(&text, "listeners.cache.tcpkeepalive", 6, "");
    let text = format!("[proxy]\nmax_client_connections = \"many\"\n{MINIMAL}");
    assert_error(&text, "proxy.max_client_connections", 2, "");
}

/// MINIMAL's listener with a `users` line.
fn with_users(users: &str) -> String {
    MINIMAL.replace("route = \"main\"", &format!("route = \"main\"\nusers = [{users}]"))
}

#[test]
fn listener_users() {
    let hex = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4";
    let text = with_users(&format!(
        "{{ name = \"reporting\", password_sha256 = \"{hex}\", permissions = \"read-only\" }}, \
         {{ name = \"app\", password = \"app-secret\" }}"
    ));
    let config = parse_ok(&text);
    let users = &config.listeners[0].users;
    assert_eq!(users.len(), 2);
    assert_eq!(users[1].name, "app");
    assert_eq!(users[1].password, UserPassword::Clear("app-secret".into()));
    assert_eq!(users[1].permissions, Permissions::All);
    assert_eq!(users[0].name, "reporting");
    assert_eq!(users[0].password, UserPassword::Sha256(sha256(b"pw")));
    assert_eq!(users[0].permissions, Permissions::ReadOnly);
    let access = config.listeners[0].access();
    assert!(access.required(), "users without `auth` turn the default user off");
    assert_eq!(access.authenticate(Some(b"reporting"), b"pw"), Ok(Permissions::ReadOnly));

    let shown = config.to_redacted_toml();
    assert!(!shown.contains("app-secret") && !shown.contains(hex), "{shown}");
    let reparsed = parse_ok(&shown);
    assert_eq!(reparsed.listeners[0].users[0].password, UserPassword::Clear(REDACTED.into()));
    assert_eq!(reparsed.listeners[0].users[0].permissions, Permissions::ReadOnly);
    assert_eq!(reparsed.listeners[0].users[1].name, "app");
}

#[test]
fn listener_user_errors() {
    let cases = [
        ("{ name = \"u\" }", "listeners.cache.users[0]", "missing `password` or `password_sha256`"),
        ("{ name = \"u\", password = \"a\", password_sha256 = \"b\" }", "listeners.cache.users[0]", "not both"),
        ("{ name = \"u\", password_sha256 = \"abc\" }", "listeners.cache.users[0].password_sha256", "64 hexadecimal"),
        ("{ name = \"u\", password = \"\" }", "listeners.cache.users[0].password", "must not be empty"),
        (
            "{ name = \"u\", password = \"a\", permissions = \"admin\" }",
            "listeners.cache.users[0].permissions",
            "\"read-only\"",
        ),
        ("{ name = \"u\", password = \"a\", role = \"x\" }", "listeners.cache.users[0].role", "unknown key `role`"),
        ("{ password = \"a\" }", "listeners.cache.users[0].name", "needs a `name`"),
        ("{ name = \"a b\", password = \"a\" }", "listeners.cache.users[0].name", "printable"),
        (
            "{ name = \"u\", password = \"a\" }, { name = \"u\", password = \"b\" }",
            "listeners.cache.users[1].name",
            "twice",
        ),
        ("\"u\"", "listeners.cache.users[0]", "expected a table"),
    ];
    for (users, key, fragment) in cases {
        assert_error(&with_users(users), key, 6, fragment);
    }
    let text = with_users("{ name = \"default\", password = \"y\" }")
        .replace("route = \"main\"", "route = \"main\"\nauth = \"x\"");
    assert_error(&text, "listeners.cache.users[0]", 7, "already given by `auth`");
    let text =
        with_users("{ name = \"u\", password = \"y\" }").replace("protocol = \"redis\"", "protocol = \"memcache\"");
    assert_error(&text, "listeners.cache.users", 6, "only for redis listeners");
}

#[test]
fn mcrouter_distributions_and_their_rules() {
    let pool = |lines: &str| MINIMAL.replace("servers = [\"127.0.0.1:6381:1\"]", lines);
    let config = parse_ok(&pool("servers = [\"127.0.0.1:6381:1\", \"127.0.0.1:6382:1\"]\ndistribution = \"ch3\""));
    assert_eq!(config.pools[0].distribution, DistributionKind::Ch3);
    let config = parse_ok(&pool(
        "servers = [\"127.0.0.1:6381:1000000\", \"127.0.0.1:6382:700000\"]\ndistribution = \"weighted_ch3\"",
    ));
    assert_eq!(config.pools[0].distribution, DistributionKind::WeightedCh3);
    assert_eq!(config.pools[0].servers[1].weight, 700_000);
    // A config that names the default hash (as GET /config writes it) still parses back.
    let config =
        parse_ok(&pool("servers = [\"127.0.0.1:6381:1\"]\ndistribution = \"mcrouter_crc32\"\nhash = \"fnv1a_64\""));
    assert_eq!(Config::parse(&config.to_redacted_toml()).unwrap().pools, config.pools);

    assert_error(
        &pool("servers = [\"127.0.0.1:6381:1\"]\ndistribution = \"ch3\"\nhash = \"md5\""),
        "pools.main.hash",
        10,
        "hashes keys itself",
    );
    assert_error(
        &pool("servers = [\"127.0.0.1:6381:1\"]\ndistribution = \"ch3\"\nauto_eject_hosts = true"),
        "pools.main.auto_eject_hosts",
        10,
        "cannot be used",
    );
    assert_error(
        &pool("servers = [\"127.0.0.1:6381:1\", \"127.0.0.1:6382:2\"]\ndistribution = \"ch3\""),
        "pools.main.servers",
        8,
        "servers[1] has weight 2; ch3 ignores weights",
    );
    assert_error(
        &pool("servers = [\"127.0.0.1:6381:1000001\"]\ndistribution = \"weighted_ch3\""),
        "pools.main.servers",
        8,
        "parts per million",
    );
    assert_error(
        &pool("servers = [\"127.0.0.1:6381:1\"]\ndistribution = \"furc\""),
        "pools.main.distribution",
        9,
        "ch3",
    );
}
