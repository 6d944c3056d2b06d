//! mcrouter JSON -> ferrule TOML, for what needs no routes: the pools (servers, weights, server_timeout) and a
//! route that is a single pool (`"PoolRoute|A"`, `{"type": "PoolRoute", "pool": "A"}` or a pool's name). mcrouter
//! takes its port on the command line, so the listener's address is an option.
//!
//! Placement: a pool without `weights` uses `distribution = "ch3"` (mcrouter's default hash), or
//! `"mcrouter_crc32"` when the PoolRoute says `hash_func: Crc32`; a pool with `weights` uses `"weighted_ch3"`, each
//! weight written in parts per million. Servers keep mcrouter's order, which is what mcrouter's placement depends on.
//!
//! Every other route handle needs ferrule's routes (issue 13) and is refused by name, not approximated. When routes
//! exist, [`route_target`] is where route trees get converted.

use serde_json::Value as Json;
use toml::Value;

use super::toml_out::{sanitized_name, Table};
use super::{jsonc, Conversion, ImportError, Output};
use crate::hash::WEIGHT_PARTS_PER_UNIT;

/// The listener address when none is given: the port the guides' compose files give mcrouter.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McrouterOptions {
    /// mcrouter's `-p`: where clients connect. Default [`DEFAULT_LISTEN`].
    pub listen: Option<String>,
}

/// How a pool's keys are placed, from the route that uses it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HashFunc {
    Ch3,
    Crc32,
    WeightedCh3,
}

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
            "pools" | "route" | "routes" => {}
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
            "named_handles" => {
                return Err(ImportError::at(
                    locate("\"named_handles\""),
                    1,
                    "named_handles need ferrule routes (issue 13), not converted yet",
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
    let route = match (top.get("route"), top.get("routes")) {
        (Some(_), Some(_)) => {
            return Err(ImportError::at(locate("\"routes\""), 1, "both `route` and `routes`; mcrouter takes one"))
        }
        (Some(route), None) => route,
        (None, Some(Json::Array(routes))) if routes.len() == 1 => {
            out.warnings.push(
                "`routes` has one entry: its route serves every key; its aliases (routing prefixes) are not kept"
                    .to_owned(),
            );
            routes[0]
                .get("route")
                .ok_or_else(|| ImportError::at(locate("\"routes\""), 1, "routes[0] has no `route`"))?
        }
        (None, Some(_)) => {
            return Err(ImportError::at(
                locate("\"routes\""),
                1,
                "route `routes` (several routing prefixes) needs ferrule routes (issue 13), not converted yet",
            ))
        }
        (None, None) => return Err(ImportError::new("no `route` or `routes`: nothing would reach the pools")),
    };
    let (routed_pool, hash_func) = route_target(route, pools, &locate)?;

    out.doc.header("Converted from an mcrouter config by `ferrule convert --from mcrouter`.");
    out.doc.header("Check it with `ferrule -t -c <this file>`; docs/migration.md explains the differences.");
    out.doc.proxy.note(
        "mcrouter's --num-proxies threads become ferrule's workers: one per CPU by default (workers = \"auto\").",
    );
    let listen = options.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let routed_name = sanitized_name(&routed_pool).unwrap_or_else(|| routed_pool.clone());
    let mut listener = Table::new("listeners.mcrouter");
    listener.note_above("mcrouter's port (its -p); set with --listen when converting.");
    listener.set("listen", listen);
    listener.set("protocol", "memcache");
    listener.set("route", routed_name.as_str());
    out.doc.listeners.push(listener);

    for (name, pool) in pools {
        let routed = *name == routed_pool;
        let func = if routed { hash_func } else { None };
        let table = convert_pool(&mut out, name, pool, func, routed, &locate)?;
        out.doc.pools.push(table);
    }
    Ok(out.finish())
}

/// The pool a route sends every key to, with the hash function it names; an error for anything that needs routes.
fn route_target(
    route: &Json,
    pools: &serde_json::Map<String, Json>,
    locate: &dyn Fn(&str) -> usize,
) -> Result<(String, Option<HashFunc>), ImportError> {
    let needs_routes = |what: &str| {
        ImportError::at(locate(what), 1, format!("route {what} needs ferrule routes (issue 13), not converted yet"))
    };
    match route {
        Json::String(s) => {
            if let Some(pool) = s.strip_prefix("PoolRoute|") {
                return known_pool(pool, pools, locate).map(|p| (p, None));
            }
            if pools.contains_key(s.as_str()) {
                return Ok((s.clone(), None));
            }
            Err(needs_routes(s))
        }
        Json::Object(obj) => {
            let kind = obj.get("type").and_then(Json::as_str).unwrap_or("");
            if kind != "PoolRoute" {
                return Err(needs_routes(if kind.is_empty() { "without a type" } else { kind }));
            }
            for key in obj.keys() {
                match key.as_str() {
                    "type" | "pool" | "hash" => {}
                    "shadows" => return Err(needs_routes("PoolRoute with shadows")),
                    other => {
                        return Err(ImportError::at(
                            locate(&format!("\"{other}\"")),
                            1,
                            format!("PoolRoute option `{other}` is not converted"),
                        ))
                    }
                }
            }
            let pool = match obj.get("pool") {
                Some(Json::String(name)) => known_pool(name, pools, locate)?,
                Some(_) => {
                    return Err(ImportError::at(
                        locate("\"pool\""),
                        1,
                        "an inline pool in PoolRoute: name the pool in `pools` instead",
                    ))
                }
                None => return Err(ImportError::at(locate("PoolRoute"), 1, "PoolRoute has no `pool`")),
            };
            let hash = match obj.get("hash") {
                None => None,
                Some(Json::String(name)) => Some(parse_hash_func(name, locate)?),
                Some(Json::Object(h)) => {
                    if h.contains_key("salt") {
                        return Err(ImportError::at(
                            locate("\"salt\""),
                            1,
                            "a hash `salt` is not supported by ferrule",
                        ));
                    }
                    match h.get("hash_func").and_then(Json::as_str) {
                        Some(name) => Some(parse_hash_func(name, locate)?),
                        None => None,
                    }
                }
                Some(_) => return Err(ImportError::at(locate("\"hash\""), 1, "`hash` must be a name or an object")),
            };
            Ok((pool, hash))
        }
        _ => Err(ImportError::at(locate("\"route\""), 1, "a route is a string or an object")),
    }
}

fn known_pool(
    name: &str,
    pools: &serde_json::Map<String, Json>,
    locate: &dyn Fn(&str) -> usize,
) -> Result<String, ImportError> {
    if pools.contains_key(name) {
        Ok(name.to_owned())
    } else {
        let known: Vec<&str> = pools.keys().map(String::as_str).collect();
        Err(ImportError::at(locate(name), 1, format!("no pool named {name:?}; pools: {}", known.join(", "))))
    }
}

fn parse_hash_func(name: &str, locate: &dyn Fn(&str) -> usize) -> Result<HashFunc, ImportError> {
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
                "keep_routing_prefix: {value}: ferrule does not understand routing prefixes yet; keys are sent as the \
                 client wrote them."
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

#[cfg(test)]
mod tests;
