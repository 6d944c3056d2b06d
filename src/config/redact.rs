//! Writes a [`Config`] back as TOML, with every default spelled out and secrets hidden.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Config, ListenerConfig, PoolConfig, ProxyConfig, Workers, REDACTED};

#[derive(Serialize)]
struct Document<'a> {
    proxy: ProxyOut,
    listeners: BTreeMap<&'a str, ListenerOut<'a>>,
    pools: BTreeMap<&'a str, PoolOut<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    routes: BTreeMap<&'a str, toml::Table>,
}

/// `workers` is a number or "auto".
#[derive(Serialize)]
#[serde(untagged)]
enum WorkersOut {
    Auto(&'static str),
    Count(usize),
}

#[derive(Serialize)]
struct ProxyOut {
    workers: WorkersOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpus: Option<Vec<usize>>,
    admin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats_port: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token: Option<&'static str>,
    admin_max_connections: usize,
    admin_timeout_ms: u64,
    shutdown_timeout_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    histogram_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upgrade_socket: Option<String>,
    histogram_interval_s: u64,
    stats: bool,
    client_max_inflight: usize,
    client_max_unsent_bytes: usize,
    client_max_buffered_bytes: usize,
    client_buffers_max_bytes: usize,
    backend_max_queued_bytes: usize,
    io_memory_kib: usize,
    busy_poll_us: u64,
    max_client_connections: usize,
}

#[derive(Serialize)]
struct ListenerOut<'a> {
    listen: String,
    protocol: &'static str,
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<UserOut<'a>>,
    backlog: u32,
    client_connections: usize,
    client_idle_timeout_ms: u64,
    tcpkeepalive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_client_ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_client_auth: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_handshake_timeout_ms: Option<u64>,
}

/// Every password is written as `password = "********"`, whichever form it was given in, so the output parses back.
#[derive(Serialize)]
struct UserOut<'a> {
    name: &'a str,
    password: &'static str,
    permissions: &'static str,
}

#[derive(Serialize)]
struct PoolOut<'a> {
    protocol: &'static str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_refresh_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_from: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_max_redirects: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_refresh_min_interval_ms: Option<u64>,
    servers: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distribution: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_tag: Option<String>,
    timeout_ms: u64,
    connect_timeout_ms: u64,
    server_connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_dedicated_connections: Option<usize>,
    preconnect: bool,
    batching: &'static str,
    batching_max_hold_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_auth: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_db: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_eject_hosts: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_failure_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_retry_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_value_bytes: Option<usize>,
    tcpkeepalive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_server_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_insecure_skip_verify: Option<bool>,
}

pub(super) fn to_redacted_toml(config: &Config) -> String {
    let document = Document {
        proxy: proxy_out(&config.proxy),
        listeners: config.listeners.iter().map(|l| (l.name.as_str(), listener_out(l))).collect(),
        pools: config.pools.iter().map(|p| (p.name.as_str(), pool_out(p))).collect(),
        routes: config.routes.iter().map(|r| (r.name.as_str(), super::routes::route_to_toml(r))).collect(),
    };
    // Serialization of these plain structs cannot fail short of a bug; say so in the output
    // rather than panicking inside the admin endpoint.
    toml::to_string_pretty(&document).unwrap_or_else(|err| format!("# cannot render the running config: {err}\n"))
}

fn proxy_out(proxy: &ProxyConfig) -> ProxyOut {
    ProxyOut {
        workers: match proxy.workers {
            Workers::Auto => WorkersOut::Auto("auto"),
            Workers::Count(count) => WorkersOut::Count(count),
        },
        cpus: proxy.cpus.clone(),
        admin: proxy.admin.map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
        stats_port: proxy.stats_port.map(|addr| addr.to_string()),
        admin_token: proxy.admin_token.as_ref().map(|_| REDACTED),
        admin_max_connections: proxy.admin_max_connections,
        admin_timeout_ms: proxy.admin_timeout_ms,
        shutdown_timeout_ms: proxy.shutdown_timeout_ms,
        histogram_dir: proxy.histogram_dir.as_ref().map(|dir| dir.display().to_string()),
        upgrade_socket: proxy.upgrade_socket.as_ref().map(|path| path.display().to_string()),
        histogram_interval_s: proxy.histogram_interval_s,
        stats: proxy.stats,
        client_max_inflight: proxy.client_max_inflight,
        client_max_unsent_bytes: proxy.client_max_unsent_bytes,
        client_max_buffered_bytes: proxy.client_max_buffered_bytes,
        client_buffers_max_bytes: proxy.client_buffers_max_bytes,
        backend_max_queued_bytes: proxy.backend_max_queued_bytes,
        io_memory_kib: proxy.io_memory_kib,
        busy_poll_us: proxy.busy_poll_us,
        max_client_connections: proxy.max_client_connections,
    }
}

fn listener_out(listener: &ListenerConfig) -> ListenerOut<'_> {
    let tls = listener.tls.as_ref();
    ListenerOut {
        listen: listener.listen.to_string(),
        protocol: listener.protocol.name(),
        route: &listener.route,
        auth: listener.auth.as_ref().map(|_| REDACTED),
        users: listener
            .users
            .iter()
            .map(|u| UserOut { name: &u.name, password: REDACTED, permissions: u.permissions.name() })
            .collect(),
        backlog: listener.backlog,
        client_connections: listener.client_connections,
        client_idle_timeout_ms: listener.client_idle_timeout_ms,
        tcpkeepalive: listener.tcpkeepalive,
        // Paths, not secrets: the key file's contents are never shown.
        tls_cert: tls.map(|t| t.cert.display().to_string()),
        tls_key: tls.map(|t| t.key.display().to_string()),
        tls_client_ca: tls.and_then(|t| t.client_ca.as_ref()).map(|p| p.display().to_string()),
        tls_client_auth: tls.filter(|t| t.client_ca.is_some()).map(|t| t.client_auth.name()),
        tls_handshake_timeout_ms: tls.map(|t| t.handshake_timeout_ms),
    }
}

/// Protocol-specific keys are written only for pools of that protocol, and sharded-pool keys only for sharded
/// pools, because the parser rejects them elsewhere.
fn pool_out(pool: &PoolConfig) -> PoolOut<'_> {
    let redis = pool.protocol == super::Protocol::Redis;
    let sharded = pool.cluster.is_none();
    let tls = pool.tls.as_ref();
    let path = |p: &std::path::PathBuf| p.display().to_string();
    PoolOut {
        protocol: pool.protocol.name(),
        kind: if sharded { "sharded" } else { "redis_cluster" },
        cluster_refresh_ms: pool.cluster.map(|c| c.refresh_ms),
        read_from: pool.cluster.map(|c| c.read_from.name()),
        cluster_max_redirects: pool.cluster.map(|c| c.max_redirects),
        cluster_refresh_min_interval_ms: pool.cluster.map(|c| c.refresh_min_interval_ms),
        servers: pool.servers.iter().map(|s| s.spec.as_str()).collect(),
        hash: sharded.then_some(pool.hash.name()),
        distribution: sharded.then_some(pool.distribution.name()),
        hash_tag: pool.hash_tag.filter(|_| sharded).map(|tag| String::from_utf8_lossy(&tag).into_owned()),
        timeout_ms: pool.timeout_ms,
        connect_timeout_ms: pool.connect_timeout_ms,
        server_connections: pool.server_connections,
        max_dedicated_connections: redis.then_some(pool.max_dedicated_connections),
        preconnect: pool.preconnect,
        batching: pool.batching.name(),
        batching_max_hold_us: pool.batching_max_hold_us,
        redis_auth: pool.redis_auth.as_ref().map(|_| REDACTED),
        redis_db: (redis && sharded).then_some(pool.redis_db),
        auto_eject_hosts: sharded.then_some(pool.auto_eject_hosts),
        server_failure_limit: sharded.then_some(pool.server_failure_limit),
        server_retry_timeout_ms: sharded.then_some(pool.server_retry_timeout_ms),
        max_value_bytes: (!redis).then_some(pool.max_value_bytes),
        tcpkeepalive: pool.tcpkeepalive,
        tls: Some(tls.is_some()),
        tls_ca: tls.and_then(|t| t.ca.as_ref()).map(path),
        tls_server_name: tls.and_then(|t| t.server_name.as_deref()),
        tls_cert: tls.and_then(|t| t.cert.as_ref()).map(path),
        tls_key: tls.and_then(|t| t.key.as_ref()).map(path),
        tls_insecure_skip_verify: tls.map(|t| t.insecure_skip_verify),
    }
}
