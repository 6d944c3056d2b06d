use super::*;
use crate::config::{Config, RouteKind, Target};
use crate::hash::DistributionKind;

fn fixture() -> String {
    include_str!("../../../../tests/fixtures/envoy/prefix_routes.yaml")
        .replace("${LISTEN}", "7000")
        .replace("${SERVER0}", "6380")
        .replace("${SERVER1}", "6381")
        .replace("${SERVER2}", "6382")
        .replace("${SERVER3}", "6383")
}

fn model(text: &str) -> (Config, Conversion) {
    let conversion = convert(text).unwrap_or_else(|e| panic!("{e}"));
    let config = Config::parse_model(&conversion.toml).unwrap_or_else(|e| panic!("{e}\n{}", conversion.toml));
    (config, conversion)
}

fn kind<'c>(config: &'c Config, name: &str) -> &'c RouteKind {
    &config.routes[config.route_index(name).unwrap_or_else(|| panic!("no route {name}"))].kind
}

#[test]
fn the_guides_prefix_routes_with_a_mirror_of_writes() {
    let (config, conversion) = model(&fixture());
    let listener = &config.listeners[0];
    assert_eq!(listener.listen.to_string(), "127.0.0.1:7000");
    assert_eq!(listener.protocol, crate::config::Protocol::Redis);
    let RouteKind::Prefix { prefixes, default, strip_prefix, case_insensitive } = kind(&config, &listener.route) else {
        panic!()
    };
    assert!(*case_insensitive && !strip_prefix);
    assert_eq!(default.as_ref().unwrap().name, "redis_c");
    let p: Vec<(&str, &str)> = prefixes.iter().map(|(p, d)| (p.as_str(), d.name.as_str())).collect();
    assert_eq!(p, [("session:", "redis_b"), ("user:", "redis_listener_redis_a_writes_mirrored")]);
    // exclude_read_commands: reads to redis_a alone, writes through a shadow onto redis_mirror.
    let RouteKind::Operation { operations, .. } = kind(&config, "redis_listener_redis_a_writes_mirrored") else {
        panic!()
    };
    assert_eq!(operations[0].0, "read");
    assert_eq!(operations[0].1.target, Target::Pool(config.pool_index("redis_a").unwrap()));
    let RouteKind::Shadow { child, shadows, .. } = kind(&config, &operations[1].1.name) else { panic!() };
    assert_eq!((child.name.as_str(), shadows[0].target.name.as_str()), ("redis_a", "redis_mirror"));
    assert_eq!(shadows[0].request_fraction, 1.0);
    for pool in &config.pools {
        assert_eq!(pool.timeout_ms, 500, "op_timeout 0.5s");
        assert_eq!(pool.connect_timeout_ms, 1000);
    }
    if !crate::config::EXECUTABLE_TYPES.contains(&"shadow") {
        assert!(conversion.toml.contains("\"shadow\" is in ferrule's route model but not executable"));
        assert!(Config::parse(&conversion.toml).is_err());
    }
}

const ONE_LISTENER: &str = r#"
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 0.0.0.0, port_value: 8080 } }
    filter_chains: [ { filters: [ { name: envoy.filters.network.http_connection_manager, typed_config: {} } ] } ]
  - name: redis
    address: { socket_address: { address: 127.0.0.1, port_value: 6400 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.redis_proxy
        typed_config:
          stat_prefix: r
          settings: { op_timeout: { seconds: 2 } }
          downstream_auth_password: { inline_string: s3cret }
          DOWNSTREAM_USER
          prefix_routes:
            routes:
            - prefix: "a:"
              remove_prefix: true
              cluster: big
              MIRROR
            - prefix: "b:"
              remove_prefix: REMOVE_B
              cluster: small
  clusters:
  - name: big
    lb_policy: RING_HASH
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 6401 } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 6402 } } }
  - name: small
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 6403 } } }
"#;

fn variant(user: &str, mirror: &str, remove_b: &str) -> String {
    ONE_LISTENER.replace("DOWNSTREAM_USER", user).replace("MIRROR", mirror).replace("REMOVE_B", remove_b)
}

#[test]
fn strip_prefix_auth_timeouts_and_placement_notes() {
    let (config, conversion) = model(&variant("", "", "true"));
    assert_eq!(config.listeners.len(), 1, "only the redis_proxy listener is converted");
    let listener = &config.listeners[0];
    assert_eq!(listener.auth.as_deref(), Some("s3cret"));
    let RouteKind::Prefix { strip_prefix, default, .. } = kind(&config, &listener.route) else { panic!() };
    assert!(*strip_prefix && default.is_none());
    assert!(conversion.toml.contains("No catch_all_route"), "{}", conversion.toml);
    let big = config.pool("big").unwrap();
    assert_eq!((big.timeout_ms, big.distribution), (2000, DistributionKind::Ketama));
    assert!(conversion.toml.contains("Envoy placed keys with its ring hash"), "{}", conversion.toml);
    assert!(conversion.warnings.iter().any(|w| w.contains("\"big\"") && w.contains("keys move")));
    assert!(!conversion.warnings.iter().any(|w| w.contains("\"small\"")), "one endpoint places keys the same");
    // A mirror of everything is a shadow route straight away, with its runtime fraction.
    let mirror =
        "request_mirror_policy: [ { cluster: small, runtime_fraction: { default_value: { numerator: 25 } } } ]";
    let (config, _) = model(&variant("", mirror, "true"));
    let RouteKind::Prefix { prefixes, .. } = kind(&config, &config.listeners[0].route) else { panic!() };
    let RouteKind::Shadow { shadows, .. } = kind(&config, &prefixes[0].1.name) else { panic!() };
    assert_eq!(shadows[0].request_fraction, 0.25);
    // downstream_auth_username: ferrule checks the password only; said in the file and a warning.
    let (_, conversion) = model(&variant("downstream_auth_username: { inline_string: app }", "", "true"));
    assert!(conversion.toml.contains("downstream_auth_username \"app\""), "{}", conversion.toml);
    assert!(conversion.warnings.iter().any(|w| w.contains("downstream_auth_username")));
}

#[test]
fn what_cannot_be_converted_is_refused_with_its_line() {
    let err = convert(&variant("", "", "false")).unwrap_err();
    assert!(err.to_string().contains("with and without remove_prefix"), "{err}");
    let err = convert(&variant("", "", "true").replace("cluster: small", "cluster: nowhere")).unwrap_err();
    assert!(err.to_string().contains("no cluster named \"nowhere\""), "{err}");
    assert!(err.line.is_some());
    let err = convert(
        &variant("", "", "true").replace("stat_prefix: r", "stat_prefix: r\n          latency_in_micros: true"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("`latency_in_micros` is not converted"), "{err}");
    assert_eq!(err.line, Some(14), "{err}");
    let err = convert("static_resources:\n  listeners: []\n").unwrap_err();
    assert!(err.to_string().contains("no listener has an envoy.filters.network.redis_proxy"), "{err}");
    let err =
        convert(&variant("", "", "true").replace("{ inline_string: s3cret }", "{ filename: /etc/pw }")).unwrap_err();
    assert!(err.to_string().contains("only inline_string secrets"), "{err}");
}
