//! Envoy YAML -> ferrule TOML: every listener whose filter chain holds the redis proxy
//! (`envoy.filters.network.redis_proxy`) becomes a redis listener; its `prefix_routes` a `prefix` route (longest
//! prefix first, as Envoy matches), `remove_prefix` its `strip_prefix`, `catch_all_route` its `default`; a route's
//! `request_mirror_policy` a `shadow` route (an `operation` route sending writes through the shadow when the mirror
//! excludes reads); `settings.op_timeout` the pools' `timeout_ms`; `downstream_auth_password` the listener's `auth`.
//! Each cluster a route names becomes a pool of its `load_assignment` endpoints.
//!
//! Placement differs: Envoy's redis proxy hashes each key onto the cluster's hosts with its own ring hash or Maglev
//! table; ferrule's pool uses ketama over fnv1a_64. A cluster of one endpoint places every key the same; a larger one
//! moves keys (said in the file and in a warning).

use std::collections::BTreeMap;

use toml::Value;

use super::toml_out::{sanitized_name, Table};
use super::yaml::{self, Node, Pos};
use super::{Conversion, ImportError, Output};
use crate::config::EXECUTABLE_TYPES;

const REDIS_PROXY_FILTERS: &[&str] = &["envoy.filters.network.redis_proxy", "envoy.redis_proxy"];

/// A redis_proxy filter's routing, as read.
struct Proxy {
    listener: String,
    address: String,
    pos: Pos,
    routes: Vec<PrefixRoute>,
    case_insensitive: bool,
    catch_all: Option<Target>,
    op_timeout_ms: Option<u64>,
    password: Option<String>,
    username: Option<String>,
    hash_tagging: bool,
}

struct PrefixRoute {
    prefix: String,
    remove_prefix: bool,
    target: Target,
    pos: Pos,
}

/// A cluster with its mirrors.
#[derive(Clone, PartialEq)]
struct Target {
    cluster: String,
    mirrors: Vec<Mirror>,
    pos: Pos,
}

#[derive(Clone, PartialEq)]
struct Mirror {
    cluster: String,
    exclude_reads: bool,
    fraction: Option<f64>,
}

/// Converts an Envoy bootstrap config.
pub fn convert(text: &str) -> Result<Conversion, ImportError> {
    let root = yaml::parse(text)?;
    let resources = get(&root, "static_resources")
        .ok_or_else(|| root.pos().error("no static_resources: only static listeners and clusters are converted"))?;
    let listeners = seq(get(resources, "listeners"), "static_resources.listeners")?;
    let mut proxies = Vec::new();
    for listener in listeners {
        proxies.extend(read_listener(listener)?);
    }
    if proxies.is_empty() {
        return Err(resources.pos().error("no listener has an envoy.filters.network.redis_proxy filter"));
    }
    let clusters = read_clusters(resources)?;

    let mut out = Output::new();
    out.doc.header("Converted from an Envoy config by `ferrule convert --from envoy`.");
    out.doc.header("Check it with `ferrule -t -c <this file>`; docs/migration.md explains the differences.");
    out.doc.proxy.note("Envoy's --concurrency worker threads become ferrule's workers (one per CPU by default).");
    let mut b = Build {
        clusters: &clusters,
        pools: BTreeMap::new(),
        taken: Vec::new(),
        routes: Vec::new(),
        not_executable: Vec::new(),
        warnings: Vec::new(),
        listener: String::new(),
        timeout: None,
    };
    for proxy in &proxies {
        let listener_name = sanitized_name(&proxy.listener).unwrap_or_else(|| proxy.listener.clone());
        b.listener = listener_name.clone();
        b.timeout = proxy.op_timeout_ms;
        let mut listener = Table::new(format!("listeners.{listener_name}"));
        listener.note_above(format!("Envoy listener {:?} (redis_proxy).", proxy.listener));
        listener.set("listen", proxy.address.as_str());
        listener.set("protocol", "redis");
        let strip: Vec<bool> = proxy.routes.iter().map(|r| r.remove_prefix).collect();
        if strip.iter().any(|&s| s) && strip.iter().any(|&s| !s) {
            let at = proxy.routes.iter().find(|r| r.remove_prefix).map_or(proxy.pos, |r| r.pos);
            return Err(at.error(
                "prefix routes with and without remove_prefix in one listener: ferrule strips the prefix for all \
                 routes of a prefix route or for none; split them into two listeners",
            ));
        }
        let root = if proxy.routes.is_empty() {
            match &proxy.catch_all {
                Some(target) => b.dest(target)?,
                None => return Err(proxy.pos.error("redis_proxy without prefix_routes routes nothing")),
            }
        } else {
            let mut prefixes = toml::Table::new();
            for route in &proxy.routes {
                let key = if proxy.case_insensitive { route.prefix.to_ascii_lowercase() } else { route.prefix.clone() };
                if route.prefix.is_empty() {
                    return Err(route.pos.error("an empty prefix: use catch_all_route for every other key"));
                }
                if prefixes.contains_key(&key) {
                    return Err(route.pos.error(format!("prefix {:?} is routed twice", route.prefix)));
                }
                let d = b.dest(&route.target)?;
                prefixes.insert(key, Value::from(d));
            }
            let default = match &proxy.catch_all {
                Some(target) => Some(b.dest(target)?),
                None => None,
            };
            let name = b.fresh("prefixes");
            let mut table = Table::new(format!("routes.{name}"));
            table.note_above("Envoy's prefix_routes: the longest matching prefix wins, as in Envoy.");
            table.set("type", "prefix");
            table.set("prefixes", Value::Table(prefixes));
            match default {
                Some(d) => table.set_noted("default", d, Some("catch_all_route.")),
                None => table.note("No catch_all_route: other keys get an error, as Envoy answers them."),
            }
            if strip.iter().all(|&s| s) {
                table.set_noted("strip_prefix", true, Some("remove_prefix."));
            }
            if proxy.case_insensitive {
                table.set("case_insensitive", true);
            }
            b.routes.push(table);
            name
        };
        listener.set("route", root.as_str());
        if let Some(password) = &proxy.password {
            listener.set_noted("auth", password.as_str(), Some("downstream_auth_password."));
        }
        if let Some(user) = &proxy.username {
            listener.note(format!(
                "downstream_auth_username {user:?}: ferrule's listener auth is a password only (AUTH password, or \
                 AUTH default password); clients sending AUTH {user} <password> are refused."
            ));
            out.warnings.push(format!(
                "listener {:?}: downstream_auth_username is dropped (ferrule checks the password only)",
                proxy.listener
            ));
        }
        out.doc.listeners.push(listener);
        if proxy.hash_tagging {
            for (name, _) in b.pools.iter().filter(|(_, (_, l))| *l == listener_name) {
                out.warnings.push(format!("pool {name:?}: enable_hashtagging becomes hash_tag = \"{{}}\""));
            }
        }
    }
    out.warnings.append(&mut b.warnings);
    let hash_tag = proxies.iter().any(|p| p.hash_tagging);
    for (name, (timeout, _)) in &b.pools {
        let cluster = clusters.iter().find(|(c, _)| pool_name(c) == *name);
        let Some((cluster_name, info)) = cluster else { continue };
        let mut table = Table::new(format!("pools.{name}"));
        table.note_above(format!("Envoy cluster {cluster_name:?}."));
        let servers: Vec<Value> = info.endpoints.iter().map(|e| Value::from(format!("{e}:1"))).collect();
        table.set("servers", Value::Array(servers));
        table.set("protocol", "redis");
        if info.endpoints.len() > 1 {
            let note = format!(
                "Envoy placed keys with its {} over these hosts; ferrule uses ketama over fnv1a_64, so keys land \
                 on other servers than under Envoy (a cold cache for the moved keys).",
                info.lb_policy
            );
            table.set_noted("distribution", "ketama", Some(note));
            out.warnings
                .push(format!("pool {name:?}: Envoy's {} placement is not reproduced; keys move", info.lb_policy));
        }
        if hash_tag {
            table.set_noted("hash_tag", "{}", Some("settings.enable_hashtagging."));
        }
        if let Some(ms) = timeout {
            table.set_noted("timeout_ms", *ms as i64, Some("the listener's settings.op_timeout."));
        }
        if let Some(ms) = info.connect_timeout_ms {
            table.set_noted("connect_timeout_ms", ms as i64, Some("the cluster's connect_timeout."));
        }
        if let Some(auth) = &info.upstream_password {
            table.set_noted("redis_auth", auth.as_str(), Some("the cluster's redis_proxy auth_password."));
        }
        out.doc.pools.push(table);
    }
    if !b.not_executable.is_empty() {
        let kinds = b.not_executable.join(", ");
        out.doc.header(format!(
            "Route type(s) {kinds}: not executable in this build yet (ferrule's route model has them): \
             `ferrule -t` refuses this file until they are."
        ));
        out.warnings
            .push(format!("route type(s) {kinds}: not executable in this build yet; `ferrule -t` refuses them"));
    }
    out.doc.routes = b.routes;
    Ok(out.finish())
}

/// The pools and routes written so far, for all listeners.
struct Build<'c> {
    clusters: &'c BTreeMap<String, Cluster>,
    /// Pool name -> (op_timeout, the first listener using it), to spot listeners that disagree.
    pools: BTreeMap<String, (Option<u64>, String)>,
    taken: Vec<String>,
    routes: Vec<Table>,
    not_executable: Vec<&'static str>,
    warnings: Vec<String>,
    /// The listener being converted and its op_timeout.
    listener: String,
    timeout: Option<u64>,
}

impl Build<'_> {
    fn use_cluster(&mut self, cluster: &str, pos: Pos) -> Result<String, ImportError> {
        if !self.clusters.contains_key(cluster) {
            return Err(pos.error(format!("no cluster named {cluster:?} in static_resources.clusters")));
        }
        let name = pool_name(cluster);
        match self.pools.get(&name) {
            Some((timeout, other)) if *timeout != self.timeout => self.warnings.push(format!(
                "cluster {cluster:?} is used by listeners {other:?} and {:?} with different op_timeout; its pool \
                 keeps the first",
                self.listener
            )),
            Some(_) => {}
            None => {
                self.pools.insert(name.clone(), (self.timeout, self.listener.clone()));
            }
        }
        Ok(name)
    }

    fn fresh(&mut self, base: &str) -> String {
        let listener = &self.listener;
        let mut name = format!("{listener}_{base}");
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{listener}_{base}_{n}");
            n += 1;
        }
        self.taken.push(name.clone());
        name
    }

    /// A cluster, or a shadow route over it when it has mirrors (behind an operation route when only writes are
    /// mirrored).
    fn dest(&mut self, target: &Target) -> Result<String, ImportError> {
        let pool = self.use_cluster(&target.cluster, target.pos)?;
        if target.mirrors.is_empty() {
            return Ok(pool);
        }
        let mut shadows = Vec::new();
        for mirror in &target.mirrors {
            let mirror_pool = self.use_cluster(&mirror.cluster, target.pos)?;
            let mut t = toml::Table::new();
            t.insert("target".into(), Value::from(mirror_pool));
            if let Some(f) = mirror.fraction {
                t.insert("request_fraction".into(), Value::from(f));
            }
            shadows.push(Value::Table(t));
        }
        let name = self.fresh(&format!("{pool}_mirrored"));
        let mut shadow = Table::new(format!("routes.{name}"));
        shadow.note_above(format!("Envoy's request_mirror_policy on cluster {:?}.", target.cluster));
        note_executable(&mut shadow, "shadow", &mut self.not_executable);
        shadow.set("type", "shadow");
        shadow.set("child", pool.as_str());
        shadow.set("shadows", Value::Array(shadows));
        self.routes.push(shadow);
        if !target.mirrors.iter().all(|m| m.exclude_reads) {
            if target.mirrors.iter().any(|m| m.exclude_reads) {
                self.warnings.push(format!(
                    "cluster {:?}: mirrors with and without exclude_read_commands; every mirror gets reads too",
                    target.cluster
                ));
            }
            return Ok(name);
        }
        // exclude_read_commands: reads go to the cluster alone, writes through the mirror.
        let by_op = self.fresh(&format!("{pool}_writes_mirrored"));
        let mut op = Table::new(format!("routes.{by_op}"));
        op.note_above("exclude_read_commands: only writes are mirrored.");
        op.set("type", "operation");
        let ops: toml::Table =
            [("read".to_owned(), Value::from(pool.as_str())), ("write".to_owned(), Value::from(name))]
                .into_iter()
                .collect();
        op.set("operations", Value::Table(ops));
        self.routes.push(op);
        Ok(by_op)
    }
}

fn note_executable(table: &mut Table, kind: &'static str, kinds: &mut Vec<&'static str>) {
    if !EXECUTABLE_TYPES.contains(&kind) {
        table.note_above(format!(
            "Route type {kind:?} is in ferrule's route model but not executable in this build yet: `ferrule -t` \
             refuses this file until it is."
        ));
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
}

fn pool_name(cluster: &str) -> String {
    sanitized_name(cluster).unwrap_or_else(|| cluster.to_owned())
}

fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match node {
        Node::Map { entries, .. } => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
        _ => None,
    }
}

fn seq<'n>(node: Option<&'n Node>, what: &str) -> Result<&'n [Node], ImportError> {
    match node {
        None => Ok(&[]),
        Some(Node::Seq { items, .. }) => Ok(items),
        Some(other) => Err(other.pos().error(format!("{what}: expected a list, found {}", other.kind()))),
    }
}

fn scalar<'n>(node: &'n Node, key: &str, what: &str) -> Result<Option<&'n str>, ImportError> {
    get(node, key).map(|v| v.scalar(&format!("{what}.{key}"))).transpose()
}

/// An Envoy duration ("0.5s", "20ms" is not Envoy's; "1.5s" and {seconds, nanos}) in milliseconds.
fn duration_ms(node: &Node, what: &str) -> Result<u64, ImportError> {
    let bad = || node.pos().error(format!("{what}: expected a duration like \"0.5s\""));
    if let Node::Map { .. } = node {
        let secs: u64 = scalar(node, "seconds", what)?.unwrap_or("0").parse().map_err(|_| bad())?;
        let nanos: u64 = scalar(node, "nanos", what)?.unwrap_or("0").parse().map_err(|_| bad())?;
        return Ok(secs * 1000 + nanos / 1_000_000);
    }
    let text = node.scalar(what)?;
    let secs: f64 = text.strip_suffix('s').and_then(|s| s.parse().ok()).filter(|s: &f64| *s >= 0.0).ok_or_else(bad)?;
    Ok((secs * 1000.0).round() as u64)
}

/// A secret written inline (`inline_string`); a file or an SDS secret cannot be read here.
fn inline_secret(node: &Node, what: &str) -> Result<String, ImportError> {
    if let Some(s) = scalar(node, "inline_string", what)? {
        return Ok(s.to_owned());
    }
    Err(node.pos().error(format!(
        "{what}: only inline_string secrets are converted (a filename or environment variable cannot be read \
         here); write the password into the converted file yourself"
    )))
}

fn socket_address(node: &Node, what: &str) -> Result<String, ImportError> {
    let sa = get(node, "socket_address")
        .ok_or_else(|| node.pos().error(format!("{what}: only socket_address is converted")))?;
    let host = scalar(sa, "address", what)?.ok_or_else(|| sa.pos().error(format!("{what}: no address")))?;
    let port = scalar(sa, "port_value", what)?
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| sa.pos().error(format!("{what}: no valid port_value")))?;
    Ok(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

fn read_listener(listener: &Node) -> Result<Vec<Proxy>, ImportError> {
    let name = scalar(listener, "name", "listener")?.unwrap_or("redis").to_owned();
    let mut proxies = Vec::new();
    for chain in seq(get(listener, "filter_chains"), "filter_chains")? {
        for filter in seq(get(chain, "filters"), "filters")? {
            let filter_name = scalar(filter, "name", "filter")?.unwrap_or("");
            if !REDIS_PROXY_FILTERS.contains(&filter_name) {
                continue;
            }
            let address = socket_address(
                get(listener, "address").ok_or_else(|| listener.pos().error("listener has no address"))?,
                "listener address",
            )?;
            let config = get(filter, "typed_config")
                .or_else(|| get(filter, "config"))
                .ok_or_else(|| filter.pos().error("redis_proxy filter has no typed_config"))?;
            proxies.push(read_proxy(&name, address, config)?);
        }
    }
    if proxies.len() > 1 {
        return Err(listener.pos().error("a listener with more than one redis_proxy filter chain is not converted"));
    }
    Ok(proxies)
}

fn read_target(node: &Node, what: &str) -> Result<Target, ImportError> {
    let cluster = scalar(node, "cluster", what)?.ok_or_else(|| node.pos().error(format!("{what}: no cluster")))?;
    let mut mirrors = Vec::new();
    for mirror in seq(get(node, "request_mirror_policy"), "request_mirror_policy")? {
        let cluster = scalar(mirror, "cluster", "request_mirror_policy")?
            .ok_or_else(|| mirror.pos().error("request_mirror_policy: no cluster"))?;
        let exclude_reads = scalar(mirror, "exclude_read_commands", "request_mirror_policy")? == Some("true");
        let fraction = match get(mirror, "runtime_fraction").and_then(|r| get(r, "default_value")) {
            None => None,
            Some(value) => {
                let numerator: f64 =
                    scalar(value, "numerator", "runtime_fraction")?.unwrap_or("0").parse().unwrap_or(0.0);
                let denominator = match scalar(value, "denominator", "runtime_fraction")?.unwrap_or("HUNDRED") {
                    "HUNDRED" => 100.0,
                    "TEN_THOUSAND" => 10_000.0,
                    "MILLION" => 1_000_000.0,
                    other => return Err(value.pos().error(format!("runtime_fraction: unknown denominator {other}"))),
                };
                Some((numerator / denominator).clamp(0.0, 1.0))
            }
        };
        mirrors.push(Mirror { cluster: cluster.to_owned(), exclude_reads, fraction });
    }
    Ok(Target { cluster: cluster.to_owned(), mirrors, pos: node.pos() })
}

fn read_proxy(listener: &str, address: String, config: &Node) -> Result<Proxy, ImportError> {
    let Node::Map { entries, pos } = config else {
        return Err(config.pos().error("redis_proxy typed_config must be a mapping"));
    };
    let mut proxy = Proxy {
        listener: listener.to_owned(),
        address,
        pos: *pos,
        routes: Vec::new(),
        case_insensitive: false,
        catch_all: None,
        op_timeout_ms: None,
        password: None,
        username: None,
        hash_tagging: false,
    };
    for (key, key_pos, value) in entries {
        match key.as_str() {
            "@type" | "stat_prefix" => {}
            "settings" => {
                let Node::Map { entries, .. } = value else {
                    return Err(value.pos().error("settings: expected a mapping"));
                };
                for (k, _, v) in entries {
                    match k.as_str() {
                        "op_timeout" => proxy.op_timeout_ms = Some(duration_ms(v, "settings.op_timeout")?.max(1)),
                        "enable_hashtagging" => proxy.hash_tagging = v.scalar("enable_hashtagging")? == "true",
                        // ferrule batches writes itself (adaptive batching), and has no redirection (no cluster mode).
                        "max_buffer_size_before_flush" | "buffer_flush_timeout" | "enable_command_stats" => {}
                        "enable_redirection" if v.scalar(k)? == "false" => {}
                        other => {
                            return Err(v
                                .pos()
                                .error(format!("settings.{other} is not converted (no ferrule equivalent)")))
                        }
                    }
                }
            }
            "prefix_routes" => {
                let Node::Map { entries, .. } = value else {
                    return Err(value.pos().error("prefix_routes: expected a mapping"));
                };
                for (k, _, v) in entries {
                    match k.as_str() {
                        "case_insensitive" => proxy.case_insensitive = v.scalar(k)? == "true",
                        "catch_all_route" => proxy.catch_all = Some(read_target(v, "catch_all_route")?),
                        "catch_all_cluster" => {
                            let cluster = v.scalar(k)?.to_owned();
                            proxy.catch_all = Some(Target { cluster, mirrors: Vec::new(), pos: v.pos() });
                        }
                        "routes" => {
                            for route in seq(Some(v), "prefix_routes.routes")? {
                                let prefix = scalar(route, "prefix", "route")?.unwrap_or("").to_owned();
                                let remove_prefix = scalar(route, "remove_prefix", "route")? == Some("true");
                                if let Some(key) = get(route, "key_formatter") {
                                    return Err(key.pos().error("key_formatter is not converted"));
                                }
                                let target = read_target(route, "route")?;
                                proxy.routes.push(PrefixRoute { prefix, remove_prefix, target, pos: route.pos() });
                            }
                        }
                        other => return Err(v.pos().error(format!("prefix_routes.{other} is not converted"))),
                    }
                }
            }
            "cluster" => {
                // The deprecated single-cluster form.
                let cluster = value.scalar("cluster")?.to_owned();
                proxy.catch_all = Some(Target { cluster, mirrors: Vec::new(), pos: value.pos() });
            }
            "downstream_auth_password" => proxy.password = Some(inline_secret(value, key)?),
            "downstream_auth_passwords" => {
                let items = seq(Some(value), key)?;
                match items {
                    [one] => proxy.password = Some(inline_secret(one, key)?),
                    _ => return Err(key_pos.error("downstream_auth_passwords: ferrule's listener takes one password")),
                }
            }
            "downstream_auth_username" => proxy.username = Some(inline_secret(value, key)?),
            other => return Err(key_pos.error(format!("redis_proxy option `{other}` is not converted"))),
        }
    }
    Ok(proxy)
}

struct Cluster {
    endpoints: Vec<String>,
    lb_policy: String,
    connect_timeout_ms: Option<u64>,
    upstream_password: Option<String>,
}

fn read_clusters(resources: &Node) -> Result<BTreeMap<String, Cluster>, ImportError> {
    let mut clusters = BTreeMap::new();
    for cluster in seq(get(resources, "clusters"), "static_resources.clusters")? {
        let name = scalar(cluster, "name", "cluster")?.ok_or_else(|| cluster.pos().error("a cluster has no name"))?;
        if let Some(kind) = get(cluster, "cluster_type") {
            return Err(kind.pos().error(format!(
                "cluster {name:?}: a custom cluster_type (Redis Cluster discovery) is not converted; ferrule pools \
                 list their servers"
            )));
        }
        let lb_policy = match scalar(cluster, "lb_policy", "cluster")?.unwrap_or("ROUND_ROBIN") {
            "MAGLEV" => "Maglev table".to_owned(),
            "RING_HASH" => "ring hash".to_owned(),
            other => format!("{other} load balancer"),
        };
        let connect_timeout_ms =
            get(cluster, "connect_timeout").map(|d| duration_ms(d, "connect_timeout")).transpose()?.map(|ms| ms.max(1));
        let mut endpoints = Vec::new();
        let assignment = get(cluster, "load_assignment")
            .ok_or_else(|| cluster.pos().error(format!("cluster {name:?} has no load_assignment")))?;
        for locality in seq(get(assignment, "endpoints"), "load_assignment.endpoints")? {
            for lb in seq(get(locality, "lb_endpoints"), "lb_endpoints")? {
                let endpoint =
                    get(lb, "endpoint").ok_or_else(|| lb.pos().error("lb_endpoints entry has no endpoint"))?;
                let address =
                    get(endpoint, "address").ok_or_else(|| endpoint.pos().error("endpoint has no address"))?;
                endpoints.push(socket_address(address, "endpoint address")?);
            }
        }
        if endpoints.is_empty() {
            return Err(cluster.pos().error(format!("cluster {name:?} has no endpoints")));
        }
        let upstream_password = match get(cluster, "typed_extension_protocol_options")
            .and_then(|o| REDIS_PROXY_FILTERS.iter().find_map(|f| get(o, f)))
            .and_then(|o| get(o, "auth_password"))
        {
            Some(secret) => Some(inline_secret(secret, "auth_password")?),
            None => None,
        };
        clusters.insert(name.to_owned(), Cluster { endpoints, lb_policy, connect_timeout_ms, upstream_password });
    }
    Ok(clusters)
}

#[cfg(test)]
mod tests;
