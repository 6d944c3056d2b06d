use super::*;
use crate::config::{Config, ListenAddr, Protocol};

/// A fixture from tests/fixtures/twemproxy with its `${...}` ports filled in.
pub(crate) fn fixture(text: &str) -> String {
    text.replace("${LISTEN}", "22121")
        .replace("${SERVER0}", "6379")
        .replace("${SERVER1}", "6380")
        .replace("${SERVER2}", "6381")
}

fn convert_ok(text: &str) -> (Config, Conversion) {
    let conversion = convert(text, &TwemproxyOptions::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let config = Config::parse(&conversion.toml).unwrap_or_else(|e| panic!("{e}\n{}", conversion.toml));
    (config, conversion)
}

fn convert_err(text: &str) -> ImportError {
    match convert(text, &TwemproxyOptions::default()) {
        Ok(conversion) => panic!("converted:\n{}", conversion.toml),
        Err(err) => err,
    }
}

#[test]
fn every_fixture_converts_and_validates() {
    for text in [
        include_str!("../../../../tests/fixtures/twemproxy/guide.yml"),
        include_str!("../../../../tests/fixtures/twemproxy/modula.yml"),
        include_str!("../../../../tests/fixtures/twemproxy/named.yml"),
        include_str!("../../../../tests/fixtures/twemproxy/memcache.yml"),
        include_str!("../../../../tests/fixtures/twemproxy/every_key.yml"),
    ] {
        convert_ok(&fixture(text));
    }
}

#[test]
fn the_guide_config_keeps_placement_and_settings() {
    let (config, conversion) = convert_ok(&fixture(include_str!("../../../../tests/fixtures/twemproxy/guide.yml")));
    let listener = &config.listeners[0];
    assert_eq!(listener.name, "alpha");
    assert_eq!(listener.listen, ListenAddr::Tcp("127.0.0.1:22121".parse().unwrap()));
    assert_eq!(listener.protocol, Protocol::Redis);
    let pool = config.pool("alpha").unwrap();
    let specs: Vec<&str> = pool.servers.iter().map(|s| s.spec.as_str()).collect();
    assert_eq!(specs, ["127.0.0.1:6379:1", "127.0.0.1:6380:1", "127.0.0.1:6381:1"]);
    assert_eq!(pool.hash, HashKind::Fnv1a_64);
    assert_eq!(pool.distribution, DistributionKind::Ketama);
    assert!(pool.auto_eject_hosts);
    assert_eq!(pool.server_retry_timeout_ms, 2000);
    assert_eq!(pool.server_failure_limit, 1);
    assert_eq!((pool.timeout_ms, pool.connect_timeout_ms), (400, 400));
    // twemproxy's stats port, and the admin endpoint moved out of its way.
    assert_eq!(config.proxy.stats_port, Some("127.0.0.1:22222".parse().unwrap()));
    assert_eq!(config.proxy.admin, Some("127.0.0.1:22223".parse().unwrap()));
    assert!(conversion.toml.contains("# backlog: twemproxy's default was 512"), "{}", conversion.toml);
    assert!(conversion.warnings.is_empty(), "{:?}", conversion.warnings);
}

#[test]
fn every_twemproxy_key_is_mapped_or_explained() {
    let (config, conversion) = convert_ok(include_str!("../../../../tests/fixtures/twemproxy/every_key.yml"));
    let toml = &conversion.toml;
    let web = config.pool("web").unwrap();
    assert_eq!(web.hash, HashKind::Crc32a);
    assert_eq!(web.hash_tag, Some(*b"{}"));
    assert_eq!((web.timeout_ms, web.connect_timeout_ms), (250, 250));
    assert_eq!(web.redis_auth.as_deref(), Some("12345"), "a YAML number stays the string twemproxy read");
    assert_eq!(web.redis_db, 3);
    assert!(web.preconnect && web.auto_eject_hosts);
    assert_eq!((web.server_connections, web.server_retry_timeout_ms, web.server_failure_limit), (4, 10000, 3));
    assert_eq!(web.servers[1].name.as_deref(), Some("web2"));
    assert_eq!(web.servers[1].weight, 2);
    let listener = config.listeners.iter().find(|l| l.name == "web").unwrap();
    assert_eq!(listener.auth.as_deref(), Some("12345"));
    assert_eq!(listener.backlog, 2048);
    for explained in ["client_connections: 10000", "tcpkeepalive: true", "reuseport: true", "counts per worker"] {
        assert!(toml.contains(explained), "{explained} not explained:\n{toml}");
    }
    // A name ferrule cannot use is changed, and said so.
    let sessions = config.pool("sessions_v2").unwrap();
    assert_eq!(sessions.protocol, Protocol::Memcache);
    assert_eq!(sessions.distribution, DistributionKind::Random);
    let listener = config.listeners.iter().find(|l| l.name == "sessions_v2").unwrap();
    assert_eq!(listener.listen, ListenAddr::Unix("/var/run/nutcracker/sessions.sock".into()));
    let warnings = conversion.warnings.join("\n");
    for warned in ["\"sessions.v2\" is called \"sessions_v2\"", "0666", "client_connections", "tcpkeepalive"] {
        assert!(warnings.contains(warned), "no warning about {warned}: {warnings}");
    }
    assert!(toml.contains("timeout: twemproxy waited forever"), "{toml}");
}

#[test]
fn stats_options_become_the_raw_stats_port() {
    let yaml = "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n";
    let options =
        TwemproxyOptions { stats_port: Some(9999), stats_addr: Some("0.0.0.0".into()), stats_interval_ms: Some(30000) };
    let conversion = convert(yaml, &options).unwrap();
    let config = Config::parse(&conversion.toml).unwrap();
    assert_eq!(config.proxy.stats_port, Some("0.0.0.0:9999".parse().unwrap()));
    assert_eq!(config.proxy.admin, Some(crate::config::DEFAULT_ADMIN), "no collision, no move");
    assert!(conversion.toml.contains("-i 30000"), "{}", conversion.toml);
    assert!(!conversion.toml.contains("loopback"), "an explicit -a needs no note");
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("a:\n  listen: 127.0.0.1:1\n  hash: fnv\n", 3, "unknown hash \"fnv\""),
        ("a:\n  listen: 127.0.0.1:1\n  distribution: vnode\n", 3, "unknown distribution"),
        ("a:\n  listen: 127.0.0.1:1\n  redis: yes\n", 3, "not true or false"),
        ("a:\n  listen: 127.0.0.1:1\n  timeout: 1s\n", 3, "not a whole number"),
        ("a:\n  listen: 127.0.0.1:1\n  hash_tag: \"{\"\n", 3, "not two characters"),
        ("a:\n  listen: 127.0.0.1:1\n  timout: 5\n", 3, "unknown key `timout`"),
        ("a:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379\n", 4, "has no weight"),
        ("a:\n  listen: 127.0.0.1:1\n  servers:\n   - /tmp/r.sock:1\n", 4, "unix socket server"),
        ("a:\n  servers:\n   - 127.0.0.1:6379:1\n", 1, "no `listen`"),
        ("a:\n  listen: 127.0.0.1:1\n", 1, "no `servers`"),
        ("a:\n  listen: 127.0.0.1:1\n servers: [\n", 3, "YAML syntax"),
        ("- a\n- b\n", 1, "expected a mapping of pool names"),
    ];
    for (yaml, line, needle) in cases {
        let err = convert_err(yaml);
        assert_eq!(err.line, Some(*line), "{yaml:?}: {err}");
        assert!(err.to_string().contains(needle), "{yaml:?}: {err}");
    }
}

#[test]
fn pools_that_would_collide_are_refused() {
    let yaml = "a.b:\n  listen: 127.0.0.1:1\n  servers: [127.0.0.1:1:1]\na_b:\n  listen: 127.0.0.1:2\n  servers: [127.0.0.1:1:1]\n";
    let err = convert_err(yaml);
    assert_eq!(err.line, Some(4));
    let (config, _) = convert_ok("version:\n  listen: 127.0.0.1:1\n  servers: [127.0.0.1:1:1]\n");
    assert!(config.pool("version_pool").is_some());
}
