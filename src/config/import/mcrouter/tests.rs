use super::*;
use crate::config::Config;
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
    assert_eq!(listener.listen.to_string(), DEFAULT_LISTEN);
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
    let options = McrouterOptions { listen: Some("0.0.0.0:11211".into()) };
    let conversion = convert(text, &options).unwrap();
    let config = Config::parse(&conversion.toml).unwrap();
    assert_eq!(config.pool("p").unwrap().distribution, DistributionKind::McrouterCrc32);
    assert_eq!(config.listeners[0].listen.to_string(), "0.0.0.0:11211");
    let (config, _) = convert_ok(r#"{"pools": {"p": {"servers": ["127.0.0.1:1"]}}, "route": "p"}"#);
    assert_eq!(config.pool("p").unwrap().distribution, DistributionKind::Ch3);
}

#[test]
fn routes_are_refused_until_ferrule_has_them() {
    for (text, needle) in [
        (include_str!("../../../../tests/fixtures/mcrouter/operation_selector.json"), "OperationSelectorRoute"),
        (include_str!("../../../../tests/fixtures/mcrouter/prefix_selector.json"), "PrefixSelectorRoute"),
        (r#"{"pools": {"A": {"servers": ["h:1"]}}, "route": "AllSyncRoute|Pool|A"}"#, "AllSyncRoute|Pool|A"),
        (r#"{"pools": {"A": {"servers": ["h:1"]}}, "route": "NullRoute"}"#, "NullRoute"),
        (
            r#"{"pools": {"A": {"servers": ["h:1"]}}, "routes": [{"aliases": ["/a/b/"], "route": "PoolRoute|A"}, {"aliases": ["/c/d/"], "route": "PoolRoute|A"}]}"#,
            "routes",
        ),
    ] {
        let err = convert(&fixture(text), &McrouterOptions::default()).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(&format!("route {needle}")) || shown.contains(needle), "{shown}");
        assert!(shown.contains("needs ferrule routes (issue 13), not converted yet"), "{shown}");
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
