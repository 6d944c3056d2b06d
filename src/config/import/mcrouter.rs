//! mcrouter JSON -> ferrule TOML: the pools (servers, weights, server_timeout), the route tree (`route`, or
//! `routes` with routing-prefix aliases, and named handles) as `[routes.*]` tables (mcrouter/routes.rs). mcrouter
//! takes its port and its default routing prefix on the command line, so those are options.
//!
//! Placement: a pool without `weights` uses `distribution = "ch3"` (mcrouter's default hash), or
//! `"mcrouter_crc32"` when the PoolRoute says `hash_func: Crc32`; a pool with `weights` uses `"weighted_ch3"`, each
//! weight written in parts per million. Servers keep mcrouter's order, which is what mcrouter's placement depends on.
//!
//! mcrouter's hash stop (`|#|`: the rest of the key is not hashed) is part of ferrule's mcrouter distributions.
//! A handle ferrule has no equivalent for is refused by name, not approximated.

use std::collections::HashMap;

use serde_json::Value as Json;
use toml::Value;

use routes::Routes;

use super::toml_out::{sanitized_name, Table};
use super::{jsonc, Conversion, ImportError, Output};
use crate::hash::WEIGHT_PARTS_PER_UNIT;

/// The listener address when none is given: the port the guides' compose files give mcrouter.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McrouterOptions {
    /// mcrouter's `-p`: where clients connect. Default [`DEFAULT_LISTEN`].
    pub listen: Option<String>,
    /// mcrouter's `-R`: the routing prefix of keys that carry none. Default [`DEFAULT_ROUTE_PREFIX`].
    pub route_prefix: Option<String>,
}

/// How a pool's keys are placed, from the route that uses it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum HashFunc {
    Ch3,
    Crc32,
    WeightedCh3,
}

/// mcrouter's default route prefix (its `-R` / default_route): where keys without a routing prefix go.
pub const DEFAULT_ROUTE_PREFIX: &str = "/././";

/// Converts an mcrouter config.
pub fn convert(text: &str, options: &McrouterOptions) -> Result<Conversion, ImportError> {
    let (root, hash_lines) = jsonc::parse(text)?;
    let mut out = Output::new();
    for line in hash_lines {
        out.warnings.push(format!(
            "line {line}: a `#` comment: mcrouter itself refuses these (it reads // and /* */); accepted here"
        ));
    }
    let Json::Object(top) = &root else {
        return Err(ImportError::at(1, 1, "expected a JSON object with `pools` and `route` or `routes`"));
    };
    let locate = |needle: &str| line_of(text, needle);
    for key in top.keys() {
        match key.as_str() {
            "pools" | "route" | "routes" | "named_handles" => {}
            "macros" | "import" => {
                return Err(ImportError::at(
                    locate(&format!("\"{key}\"")),
                    1,
                    format!(
                        "`{key}`: mcrouter's macro language is not converted; convert mcrouter's preprocessed \
                         config (with macros expanded) instead"
                    ),
                ))
            }
            other => {
                return Err(ImportError::at(
                    locate(&format!("\"{other}\"")),
                    1,
                    format!("unknown top-level key `{other}`; mcrouter's are pools, route, routes, named_handles"),
                ))
            }
        }
    }
    if text.contains("\"@") {
        return Err(ImportError::at(
            locate("\"@"),
            1,
            "an `@` macro call: mcrouter's macro language is not converted; convert the preprocessed config instead",
        ));
    }
    let pools = match top.get("pools") {
        Some(Json::Object(pools)) => pools,
        Some(_) => return Err(ImportError::at(locate("\"pools\""), 1, "`pools` must be an object of pools by name")),
        None => return Err(ImportError::new("no `pools`: an mcrouter config needs at least one pool")),
    };
    let mut pool_names = HashMap::new();
    for name in pools.keys() {
        let ferrule = sanitized_name(name).unwrap_or_else(|| name.clone());
        if pool_names.values().any(|n| *n == ferrule) {
            return Err(ImportError::at(
                locate(&format!("\"{name}\"")),
                1,
                format!("pool {name:?} becomes {ferrule:?} in ferrule, which another pool already uses; rename one"),
            ));
        }
        pool_names.insert(name.clone(), ferrule);
    }
    let mut routes = Routes::new(pools, &pool_names, &locate);
    if let Some(handles) = top.get("named_handles") {
        routes.add_named_handles(handles)?;
    }
    let (root_dest, prefix_notes) = match (top.get("route"), top.get("routes")) {
        (Some(_), Some(_)) => {
            return Err(ImportError::at(locate("\"routes\""), 1, "both `route` and `routes`; mcrouter takes one"))
        }
        (Some(route), None) => {
            routes.collect_named(route)?;
            (routes.one(route, "route")?, Vec::new())
        }
        (None, Some(list)) => {
            routes.collect_named(list)?;
            routing_prefixes(&mut routes, list, options, &locate)?
        }
        (None, None) => return Err(ImportError::new("no `route` or `routes`: nothing would reach the pools")),
    };
    out.warnings.append(&mut routes.warnings);

    out.doc.header("Converted from an mcrouter config by `ferrule convert --from mcrouter`.");
    out.doc.header("Check it with `ferrule -t -c <this file>`; docs/migration.md explains the differences.");
    if !routes.not_executable.is_empty() {
        let kinds = routes.not_executable.join(", ");
        out.doc.header(format!(
            "Route type(s) {kinds}: not executable in this build yet (ferrule's route model has them): \
             `ferrule -t` refuses this file until they are."
        ));
        out.warnings
            .push(format!("route type(s) {kinds}: not executable in this build yet; `ferrule -t` refuses them"));
    }
    out.doc.proxy.note(
        "mcrouter's --num-proxies threads become ferrule's workers: one per CPU by default (workers = \"auto\").",
    );
    let listen = options.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let mut listener = Table::new("listeners.mcrouter");
    listener.note_above("mcrouter's port (its -p); set with --listen when converting.");
    for note in prefix_notes {
        listener.note_above(note);
    }
    listener.set("listen", listen);
    listener.set("protocol", "memcache");
    listener.set("route", root_dest.as_str());
    out.doc.listeners.push(listener);

    for (name, pool) in pools {
        let hashed = routes.pool_hash.get(name).copied();
        let routed = hashed.is_some() || routes.pools_listed.contains(name);
        let table = convert_pool(&mut out, name, pool, hashed.flatten(), routed, &locate)?;
        out.doc.pools.push(table);
    }
    out.doc.routes = std::mem::take(&mut routes.tables);
    Ok(out.finish())
}

/// `routes`: each entry's `aliases` are routing prefixes (`/region/cluster/`) selecting its route; keys without one
/// go to the entry whose aliases hold mcrouter's default route prefix. Returns the listener's destination and notes
/// for the listener.
fn routing_prefixes(
    routes: &mut Routes<'_>,
    list: &Json,
    options: &McrouterOptions,
    locate: &dyn Fn(&str) -> usize,
) -> Result<(String, Vec<String>), ImportError> {
    let Json::Array(entries) = list else {
        return Err(ImportError::at(locate("\"routes\""), 1, "`routes` must be a list of {aliases, route}"));
    };
    let default_prefix = options.route_prefix.clone().unwrap_or_else(|| DEFAULT_ROUTE_PREFIX.to_owned());
    let mut by_alias: Vec<(String, String)> = Vec::new();
    let mut default = None;
    for (index, entry) in entries.iter().enumerate() {
        let route = entry
            .get("route")
            .ok_or_else(|| ImportError::at(locate("\"routes\""), 1, format!("routes[{index}] has no `route`")))?;
        let dest = routes.one(route, &format!("routes[{index}]"))?;
        let aliases = match entry.get("aliases") {
            Some(Json::Array(a)) => a.iter().map(|x| x.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>(),
            _ => None,
        }
        .ok_or_else(|| {
            ImportError::at(locate("\"aliases\""), 1, format!("routes[{index}]: `aliases` must list routing prefixes"))
        })?;
        for alias in aliases {
            let parts: Vec<&str> = alias.split('/').collect();
            if parts.len() != 4 || !parts[0].is_empty() || !parts[3].is_empty() || alias.contains('*') {
                return Err(ImportError::at(
                    locate(&alias),
                    1,
                    format!("routes[{index}]: alias {alias:?} is not a routing prefix /region/cluster/ (wildcards are not converted)"),
                ));
            }
            if alias == default_prefix {
                default = Some(dest.clone());
            }
            if by_alias.iter().any(|(a, _)| *a == alias) {
                return Err(ImportError::at(locate(&alias), 1, format!("alias {alias:?} is listed twice")));
            }
            by_alias.push((alias, dest.clone()));
        }
    }
    let default = match default {
        Some(d) => d,
        None if entries.len() == 1 && !by_alias.is_empty() => {
            routes.warnings.push(format!(
                "`routes` has one entry and no alias is mcrouter's default route prefix {default_prefix}: its route \
                 serves keys without a routing prefix (give --route-prefix, mcrouter's -R, to say so)"
            ));
            by_alias[0].1.clone()
        }
        None => {
            return Err(ImportError::at(
                locate("\"routes\""),
                1,
                format!(
                    "keys without a routing prefix go to mcrouter's default route prefix {default_prefix} (its -R), \
                     which no alias names; convert with --route-prefix set to the -R mcrouter runs with"
                ),
            ))
        }
    };
    let notes = vec![
        "mcrouter's routing prefixes: a key /region/cluster/rest goes to the route of its alias; other keys go to \
         the default route prefix's. mcrouter strips the prefix before forwarding; ferrule cannot strip prefixes \
         of memcache keys yet, so prefixed keys reach memcached whole (unlike mcrouter's, unless the pool had \
         keep_routing_prefix), and a prefix no alias names goes to the default route instead of an error."
            .to_owned(),
    ];
    if by_alias.iter().all(|(_, d)| *d == default) {
        return Ok((default, notes));
    }
    routes.warnings.push(
        "routing prefixes: keys with a /region/cluster/ prefix reach memcached with it (ferrule does not strip \
         memcache key prefixes yet)"
            .to_owned(),
    );
    let mut prefixes = toml::Table::new();
    for (alias, dest) in by_alias {
        prefixes.insert(alias, Value::from(dest));
    }
    let mut table = Table::new("");
    table.set("type", "prefix");
    table.set("prefixes", Value::Table(prefixes));
    table.set("default", default);
    Ok((routes.emit_table("routing_prefix", "prefix", table), notes))
}

pub(super) fn parse_hash_func(name: &str, locate: &dyn Fn(&str) -> usize) -> Result<HashFunc, ImportError> {
    match name {
        "Ch3" => Ok(HashFunc::Ch3),
        "Crc32" => Ok(HashFunc::Crc32),
        "WeightedCh3" => Ok(HashFunc::WeightedCh3),
        other => Err(ImportError::at(
            locate(other),
            1,
            format!("hash function {other:?} is not supported; ferrule has Ch3, Crc32 and WeightedCh3"),
        )),
    }
}

fn convert_pool(
    out: &mut Output,
    name: &str,
    pool: &Json,
    hash_func: Option<HashFunc>,
    routed: bool,
    locate: &dyn Fn(&str) -> usize,
) -> Result<Table, ImportError> {
    let at = || locate(&format!("\"{name}\""));
    let Json::Object(obj) = pool else {
        return Err(ImportError::at(at(), 1, format!("pool {name:?} must be an object with `servers`")));
    };
    let ferrule_name = sanitized_name(name).unwrap_or_else(|| name.to_owned());
    let mut table = Table::new(format!("pools.{ferrule_name}"));
    table.note_above(format!("mcrouter pool {name:?}."));
    if ferrule_name != name {
        out.warnings.push(format!("pool {name:?} is called {ferrule_name:?} in ferrule"));
    }
    let Some(Json::Array(servers)) = obj.get("servers") else {
        return Err(ImportError::at(at(), 1, format!("pool {name:?} has no `servers` list")));
    };
    let weights: Option<Vec<f64>> = match obj.get("weights") {
        None => None,
        Some(Json::Array(w)) => Some(
            w.iter().map(|x| x.as_f64().filter(|v| (0.0..=1.0).contains(v))).collect::<Option<Vec<f64>>>().ok_or_else(
                || ImportError::at(at(), 1, format!("pool {name:?}: weights must be numbers from 0 to 1")),
            )?,
        ),
        Some(_) => return Err(ImportError::at(at(), 1, format!("pool {name:?}: `weights` must be a list"))),
    };
    let func = match (hash_func, &weights) {
        (Some(HashFunc::WeightedCh3) | None, Some(_)) => HashFunc::WeightedCh3,
        (Some(HashFunc::WeightedCh3), None) => {
            return Err(ImportError::at(at(), 1, format!("pool {name:?}: WeightedCh3 needs the pool's `weights`")))
        }
        (Some(func), _) => func,
        (None, None) => HashFunc::Ch3,
    };
    let mut specs = Vec::with_capacity(servers.len());
    for (index, server) in servers.iter().enumerate() {
        let Some(spec) = server.as_str() else {
            return Err(ImportError::at(at(), 1, format!("pool {name:?}: servers[{index}] is not a string")));
        };
        let address = server_address(spec).map_err(|why| {
            ImportError::at(locate(spec), 1, format!("pool {name:?}: servers[{index}] {spec:?}: {why}"))
        })?;
        let weight = match (&weights, func) {
            // mcrouter sets missing weights to 0.5 (and logs that the config is broken).
            (Some(w), HashFunc::WeightedCh3) => weight_ppm(out, name, index, w.get(index).copied().unwrap_or(0.5)),
            _ => 1,
        };
        specs.push(Value::from(format!("{address}:{weight}")));
    }
    if let Some(w) = &weights {
        if w.len() < servers.len() {
            out.warnings.push(format!(
                "pool {name:?}: fewer weights than servers; the missing ones are 0.5, as mcrouter sets them"
            ));
        }
    }
    table.set("servers", Value::Array(specs));
    if !routed {
        table.set_noted("protocol", "memcache", Some("No route reaches this pool in the mcrouter config."));
        out.warnings.push(format!("pool {name:?}: no route reaches it; converted but idle"));
    }
    let distribution = match func {
        HashFunc::Ch3 => "ch3",
        HashFunc::Crc32 => "mcrouter_crc32",
        HashFunc::WeightedCh3 => "weighted_ch3",
    };
    let note = match func {
        HashFunc::WeightedCh3 => Some("mcrouter's WeightedCh3; each server's weight is mcrouter's weight x 1000000."),
        _ => None,
    };
    table.set_noted("distribution", distribution, note);
    for (key, value) in obj {
        match key.as_str() {
            "servers" | "weights" => {}
            "server_timeout" => match value.as_u64().filter(|&ms| ms > 0) {
                Some(ms) => table.set_noted("timeout_ms", ms as i64, Some("mcrouter's server_timeout.")),
                None => {
                    return Err(ImportError::at(
                        locate("\"server_timeout\""),
                        1,
                        format!("pool {name:?}: server_timeout must be milliseconds"),
                    ))
                }
            },
            "protocol" if value.as_str() == Some("ascii") => {}
            "keep_routing_prefix" => table.note(format!(
                "keep_routing_prefix: {value}: ferrule sends keys as the client wrote them, routing prefix included \
                 (it cannot strip memcache key prefixes yet), which is what keep_routing_prefix: true does."
            )),
            other => {
                return Err(ImportError::at(
                    locate(&format!("\"{other}\"")),
                    1,
                    format!("pool {name:?}: `{other}` = {value} is not converted"),
                ))
            }
        }
    }
    Ok(table)
}

/// `host:port` from an mcrouter server string (`host:port`, `[v6]:port`, optionally `:ascii` and `:plain`).
fn server_address(spec: &str) -> Result<String, String> {
    let (host, rest) = match spec.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or("no closing ']'")?;
            (format!("[{host}]"), rest.strip_prefix(':').ok_or("no port after ']'")?)
        }
        None => {
            let (host, rest) = spec.split_once(':').ok_or("no port")?;
            (host.to_owned(), rest)
        }
    };
    let mut parts = rest.split(':');
    let port = parts.next().filter(|p| p.parse::<u16>().is_ok_and(|p| p > 0)).ok_or("no valid port")?;
    for part in parts {
        match part {
            "ascii" | "plain" => {}
            other => return Err(format!("`{other}` is not supported (ferrule speaks ASCII memcache, without TLS)")),
        }
    }
    Ok(format!("{host}:{port}"))
}

/// An mcrouter weight in parts per million, with a warning when that rounds it.
fn weight_ppm(out: &mut Output, pool: &str, index: usize, weight: f64) -> u32 {
    let ppm = (weight * f64::from(WEIGHT_PARTS_PER_UNIT)).round();
    if ppm / f64::from(WEIGHT_PARTS_PER_UNIT) != weight {
        out.warnings.push(format!(
            "pool {pool:?}: servers[{index}] weight {weight} is rounded to {ppm} millionths; a few keys may move"
        ));
    }
    ppm as u32
}

/// The 1-based line of the first `needle` in `text` (1 when absent), to point errors at.
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(1, |at| text[..at].matches('\n').count() + 1)
}

mod routes;
#[cfg(test)]
mod tests;
