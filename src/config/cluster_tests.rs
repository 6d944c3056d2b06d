//! Config tests of `kind = "redis_cluster"` pools.

use super::*;
use crate::cluster::ReadFrom;

const CLUSTER: &str = r#"
[listeners.cache]
listen = "127.0.0.1:22121"
protocol = "redis"
route = "c"

[pools.c]
kind = "redis_cluster"
servers = ["127.0.0.1:7000", "127.0.0.1:7001"]
"#;

fn err_of(text: &str) -> ConfigError {
    Config::parse(text).err().unwrap_or_else(|| panic!("should be rejected:\n{text}"))
}

fn with(extra: &str) -> String {
    format!("{CLUSTER}{extra}\n")
}

#[test]
fn a_cluster_pool_with_defaults() {
    let cfg = Config::parse(CLUSTER).unwrap();
    let pool = cfg.pool("c").unwrap();
    assert_eq!(
        pool.cluster,
        Some(ClusterOptions {
            refresh_ms: DEFAULT_CLUSTER_REFRESH_MS,
            read_from: ReadFrom::Primary,
            max_redirects: 5,
            refresh_min_interval_ms: 200,
        })
    );
    assert_eq!(pool.servers.len(), 2);
    assert_eq!(pool.servers[1].spec, "127.0.0.1:7001");
    let sharded = CLUSTER.replace("kind = \"redis_cluster\"", "kind = \"sharded\"").replace("7000\"", "7000:1\"");
    let sharded = sharded.replace("7001\"", "7001:1\"");
    assert!(Config::parse(&sharded).unwrap().pool("c").unwrap().cluster.is_none());
    assert!(cfg
        .describe_routes()
        .contains("pool c (redis_cluster, 2 seed nodes, read_from primary, refresh every 5000 ms)"));
}

#[test]
fn cluster_keys_are_read_and_validated() {
    let cfg = Config::parse(&with("cluster_refresh_ms = 250\nread_from = \"prefer_replica\"")).unwrap();
    assert_eq!(
        cfg.pool("c").unwrap().cluster,
        Some(ClusterOptions {
            refresh_ms: 250,
            read_from: ReadFrom::PreferReplica,
            max_redirects: 5,
            refresh_min_interval_ms: 200,
        })
    );
    let e = err_of(&with("read_from = \"master\""));
    assert_eq!((e.key(), e.line()), (Some("pools.c.read_from"), Some(10)));
    assert!(e.to_string().contains("expected one of: primary, prefer_replica, replica, any"), "{e}");
    let e = err_of(&with("cluster_refresh_ms = 5"));
    assert_eq!(e.key(), Some("pools.c.cluster_refresh_ms"));
    let e = err_of(&CLUSTER.replace("redis_cluster", "cluster"));
    assert_eq!((e.key(), e.line()), (Some("pools.c.kind"), Some(8)));
    assert!(e.to_string().contains("expected one of: sharded, redis_cluster"), "{e}");
    let e = err_of(&with("cluster_refreshms = 5"));
    assert!(e.to_string().contains("unknown key `cluster_refreshms`"), "{e}");
}

#[test]
fn the_redirect_bound_and_the_refresh_rate_limit_are_pool_keys() {
    let cfg = Config::parse(&with("cluster_max_redirects = 2\ncluster_refresh_min_interval_ms = 1000")).unwrap();
    let c = cfg.pool("c").unwrap().cluster.unwrap();
    assert_eq!((c.max_redirects, c.refresh_min_interval_ms), (2, 1000));
    let text = cfg.to_redacted_toml();
    assert!(text.contains("cluster_max_redirects = 2") && text.contains("cluster_refresh_min_interval_ms = 1000"));
    for (line, key, why) in [
        ("cluster_max_redirects = 0", "cluster_max_redirects", "must be from 1 to 50, got 0"),
        ("cluster_max_redirects = 51", "cluster_max_redirects", "must be from 1 to 50, got 51"),
        ("cluster_max_redirects = \"5\"", "cluster_max_redirects", "integer"),
        ("cluster_refresh_min_interval_ms = 5", "cluster_refresh_min_interval_ms", "must be from 10 to 60000, got 5"),
        ("cluster_refresh_min_interval_ms = 60001", "cluster_refresh_min_interval_ms", "must be from 10 to 60000"),
    ] {
        let e = err_of(&with(line));
        assert_eq!((e.key(), e.line()), (Some(format!("pools.c.{key}").as_str()), Some(10)), "{e}");
        assert!(e.to_string().contains(why), "{line}: {e}");
    }
    let sharded = CLUSTER
        .replace("kind = \"redis_cluster\"\n", "")
        .replace(":7000\"", ":7000:1\"")
        .replace(":7001\"", ":7001:1\"");
    for line in ["cluster_max_redirects = 3", "cluster_refresh_min_interval_ms = 100"] {
        let e = err_of(&format!("{sharded}{line}\n"));
        assert!(e.to_string().contains("only applies to a pool of kind = \"redis_cluster\""), "{e}");
    }
}

#[test]
fn max_dedicated_connections_applies_to_cluster_pools_per_node() {
    let cfg = Config::parse(&with("max_dedicated_connections = 7")).unwrap();
    assert_eq!(cfg.pool("c").unwrap().max_dedicated_connections, 7);
    assert!(cfg.to_redacted_toml().contains("max_dedicated_connections = 7"));
    assert_eq!(Config::parse(CLUSTER).unwrap().pool("c").unwrap().max_dedicated_connections, 64);
    let e = err_of(&with("max_dedicated_connections = 10001"));
    assert_eq!((e.key(), e.line()), (Some("pools.c.max_dedicated_connections"), Some(10)), "{e}");
}

#[test]
fn sharded_keys_are_refused_on_cluster_pools_and_cluster_keys_on_sharded_ones() {
    for (line, key) in [
        ("hash = \"md5\"", "hash"),
        ("distribution = \"modula\"", "distribution"),
        ("hash_tag = \"{}\"", "hash_tag"),
        ("redis_db = 1", "redis_db"),
        ("auto_eject_hosts = true", "auto_eject_hosts"),
    ] {
        let e = err_of(&with(line));
        assert_eq!((e.key(), e.line()), (Some(format!("pools.c.{key}").as_str()), Some(10)), "{e}");
        assert!(e.to_string().contains("does not apply to a pool of kind = \"redis_cluster\""), "{e}");
    }
    let sharded = CLUSTER
        .replace("kind = \"redis_cluster\"\n", "")
        .replace(":7000\"", ":7000:1\"")
        .replace(":7001\"", ":7001:1\"");
    let e = err_of(&format!("{sharded}read_from = \"replica\"\n"));
    assert_eq!(e.key(), Some("pools.c.read_from"));
    assert!(e.to_string().contains("only applies to a pool of kind = \"redis_cluster\""), "{e}");
    let e = err_of(&CLUSTER.replace("127.0.0.1:7001", "127.0.0.1:7001:2"));
    assert!(e.to_string().contains("servers[1] has weight 2"), "{e}");
}

#[test]
fn cluster_pools_speak_redis_and_are_named_directly() {
    let e = err_of(&CLUSTER.replace("protocol = \"redis\"", "protocol = \"memcache\""));
    assert_eq!(e.key(), Some("pools.c.kind"));
    let routed = format!(
        "{}\n[routes.r]\ntype = \"prefix\"\nprefixes = {{ \"a:\" = \"c\" }}\ndefault = \"c\"\n",
        CLUSTER.replace("route = \"c\"", "route = \"r\"")
    );
    let e = err_of(&routed);
    assert_eq!(e.key(), Some("listeners.cache.route"));
    assert!(e.to_string().contains("which is a redis_cluster pool"), "{e}");
}

#[test]
fn the_running_config_round_trips() {
    let cfg = Config::parse(&with("read_from = \"any\"")).unwrap();
    let text = cfg.to_redacted_toml();
    assert!(text.contains("kind = \"redis_cluster\""), "{text}");
    assert!(!text.contains("distribution"), "{text}");
    assert_eq!(Config::parse(&text).unwrap().pool("c"), cfg.pool("c"));
}

#[test]
fn a_cluster_pool_counts_as_a_three_plus_three_cluster_in_the_descriptor_estimate() {
    let limited = CLUSTER.replace("route = \"c\"", "route = \"c\"\nclient_connections = 100");
    // 100 clients, 6 nodes x 1 connection x 2 (RESP2 and RESP3) x 2 workers, 1 listener x 2 workers, margin.
    assert_eq!(Config::parse(&limited).unwrap().descriptors_needed(2), Some(100 + 24 + 2 + 64));
    // More seeds than that: the seeds.
    let seeds: Vec<String> = (7000..7008).map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let many = limited.replace("\"127.0.0.1:7000\", \"127.0.0.1:7001\"", &seeds.join(", "));
    assert_eq!(Config::parse(&many).unwrap().descriptors_needed(1), Some(100 + 16 + 1 + 64));
}
