//! mcrouter route handles -> ferrule `[routes.*]` tables.
//!
//! A route is a JSON object with a `type`, a short string (`"PoolRoute|A"`, `"AllSyncRoute|Pool|A"`,
//! `"ErrorRoute|msg"`, `"NullRoute"`), a pool's name, or the name of a named handle (an object with a `name`, in
//! `named_handles` or anywhere in the tree). Each handle becomes one ferrule route; identical handles (the same
//! short string used for `set`, `add` and `delete`) become one. `"Pool|A"`, the list of pool A's servers, becomes
//! ferrule's `"A/*"`. mcrouter's collapsing of degenerate trees is kept (an AllSyncRoute over one child is that
//! child), so the converted tree is the tree mcrouter runs.
//!
//! Placement: a PoolRoute is the pool itself (its hash decides the pool's distribution); a HashRoute over
//! `Pool|A` with Ch3 is pool A too, since that is exactly where mcrouter's HashRoute puts keys. Any other HashRoute
//! becomes ferrule's `hash` route, which spreads keys with a different function (said in a comment and a warning).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value as Json};
use toml::Value;

use super::HashFunc;
use crate::config::import::toml_out::{sanitized_name, Table};
use crate::config::import::ImportError;
use crate::config::{FailureClass, DEFAULT_ERROR_MESSAGE, EXECUTABLE_TYPES, MEMCACHE_OPERATIONS};

/// mcrouter's LatestRoute tries this many children unless `failover_count` says otherwise.
const LATEST_DEFAULT_FAILOVER_COUNT: usize = 5;
/// mcrouter's MigrateRoute `interval` default, in seconds.
const MIGRATE_DEFAULT_INTERVAL_S: u64 = 3600;

/// mcrouter operation names that ferrule does not route (it answers them itself or refuses them): dropped with a
/// warning.
const UNROUTED_OPERATIONS: &[&str] =
    &["metaget", "lease-get", "lease-set", "flushall", "flush_all", "version", "stats", "quit", "exec", "echo"];

pub(super) struct Routes<'a> {
    pools: &'a Map<String, Json>,
    /// mcrouter pool name -> ferrule pool name.
    pool_names: &'a HashMap<String, String>,
    /// Named handles not yet converted, by name.
    named: HashMap<String, Json>,
    /// Named handles converted: mcrouter name -> ferrule destination.
    named_done: HashMap<String, String>,
    /// Named handles being converted (a name that refers back to itself is a cycle).
    in_progress: Vec<String>,
    /// Canonical JSON of a converted anonymous handle -> its ferrule destination.
    memo: HashMap<String, String>,
    /// Names already given to pools and routes.
    taken: Vec<String>,
    pub tables: Vec<Table>,
    /// Pools reached by a PoolRoute, with the hash function that route names (None: the default).
    pub pool_hash: BTreeMap<String, Option<HashFunc>>,
    /// Pools reached through `Pool|A` (every server) only need no hash.
    pub pools_listed: Vec<String>,
    pub warnings: Vec<String>,
    /// Route types written that this build cannot execute yet.
    pub not_executable: Vec<&'static str>,
    locate: &'a dyn Fn(&str) -> usize,
}

/// What a handle converts to: a destination name (pool or route), or a list of children (from `Pool|A`).
enum Converted {
    One(String),
    Many(Vec<String>),
}

impl<'a> Routes<'a> {
    pub fn new(
        pools: &'a Map<String, Json>,
        pool_names: &'a HashMap<String, String>,
        locate: &'a dyn Fn(&str) -> usize,
    ) -> Routes<'a> {
        Routes {
            pools,
            pool_names,
            named: HashMap::new(),
            named_done: HashMap::new(),
            in_progress: Vec::new(),
            memo: HashMap::new(),
            taken: pool_names.values().cloned().collect(),
            tables: Vec::new(),
            pool_hash: BTreeMap::new(),
            pools_listed: Vec::new(),
            warnings: Vec::new(),
            not_executable: Vec::new(),
            locate,
        }
    }

    fn err(&self, needle: &str, message: impl Into<String>) -> ImportError {
        ImportError::at((self.locate)(needle), 1, message)
    }

    /// Registers `named_handles` (a list of objects with `name`, or an object of name -> handle).
    pub fn add_named_handles(&mut self, handles: &Json) -> Result<(), ImportError> {
        let entries: Vec<(String, Json)> = match handles {
            Json::Array(items) => items
                .iter()
                .map(|h| match h.get("name").and_then(Json::as_str) {
                    Some(name) => Ok((name.to_owned(), h.clone())),
                    None => Err(self.err("\"named_handles\"", "every entry of named_handles needs a `name`")),
                })
                .collect::<Result<_, _>>()?,
            Json::Object(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => return Err(self.err("\"named_handles\"", "named_handles must be a list of named route handles")),
        };
        for (name, handle) in entries {
            self.collect_named(&handle)?;
            self.named.insert(name, handle);
        }
        Ok(())
    }

    /// Every object with a `name` inside `route` can be referred to by that name from anywhere in the config.
    pub fn collect_named(&mut self, route: &Json) -> Result<(), ImportError> {
        match route {
            Json::Object(obj) => {
                if let (Some(Json::String(name)), Some(_)) = (obj.get("name"), obj.get("type")) {
                    if self.named.get(name).is_some_and(|h| h != route) {
                        return Err(self.err(name, format!("two different route handles are named {name:?}")));
                    }
                    self.named.insert(name.clone(), route.clone());
                }
                for value in obj.values() {
                    self.collect_named(value)?;
                }
            }
            Json::Array(items) => {
                for item in items {
                    self.collect_named(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A handle that must be one destination.
    pub fn one(&mut self, route: &Json, what: &str) -> Result<String, ImportError> {
        match self.convert(route)? {
            Converted::One(dest) => Ok(dest),
            Converted::Many(list) => match list.as_slice() {
                [single] if self.expanded_len(&list) == 1 => Ok(self.single_of(single)),
                _ => Err(self.err(
                    &short(route),
                    format!("{what}: {} is a list of servers where one route is expected", short(route)),
                )),
            },
        }
    }

    /// How many children a list is once `A/*` is expanded to pool A's servers.
    fn expanded_len(&self, children: &[String]) -> usize {
        children
            .iter()
            .map(|c| match c.strip_suffix("/*") {
                Some(pool) => self
                    .pool_names
                    .iter()
                    .find(|(_, f)| f.as_str() == pool)
                    .and_then(|(m, _)| self.pools.get(m))
                    .and_then(|p| p.get("servers"))
                    .and_then(Json::as_array)
                    .map_or(1, Vec::len),
                None => 1,
            })
            .sum()
    }

    /// `A/*` of a one-server pool as one destination is the pool itself.
    fn single_of(&self, child: &str) -> String {
        child.strip_suffix("/*").unwrap_or(child).to_owned()
    }

    /// A `children` value: a list of handles, or `Pool|A`.
    fn list(&mut self, value: &Json, what: &str) -> Result<Vec<String>, ImportError> {
        let mut out = Vec::new();
        match value {
            Json::Array(items) => {
                for item in items {
                    match self.convert(item)? {
                        Converted::One(dest) => out.push(dest),
                        Converted::Many(list) => out.extend(list),
                    }
                }
            }
            other => match self.convert(other)? {
                Converted::One(dest) => out.push(dest),
                Converted::Many(list) => out.extend(list),
            },
        }
        let mut seen = Vec::new();
        for child in &out {
            if seen.contains(child) {
                return Err(self.err(&short(value), format!("{what}: {child:?} is listed twice")));
            }
            seen.push(child.clone());
        }
        Ok(out)
    }

    fn convert(&mut self, route: &Json) -> Result<Converted, ImportError> {
        match route {
            Json::String(s) => self.convert_string(s),
            Json::Object(obj) => {
                if let Some(Json::String(name)) = obj.get("name") {
                    return self.named_handle(name).map(Converted::One);
                }
                self.convert_object(obj, None).map(Converted::One)
            }
            Json::Array(_) => Err(self.err(&short(route), "a list of routes where one route is expected")),
            _ => Err(self.err(&short(route), format!("{route} is not a route handle"))),
        }
    }

    fn convert_string(&mut self, s: &str) -> Result<Converted, ImportError> {
        if let Some((kind, rest)) = s.split_once('|') {
            return match kind {
                "Pool" => {
                    let pool = self.pool(rest)?;
                    if !self.pools_listed.contains(&rest.to_owned()) {
                        self.pools_listed.push(rest.to_owned());
                    }
                    Ok(Converted::Many(vec![format!("{pool}/*")]))
                }
                "PoolRoute" => self.pool_route(rest, None).map(Converted::One),
                "ErrorRoute" => {
                    let obj: Map<String, Json> =
                        [("type".to_owned(), Json::from("ErrorRoute")), ("response".to_owned(), Json::from(rest))]
                            .into_iter()
                            .collect();
                    self.convert_object(&obj, None).map(Converted::One)
                }
                _ => {
                    // "AllSyncRoute|Pool|A": the rest is the handle's children.
                    let obj: Map<String, Json> =
                        [("type".to_owned(), Json::from(kind)), ("children".to_owned(), Json::from(rest))]
                            .into_iter()
                            .collect();
                    self.convert_object(&obj, None).map(Converted::One)
                }
            };
        }
        match s {
            "NullRoute" | "DevNullRoute" | "ErrorRoute" => {
                let obj: Map<String, Json> = [("type".to_owned(), Json::from(s))].into_iter().collect();
                self.convert_object(&obj, None).map(Converted::One)
            }
            _ if self.pools.contains_key(s) => self.pool_route(s, None).map(Converted::One),
            _ if self.named.contains_key(s) || self.named_done.contains_key(s) => {
                self.named_handle(s).map(Converted::One)
            }
            _ => Err(self.err(
                s,
                format!("{s:?} is neither a pool, a named handle nor a route (\"Type|...\" or an object with a type)"),
            )),
        }
    }

    fn named_handle(&mut self, name: &str) -> Result<String, ImportError> {
        if let Some(done) = self.named_done.get(name) {
            return Ok(done.clone());
        }
        if self.in_progress.iter().any(|n| n == name) {
            return Err(self.err(name, format!("named handle {name:?} refers to itself")));
        }
        let Some(Json::Object(obj)) = self.named.get(name).cloned() else {
            return Err(self.err(name, format!("no named handle {name:?}")));
        };
        self.in_progress.push(name.to_owned());
        let dest = self.convert_object(&obj, Some(name));
        self.in_progress.pop();
        let dest = dest?;
        self.named_done.insert(name.to_owned(), dest.clone());
        Ok(dest)
    }

    fn pool(&self, name: &str) -> Result<String, ImportError> {
        match self.pool_names.get(name) {
            Some(ferrule) => Ok(ferrule.clone()),
            None => {
                let mut known: Vec<&str> = self.pools.keys().map(String::as_str).collect();
                known.sort_unstable();
                Err(self.err(name, format!("no pool named {name:?}; pools: {}", known.join(", "))))
            }
        }
    }

    /// A PoolRoute: the pool, hashed as the route says (one pool, one hash function).
    fn pool_route(&mut self, name: &str, hash: Option<HashFunc>) -> Result<String, ImportError> {
        let pool = self.pool(name)?;
        let hash = hash.filter(|&h| h != HashFunc::Ch3);
        match self.pool_hash.get(name) {
            Some(before) if *before != hash => {
                return Err(self.err(
                    name,
                    format!(
                        "pool {name:?} is reached by PoolRoutes with different hash functions; ferrule gives a pool \
                         one distribution: define a second pool with the same servers"
                    ),
                ))
            }
            _ => {
                self.pool_hash.insert(name.to_owned(), hash);
            }
        }
        Ok(pool)
    }

    /// A fresh route name from `base` (a named handle's name, or the kind).
    fn fresh_name(&mut self, base: &str) -> String {
        let base = sanitized_name(base).unwrap_or_else(|| base.to_owned());
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.taken.push(name.clone());
        name
    }

    /// Writes a route table (unless an identical anonymous one exists) and returns its name.
    fn emit(&mut self, key: Option<String>, base: &str, kind: &'static str, mut table: Table) -> String {
        if let Some(existing) = key.as_ref().and_then(|k| self.memo.get(k)) {
            return existing.clone();
        }
        let name = self.fresh_name(base);
        table.set_path(format!("routes.{name}"));
        if !EXECUTABLE_TYPES.contains(&kind) {
            table.note_above(format!(
                "Route type {kind:?} is in ferrule's route model but not executable in this build yet: \
                 `ferrule -t` refuses this file until it is."
            ));
            if !self.not_executable.contains(&kind) {
                self.not_executable.push(kind);
            }
        }
        self.tables.push(table);
        if let Some(k) = key {
            self.memo.insert(k, name.clone());
        }
        name
    }

    fn convert_object(&mut self, obj: &Map<String, Json>, name: Option<&str>) -> Result<String, ImportError> {
        let kind = match obj.get("type") {
            Some(Json::String(kind)) => kind.as_str(),
            _ => return Err(self.err("\"type\"", "a route object needs a `type` (e.g. \"PoolRoute\")")),
        };
        // Anonymous handles are shared when identical; named ones keep their own table.
        let memo_key = match name {
            None => Some(serde_json::to_string(obj).unwrap_or_default()),
            Some(_) => None,
        };
        if let Some(done) = memo_key.as_ref().and_then(|k| self.memo.get(k)) {
            return Ok(done.clone());
        }
        let base = name.map(str::to_owned);
        let locate = self.locate;
        let err = |needle: &str, message: String| ImportError::at(locate(needle), 1, message);
        let allowed = |keys: &[&str]| -> Result<(), ImportError> {
            for key in obj.keys() {
                if !keys.contains(&key.as_str()) && key != "type" && key != "name" {
                    return Err(err(
                        &format!("\"{key}\""),
                        format!("{kind}: option `{key}` is not converted; it takes {}", keys.join(", ")),
                    ));
                }
            }
            Ok(())
        };
        let field = |key: &str| -> Result<&Json, ImportError> {
            obj.get(key).ok_or_else(|| err(kind, format!("{kind} needs `{key}`")))
        };
        let mut table = Table::new("");
        let (ferrule_kind, default_base): (&'static str, &str) = match kind {
            "PoolRoute" => {
                allowed(&["pool", "hash", "shadows"])?;
                let pool = match field("pool")? {
                    Json::String(pool) => pool.clone(),
                    _ => {
                        return Err(
                            self.err("\"pool\"", "an inline pool in PoolRoute: name the pool in `pools` instead")
                        )
                    }
                };
                let hash = match obj.get("hash") {
                    None => None,
                    Some(Json::String(name)) => Some(super::parse_hash_func(name, self.locate)?),
                    Some(Json::Object(h)) => {
                        if h.contains_key("salt") {
                            return Err(self.err("\"salt\"", "a hash `salt` is not supported by ferrule"));
                        }
                        match h.get("hash_func").and_then(Json::as_str) {
                            Some(name) => Some(super::parse_hash_func(name, self.locate)?),
                            None => None,
                        }
                    }
                    Some(_) => return Err(self.err("\"hash\"", "`hash` must be a name or an object")),
                };
                let dest = self.pool_route(&pool, hash)?;
                let Some(shadows) = obj.get("shadows") else { return Ok(dest) };
                let shadows = self.shadows(&pool, shadows)?;
                table.set("child", dest.as_str());
                table.set("shadows", Value::Array(shadows));
                ("shadow", "shadow")
            }
            "HashRoute" => {
                allowed(&["children", "hash_func", "salt"])?;
                if obj.contains_key("salt") {
                    return Err(self.err("\"salt\"", "HashRoute: a hash `salt` is not supported by ferrule"));
                }
                let func = match obj.get("hash_func").and_then(Json::as_str) {
                    None => HashFunc::Ch3,
                    Some(name) => super::parse_hash_func(name, self.locate)?,
                };
                // HashRoute over one pool's servers is where that pool would put the key.
                if let Some(Json::String(children)) = obj.get("children") {
                    if let Some(pool) = children.strip_prefix("Pool|") {
                        // Ch3 is a PoolRoute's default: the same placement as naming no hash.
                        match func {
                            HashFunc::Ch3 => return self.pool_route(pool, None),
                            HashFunc::Crc32 => return self.pool_route(pool, Some(func)),
                            HashFunc::WeightedCh3 => {}
                        }
                    }
                }
                let children = self.list(field("children")?, kind)?;
                if self.expanded_len(&children) == 1 {
                    return Ok(self.single_of(&children[0]));
                }
                table.note(
                    "mcrouter's HashRoute over these children: ferrule's hash route spreads keys with a jump hash, \
                     not mcrouter's; keys land on other children than under mcrouter.",
                );
                self.warnings.push(format!(
                    "{}: a HashRoute over mixed children places keys differently from mcrouter",
                    short(&Json::Object(obj.clone()))
                ));
                table.set("children", strings(children));
                ("hash", "hash")
            }
            "AllSyncRoute" | "AllAsyncRoute" | "AllInitialRoute" | "AllFastestRoute" | "AllMajorityRoute"
            | "RandomRoute" => {
                allowed(&["children"])?;
                let children = self.list(field("children")?, kind)?;
                let ferrule_kind = match kind {
                    "AllSyncRoute" => "all_sync",
                    "AllAsyncRoute" => "all_async",
                    "AllInitialRoute" => "all_initial",
                    "AllFastestRoute" => "all_fastest",
                    "AllMajorityRoute" => "all_majority",
                    _ => "random",
                };
                // mcrouter collapses these over zero children to NullRoute and over one child to that child
                // (AllAsync and AllInitial keep their background sends, but over one child that is the child).
                if self.expanded_len(&children) == 1 && kind != "AllAsyncRoute" {
                    return Ok(self.single_of(&children[0]));
                }
                if children.is_empty() {
                    return self.null(memo_key, base);
                }
                table.set("children", strings(children));
                (ferrule_kind, ferrule_kind)
            }
            "FailoverRoute" | "MissFailoverRoute" | "LatestRoute" => {
                let is_latest = kind == "LatestRoute";
                if is_latest {
                    allowed(&["children", "failover_count", "failover_errors", "thread_local_failover", "weights"])?;
                } else if kind == "FailoverRoute" {
                    allowed(&["children", "failover_errors", "max_tries", "failover_policy", "enable_leasing"])?;
                } else {
                    allowed(&["children", "max_tries"])?;
                }
                let children = self.list(field("children")?, kind)?;
                if self.expanded_len(&children) <= 1 {
                    return match children.first() {
                        Some(child) => Ok(self.single_of(child)),
                        None => self.null(memo_key, base),
                    };
                }
                let max_tries = match (obj.get("max_tries"), obj.get("failover_count")) {
                    (Some(v), _) | (None, Some(v)) => Some(
                        v.as_u64()
                            .filter(|&n| n >= 1)
                            .ok_or_else(|| self.err(kind, format!("{kind}: max_tries must be a count")))?
                            as usize,
                    ),
                    (None, None) if is_latest => Some(LATEST_DEFAULT_FAILOVER_COUNT),
                    (None, None) => None,
                };
                if is_latest {
                    table.note(
                        "mcrouter's LatestRoute: a failover over the children in an order each mcrouter host picks \
                         at random; ferrule tries them in the order listed, so every ferrule reads the first \
                         server first.",
                    );
                    self.warnings.push(
                        "LatestRoute becomes a failover in listed order (mcrouter shuffles the order per host)".into(),
                    );
                    if obj.contains_key("weights") {
                        self.warnings.push("LatestRoute `weights` are dropped (ferrule's failover has none)".into());
                    }
                }
                if let Some(Json::Object(policy)) = obj.get("failover_policy") {
                    if policy.get("type").and_then(Json::as_str).is_some_and(|t| t != "InOrder") {
                        return Err(self.err(
                            "\"failover_policy\"",
                            "FailoverRoute: only the InOrder failover_policy is supported",
                        ));
                    }
                }
                if obj.contains_key("enable_leasing") {
                    self.warnings.push("FailoverRoute `enable_leasing` is dropped (ferrule has no leases)".into());
                }
                let n = self.expanded_len(&children);
                table.set("children", strings(children));
                if let Some(tries) = max_tries {
                    table.set("max_tries", tries.min(n) as i64);
                }
                if kind == "MissFailoverRoute" {
                    ("miss_failover", "miss_failover")
                } else {
                    if let Some(errors) = obj.get("failover_errors") {
                        table.set("failover_errors", self.failover_errors(errors)?);
                    }
                    ("failover", if is_latest { "latest" } else { "failover" })
                }
            }
            "PrefixSelectorRoute" => {
                allowed(&["policies", "wildcard", "prefixes", "default"])?;
                let (policies_key, wildcard_key) = match (obj.get("policies"), obj.get("prefixes")) {
                    (Some(_), Some(_)) => {
                        return Err(self.err("\"prefixes\"", "PrefixSelectorRoute has both `policies` and `prefixes`"))
                    }
                    (None, Some(_)) => {
                        self.warnings.push(
                            "PrefixSelectorRoute: `prefixes` / `default` is the guide's spelling; mcrouter reads \
                             `policies` / `wildcard` (and would ignore these). Converted as the guide means it"
                                .into(),
                        );
                        ("prefixes", "default")
                    }
                    _ => ("policies", "wildcard"),
                };
                if obj.contains_key(if wildcard_key == "default" { "wildcard" } else { "default" }) {
                    return Err(self.err(
                        "PrefixSelectorRoute",
                        "PrefixSelectorRoute mixes the spellings: use policies/wildcard or prefixes/default",
                    ));
                }
                let mut prefixes = toml::Table::new();
                let mut default = match obj.get(wildcard_key) {
                    Some(w) => Some(self.one(w, wildcard_key)?),
                    None => None,
                };
                if let Some(policies) = obj.get(policies_key) {
                    let Json::Object(policies) = policies else {
                        return Err(self.err(policies_key, format!("`{policies_key}` must map prefixes to routes")));
                    };
                    for (prefix, route) in policies {
                        let dest = self.one(route, &format!("{policies_key}.{prefix}"))?;
                        if prefix.is_empty() {
                            // The empty prefix matches every key: it is the wildcard unless one is given.
                            default.get_or_insert(dest);
                            continue;
                        }
                        prefixes.insert(prefix.clone(), Value::from(dest));
                    }
                }
                if prefixes.is_empty() {
                    return match default {
                        Some(d) => Ok(d),
                        None => Err(self.err("PrefixSelectorRoute", "PrefixSelectorRoute has no policies")),
                    };
                }
                table.set("prefixes", Value::Table(prefixes));
                match default {
                    Some(d) => table.set("default", d),
                    None => table.note(
                        "No wildcard: mcrouter answers other keys with an error, as ferrule does without a default.",
                    ),
                }
                ("prefix", "prefix")
            }
            "OperationSelectorRoute" => {
                allowed(&["operation_policies", "default_policy"])?;
                let mut operations = toml::Table::new();
                if let Some(policies) = obj.get("operation_policies") {
                    let Json::Object(policies) = policies else {
                        return Err(self.err("\"operation_policies\"", "`operation_policies` must map operations"));
                    };
                    for (op, route) in policies {
                        let lower = op.to_ascii_lowercase();
                        if UNROUTED_OPERATIONS.contains(&lower.as_str()) {
                            self.warnings.push(format!(
                                "OperationSelectorRoute: `{op}` is not routed by ferrule (it answers or refuses it \
                                 itself); its policy is dropped"
                            ));
                            continue;
                        }
                        if !MEMCACHE_OPERATIONS.contains(&lower.as_str()) {
                            return Err(self.err(
                                op,
                                format!(
                                    "OperationSelectorRoute: unknown operation {op:?}; ferrule routes {}",
                                    MEMCACHE_OPERATIONS.join(", ")
                                ),
                            ));
                        }
                        let dest = self.one(route, &format!("operation_policies.{op}"))?;
                        operations.insert(lower, Value::from(dest));
                    }
                }
                let default = match obj.get("default_policy") {
                    Some(d) => Some(self.one(d, "default_policy")?),
                    None => None,
                };
                if operations.is_empty() {
                    return match default {
                        Some(d) => Ok(d),
                        None => Err(self.err("OperationSelectorRoute", "OperationSelectorRoute routes nothing")),
                    };
                }
                table.set("operations", Value::Table(operations));
                match default {
                    Some(d) => table.set("default", d),
                    None => table.note("No default_policy: other operations get an error reply, as in mcrouter."),
                }
                ("operation", "operation")
            }
            "WarmUpRoute" => {
                allowed(&["cold", "warm", "exptime"])?;
                let cold = self.one(field("cold")?, "cold")?;
                let warm = self.one(field("warm")?, "warm")?;
                table.set("cold", cold);
                table.set("warm", warm);
                if let Some(e) = obj.get("exptime") {
                    let e = e
                        .as_u64()
                        .filter(|&e| e <= u64::from(u32::MAX))
                        .ok_or_else(|| self.err("\"exptime\"", "WarmUpRoute: exptime must be seconds"))?;
                    table.set("exptime", e as i64);
                }
                ("warmup", "warmup")
            }
            "L1L2CacheRoute" => {
                allowed(&["l1", "l2", "upgradingL1Exptime", "ncacheExptime", "ncacheUpdatePeriod"])?;
                let l1 = self.one(field("l1")?, "l1")?;
                let l2 = self.one(field("l2")?, "l2")?;
                let ttl =
                    field("upgradingL1Exptime")?.as_u64().filter(|&t| t >= 1 && t <= u64::from(u32::MAX)).ok_or_else(
                        || self.err("upgradingL1Exptime", "L1L2CacheRoute: upgradingL1Exptime must be seconds"),
                    )?;
                table.set("l1", l1);
                table.set("l2", l2);
                table.set_noted("l1_ttl_s", ttl as i64, Some("mcrouter's upgradingL1Exptime."));
                if obj.contains_key("ncacheExptime") || obj.contains_key("ncacheUpdatePeriod") {
                    table.note("ncacheExptime / ncacheUpdatePeriod (negative caching) have no ferrule equivalent.");
                    self.warnings.push("L1L2CacheRoute: negative caching (ncache*) is dropped".into());
                }
                ("l1l2", "l1l2")
            }
            "MigrateRoute" => {
                allowed(&["from", "to", "start_time", "interval"])?;
                let from = self.one(field("from")?, "from")?;
                let to = self.one(field("to")?, "to")?;
                let start = field("start_time")?
                    .as_u64()
                    .ok_or_else(|| self.err("start_time", "MigrateRoute: start_time must be a Unix time"))?;
                let interval = match obj.get("interval") {
                    None => MIGRATE_DEFAULT_INTERVAL_S,
                    Some(v) => v
                        .as_u64()
                        .filter(|&i| i >= 1)
                        .ok_or_else(|| self.err("\"interval\"", "MigrateRoute: interval must be seconds"))?,
                };
                table.set("from", from);
                table.set("to", to);
                // mcrouter moves keys over [start_time + interval, start_time + 2 interval); ferrule over
                // [start_time, start_time + interval_s): the same moments need start_time + interval.
                table.set_noted(
                    "start_time",
                    start.saturating_add(interval) as i64,
                    Some("mcrouter's start_time + interval: keys move at the same moments."),
                );
                table.set_noted("interval_s", interval as i64, Some("mcrouter's interval."));
                ("migrate", "migrate")
            }
            "ErrorRoute" => {
                allowed(&["response"])?;
                let message = match obj.get("response") {
                    None => DEFAULT_ERROR_MESSAGE.to_owned(),
                    Some(Json::String(m)) if !m.is_empty() && !m.contains(['\r', '\n']) => m.clone(),
                    Some(_) => return Err(self.err("ErrorRoute", "ErrorRoute: response must be one line of text")),
                };
                table.set("message", message);
                ("error", "error")
            }
            "NullRoute" | "DevNullRoute" => {
                allowed(&[])?;
                return self.null(memo_key, base);
            }
            other => {
                return Err(self.err(
                    other,
                    format!(
                        "route handle {other} has no ferrule equivalent; converted are PoolRoute, HashRoute, \
                         PrefixSelectorRoute, OperationSelectorRoute, AllSync/AllAsync/AllInitial/AllFastest/\
                         AllMajorityRoute, FailoverRoute, MissFailoverRoute, LatestRoute, RandomRoute, WarmUpRoute, \
                         L1L2CacheRoute, MigrateRoute, ErrorRoute, NullRoute"
                    ),
                ))
            }
        };
        table.set_first("type", ferrule_kind);
        let base = base.unwrap_or_else(|| default_base.to_owned());
        Ok(self.emit(memo_key, &base, ferrule_kind, table))
    }

    /// A table built outside this module (the routing prefixes' route).
    pub fn emit_table(&mut self, base: &str, kind: &'static str, table: Table) -> String {
        self.emit(None, base, kind, table)
    }

    fn null(&mut self, memo_key: Option<String>, base: Option<String>) -> Result<String, ImportError> {
        let mut table = Table::new("");
        table.set("type", "null");
        let base = base.unwrap_or_else(|| "null".to_owned());
        Ok(self.emit(memo_key, &base, "null", table))
    }

    /// mcrouter's failover_errors (result names) as ferrule's failure classes.
    fn failover_errors(&self, errors: &Json) -> Result<Value, ImportError> {
        let Json::Array(names) = errors else {
            return Err(self.err(
                "\"failover_errors\"",
                "failover_errors per operation (gets/updates/deletes) is not converted; list the results",
            ));
        };
        let mut classes: Vec<&str> = Vec::new();
        for name in names {
            let class = match name.as_str().unwrap_or("") {
                "connect_error" | "connect_timeout" => FailureClass::ConnectError,
                "timeout" | "deadline_exceeded" => FailureClass::Timeout,
                "tko" | "busy" | "try_again" | "shutdown" => FailureClass::Unavailable,
                "remote_error" | "local_error" => FailureClass::ServerError,
                other => {
                    return Err(self.err(
                        other,
                        format!(
                            "failover_errors: {other:?} has no ferrule failure class (connect_error, \
                             connect_timeout, timeout, tko, busy, try_again, shutdown, remote_error map)"
                        ),
                    ))
                }
            };
            if !classes.contains(&class.name()) {
                classes.push(class.name());
            }
        }
        Ok(Value::Array(classes.into_iter().map(Value::from).collect()))
    }

    /// A PoolRoute's `shadows`: each `{target, key_fraction_range, index_range}` over the whole pool.
    fn shadows(&mut self, pool: &str, shadows: &Json) -> Result<Vec<Value>, ImportError> {
        let servers = self.pools.get(pool).and_then(|p| p.get("servers")).and_then(Json::as_array).map_or(0, Vec::len);
        let Json::Array(items) = shadows else {
            return Err(self.err("\"shadows\"", "PoolRoute `shadows` must be a list"));
        };
        let mut out = Vec::new();
        for item in items {
            let Json::Object(entry) = item else {
                return Err(self.err("\"shadows\"", "each shadow is an object with a `target`"));
            };
            for key in entry.keys() {
                if !["target", "key_fraction_range", "index_range"].contains(&key.as_str()) {
                    return Err(self.err(key, format!("shadow option `{key}` is not converted")));
                }
            }
            if let Some(Json::Array(range)) = entry.get("index_range") {
                let whole = range.len() == 2
                    && range[0].as_u64() == Some(0)
                    && range[1].as_u64().is_some_and(|hi| hi as usize + 1 >= servers);
                if !whole {
                    return Err(self.err(
                        "\"index_range\"",
                        "a shadow index_range over part of the pool is not supported (ferrule shadows by key, \
                         not by server)",
                    ));
                }
            }
            let target = self.one(
                entry.get("target").ok_or_else(|| self.err("\"shadows\"", "a shadow needs a `target`"))?,
                "shadow target",
            )?;
            let mut t = toml::Table::new();
            t.insert("target".into(), Value::from(target));
            if let Some(Json::Array(range)) = entry.get("key_fraction_range") {
                let pair: Option<Vec<f64>> = range.iter().map(Json::as_f64).collect();
                match pair.as_deref() {
                    Some([a, b]) => {
                        t.insert("key_fraction".into(), Value::Array(vec![Value::from(*a), Value::from(*b)]));
                    }
                    _ => return Err(self.err("key_fraction_range", "key_fraction_range must be [from, to]")),
                }
            }
            out.push(Value::Table(t));
        }
        Ok(out)
    }
}

fn strings(items: Vec<String>) -> Value {
    Value::Array(items.into_iter().map(Value::from).collect())
}

/// A handle as it can be found in the text: the string itself, or its type.
fn short(route: &Json) -> String {
    match route {
        Json::String(s) => s.clone(),
        Json::Object(obj) => obj.get("type").and_then(Json::as_str).unwrap_or("route").to_owned(),
        other => other.to_string(),
    }
}
