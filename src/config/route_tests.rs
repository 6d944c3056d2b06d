//! Tests of `[routes.NAME]` tables: the model of every kind, names, cycles, protocols, printing.

use super::*;

/// Two redis pools and one memcache pool, listeners appended by each test.
const POOLS: &str = r#"
[pools.old_cluster]
servers = ["127.0.0.1:6381:1"]

[pools.new_cluster]
servers = ["127.0.0.1:6382:1"]

[pools.pool_a]
servers = ["127.0.0.1:6383:1", "127.0.0.1:6384:1", "127.0.0.1:6385:1"]
"#;

fn redis_listener(route: &str) -> String {
    format!("[listeners.cache]\nlisten = \"127.0.0.1:22121\"\nprotocol = \"redis\"\nroute = \"{route}\"\n")
}

fn memcache_listener(route: &str) -> String {
    format!("[listeners.mc]\nlisten = \"127.0.0.1:22122\"\nprotocol = \"memcache\"\nroute = \"{route}\"\n")
}

fn error_of(text: &str) -> ConfigError {
    match Config::parse_model(text) {
        Ok(_) => panic!("should be rejected:\n{text}"),
        Err(e) => e,
    }
}

/// The error's key, line, and that its message contains `fragment`.
fn check(err: &ConfigError, key: &str, line: usize, fragment: &str) {
    let shown = err.to_string();
    assert_eq!(err.key(), Some(key), "{shown}");
    assert_eq!(err.line(), Some(line), "{shown}");
    assert!(shown.contains(fragment), "expected {fragment:?} in {shown}");
}

/// Every example of the issue, in the shape users write.
const EVERY_KIND: &str = r#"
[routes.main]
type = "prefix"
prefixes = { "new_users:" = "new_cluster", "sessions:" = "new_cluster" }
default = "old_cluster"

[routes.replicated]
type = "operation"
operations = { get = "reads", set = "writes", delete = "writes" }
default = "pool_a"

[routes.writes]
type = "all_fastest"
children = ["pool_a/*"]

[routes.reads]
type = "failover"
children = ["pool_a/*"]
max_tries = 2

[routes.mirrored]
type = "shadow"
child = "old_cluster"
shadows = [{ target = "new_cluster", key_fraction = [0.0, 0.25], request_fraction = 1.0 }]

[routes.warm]
type = "warmup"
cold = "new_cluster"
warm = "old_cluster"
exptime = 3600

[routes.moving]
type = "migrate"
from = "old_cluster"
to = "new_cluster"
start_time = 1798761600
interval_s = 3600

[routes.layered]
type = "l1l2"
l1 = "new_cluster"
l2 = "old_cluster"
l1_ttl_s = 60

[routes.spread]
type = "hash"
children = ["old_cluster", "new_cluster"]

[routes.any]
type = "random"
children = ["old_cluster", "new_cluster"]

[routes.gone]
type = "error"
message = "retired"

[routes.void]
type = "null"

[routes.everything]
type = "all_sync"
children = ["main", "replicated", "mirrored", "warm", "moving", "layered", "spread", "any", "gone", "void"]
"#;

#[test]
fn every_kind_reads_into_the_model() {
    let text = format!("{}{POOLS}{EVERY_KIND}", memcache_listener("everything"));
    let cfg = Config::parse_model(&text).unwrap_or_else(|e| panic!("{e}"));
    let route = |name: &str| &cfg.routes[cfg.route_index(name).expect(name)].kind;
    let pool = |name: &str| Target::Pool(cfg.pool_index(name).expect(name));
    let RouteKind::Prefix { prefixes, default, strip_prefix, case_insensitive } = route("main") else { panic!() };
    assert_eq!(prefixes.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["new_users:", "sessions:"]);
    assert_eq!(default.as_ref().map(|d| d.target), Some(pool("old_cluster")));
    assert!(!strip_prefix && !case_insensitive);
    let a = cfg.pool_index("pool_a").unwrap();
    let RouteKind::All { mode: AllMode::Fastest, children, max_outstanding: 1000 } = route("writes") else { panic!() };
    assert_eq!(children.written, ["pool_a/*"]);
    assert_eq!(children.targets, (0..3).map(|server| Target::Server { pool: a, server }).collect::<Vec<_>>());
    let RouteKind::Failover { max_tries: 2, failover_errors, .. } = route("reads") else { panic!() };
    assert_eq!(failover_errors, &FailureClass::ALL.to_vec());
    let RouteKind::Shadow { shadows, max_outstanding: 1000, .. } = route("mirrored") else { panic!() };
    assert_eq!((shadows[0].key_fraction, shadows[0].request_fraction), ((0.0, 0.25), 1.0));
    assert!(matches!(route("warm"), RouteKind::Warmup { exptime: Some(3600), .. }));
    assert!(matches!(route("moving"), RouteKind::Migrate { start_time: 1798761600, interval_s: 3600, .. }));
    assert!(matches!(route("layered"), RouteKind::L1l2 { l1_ttl_s: 60, write_l2: false, .. }));
    assert!(matches!(route("gone"), RouteKind::Error { message } if message == "retired"));
    assert!(matches!(route("void"), RouteKind::Null));
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
    // GET /config writes routes back so that they parse to the same model.
    let again =
        Config::parse_model(&cfg.to_redacted_toml()).unwrap_or_else(|e| panic!("{e}\n{}", cfg.to_redacted_toml()));
    assert_eq!(again, cfg);
}

#[test]
fn the_proxy_executes_every_kind() {
    for kind in ROUTE_TYPES {
        assert!(EXECUTABLE_TYPES.contains(kind), "{kind}");
    }
    // (EVERY_KIND nests multi-destination routes, which is refused on its own account: no kind is refused.)
    let text = format!("{}{POOLS}{EVERY_KIND}", memcache_listener("everything"));
    if let Err(e) = Config::parse(&text) {
        assert!(!e.to_string().contains("the proxy cannot execute it"), "{e}");
    }
}

#[test]
fn dangling_names_point_at_their_key() {
    let text = format!(
        "{}{POOLS}\n[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"a:\" = \"nowhere\" }}\n",
        redis_listener("main")
    );
    check(&error_of(&text), "routes.main.prefixes.\"a:\"", 17, "no pool or route named \"nowhere\"");
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"failover\"\nchildren = [\"pool_a\", \"pool_b/*\"]\n",
        redis_listener("r")
    );
    check(&error_of(&text), "routes.r.children[1]", 17, "no pool named \"pool_b\"");
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"warmup\"\ncold = \"pool_a/*\"\nwarm = \"old_cluster\"\n",
        redis_listener("r")
    );
    check(&error_of(&text), "routes.r.cold", 17, "takes one destination");
}

#[test]
fn cycles_are_rejected_with_their_path() {
    let text = format!(
        "{}{POOLS}\n[routes.a]\ntype = \"hash\"\nchildren = [\"b\"]\n\n[routes.b]\ntype = \"random\"\nchildren = [\"pool_a\", \"a\"]\n",
        redis_listener("a")
    );
    check(&error_of(&text), "routes.a", 15, "routes form a cycle: a -> b -> a");
}

#[test]
fn unknown_keys_types_and_bad_values() {
    let text =
        format!("{}{POOLS}\n[routes.r]\ntype = \"prefix\"\nprefix = {{ \"a:\" = \"pool_a\" }}\n", redis_listener("r"));
    check(&error_of(&text), "routes.r.prefix", 17, "unknown key `prefix`; expected one of: type, prefixes, default");
    let text = format!("{}{POOLS}\n[routes.r]\ntype = \"prefixes\"\n", redis_listener("r"));
    check(&error_of(&text), "routes.r.type", 16, "unknown route type \"prefixes\"");
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"failover\"\nchildren = [\"pool_a/*\"]\nfailover_errors = [\"tko\"]\n",
        redis_listener("r")
    );
    check(&error_of(&text), "routes.r.failover_errors", 18, "is not a failure class");
    let text = format!("{}{POOLS}\n[routes.r]\ntype = \"shadow\"\nchild = \"pool_a\"\nshadows = [{{ target = \"old_cluster\", key_fraction = [0.5, 0.2] }}]\n", redis_listener("r"));
    check(&error_of(&text), "routes.r.shadows[0]", 18, "key_fraction");
    let text = format!("{}{POOLS}\n[routes.pool_a]\ntype = \"null\"\n", redis_listener("pool_a"));
    check(&error_of(&text), "routes.pool_a", 15, "is also a pool");
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"operation\"\noperations = {{ frobnicate = \"pool_a\" }}\n",
        redis_listener("r")
    );
    check(&error_of(&text), "routes.r.operations.frobnicate", 17, "unknown operation \"frobnicate\"");
    // all_sync waits for every child: nothing is left over to bound.
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"all_sync\"\nchildren = [\"pool_a/*\"]\nmax_outstanding = 5\n",
        redis_listener("r")
    );
    check(&error_of(&text), "routes.r.max_outstanding", 18, "unknown key `max_outstanding`");
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"all_fastest\"\nchildren = [\"pool_a/*\"]\nmax_outstanding = 0\n",
        redis_listener("r")
    );
    check(&error_of(&text), "routes.r.max_outstanding", 18, "at least 1");
}

#[test]
fn all_kinds_but_all_sync_bound_their_leftover_children() {
    for kind in ["all_async", "all_initial", "all_fastest", "all_majority"] {
        let text = format!(
            "{}{POOLS}\n[routes.r]\ntype = \"{kind}\"\nchildren = [\"pool_a/*\"]\nmax_outstanding = 7\n",
            redis_listener("r")
        );
        let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(matches!(cfg.routes[0].kind, RouteKind::All { max_outstanding: 7, .. }), "{kind}");
    }
}

#[test]
fn multi_destination_kinds_are_executable_but_not_nested() {
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"operation\"\noperations = {{ get = \"reads\", set = \"writes\" }}\n\
         default = \"pool_a\"\n[routes.writes]\ntype = \"all_fastest\"\nchildren = [\"pool_a/*\"]\n\
         [routes.reads]\ntype = \"failover\"\nchildren = [\"pool_a/*\"]\nmax_tries = 2\n",
        memcache_listener("r")
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("the replicated-pool idiom is accepted: {e}"));
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"failover\"\nchildren = [\"sel\", \"pool_a\"]\n\
         [routes.sel]\ntype = \"hash\"\nchildren = [\"both\"]\n[routes.both]\ntype = \"all_sync\"\nchildren = [\"pool_a/*\"]\n",
        memcache_listener("r")
    );
    let err = Config::parse(&text).expect_err("nested fans are refused");
    check(&err, "routes.both.type", 22, "a multi-destination route below another is not implemented yet");
    assert!(Config::parse_model(&text).is_ok(), "the model takes it");
}

#[test]
fn routes_must_fit_the_protocol_of_the_listeners_reaching_them() {
    // `add` is a memcache verb, not a redis command.
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"operation\"\noperations = {{ add = \"pool_a\" }}\ndefault = \"old_cluster\"\n",
        redis_listener("r")
    );
    check(&error_of(&text), "routes.r.operations.add", 17, "\"add\" is not a redis operation");
    // strip_prefix rewrites keys, which memcache replies carry.
    let text = format!(
        "{}{POOLS}\n[routes.r]\ntype = \"prefix\"\nprefixes = {{ \"a:\" = \"pool_a\" }}\nstrip_prefix = true\n",
        memcache_listener("r")
    );
    check(&error_of(&text), "routes.r.strip_prefix", 18, "not implemented yet for memcache");
    // A pool reached from listeners of both protocols.
    let text = format!(
        "{}{}{POOLS}\n[routes.r]\ntype = \"hash\"\nchildren = [\"pool_a\", \"old_cluster\"]\n",
        redis_listener("r"),
        memcache_listener("pool_a")
    );
    check(&error_of(&text), "listeners.mc.route", 8, "a pool speaks one protocol");
}

#[test]
fn pools_reached_through_routes_take_the_listener_protocol_and_unused_routes_warn() {
    let text = format!("{}{POOLS}\n[routes.r]\ntype = \"hash\"\nchildren = [\"pool_a\", \"old_cluster\"]\n[routes.unused]\ntype = \"null\"\n", memcache_listener("r"));
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.pool("pool_a").unwrap().protocol, Protocol::Memcache);
    let warnings = cfg.warnings();
    assert!(warnings.iter().any(|w| w.contains("pools.new_cluster")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("routes.unused")), "{warnings:?}");
    assert!(!warnings.iter().any(|w| w.contains("pools.pool_a")), "{warnings:?}");
}

#[test]
fn the_route_tree_is_printed_per_listener() {
    let text = format!(
        "{}{POOLS}\n[routes.main]\ntype = \"prefix\"\nprefixes = {{ \"user:\" = \"spread\" }}\ndefault = \"old_cluster\"\n\
         [routes.spread]\ntype = \"hash\"\nchildren = [\"pool_a/*\"]\n",
        redis_listener("main")
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let tree = cfg.describe_routes();
    let expected = "listener cache (redis, 127.0.0.1:22121):\n\
                    \x20 route main (prefix)\n\
                    \x20   \"user:\" -> route spread (hash)\n\
                    \x20     server pool_a/127.0.0.1:6383:1\n\
                    \x20     server pool_a/127.0.0.1:6384:1\n\
                    \x20     server pool_a/127.0.0.1:6385:1\n\
                    \x20   default -> pool old_cluster (1 servers, fnv1a_64 ketama)\n";
    assert_eq!(tree, expected);
}
