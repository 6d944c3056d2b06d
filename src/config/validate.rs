//! Builds a [`Config`] from text. Every rule that makes a config valid lives here; the first
//! broken rule ends the build, so no partially checked `Config` ever exists.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use toml::Value;

use super::address::{conflicts, parse_bind_addr, parse_listen};
use super::fields::{Field, RawDocument, Section, Table};
use super::routes::{
    build_route, find_cycle, not_executable_message, operation_fits, reachable, Names, RouteDraft, EXECUTABLE_TYPES,
};
use super::server::{parse_seed, parse_server};
use super::tls;
use super::*;
use crate::cluster::{ReadFrom, DEFAULT_MAX_REDIRECTS};

const PROXY_KEYS: &[&str] = &[
    "workers",
    "cpus",
    "admin",
    "stats_port",
    "admin_token",
    "admin_max_connections",
    "admin_timeout_ms",
    "shutdown_timeout_ms",
    "histogram_dir",
    "upgrade_socket",
    "histogram_interval_s",
    "stats",
    "client_max_inflight",
    "client_max_unsent_bytes",
    "client_max_buffered_bytes",
    "client_buffers_max_bytes",
    "backend_max_queued_bytes",
    "io_memory_kib",
    "busy_poll_us",
    "max_client_connections",
];

const LISTENER_KEYS: &[&str] = &[
    "listen",
    "protocol",
    "route",
    "auth",
    "users",
    "backlog",
    "client_connections",
    "client_idle_timeout_ms",
    "tcpkeepalive",
];

const POOL_KEYS: &[&str] = &[
    "servers",
    "protocol",
    "hash",
    "distribution",
    "hash_tag",
    "timeout_ms",
    "connect_timeout_ms",
    "server_connections",
    "max_dedicated_connections",
    "preconnect",
    "batching",
    "batching_max_hold_us",
    "redis_auth",
    "redis_db",
    "auto_eject_hosts",
    "server_failure_limit",
    "server_retry_timeout_ms",
    "max_value_bytes",
    "tcpkeepalive",
    "kind",
    "cluster_refresh_ms",
    "read_from",
    "cluster_max_redirects",
    "cluster_refresh_min_interval_ms",
];

/// Keys of a sharded pool that mean nothing for a `redis_cluster` pool (the cluster places keys by its slots, fails
/// over by itself and has one database): set there, they are errors rather than silently ignored.
const NOT_FOR_CLUSTER: &[(&str, &str)] = &[
    ("hash", "keys are placed by the cluster's hash slots (CRC16 with {hash tags})"),
    ("distribution", "keys are placed by the cluster's hash slots"),
    ("hash_tag", "the cluster's hash tags are always {}"),
    ("redis_db", "a redis cluster has database 0 only"),
    ("auto_eject_hosts", "the cluster fails over by itself and ferrule follows its slot map"),
    ("server_failure_limit", "the cluster fails over by itself and ferrule follows its slot map"),
    ("server_retry_timeout_ms", "the cluster fails over by itself and ferrule follows its slot map"),
];

/// Top-level keys of twemproxy's stats JSON; a pool with one of these names would clobber them.
const RESERVED_POOL_NAMES: &[&str] =
    &["service", "source", "version", "uptime", "timestamp", "total_connections", "curr_connections", "tls"];

/// More connections per server per worker than this is a typo, not a tuning choice.
const MAX_SERVER_CONNECTIONS: usize = 1024;
/// Dedicated connections are one TCP connection to the server each, per worker: past this it is a typo.
const MAX_DEDICATED_CONNECTIONS: usize = 10_000;
/// The kernel clamps larger backlogs to net.core.somaxconn anyway.
const MAX_BACKLOG: u32 = 65535;

/// Parses and validates `text` into a [`Config`].
pub(super) fn build(text: &str) -> Result<Config, ConfigError> {
    build_with(text, true)
}

/// [`build`], optionally accepting route kinds the I/O layer does not execute yet (for the model's own tests, and
/// for tools that only read or write configs).
pub(super) fn build_with(text: &str, require_executable: bool) -> Result<Config, ConfigError> {
    let doc: RawDocument = toml::from_str(text).map_err(|err| ConfigError::from_toml(text, &err))?;

    let absent = Table::new();
    let proxy_section = match &doc.proxy {
        Some(table) => Section::new(text, "proxy".to_owned(), Some(table.span()), table.get_ref()),
        None => Section::new(text, "proxy".to_owned(), None, &absent),
    };
    let proxy = build_proxy(&proxy_section)?;

    let mut pools = Vec::with_capacity(doc.pools.len());
    for (name, table) in &doc.pools {
        let section = Section::new(text, format!("pools.{name}"), Some(table.span()), table.get_ref());
        pools.push(build_pool(&section, name)?);
    }

    let pool_names: Vec<(String, usize)> =
        pools.iter().map(|p| (p.config.name.clone(), p.config.servers.len())).collect();
    let route_names: Vec<String> = doc.routes.keys().cloned().collect();
    let names = Names { pools: &pool_names, routes: &route_names };
    let mut routes = Vec::with_capacity(doc.routes.len());
    for (name, table) in &doc.routes {
        let section = Section::new(text, format!("routes.{name}"), Some(table.span()), table.get_ref());
        check_name(&section, name)?;
        if pool_names.iter().any(|(pool, _)| pool == name) {
            return Err(section.error(format!(
                "{name:?} is also a pool; a route needs a name of its own so that `route = {name:?}` is unambiguous"
            )));
        }
        let draft = build_route(&section, name, &names)?;
        routes.push((draft, table.span()));
    }
    let (routes, route_headers): (Vec<RouteDraft>, Vec<Range<usize>>) = routes.into_iter().unzip();
    let route_configs: Vec<RouteConfig> = routes.iter().map(|r| r.config.clone()).collect();
    if let Some(cycle) = find_cycle(&route_configs) {
        let path: Vec<&str> = cycle.iter().map(|&r| route_configs[r].name.as_str()).collect();
        let first = cycle[0];
        return Err(ConfigError::at(
            text,
            &route_headers[first],
            &format!("routes.{}", route_configs[first].name),
            format!("routes form a cycle: {}", path.join(" -> ")),
        ));
    }

    if doc.listeners.is_empty() {
        return Err(ConfigError::new(Some("listeners"), "no listeners; add at least one [listeners.<name>] table"));
    }
    let mut listeners = Vec::with_capacity(doc.listeners.len());
    for (name, table) in &doc.listeners {
        let section = Section::new(text, format!("listeners.{name}"), Some(table.span()), table.get_ref());
        listeners.push(build_listener(&section, name, &names)?);
    }

    assign_protocols(text, &mut pools, &listeners, &route_configs)?;
    check_route_protocols(text, &routes, &listeners, &route_configs)?;
    check_cluster_pools_direct(text, &pools, &listeners, &route_configs)?;
    for route in routes.iter().filter(|_| require_executable) {
        let type_name = route.config.kind.type_name();
        if !EXECUTABLE_TYPES.contains(&type_name) {
            return Err(ConfigError::at(text, &route.type_span, &route.type_key, not_executable_message(type_name)));
        }
    }
    if require_executable {
        check_no_nested_fans(text, &routes)?;
    }
    check_bind_conflicts(text, &proxy_section, &proxy, &listeners)?;

    Ok(Config {
        proxy,
        listeners: listeners.into_iter().map(|l| l.config).collect(),
        pools: pools.into_iter().map(|p| p.config).collect(),
        routes: route_configs,
    })
}

/// A key path and where its value is, kept for checks that run after the tables are read.
#[derive(Clone)]
struct Located {
    key: String,
    span: Range<usize>,
}

impl Located {
    fn of(field: &Field<'_>) -> Located {
        Located { key: field.key().to_owned(), span: field.span() }
    }

    fn error(&self, text: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(text, &self.span, &self.key, message)
    }
}

/// A pool whose protocol is not known until the listeners routing to it are read.
struct PoolDraft {
    config: PoolConfig,
    declared_protocol: Option<(Protocol, Located)>,
    /// Keys set in this pool that only one protocol understands.
    protocol_bound_keys: Vec<(Protocol, Located)>,
}

struct ListenerDraft {
    config: ListenerConfig,
    listen: Located,
    route: Located,
}

fn build_proxy(s: &Section<'_>) -> Result<ProxyConfig, ConfigError> {
    s.reject_unknown_keys(PROXY_KEYS)?;
    let workers = s.parse_or("workers", Workers::Auto, parse_workers)?;
    let cpus = s.parse_or("cpus", None, |f| parse_cpus(f).map(Some))?;
    if let (Workers::Count(count), Some(cpus), Some(field)) = (workers, &cpus, s.get("workers")) {
        if count > cpus.len() {
            return Err(field.error(format!("{count} workers but cpus lists only {} CPUs", cpus.len())));
        }
    }
    let client_max_unsent_bytes =
        s.parse_or("client_max_unsent_bytes", DEFAULT_CLIENT_MAX_UNSENT_BYTES, |f| f.integer_at_least(1024usize))?;
    // The hard caps must leave room above the point where a client stops being read, or every client that pauses
    // reading for a moment would be closed.
    let at_least_unsent = |f: &Field<'_>| {
        let value = f.integer_at_least(1usize)?;
        if value < client_max_unsent_bytes {
            return Err(
                f.error(format!("must be at least client_max_unsent_bytes ({client_max_unsent_bytes}), got {value}"))
            );
        }
        Ok(value)
    };
    let client_max_buffered_bytes = s.parse_or(
        "client_max_buffered_bytes",
        DEFAULT_CLIENT_MAX_BUFFERED_BYTES.max(client_max_unsent_bytes),
        at_least_unsent,
    )?;
    let client_buffers_max_bytes = s.parse_or(
        "client_buffers_max_bytes",
        DEFAULT_CLIENT_BUFFERS_MAX_BYTES.max(client_max_unsent_bytes),
        at_least_unsent,
    )?;
    Ok(ProxyConfig {
        workers,
        cpus,
        admin: s.parse_or("admin", Some(DEFAULT_ADMIN), parse_optional_bind_addr)?,
        stats_port: s.parse_or("stats_port", None, parse_stats_port)?,
        admin_token: s.parse_or("admin_token", None, parse_admin_token)?,
        admin_max_connections: s
            .parse_or("admin_max_connections", DEFAULT_ADMIN_MAX_CONNECTIONS, |f| f.integer_at_least(1usize))?,
        admin_timeout_ms: s.parse_or("admin_timeout_ms", DEFAULT_ADMIN_TIMEOUT_MS, |f| f.integer_at_least(1u64))?,
        shutdown_timeout_ms: s
            .parse_or("shutdown_timeout_ms", DEFAULT_SHUTDOWN_TIMEOUT_MS, |f| f.integer_at_least(0u64))?,
        histogram_dir: s
            .parse_or("histogram_dir", None, |f| f.non_empty_string().map(|dir| Some(PathBuf::from(dir))))?,
        upgrade_socket: s
            .parse_or("upgrade_socket", None, |f| f.non_empty_string().map(|path| Some(PathBuf::from(path))))?,
        histogram_interval_s: s
            .parse_or("histogram_interval_s", DEFAULT_HISTOGRAM_INTERVAL_S, |f| f.integer_at_least(1u64))?,
        stats: s.parse_or("stats", true, |f| f.boolean())?,
        client_max_inflight: s
            .parse_or("client_max_inflight", DEFAULT_CLIENT_MAX_INFLIGHT, |f| f.integer_at_least(1usize))?,
        client_max_unsent_bytes,
        client_max_buffered_bytes,
        client_buffers_max_bytes,
        backend_max_queued_bytes: s
            .parse_or("backend_max_queued_bytes", DEFAULT_BACKEND_MAX_QUEUED_BYTES, |f| f.integer_at_least(1usize))?,
        io_memory_kib: s.parse_or("io_memory_kib", DEFAULT_IO_MEMORY_KIB, |f| f.integer_at_least(1usize))?,
        busy_poll_us: s.parse_or("busy_poll_us", 0, |f| f.integer_in(0u64, MAX_BUSY_POLL_US))?,
        max_client_connections: s.parse_or("max_client_connections", 0, |f| f.integer_at_least(0usize))?,
    })
}

fn parse_workers(f: &Field<'_>) -> Result<Workers, ConfigError> {
    match f.value() {
        Value::Integer(_) => f.integer_at_least(1usize).map(Workers::Count),
        Value::String(s) if s == "auto" => Ok(Workers::Auto),
        _ => Err(f.error("expected a number of workers (at least 1) or \"auto\"")),
    }
}

fn parse_cpus(f: &Field<'_>) -> Result<Vec<usize>, ConfigError> {
    let items = f.array()?;
    if items.is_empty() {
        return Err(f.error("must list at least one CPU (omit the key to use every allowed CPU)"));
    }
    let mut cpus: Vec<usize> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let cpu = match item {
            Value::Integer(cpu) => usize::try_from(*cpu).ok(),
            _ => None,
        }
        .ok_or_else(|| f.error(format!("cpus[{index}] is not a CPU number (0 or more)")))?;
        if cpus.contains(&cpu) {
            return Err(f.error(format!("CPU {cpu} is listed twice")));
        }
        cpus.push(cpu);
    }
    Ok(cpus)
}

/// A bearer token: printable ASCII without spaces (it travels in an HTTP header), not empty.
fn parse_admin_token(f: &Field<'_>) -> Result<Option<String>, ConfigError> {
    let token = f.non_empty_string()?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(f.error("must be printable ASCII without spaces (it is sent as `Authorization: Bearer <token>`)"));
    }
    Ok(Some(token.to_owned()))
}

/// An address, or `""`/`"off"` for disabled.
fn parse_optional_bind_addr(f: &Field<'_>) -> Result<Option<SocketAddr>, ConfigError> {
    match f.string()? {
        "" | "off" => Ok(None),
        text => parse_bind_addr(text).map(Some).map_err(|why| f.error(why)),
    }
}

/// An address, a bare port (bound on loopback), or `""`/`"off"`.
fn parse_stats_port(f: &Field<'_>) -> Result<Option<SocketAddr>, ConfigError> {
    match f.value() {
        Value::Integer(_) => {
            let port = f.integer_in(1u16, u16::MAX)?;
            Ok(Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)))
        }
        _ => parse_optional_bind_addr(f),
    }
}

/// Listener and pool names become key paths, metric labels and stats JSON keys.
fn check_name(s: &Section<'_>, name: &str) -> Result<(), ConfigError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(valid_char) {
        return Err(s.error(format!("invalid name {name:?}: use letters, digits, '_' and '-'")));
    }
    Ok(())
}

fn build_pool(s: &Section<'_>, name: &str) -> Result<PoolDraft, ConfigError> {
    s.reject_unknown_keys(&[POOL_KEYS, tls::POOL_TLS_KEYS].concat())?;
    check_name(s, name)?;
    if RESERVED_POOL_NAMES.contains(&name) {
        return Err(s.error(format!("{name:?} is reserved: it is a top-level key of the twemproxy-compatible stats")));
    }
    let kind = match s.get("kind") {
        Some(f) => match f.string()? {
            "sharded" => false,
            "redis_cluster" => true,
            other => {
                return Err(f.error(format!("unknown pool kind {other:?}; expected one of: {}", POOL_KINDS.join(", "))))
            }
        },
        None => false,
    };
    let cluster = if kind {
        for (key, why) in NOT_FOR_CLUSTER {
            if let Some(f) = s.get(key) {
                return Err(f.error(format!("does not apply to a pool of kind = \"redis_cluster\": {why}")));
            }
        }
        Some(ClusterOptions {
            refresh_ms: s
                .parse_or("cluster_refresh_ms", DEFAULT_CLUSTER_REFRESH_MS, |f| f.integer_in(100u64, 3_600_000))?,
            read_from: s.parse_or("read_from", ReadFrom::Primary, parse_read_from)?,
            // At least one (an ASK during a migration), at most a few dozen: a loop between confused nodes must end.
            max_redirects: s.parse_or("cluster_max_redirects", DEFAULT_MAX_REDIRECTS, |f| f.integer_in(1u8, 50))?,
            refresh_min_interval_ms: s.parse_or(
                "cluster_refresh_min_interval_ms",
                DEFAULT_CLUSTER_REFRESH_MIN_INTERVAL_MS,
                |f| f.integer_in(10u64, 60_000),
            )?,
        })
    } else {
        for key in ["cluster_refresh_ms", "read_from", "cluster_max_redirects", "cluster_refresh_min_interval_ms"] {
            if let Some(f) = s.get(key) {
                return Err(f.error("only applies to a pool of kind = \"redis_cluster\""));
            }
        }
        None
    };
    let servers = parse_servers(s.text(), &s.required("servers")?, kind)?;
    if kind {
        if let Some((index, server)) = servers.iter().enumerate().find(|(_, server)| server.weight != 1) {
            return Err(s.required("servers")?.error(format!(
                "servers[{index}] has weight {}; the servers of a redis_cluster pool are seed nodes \
                 (\"host:port\"), which carry no weight",
                server.weight
            )));
        }
    }
    let declared_protocol = match s.get("protocol") {
        Some(f) => Some((parse_protocol(&f)?, Located::of(&f))),
        None => None,
    };
    let mut protocol_bound_keys: Vec<(Protocol, Located)> = [
        ("redis_auth", Protocol::Redis),
        ("redis_db", Protocol::Redis),
        ("max_dedicated_connections", Protocol::Redis),
        ("max_value_bytes", Protocol::Memcache),
    ]
    .into_iter()
    .filter_map(|(key, protocol)| s.get(key).map(|f| (protocol, Located::of(&f))))
    .collect();
    if let Some(f) = s.get("kind").filter(|_| kind) {
        protocol_bound_keys.push((Protocol::Redis, Located::of(&f)));
    }
    let config = PoolConfig {
        name: name.to_owned(),
        // Provisional: settled by assign_protocols once the listeners are read.
        protocol: Protocol::Redis,
        hash: s.parse_or("hash", DEFAULT_HASH, parse_hash)?,
        distribution: s.parse_or("distribution", DEFAULT_DISTRIBUTION, parse_distribution)?,
        hash_tag: s.parse_or("hash_tag", None, |f| parse_hash_tag(f).map(Some))?,
        timeout_ms: s.parse_or("timeout_ms", DEFAULT_TIMEOUT_MS, |f| f.integer_at_least(1u64))?,
        connect_timeout_ms: s
            .parse_or("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS, |f| f.integer_at_least(1u64))?,
        server_connections: s.parse_or("server_connections", DEFAULT_SERVER_CONNECTIONS, |f| {
            f.integer_in(1usize, MAX_SERVER_CONNECTIONS)
        })?,
        max_dedicated_connections: s.parse_or("max_dedicated_connections", DEFAULT_MAX_DEDICATED_CONNECTIONS, |f| {
            f.integer_in(0usize, MAX_DEDICATED_CONNECTIONS)
        })?,
        preconnect: s.parse_or("preconnect", false, Field::boolean)?,
        batching: s.parse_or("batching", DEFAULT_BATCHING, parse_batching)?,
        batching_max_hold_us: s
            .parse_or("batching_max_hold_us", DEFAULT_BATCHING_MAX_HOLD_US, |f| f.integer_in(1u64, 1_000_000))?,
        redis_auth: s.parse_or("redis_auth", None, |f| f.non_empty_string().map(|secret| Some(secret.to_owned())))?,
        redis_db: s.parse_or("redis_db", 0, |f| f.integer_at_least(0u32))?,
        auto_eject_hosts: s.parse_or("auto_eject_hosts", false, Field::boolean)?,
        server_failure_limit: s
            .parse_or("server_failure_limit", DEFAULT_SERVER_FAILURE_LIMIT, |f| f.integer_at_least(1u32))?,
        server_retry_timeout_ms: s
            .parse_or("server_retry_timeout_ms", DEFAULT_SERVER_RETRY_TIMEOUT_MS, |f| f.integer_at_least(1u64))?,
        max_value_bytes: s.parse_or("max_value_bytes", DEFAULT_MAX_VALUE_BYTES, |f| f.integer_at_least(1usize))?,
        tcpkeepalive: s.parse_or("tcpkeepalive", false, Field::boolean)?,
        tls: tls::pool(s, &servers)?,
        servers,
        cluster,
    };
    check_mcrouter_distribution(s, &config)?;
    Ok(PoolDraft { config, declared_protocol, protocol_bound_keys })
}

/// mcrouter's distributions hash keys themselves, use weights their own way and never eject.
fn check_mcrouter_distribution(s: &Section<'_>, pool: &PoolConfig) -> Result<(), ConfigError> {
    let distribution = pool.distribution;
    if !distribution.is_mcrouter() {
        return Ok(());
    }
    let name = distribution.name();
    if let Some(f) = s.get("hash") {
        if pool.hash != DEFAULT_HASH {
            return Err(f.error(format!(
                "distribution {name:?} hashes keys itself, as mcrouter does; remove `hash` (or leave it {:?})",
                DEFAULT_HASH.name()
            )));
        }
    }
    if pool.auto_eject_hosts {
        if let Some(f) = s.get("auto_eject_hosts") {
            return Err(f.error(format!(
                "distribution {name:?} keeps keys on their server when it fails, as mcrouter does;                  auto_eject_hosts cannot be used with it"
            )));
        }
    }
    let servers = s.required("servers")?;
    for (index, server) in pool.servers.iter().enumerate() {
        let bad = match distribution {
            DistributionKind::WeightedCh3 => server.weight > crate::hash::WEIGHT_PARTS_PER_UNIT,
            _ => server.weight != 1,
        };
        if bad {
            let rule = match distribution {
                DistributionKind::WeightedCh3 => format!(
                    "weighted_ch3 weights are parts per million of mcrouter's weight 1.0, at most {}",
                    crate::hash::WEIGHT_PARTS_PER_UNIT
                ),
                _ => format!("{name} ignores weights, as mcrouter does: write weight 1 (or use weighted_ch3)"),
            };
            return Err(servers.error(format!("servers[{index}] has weight {}; {rule}", server.weight)));
        }
    }
    if pool.servers.len() > crate::hash::mcrouter::CH3_MAX_SERVERS {
        return Err(
            servers.error(format!("{name} addresses at most {} servers", crate::hash::mcrouter::CH3_MAX_SERVERS))
        );
    }
    Ok(())
}

fn parse_protocol(f: &Field<'_>) -> Result<Protocol, ConfigError> {
    let name = f.string()?;
    Protocol::from_name(name).ok_or_else(|| f.error(format!("unknown protocol {name:?}; expected redis or memcache")))
}

fn parse_read_from(f: &Field<'_>) -> Result<ReadFrom, ConfigError> {
    let name = f.string()?;
    ReadFrom::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = ReadFrom::ALL.iter().map(|r| r.name()).collect();
        f.error(format!("unknown read_from {name:?}; expected one of: {}", known.join(", ")))
    })
}

fn parse_batching(f: &Field<'_>) -> Result<Batching, ConfigError> {
    let name = f.string()?;
    Batching::from_name(name).ok_or_else(|| f.error(format!("unknown batching {name:?}; expected adaptive or eager")))
}

pub(super) fn parse_hash(f: &Field<'_>) -> Result<HashKind, ConfigError> {
    let name = f.string()?;
    HashKind::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = HashKind::ALL.iter().map(|hash| hash.name()).collect();
        f.error(format!("unknown hash {name:?}; expected one of: {}", known.join(", ")))
    })
}

fn parse_distribution(f: &Field<'_>) -> Result<DistributionKind, ConfigError> {
    let name = f.string()?;
    DistributionKind::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = DistributionKind::ALL.iter().map(|d| d.name()).collect();
        f.error(format!("unknown distribution {name:?}; expected one of: {}", known.join(", ")))
    })
}

fn parse_hash_tag(f: &Field<'_>) -> Result<[u8; 2], ConfigError> {
    let tag = f.string()?;
    match tag.as_bytes() {
        [open, close] if open.is_ascii_graphic() && close.is_ascii_graphic() => Ok([*open, *close]),
        _ => Err(f.error(format!("{tag:?} is not two printable ASCII characters, like \"{{}}\""))),
    }
}

/// Parses the `servers` array, locating each line for error messages.
/// Seed nodes of a cluster pool (`seeds`) may be written "host:port", without a weight.
fn parse_servers(text: &str, f: &Field<'_>, seeds: bool) -> Result<Vec<ServerConfig>, ConfigError> {
    let items = f.array()?;
    if items.is_empty() {
        return Err(f.error("a pool needs at least one server"));
    }
    let mut servers: Vec<ServerConfig> = Vec::with_capacity(items.len());
    let mut seen_idents: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut seen_addrs: HashMap<SocketAddr, usize> = HashMap::with_capacity(items.len());
    let mut search_from = f.span().start;
    for (index, item) in items.iter().enumerate() {
        let key = format!("{}[{index}]", f.key());
        let Value::String(spec) = item else {
            return Err(f.error(format!("{key} is not a string like \"10.0.0.1:6379:1\"")));
        };
        let span = locate_string(text, search_from..f.span().end, spec).unwrap_or_else(|| f.span());
        search_from = span.end.max(search_from);
        let server = if seeds { parse_seed(spec) } else { parse_server(spec) };
        let server = server.map_err(|why| f.error_at(&span, &key, why))?;
        if let Some(first) = seen_idents.insert(server.ident.clone(), index) {
            return Err(f.error_at(
                &span,
                &key,
                format!(
                    "server identity {:?} is already used by servers[{first}]; \
                     each server needs its own name or host:port",
                    server.ident
                ),
            ));
        }
        if let Some(first) = seen_addrs.insert(server.addr, index) {
            return Err(f.error_at(
                &span,
                &key,
                format!("address {} is already used by servers[{first}]", server.addr),
            ));
        }
        servers.push(server);
    }
    Ok(servers)
}

/// Where the string literal holding `value` is written within `range` of `text`, so that an error
/// about one server of a long list points at its own line. `None` when the literal is written
/// with escapes and cannot be found verbatim.
pub(super) fn locate_string(text: &str, range: Range<usize>, value: &str) -> Option<Range<usize>> {
    let haystack = text.get(range.clone())?;
    ['"', '\''].into_iter().filter_map(|quote| haystack.find(&format!("{quote}{value}{quote}"))).min().map(|found| {
        let start = range.start + found;
        start..start + value.len() + 2
    })
}

fn build_listener(s: &Section<'_>, name: &str, names: &Names<'_>) -> Result<ListenerDraft, ConfigError> {
    s.reject_unknown_keys(&[LISTENER_KEYS, tls::LISTENER_TLS_KEYS].concat())?;
    check_name(s, name)?;
    let listen_field = s.required("listen")?;
    let listen = parse_listen(listen_field.non_empty_string()?).map_err(|why| listen_field.error(why))?;
    let protocol = parse_protocol(&s.required("protocol")?)?;
    let route_field = s.required("route")?;
    let route = route_field.non_empty_string()?;
    let target = names.resolve(route).map_err(|why| route_field.error(why))?;
    let auth = s.parse_or("auth", None, |f| {
        let secret = f.non_empty_string()?;
        if protocol != Protocol::Redis {
            return Err(f.error("auth is only for redis listeners (the memcached ASCII protocol has no AUTH)"));
        }
        Ok(Some(secret.to_owned()))
    })?;
    let users = s.parse_or("users", Vec::new(), |f| {
        if protocol != Protocol::Redis {
            return Err(f.error("users are only for redis listeners (the memcached ASCII protocol has no AUTH)"));
        }
        users::parse_users(f, auth.is_some())
    })?;
    let backlog = s.parse_or("backlog", DEFAULT_BACKLOG, |f| f.integer_in(1u32, MAX_BACKLOG))?;
    let client_connections = s.parse_or("client_connections", 0, |f| f.integer_at_least(0usize))?;
    let client_idle_timeout_ms = s.parse_or("client_idle_timeout_ms", 0, |f| f.integer_at_least(0u64))?;
    let tcpkeepalive = s.parse_or("tcpkeepalive", false, |f| f.boolean())?;
    let tls = tls::listener(s)?;
    Ok(ListenerDraft {
        config: ListenerConfig {
            name: name.to_owned(),
            listen,
            protocol,
            route: route.to_owned(),
            target,
            auth,
            users,
            backlog,
            client_connections,
            client_idle_timeout_ms,
            tcpkeepalive,
            tls,
        },
        listen: Located::of(&listen_field),
        route: Located::of(&route_field),
    })
}

/// The pools and routes a listener reaches through its route tree.
fn reach(listener: &ListenerDraft, routes: &[RouteConfig]) -> (Vec<usize>, Vec<usize>) {
    let (mut pools, mut seen) = (Vec::new(), Vec::new());
    reachable(routes, listener.config.target, &mut pools, &mut seen);
    (pools, seen)
}

/// A pool speaks the protocol of the listeners routing to it (directly or through routes); they must agree with
/// each other and with the pool's own `protocol` key, and protocol-specific keys must match it.
fn assign_protocols(
    text: &str,
    pools: &mut [PoolDraft],
    listeners: &[ListenerDraft],
    routes: &[RouteConfig],
) -> Result<(), ConfigError> {
    let reached: Vec<Vec<usize>> = listeners.iter().map(|l| reach(l, routes).0).collect();
    for (index, pool) in pools.iter_mut().enumerate() {
        let mut first: Option<&ListenerDraft> = None;
        for (listener, _) in listeners.iter().zip(&reached).filter(|(_, r)| r.contains(&index)) {
            let protocol = listener.config.protocol;
            let via = if listener.config.target == Target::Pool(index) {
                String::new()
            } else {
                format!(" (through route {:?})", listener.config.route)
            };
            if let Some((declared, _)) = &pool.declared_protocol {
                if *declared != protocol {
                    return Err(listener.route.error(
                        text,
                        format!(
                            "this {} listener routes to pool {:?}{via}, which declares protocol = {:?}",
                            protocol.name(),
                            pool.config.name,
                            declared.name()
                        ),
                    ));
                }
            }
            match first {
                Some(first) if first.config.protocol != protocol => {
                    return Err(listener.route.error(
                        text,
                        format!(
                            "this {} listener routes to pool {:?}{via}, which {} listener {:?} also \
                             uses; a pool speaks one protocol",
                            protocol.name(),
                            pool.config.name,
                            first.config.protocol.name(),
                            first.config.name
                        ),
                    ));
                }
                Some(_) => {}
                None => first = Some(listener),
            }
        }
        pool.config.protocol = first
            .map(|l| l.config.protocol)
            .or(pool.declared_protocol.as_ref().map(|(p, _)| *p))
            .unwrap_or(Protocol::Redis);
        for (needs, located) in &pool.protocol_bound_keys {
            if *needs != pool.config.protocol {
                return Err(located.error(
                    text,
                    format!(
                        "only applies to {} pools, and this pool speaks {}",
                        needs.name(),
                        pool.config.protocol.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A `redis_cluster` pool is served by listeners that name it directly: route trees place keys by server, which
/// a cluster's slot map does not fit.
fn check_cluster_pools_direct(
    text: &str,
    pools: &[PoolDraft],
    listeners: &[ListenerDraft],
    routes: &[RouteConfig],
) -> Result<(), ConfigError> {
    for listener in listeners.iter().filter(|l| !matches!(l.config.target, Target::Pool(_))) {
        if let Some(&p) = reach(listener, routes).0.iter().find(|&&p| pools[p].config.cluster.is_some()) {
            return Err(listener.route.error(
                text,
                format!(
                    "route {:?} reaches pool {:?}, which is a redis_cluster pool; a listener serves a cluster \
                     pool only when its `route` names that pool itself",
                    listener.config.route, pools[p].config.name
                ),
            ));
        }
    }
    Ok(())
}

/// A route reached from listeners of one protocol may only use what that protocol can execute: operation names of
/// the other protocol are errors (a route reached by no listener must fit at least one protocol, checked when read).
fn check_route_protocols(
    text: &str,
    drafts: &[RouteDraft],
    listeners: &[ListenerDraft],
    routes: &[RouteConfig],
) -> Result<(), ConfigError> {
    for listener in listeners {
        let protocol = listener.config.protocol;
        for r in reach(listener, routes).1 {
            if let (Protocol::Memcache, Some((key, span))) = (protocol, &drafts[r].redis_only) {
                return Err(ConfigError::at(
                    text,
                    span,
                    key,
                    format!(
                        "strip_prefix is not implemented yet for memcache (its replies carry the key, which ferrule \
                         would have to rewrite), and memcache listener {:?} reaches route {:?}",
                        listener.config.name, routes[r].name
                    ),
                ));
            }
            for (op, key, span) in &drafts[r].operation_keys {
                if !operation_fits(op, protocol) {
                    return Err(ConfigError::at(
                        text,
                        span,
                        key,
                        format!(
                            "{op:?} is not a {} operation, and {} listener {:?} reaches route {:?}",
                            protocol.name(),
                            protocol.name(),
                            listener.config.name,
                            routes[r].name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// No two sockets ferrule binds may collide: listeners, the admin endpoint and the stats port.
fn check_bind_conflicts(
    text: &str,
    proxy_section: &Section<'_>,
    proxy: &ProxyConfig,
    listeners: &[ListenerDraft],
) -> Result<(), ConfigError> {
    let mut bound: Vec<(ListenAddr, String, Option<Located>)> = Vec::new();
    let proxy_binds = [("admin", proxy.admin), ("stats_port", proxy.stats_port)];
    for (key, addr) in proxy_binds {
        if let Some(addr) = addr {
            let located = proxy_section.get(key).map(|f| Located::of(&f));
            bound.push((ListenAddr::Tcp(addr), format!("proxy.{key}"), located));
        }
    }
    // Report a collision at whichever listener comes later in the file.
    let mut in_file_order: Vec<&ListenerDraft> = listeners.iter().collect();
    in_file_order.sort_by_key(|listener| listener.listen.span.start);
    for listener in in_file_order {
        bound.push((listener.config.listen.clone(), listener.listen.key.clone(), Some(listener.listen.clone())));
    }
    for (later, (addr, key, located)) in bound.iter().enumerate() {
        let earlier = bound[..later].iter().find(|(other, _, _)| conflicts(addr, other));
        if let Some((other, other_key, other_located)) = earlier {
            let default_note =
                if other_located.is_none() { " (its default; set it to another address or \"off\")" } else { "" };
            let message = format!("{addr} collides with {other_key} = {other}{default_note}");
            return Err(match located {
                Some(located) => located.error(text, message),
                None => ConfigError::new(Some(key), message),
            });
        }
    }
    Ok(())
}

/// The proxy executes one multi-destination route per request: a multi-destination route reaching another one
/// (directly or through selector routes) is refused at the inner one's type.
fn check_no_nested_fans(text: &str, routes: &[RouteDraft]) -> Result<(), ConfigError> {
    for (i, outer) in routes.iter().enumerate() {
        if !outer.config.kind.is_multi() {
            continue;
        }
        let mut seen = vec![false; routes.len()];
        let mut stack: Vec<Target> = outer.config.kind.targets();
        while let Some(t) = stack.pop() {
            let Target::Route(r) = t else { continue };
            if r == i || std::mem::replace(&mut seen[r], true) {
                continue;
            }
            let inner = &routes[r];
            if inner.config.kind.is_multi() {
                let message = format!(
                    "route {:?} ({}) is reached from route {:?} ({}): a multi-destination route below another is not \
                     implemented yet",
                    inner.config.name,
                    inner.config.kind.type_name(),
                    outer.config.name,
                    outer.config.kind.type_name()
                );
                return Err(ConfigError::at(text, &inner.type_span, &inner.type_key, message));
            }
            stack.extend(inner.config.kind.targets());
        }
    }
    Ok(())
}
