use super::*;
use crate::config::{AllMode, Config, FailureClass, RouteKind, Target, EXECUTABLE_TYPES};
use crate::hash::{locate_key, DistributionKind, Ring, RingMember};

fn fixture(text: &str) -> String {
    text.replace("${SERVER0}", "11211").replace("${SERVER1}", "11212").replace("${SERVER2}", "11213")
}

fn convert_ok(text: &str) -> (Config, Conversion) {
    let conversion = convert(&fixture(text), &McrouterOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let config = Config::parse(&conversion.toml).unwrap_or_else(|e| panic!("{e}\n{}", conversion.toml));
    (config, conversion)
}

/// Keys "0".."999" counted per server as the converted pool places them.
fn counts(config: &Config, pool: &str) -> Vec<usize> {
    let pool = config.pool(pool).unwrap();
    let members: Vec<RingMember<'_>> =
        pool.servers.iter().map(|s| RingMember { ident: &s.ident, weight: s.weight, live: true }).collect();
    let ring = Ring::build(pool.distribution, &members);
    let mut counts = vec![0; members.len()];
    for i in 0..1000 {
        counts[locate_key(&ring, pool.hash, pool.hash_tag, i.to_string().as_bytes()).unwrap()] += 1;
    }
    counts
}

#[test]
fn a_sharded_pool_places_keys_with_ch3() {
    let (config, conversion) = convert_ok(include_str!("../../../../tests/fixtures/mcrouter/sharded.json"));
    let listener = &config.listeners[0];
    assert_eq!(listener.listen.to_string(), "127.0.0.1:5000", "the port the guide's compose file uses");
    assert_eq!(listener.protocol, crate::config::Protocol::Memcache);
    let pool = config.pool("A").unwrap();
    assert_eq!(pool.distribution, DistributionKind::Ch3);
    assert_eq!(pool.timeout_ms, 500);
    let ports: Vec<u16> = pool.servers.iter().map(|s| s.port).collect();
    assert_eq!(ports, [11211, 11212, 11213], "mcrouter's order is kept");
    assert_eq!(counts(&config, "A"), [307, 342, 351], "the reference's ch3 vector");
    assert!(conversion.warnings.iter().any(|w| w.contains("line 1") && w.contains("`#`")), "{:?}", conversion.warnings);
}

#[test]
fn weights_become_weighted_ch3_in_millionths() {
    let (config, conversion) = convert_ok(include_str!("../../../../tests/fixtures/mcrouter/weighted.json"));
    let pool = config.pool("main").unwrap();
    assert_eq!(pool.distribution, DistributionKind::WeightedCh3);
    let weights: Vec<u32> = pool.servers.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [1_000_000, 1_000_000, 700_000]);
    assert_eq!(counts(&config, "main"), [341, 371, 288], "mcrouter's reducedWeight vector");
    // The pool no route reaches is kept, idle, and said so.
    assert_eq!(config.pool("spare").unwrap().protocol, crate::config::Protocol::Memcache);
    assert!(conversion.warnings.iter().any(|w| w.contains("\"spare\"")), "{:?}", conversion.warnings);
}

#[test]
fn options_and_hash_functions() {
    let text = r#"{"pools": {"p": {"servers": ["[::1]:11211:ascii:plain", "127.0.0.1:11212"]}},
                   "route": {"type": "PoolRoute", "pool": "p", "hash": {"hash_func": "Crc32"}}}"#;
    let options = McrouterOptions { listen: Some("0.0.0.0:11211".into()), route_prefix: None };
    let conversion = convert(text, &options).unwrap();
    let config = Config::parse(&conversion.toml).unwrap();
    assert_eq!(config.pool("p").unwrap().distribution, DistributionKind::McrouterCrc32);
    assert_eq!(config.listeners[0].listen.to_string(), "0.0.0.0:11211");
    let (config, _) = convert_ok(r#"{"pools": {"p": {"servers": ["127.0.0.1:1"]}}, "route": "p"}"#);
    assert_eq!(config.pool("p").unwrap().distribution, DistributionKind::Ch3);
}

fn convert_model(text: &str, options: &McrouterOptions) -> (Config, Conversion) {
    let conversion = convert(&fixture(text), options).unwrap_or_else(|e| panic!("{e}"));
    let config = Config::parse_model(&conversion.toml).unwrap_or_else(|e| panic!("{e}\n{}", conversion.toml));
    (config, conversion)
}

fn route<'c>(config: &'c Config, name: &str) -> &'c RouteKind {
    &config.routes[config.route_index(name).unwrap_or_else(|| panic!("no route {name}: {:?}", config.routes))].kind
}

fn listener_route(config: &Config) -> &str {
    &config.listeners[0].route
}

#[test]
fn the_guides_replicated_pool_converts_to_an_operation_route() {
    let (config, conversion) =
        convert_model(include_str!("../../../../tests/fixtures/mcrouter/operation_selector.json"), &Default::default());
    assert_eq!(listener_route(&config), "operation");
    let RouteKind::Operation { operations, default } = route(&config, "operation") else { panic!() };
    assert!(default.is_none());
    let ops: Vec<(&str, &str)> = operations.iter().map(|(o, d)| (o.as_str(), d.name.as_str())).collect();
    assert_eq!(ops, [("add", "all_sync"), ("delete", "all_sync"), ("get", "latest"), ("set", "all_sync")]);
    // "Pool|A": every server of A is a child of its own.
    let RouteKind::All { mode: AllMode::Sync, children, .. } = route(&config, "all_sync") else { panic!() };
    assert_eq!(children.written, ["A/*"]);
    assert_eq!(children.targets.len(), 2);
    let RouteKind::Failover { max_tries, .. } = route(&config, "latest") else { panic!() };
    assert_eq!(*max_tries, 2, "LatestRoute's failover_count 5, capped at the two servers");
    // Both kinds are executable: nothing said about them, and the proxy runs the file as converted.
    assert!(EXECUTABLE_TYPES.contains(&"all_sync") && EXECUTABLE_TYPES.contains(&"failover"));
    assert!(!conversion.toml.contains("not executable in this build yet"), "{}", conversion.toml);
    Config::parse(&conversion.toml).expect("the converted file runs");
}

#[test]
fn the_guides_prefix_routing_converts_with_either_spelling() {
    let (config, conversion) = convert_ok(include_str!("../../../../tests/fixtures/mcrouter/prefix_selector.json"));
    let RouteKind::Prefix { prefixes, default, strip_prefix, .. } = route(&config, listener_route(&config)) else {
        panic!()
    };
    let p: Vec<(&str, &str)> = prefixes.iter().map(|(p, d)| (p.as_str(), d.name.as_str())).collect();
    assert_eq!(p, [("a", "workload1"), ("b", "workload2")]);
    assert_eq!(default.as_ref().unwrap().name, "common_cache");
    assert!(!strip_prefix, "PrefixSelectorRoute forwards the key whole");
    assert!(conversion.warnings.iter().any(|w| w.contains("guide's spelling")), "{:?}", conversion.warnings);
    assert!(conversion.warnings.iter().any(|w| w.contains("`#` comment")), "{:?}", conversion.warnings);
    // mcrouter's own spelling converts the same, without the warning.
    let text = r#"{"pools": {"w1": {"servers": ["127.0.0.1:1"]}, "c": {"servers": ["127.0.0.1:2"]}},
        "route": {"type": "PrefixSelectorRoute", "policies": {"a": "PoolRoute|w1", "": "PoolRoute|c"}}}"#;
    let (config, conversion) = convert_ok(text);
    let RouteKind::Prefix { prefixes, default, .. } = route(&config, "prefix") else { panic!() };
    assert_eq!(prefixes.len(), 1);
    assert_eq!(default.as_ref().unwrap().name, "c", "the empty prefix is the wildcard");
    assert!(conversion.warnings.is_empty(), "{:?}", conversion.warnings);
    let mixed = r#"{"pools": {"c": {"servers": ["h:1"]}}, "route": {"type": "PrefixSelectorRoute", "policies": {"a": "c"}, "default": "c"}}"#;
    assert!(convert(mixed, &Default::default()).unwrap_err().to_string().contains("mixes the spellings"));
}

#[test]
fn every_route_handle_converts_to_its_ferrule_kind() {
    let text = r#"{
      "pools": {
        "A": {"servers": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]},
        "B": {"servers": ["127.0.0.1:4"]},
        "C": {"servers": ["127.0.0.1:5", "127.0.0.1:6"]}
      },
      "named_handles": [
        {"name": "cold", "type": "PoolRoute", "pool": "A"},
        {"name": "warm_b", "type": "PoolRoute", "pool": "B"}
      ],
      "route": {"type": "OperationSelectorRoute",
        "operation_policies": {
          "get": {"type": "WarmUpRoute", "cold": "cold", "warm": "warm_b", "exptime": 30},
          "gets": {"type": "L1L2CacheRoute", "l1": "PoolRoute|A", "l2": "PoolRoute|B", "upgradingL1Exptime": 10},
          "set": {"type": "AllInitialRoute", "children": ["PoolRoute|A", "PoolRoute|B"]},
          "add": "AllAsyncRoute|Pool|C",
          "replace": "AllFastestRoute|Pool|C",
          "append": "AllMajorityRoute|Pool|A",
          "prepend": {"type": "FailoverRoute", "children": "Pool|A", "max_tries": 2,
                      "failover_errors": ["connect_error", "timeout", "tko"]},
          "touch": {"type": "MissFailoverRoute", "children": ["PoolRoute|A", "PoolRoute|B"]},
          "incr": {"type": "MigrateRoute", "from": "PoolRoute|A", "to": "PoolRoute|B", "start_time": 1700000000,
                   "interval": 60},
          "decr": "RandomRoute|Pool|C",
          "cas": {"type": "HashRoute", "children": ["PoolRoute|A", "PoolRoute|B"]},
          "delete": {"type": "PoolRoute", "pool": "A",
                     "shadows": [{"target": "PoolRoute|C", "key_fraction_range": [0, 0.1], "index_range": [0, 2]}]},
          "gat": "ErrorRoute|gat is off",
          "gats": "NullRoute",
          "metaget": "NullRoute"
        },
        "default_policy": "PoolRoute|A"}
    }"#;
    let (config, conversion) = convert_model(text, &Default::default());
    let RouteKind::Operation { operations, default } = route(&config, "operation") else { panic!() };
    assert_eq!(default.as_ref().unwrap().name, "A");
    let kind_of = |op: &str| {
        let dest = &operations.iter().find(|(o, _)| o == op).unwrap_or_else(|| panic!("no {op}")).1;
        match dest.target {
            Target::Route(r) => config.routes[r].kind.type_name().to_owned(),
            Target::Pool(p) => format!("pool {}", config.pools[p].name),
            Target::Server { .. } => "server".to_owned(),
        }
    };
    for (op, kind) in [
        ("get", "warmup"),
        ("gets", "l1l2"),
        ("set", "all_initial"),
        ("add", "all_async"),
        ("replace", "all_fastest"),
        ("append", "all_majority"),
        ("prepend", "failover"),
        ("touch", "miss_failover"),
        ("incr", "migrate"),
        ("decr", "random"),
        ("cas", "hash"),
        ("delete", "shadow"),
        ("gat", "error"),
        ("gats", "null"),
    ] {
        assert_eq!(kind_of(op), kind, "{op}\n{}", conversion.toml);
    }
    assert!(!operations.iter().any(|(o, _)| o == "metaget"), "ferrule does not route metaget");
    assert!(conversion.warnings.iter().any(|w| w.contains("`metaget`")), "{:?}", conversion.warnings);
    let RouteKind::Warmup { cold, warm, exptime } = route(&config, "warmup") else { panic!() };
    assert_eq!((cold.name.as_str(), warm.name.as_str(), *exptime), ("A", "B", Some(30)));
    let RouteKind::L1l2 { l1_ttl_s, .. } = route(&config, "l1l2") else { panic!() };
    assert_eq!(*l1_ttl_s, 10);
    let RouteKind::Failover { children, max_tries, failover_errors } = route(&config, "failover") else { panic!() };
    assert_eq!((children.targets.len(), *max_tries), (3, 2));
    assert_eq!(failover_errors, &[FailureClass::ConnectError, FailureClass::Timeout, FailureClass::Unavailable]);
    let RouteKind::Migrate { start_time, interval_s, .. } = route(&config, "migrate") else { panic!() };
    assert_eq!((*start_time, *interval_s), (1_700_000_060, 60), "keys move when mcrouter moves them");
    let RouteKind::Shadow { child, shadows, .. } = route(&config, "shadow") else { panic!() };
    assert_eq!((child.name.as_str(), shadows[0].target.name.as_str(), shadows[0].key_fraction), ("A", "C", (0.0, 0.1)));
    let RouteKind::Error { message } = route(&config, "error") else { panic!() };
    assert_eq!(message, "gat is off");
    assert!(conversion.toml.contains("not mcrouter's"), "the HashRoute placement difference is noted");
}

#[test]
fn degenerate_trees_collapse_as_in_mcrouter_and_hash_routes_over_one_pool_are_the_pool() {
    let text = r#"{"pools": {"A": {"servers": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}, "one": {"servers": ["127.0.0.1:9"]}},
        "route": {"type": "PrefixSelectorRoute", "policies": {
            "s:": "AllSyncRoute|Pool|one", "f:": {"type": "FailoverRoute", "children": ["PoolRoute|A"]},
            "h:": "HashRoute|Pool|A"}}}"#;
    let (config, _) = convert_model(text, &Default::default());
    let RouteKind::Prefix { prefixes, .. } = route(&config, "prefix") else { panic!() };
    let p: Vec<(&str, &str)> = prefixes.iter().map(|(p, d)| (p.as_str(), d.name.as_str())).collect();
    assert_eq!(p, [("f:", "A"), ("h:", "A"), ("s:", "one")]);
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.pool("A").unwrap().distribution, DistributionKind::Ch3);
    let text = r#"{"pools": {"A": {"servers": ["127.0.0.1:1", "127.0.0.1:2"]}},
        "route": {"type": "HashRoute", "children": "Pool|A", "hash_func": "Crc32"}}"#;
    let (config, _) = convert_ok(text);
    assert_eq!(config.pool("A").unwrap().distribution, DistributionKind::McrouterCrc32);
    let clash = r#"{"pools": {"A": {"servers": ["h:1"]}}, "route": {"type": "AllSyncRoute", "children": [
        "PoolRoute|A", {"type": "PoolRoute", "pool": "A", "hash": "Crc32"}]}}"#;
    let err = convert(clash, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("different hash functions"), "{err}");
}

#[test]
fn routing_prefixes_select_routes_by_alias() {
    let text = r#"{"pools": {"A": {"servers": ["127.0.0.1:1"]}, "B": {"servers": ["127.0.0.1:2"]}},
        "routes": [{"aliases": ["/east/web/", "/east/api/"], "route": "PoolRoute|A"},
                   {"aliases": ["/west/web/"], "route": "PoolRoute|B"}]}"#;
    let err = convert(text, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("--route-prefix"), "{err}");
    let options = McrouterOptions { listen: None, route_prefix: Some("/west/web/".into()) };
    let (config, conversion) = convert_model(text, &options);
    assert_eq!(listener_route(&config), "routing_prefix");
    let RouteKind::Prefix { prefixes, default, .. } = route(&config, "routing_prefix") else { panic!() };
    assert_eq!(prefixes.len(), 3);
    assert_eq!(default.as_ref().unwrap().name, "B", "keys without a prefix go to -R's route");
    assert!(conversion.warnings.iter().any(|w| w.contains("strip")), "{:?}", conversion.warnings);
    let wildcard = r#"{"pools": {"A": {"servers": ["h:1"]}}, "routes": [{"aliases": ["/*/*/"], "route": "A"}]}"#;
    assert!(convert(wildcard, &Default::default()).unwrap_err().to_string().contains("wildcards"));
}

#[test]
fn named_handles_are_shared_and_unknown_handles_refused_by_name() {
    let text = r#"{"pools": {"A": {"servers": ["127.0.0.1:1", "127.0.0.1:2"]}},
        "route": {"type": "OperationSelectorRoute", "operation_policies": {
            "get": {"name": "both", "type": "AllFastestRoute", "children": "Pool|A"}, "set": "both"}}}"#;
    let (config, _) = convert_model(text, &Default::default());
    let RouteKind::Operation { operations, .. } = route(&config, "operation") else { panic!() };
    assert!(operations.iter().all(|(_, d)| d.name == "both"), "{operations:?}");
    for (text, needle) in [
        (r#"{"pools": {"A": {"servers": ["h:1"]}}, "route": "LoggingRoute|Pool|A"}"#, "LoggingRoute has no ferrule"),
        (r#"{"pools": {"A": {"servers": ["h:1"]}}, "route": "nothing"}"#, "neither a pool, a named handle"),
        (
            r#"{"pools": {"A": {"servers": ["h:1"]}}, "route": {"type": "OperationSelectorRoute", "operation_policies": {"frob": "A"}}}"#,
            "unknown operation \"frob\"",
        ),
        (
            r#"{"pools": {"A": {"servers": ["h:1"]}}, "route": {"name": "x", "type": "AllSyncRoute", "children": ["x", "A"]}}"#,
            "refers to itself",
        ),
    ] {
        let err = convert(text, &Default::default()).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn unreadable_input_names_the_line() {
    let err = convert(
        "{\n  \"pools\": {\n    \"A\": {\"servers\": [\"h:1\",]},\n  }\n  \"route\": \"A\"\n}",
        &McrouterOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.line, Some(5), "{err}");
    let err = convert("{\"macros\": {}, \"pools\": {}, \"route\": \"x\"}", &McrouterOptions::default()).unwrap_err();
    assert!(err.to_string().contains("preprocessed"), "{err}");
    let err =
        convert("{\"pools\": {\"A\": {\"servers\": [\"h:1:caret\"]}}, \"route\": \"A\"}", &McrouterOptions::default())
            .unwrap_err();
    assert!(err.to_string().contains("`caret` is not supported"), "{err}");
    let err = convert(
        "{\"pools\": {\"A\": {\"servers\": [\"h:1\"]}}, \"route\": \"PoolRoute|B\"}",
        &McrouterOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no pool named \"B\""), "{err}");
}
