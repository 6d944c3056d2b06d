//! twemproxy (nutcracker) YAML -> ferrule TOML.
//!
//! A twemproxy pool is a listener and a pool in one block; it becomes `[listeners.<name>]` routing to
//! `[pools.<name>]`, under the same name so that the twemproxy-compatible stats keep their keys. Placement settings
//! (servers in order with weights and names, hash, hash_tag, distribution) are copied verbatim and written out even
//! when they are twemproxy's defaults, so that the converted file places keys as nutcracker did whatever ferrule's
//! defaults become. Keys nutcracker would refuse are refused here, naming their line.

use toml::Value;

use super::toml_out::{sanitized_name, Table};
use super::yaml::{self, Node, Pos};
use super::{Conversion, ImportError, Output};
use crate::hash::{DistributionKind, HashKind};

/// twemproxy's default stats port (its `-s`).
pub const DEFAULT_STATS_PORT: u16 = 22222;

/// What nutcracker took on its command line rather than in the YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TwemproxyOptions {
    /// `-s`: the stats port; twemproxy's default is 22222.
    pub stats_port: Option<u16>,
    /// `-a`: the stats address; twemproxy's default is 0.0.0.0.
    pub stats_addr: Option<String>,
    /// `-i`: the stats aggregation interval in ms.
    pub stats_interval_ms: Option<u64>,
}

/// Every pool key twemproxy 0.5 reads.
const POOL_KEYS: &[&str] = &[
    "listen",
    "hash",
    "hash_tag",
    "distribution",
    "timeout",
    "backlog",
    "client_connections",
    "redis",
    "redis_auth",
    "redis_db",
    "preconnect",
    "auto_eject_hosts",
    "server_connections",
    "server_retry_timeout",
    "server_failure_limit",
    "servers",
    "tcpkeepalive",
    "reuseport",
];

/// Stats JSON keys a pool may not be called (ferrule refuses them as pool names; see config validation).
const RESERVED_POOL_NAMES: &[&str] =
    &["service", "source", "version", "uptime", "timestamp", "total_connections", "curr_connections"];

/// Converts a nutcracker.yml.
pub fn convert(text: &str, options: &TwemproxyOptions) -> Result<Conversion, ImportError> {
    let root = yaml::parse(text)?;
    let Node::Map { entries, pos } = &root else {
        return Err(root.pos().error(format!("expected a mapping of pool names to pools, found {}", root.kind())));
    };
    if entries.is_empty() {
        return Err(pos.error("no pools: a twemproxy config maps each pool name to its settings"));
    }
    let mut out = Output::new();
    out.doc.header("Converted from a twemproxy (nutcracker) config by `ferrule convert --from twemproxy`.");
    out.doc
        .header("Check it with `ferrule -t -c <this file>`; docs/migration.md explains each difference noted below.");
    convert_stats(&mut out, options);

    let mut names: Vec<String> = Vec::new();
    for (name, name_pos, body) in entries {
        let pool = read_pool(name, *name_pos, body)?;
        let ferrule_name = ferrule_pool_name(&mut out, name);
        if names.contains(&ferrule_name) {
            return Err(name_pos.error(format!(
                "pool {name:?} becomes {ferrule_name:?} in ferrule, which another pool already uses; rename one"
            )));
        }
        write_pool(&mut out, name, &ferrule_name, &pool);
        names.push(ferrule_name);
    }
    Ok(out.finish())
}

/// twemproxy always serves its stats; ferrule's twemproxy-compatible `stats_port` takes them over, and the admin
/// endpoint (whose default is twemproxy's stats port) moves out of its way.
fn convert_stats(out: &mut Output, options: &TwemproxyOptions) {
    let port = options.stats_port.unwrap_or(DEFAULT_STATS_PORT);
    let (addr, addr_note) = match &options.stats_addr {
        Some(addr) => (addr.clone(), None),
        None => (
            "127.0.0.1".to_owned(),
            Some(
                "twemproxy's stats listened on 0.0.0.0 unless -a said otherwise; ferrule keeps them on loopback. \
                 Use --stats-addr 0.0.0.0 to convert with the old exposure.",
            ),
        ),
    };
    let host = if addr.contains(':') && !addr.starts_with('[') { format!("[{addr}]") } else { addr };
    let proxy = &mut out.doc.proxy;
    let mut note =
        format!("twemproxy's stats (-s {port}): the same JSON on a raw TCP port, for agents written for nutcracker.");
    if let Some(extra) = addr_note {
        note.push('\n');
        note.push_str(extra);
    }
    proxy.set_noted("stats_port", format!("{host}:{port}"), Some(note));
    // A wildcard stats address collides with the admin endpoint's default on the same port.
    let admin = crate::config::DEFAULT_ADMIN;
    if port == admin.port() {
        proxy.set_noted(
            "admin",
            format!("{}:{}", admin.ip(), admin.port() + 1),
            Some("ferrule's admin HTTP endpoint (stats, Prometheus, /config, /reload), moved off the stats port."),
        );
    }
    if let Some(interval) = options.stats_interval_ms {
        proxy.note(format!(
            "twemproxy's -i {interval} (stats aggregation interval) has no equivalent: ferrule's stats are current \
             at every read."
        ));
    }
    proxy.note(
        "twemproxy ran on one core; ferrule runs one worker per CPU (workers = \"auto\"). Set workers to pin fewer.",
    );
}

/// The pool's name in ferrule, with a warning when it had to change.
fn ferrule_pool_name(out: &mut Output, name: &str) -> String {
    let mut ferrule_name = sanitized_name(name).unwrap_or_else(|| name.to_owned());
    if RESERVED_POOL_NAMES.contains(&ferrule_name.as_str()) {
        ferrule_name.push_str("_pool");
    }
    if ferrule_name != name {
        out.warnings.push(format!(
            "pool {name:?} is called {ferrule_name:?} in ferrule (names use letters, digits, '_' and '-' and may not \
             be a stats JSON key); its stats appear under the new name"
        ));
    }
    ferrule_name
}

/// One pool's settings as twemproxy reads them, with where each was written.
#[derive(Default)]
struct Pool {
    pos: Pos,
    listen: Option<(String, Pos)>,
    hash: Option<HashKind>,
    hash_tag: Option<String>,
    distribution: Option<DistributionKind>,
    timeout: Option<u64>,
    backlog: Option<u64>,
    client_connections: Option<u64>,
    redis: bool,
    redis_auth: Option<String>,
    redis_db: Option<u64>,
    preconnect: Option<bool>,
    auto_eject_hosts: Option<bool>,
    server_connections: Option<u64>,
    server_retry_timeout: Option<u64>,
    server_failure_limit: Option<u64>,
    servers: Vec<String>,
    tcpkeepalive: Option<bool>,
    reuseport: Option<bool>,
}

fn read_pool(name: &str, name_pos: Pos, body: &Node) -> Result<Pool, ImportError> {
    let Node::Map { entries, .. } = body else {
        return Err(body.pos().error(format!("pool {name:?}: expected a mapping of settings, found {}", body.kind())));
    };
    let mut pool = Pool { pos: name_pos, ..Pool::default() };
    for (key, key_pos, value) in entries {
        let what = format!("pool {name:?}: {key}");
        match key.as_str() {
            "listen" => pool.listen = Some((value.scalar(&what)?.trim().to_owned(), value.pos())),
            "hash" => pool.hash = Some(parse_hash(value, &what)?),
            "hash_tag" => pool.hash_tag = Some(parse_hash_tag(value, &what)?),
            "distribution" => pool.distribution = Some(parse_distribution(value, &what)?),
            "timeout" => pool.timeout = Some(number(value, &what)?),
            "backlog" => pool.backlog = Some(number(value, &what)?),
            "client_connections" => pool.client_connections = Some(number(value, &what)?),
            "redis" => pool.redis = boolean(value, &what)?,
            "redis_auth" => pool.redis_auth = Some(value.scalar(&what)?.to_owned()),
            "redis_db" => pool.redis_db = Some(number(value, &what)?),
            "preconnect" => pool.preconnect = Some(boolean(value, &what)?),
            "auto_eject_hosts" => pool.auto_eject_hosts = Some(boolean(value, &what)?),
            "server_connections" => pool.server_connections = Some(number(value, &what)?),
            "server_retry_timeout" => pool.server_retry_timeout = Some(number(value, &what)?),
            "server_failure_limit" => pool.server_failure_limit = Some(number(value, &what)?),
            "servers" => pool.servers = parse_servers(value, &what)?,
            "tcpkeepalive" => pool.tcpkeepalive = Some(boolean(value, &what)?),
            "reuseport" => pool.reuseport = Some(boolean(value, &what)?),
            _ => {
                return Err(key_pos.error(format!(
                    "pool {name:?}: unknown key `{key}` (nutcracker refuses it too); twemproxy's pool keys are: {}",
                    POOL_KEYS.join(", ")
                )))
            }
        }
    }
    if pool.listen.is_none() {
        return Err(name_pos.error(format!("pool {name:?} has no `listen` address")));
    }
    if pool.servers.is_empty() {
        return Err(name_pos.error(format!("pool {name:?} has no `servers`")));
    }
    Ok(pool)
}

/// twemproxy's numbers: digits only (nc_atoi), no sign, no unit.
fn number(node: &Node, what: &str) -> Result<u64, ImportError> {
    let text = node.scalar(what)?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(node.pos().error(format!("{what}: {text:?} is not a whole number")));
    }
    // TOML integers are i64.
    text.parse::<i64>().map(|n| n as u64).map_err(|_| node.pos().error(format!("{what}: {text} is too large")))
}

/// twemproxy's booleans: exactly `true` or `false`.
fn boolean(node: &Node, what: &str) -> Result<bool, ImportError> {
    match node.scalar(what)?.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(node.pos().error(format!("{what}: {other:?} is not true or false"))),
    }
}

fn parse_hash(node: &Node, what: &str) -> Result<HashKind, ImportError> {
    let name = node.scalar(what)?.trim();
    match HashKind::from_name(name) {
        Some(HashKind::Xxh3) | None => {
            let known: Vec<&str> = HashKind::ALL.iter().filter(|h| **h != HashKind::Xxh3).map(|h| h.name()).collect();
            Err(node.pos().error(format!("{what}: unknown hash {name:?}; twemproxy's are: {}", known.join(", "))))
        }
        Some(kind) => Ok(kind),
    }
}

fn parse_distribution(node: &Node, what: &str) -> Result<DistributionKind, ImportError> {
    let name = node.scalar(what)?.trim();
    match DistributionKind::from_name(name) {
        Some(kind @ (DistributionKind::Ketama | DistributionKind::Modula | DistributionKind::Random)) => Ok(kind),
        _ => Err(node
            .pos()
            .error(format!("{what}: unknown distribution {name:?}; twemproxy's are ketama, modula, random"))),
    }
}

fn parse_hash_tag(node: &Node, what: &str) -> Result<String, ImportError> {
    let tag = node.scalar(what)?;
    match tag.as_bytes() {
        [open, close] if open.is_ascii_graphic() && close.is_ascii_graphic() => Ok(tag.to_owned()),
        _ => Err(node.pos().error(format!("{what}: {tag:?} is not two characters, like \"{{}}\""))),
    }
}

fn parse_servers(node: &Node, what: &str) -> Result<Vec<String>, ImportError> {
    let Node::Seq { items, .. } = node else {
        return Err(node
            .pos()
            .error(format!("{what}: expected a list of \"host:port:weight [name]\", found {}", node.kind())));
    };
    let mut servers = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let what = format!("{what}[{index}]");
        let spec = item.scalar(&what)?.trim();
        if spec.starts_with('/') {
            return Err(item.pos().error(format!(
                "{what}: {spec:?} is a unix socket server; ferrule connects to servers over TCP only"
            )));
        }
        super::super::server::check_server_spec(spec).map_err(|why| item.pos().error(format!("{what}: {why}")))?;
        servers.push(spec.to_owned());
    }
    Ok(servers)
}

fn write_pool(out: &mut Output, name: &str, ferrule_name: &str, pool: &Pool) {
    let protocol = if pool.redis { "redis" } else { "memcache" };
    let mut listener = Table::new(format!("listeners.{ferrule_name}"));
    listener.note_above(format!("twemproxy pool {name:?} (line {}): its listening side.", pool.pos.line));
    let mut table = Table::new(format!("pools.{ferrule_name}"));
    table.note_above(format!("twemproxy pool {name:?}: its servers and placement."));

    let (listen, listen_pos) = pool.listen.clone().unwrap_or_default();
    write_listen(out, &mut listener, name, &listen, listen_pos);
    listener.set_noted(
        "protocol",
        protocol,
        (!pool.redis).then_some("twemproxy's default (no `redis: true`): the memcached ASCII protocol."),
    );
    listener.set("route", ferrule_name);
    match pool.backlog {
        Some(backlog) if (1..=65535).contains(&backlog) => listener.set("backlog", backlog as i64),
        Some(backlog) => {
            listener.set_noted("backlog", 65535, Some(format!("twemproxy's backlog {backlog}, capped at 65535.")))
        }
        None => listener.note("backlog: twemproxy's default was 512; ferrule's is 1024."),
    }
    if let Some(limit) = pool.client_connections {
        let note = format!(
            "client_connections: {limit}: ferrule has no limit on client connections; each client's requests in \
             flight and unread replies are bounded instead (proxy.client_max_inflight, client_max_unsent_bytes)."
        );
        if limit != 0 {
            out.warnings.push(format!("pool {name:?}: {note}"));
        }
        listener.note(note);
    }

    table.set("servers", Value::Array(pool.servers.iter().map(|s| Value::from(s.as_str())).collect()));
    let hash = pool.hash.unwrap_or(crate::config::DEFAULT_HASH);
    let distribution = pool.distribution.unwrap_or(crate::config::DEFAULT_DISTRIBUTION);
    table.set_noted(
        "hash",
        hash.name(),
        pool.hash.is_none().then_some("twemproxy's default hash, written out so placement never depends on defaults."),
    );
    table.set_noted(
        "distribution",
        distribution.name(),
        pool.distribution.is_none().then_some("twemproxy's default distribution."),
    );
    if let Some(tag) = &pool.hash_tag {
        table.set("hash_tag", tag.as_str());
    }
    match pool.timeout {
        Some(0) | None => {
            table.note(format!(
                "timeout: twemproxy waited forever for a reply{}; ferrule's timeout_ms defaults to {} ms (one stuck \
                 server would otherwise hold every request queued behind it). Set timeout_ms to choose another.",
                if pool.timeout == Some(0) { " (timeout: 0)" } else { "" },
                crate::config::DEFAULT_TIMEOUT_MS
            ));
        }
        Some(timeout) => {
            table.set_noted("timeout_ms", timeout as i64, Some("twemproxy's `timeout`."));
            table.set_noted(
                "connect_timeout_ms",
                timeout as i64,
                Some("twemproxy's `timeout` covered connecting too; ferrule times the connect separately."),
            );
        }
    }
    if let Some(connections) = pool.server_connections {
        let capped = connections.clamp(1, 1024);
        table.set_noted(
            "server_connections",
            capped as i64,
            Some(format!(
                "twemproxy's server_connections: {connections}. In ferrule it counts per worker (so a server gets \
                 workers x this many), and each client stays on one connection, so its requests stay in order."
            )),
        );
    }
    if let Some(preconnect) = pool.preconnect {
        table.set("preconnect", preconnect);
    }
    write_auth(out, &mut listener, &mut table, name, pool);
    if let Some(db) = pool.redis_db {
        if pool.redis && db > 0 {
            table.set("redis_db", db.min(u64::from(u32::MAX)) as i64);
        } else if !pool.redis {
            table.note(format!("redis_db: {db} dropped: this is a memcached pool."));
        }
    }
    if let Some(eject) = pool.auto_eject_hosts {
        table.set("auto_eject_hosts", eject);
    }
    if let Some(limit) = pool.server_failure_limit {
        table.set("server_failure_limit", limit.clamp(1, u64::from(u32::MAX)) as i64);
    }
    if let Some(retry) = pool.server_retry_timeout {
        table.set_noted("server_retry_timeout_ms", retry.max(1) as i64, Some("twemproxy's `server_retry_timeout`."));
    }
    if let Some(on) = pool.tcpkeepalive {
        let note = format!(
            "tcpkeepalive: {on}: ferrule does not set SO_KEEPALIVE on server connections; a dead server is found by \
             timeout_ms and the failure counting instead."
        );
        if on {
            out.warnings.push(format!("pool {name:?}: {note}"));
        }
        table.note(note);
    }
    if let Some(on) = pool.reuseport {
        listener
            .note(format!("reuseport: {on}: ferrule always listens with SO_REUSEPORT, one socket per worker core."));
    }
    out.doc.listeners.push(listener);
    out.doc.pools.push(table);
}

fn write_listen(out: &mut Output, listener: &mut Table, name: &str, listen: &str, pos: Pos) {
    if listen.starts_with('/') {
        let mut words = listen.split_whitespace();
        let path = words.next().unwrap_or(listen);
        listener.set("listen", path);
        if let Some(perm) = words.next() {
            let note = format!(
                "twemproxy set the socket's permissions to {perm}; ferrule creates it with the process umask: set \
                 the umask (systemd UMask=) or chmod after start."
            );
            out.warnings.push(format!("pool {name:?} (line {}): {note}", pos.line));
            listener.note(note);
        }
    } else {
        listener.set("listen", listen);
    }
}

/// twemproxy's `redis_auth` does two things: clients must AUTH with it, and ferrule's servers are sent it.
fn write_auth(out: &mut Output, listener: &mut Table, table: &mut Table, name: &str, pool: &Pool) {
    let Some(secret) = &pool.redis_auth else {
        return;
    };
    if !pool.redis {
        out.warnings.push(format!("pool {name:?}: redis_auth dropped: this is a memcached pool"));
        table.note("redis_auth dropped: this is a memcached pool (twemproxy ignores it there too).");
        return;
    }
    if secret.is_empty() {
        table.note("redis_auth: empty, as if unset.");
        return;
    }
    listener.set_noted("auth", secret.as_str(), Some("twemproxy's redis_auth, the password clients AUTH with."));
    table.set_noted("redis_auth", secret.as_str(), Some("twemproxy's redis_auth, also sent to every server."));
}

#[cfg(test)]
mod tests;
