//! The route model: `[routes.NAME]` tables, the trees they form above pools, and their validation.
//!
//! A listener's `route` names a pool or a route. A route has a `type` and type-specific keys whose children name
//! pools (sharded by the pool's hash), other routes, or `"POOL/*"`: every server of a pool as a child of its own
//! (mcrouter's `Pool|A`, for replicated pools). The semantics of each kind are in `src/routes/` and
//! docs/routing.md; this module only reads and checks the tables. The types are public and plain so that other
//! tools (config import) can build and print them.

use std::ops::Range;

use toml::Value;

use super::fields::{Field, Section};
use super::ConfigError;
use crate::hash::HashKind;

/// What a route's child (or a listener's `route`) resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A pool, by index into [`super::Config::pools`]: the key is hashed onto one of its servers.
    Pool(usize),
    /// One server of a pool (from a `"POOL/*"` child), by pool index and server index.
    Server { pool: usize, server: usize },
    /// A route, by index into [`super::Config::routes`].
    Route(usize),
}

/// One destination key (`default`, `child`, `cold`, ...): its text as written and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    pub name: String,
    pub target: Target,
}

/// A `children` list: as written (for printing it back), and expanded (`"POOL/*"` becomes one child per server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Children {
    pub written: Vec<String>,
    pub targets: Vec<Target>,
}

/// The five ways of sending a request to every child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllMode {
    /// Wait for every child, answer with the worst reply.
    Sync,
    /// Answer at once with the default reply; every child gets the request in the background.
    Async,
    /// Answer with the first child's reply; the others get it in the background.
    Initial,
    /// Answer with the first reply that is not a failure.
    Fastest,
    /// Answer once one reply has been seen from a majority of the children.
    Majority,
}

/// Reply classes a `failover` route moves on after (`failover_errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// The connection could not be made or broke (refused, reset, closed, malformed reply).
    ConnectError,
    /// No reply within the pool's `timeout_ms`.
    Timeout,
    /// The server is backing off after failures, or every server of the pool is ejected.
    Unavailable,
    /// The server answered with a server-side error: memcache `SERVER_ERROR`, redis `-LOADING`, `-BUSY`,
    /// `-MASTERDOWN`, `-TRYAGAIN`, `-CLUSTERDOWN`, `-READONLY`.
    ServerError,
}

impl FailureClass {
    pub const ALL: [FailureClass; 4] =
        [FailureClass::ConnectError, FailureClass::Timeout, FailureClass::Unavailable, FailureClass::ServerError];

    pub fn name(self) -> &'static str {
        match self {
            FailureClass::ConnectError => "connect_error",
            FailureClass::Timeout => "timeout",
            FailureClass::Unavailable => "unavailable",
            FailureClass::ServerError => "server_error",
        }
    }

    pub fn from_name(name: &str) -> Option<FailureClass> {
        FailureClass::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One `shadows` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    pub target: Dest,
    /// Keys whose hash, scaled to [0, 1), falls in [from, to) are shadowed.
    pub key_fraction: (f64, f64),
    /// Of those, this fraction of requests (sampled per request).
    pub request_fraction: f64,
}

/// The kind of a route and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    Prefix {
        /// Longest first, so the first match is the longest; lowercased when `case_insensitive`.
        prefixes: Vec<(String, Dest)>,
        default: Option<Dest>,
        strip_prefix: bool,
        case_insensitive: bool,
    },
    Operation {
        /// Operation names as written (lowercase): a memcache verb, a redis command, or `read` / `write`.
        operations: Vec<(String, Dest)>,
        default: Option<Dest>,
    },
    All {
        mode: AllMode,
        children: Children,
        /// Per worker, the requests of this route's children that may be in flight beyond those needed to answer
        /// (`all_async`: all of them; `all_initial` / `all_fastest`: all but the first; `all_majority`: beyond a
        /// majority); children over it are not sent. Unused by `all_sync`, which waits for every child.
        max_outstanding: usize,
    },
    Failover {
        children: Children,
        /// At most this many children are tried (default: all of them).
        max_tries: usize,
        failover_errors: Vec<FailureClass>,
    },
    MissFailover {
        children: Children,
        max_tries: usize,
    },
    Shadow {
        child: Dest,
        shadows: Vec<Shadow>,
        /// Shadow requests outstanding per target per worker before further copies are dropped.
        max_outstanding: usize,
    },
    Warmup {
        cold: Dest,
        warm: Dest,
        /// TTL of the fill written into `cold` when the remaining TTL cannot be learned (0: never expires).
        exptime: Option<u32>,
    },
    L1l2 {
        l1: Dest,
        l2: Dest,
        l1_ttl_s: u32,
        write_l2: bool,
    },
    Migrate {
        from: Dest,
        to: Dest,
        start_time: u64,
        interval_s: u64,
    },
    Hash {
        children: Children,
        hash: HashKind,
    },
    Random {
        children: Children,
    },
    Error {
        message: String,
    },
    Null,
}

/// Every `type` name, in the order docs/routing.md lists them.
pub const ROUTE_TYPES: &[&str] = &[
    "prefix",
    "operation",
    "all_sync",
    "all_async",
    "all_initial",
    "all_fastest",
    "all_majority",
    "failover",
    "miss_failover",
    "shadow",
    "warmup",
    "l1l2",
    "migrate",
    "hash",
    "random",
    "error",
    "null",
];

/// The kinds the I/O layer executes today; the others are rejected by validation (never silently accepted).
pub const EXECUTABLE_TYPES: &[&str] = &[
    "prefix",
    "operation",
    "hash",
    "random",
    "error",
    "null",
    "failover",
    "miss_failover",
    "all_sync",
    "all_async",
    "all_initial",
    "all_fastest",
    "all_majority",
    "shadow",
    "migrate",
    "warmup",
    "l1l2",
];

/// Default bound on outstanding shadow requests per target and worker (mcrouter's).
pub const DEFAULT_SHADOW_MAX_OUTSTANDING: usize = 1000;
/// Default bound on the in-flight requests of an `all_*` route's children beyond those needed to answer, per worker.
pub const DEFAULT_ALL_MAX_OUTSTANDING: usize = 1000;
/// The message of an `error` route without one.
pub const DEFAULT_ERROR_MESSAGE: &str = "ferrule: error route";

impl RouteKind {
    /// Whether the kind sends one request to several destinations (executed by the I/O layer's fan-out).
    pub fn is_multi(&self) -> bool {
        matches!(
            self,
            RouteKind::All { .. }
                | RouteKind::Failover { .. }
                | RouteKind::MissFailover { .. }
                | RouteKind::Shadow { .. }
                | RouteKind::Warmup { .. }
                | RouteKind::L1l2 { .. }
                | RouteKind::Migrate { .. }
        )
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            RouteKind::Prefix { .. } => "prefix",
            RouteKind::Operation { .. } => "operation",
            RouteKind::All { mode, .. } => match mode {
                AllMode::Sync => "all_sync",
                AllMode::Async => "all_async",
                AllMode::Initial => "all_initial",
                AllMode::Fastest => "all_fastest",
                AllMode::Majority => "all_majority",
            },
            RouteKind::Failover { .. } => "failover",
            RouteKind::MissFailover { .. } => "miss_failover",
            RouteKind::Shadow { .. } => "shadow",
            RouteKind::Warmup { .. } => "warmup",
            RouteKind::L1l2 { .. } => "l1l2",
            RouteKind::Migrate { .. } => "migrate",
            RouteKind::Hash { .. } => "hash",
            RouteKind::Random { .. } => "random",
            RouteKind::Error { .. } => "error",
            RouteKind::Null => "null",
        }
    }

    /// Every target this route can send to, in the order written (for the tree, reachability and cycles).
    pub fn targets(&self) -> Vec<Target> {
        let one = |d: &Dest| vec![d.target];
        match self {
            RouteKind::Prefix { prefixes, default, .. } => {
                prefixes.iter().map(|(_, d)| d.target).chain(default.iter().map(|d| d.target)).collect()
            }
            RouteKind::Operation { operations, default } => {
                operations.iter().map(|(_, d)| d.target).chain(default.iter().map(|d| d.target)).collect()
            }
            RouteKind::All { children, .. }
            | RouteKind::Failover { children, .. }
            | RouteKind::MissFailover { children, .. }
            | RouteKind::Hash { children, .. }
            | RouteKind::Random { children } => children.targets.clone(),
            RouteKind::Shadow { child, shadows, .. } => {
                one(child).into_iter().chain(shadows.iter().map(|s| s.target.target)).collect()
            }
            RouteKind::Warmup { cold, warm, .. } => vec![cold.target, warm.target],
            RouteKind::L1l2 { l1, l2, .. } => vec![l1.target, l2.target],
            RouteKind::Migrate { from, to, .. } => vec![from.target, to.target],
            RouteKind::Error { .. } | RouteKind::Null => Vec::new(),
        }
    }

    /// Labelled edges for printing the tree: (label, destination as written).
    pub fn edges(&self) -> Vec<(String, String)> {
        let d = |label: &str, dest: &Dest| (label.to_owned(), dest.name.clone());
        let list = |c: &Children| c.written.iter().map(|n| (String::new(), n.clone())).collect::<Vec<_>>();
        match self {
            RouteKind::Prefix { prefixes, default, .. } => prefixes
                .iter()
                .map(|(p, dest)| d(&format!("{p:?}"), dest))
                .chain(default.iter().map(|dest| d("default", dest)))
                .collect(),
            RouteKind::Operation { operations, default } => operations
                .iter()
                .map(|(op, dest)| d(op, dest))
                .chain(default.iter().map(|dest| d("default", dest)))
                .collect(),
            RouteKind::All { children, .. }
            | RouteKind::Failover { children, .. }
            | RouteKind::MissFailover { children, .. }
            | RouteKind::Hash { children, .. }
            | RouteKind::Random { children } => list(children),
            RouteKind::Shadow { child, shadows, .. } => {
                std::iter::once(d("child", child)).chain(shadows.iter().map(|s| d("shadow", &s.target))).collect()
            }
            RouteKind::Warmup { cold, warm, .. } => vec![d("cold", cold), d("warm", warm)],
            RouteKind::L1l2 { l1, l2, .. } => vec![d("l1", l1), d("l2", l2)],
            RouteKind::Migrate { from, to, .. } => vec![d("from", from), d("to", to)],
            RouteKind::Error { .. } | RouteKind::Null => Vec::new(),
        }
    }
}

/// One `[routes.NAME]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    pub kind: RouteKind,
}

/// The memcache verbs an `operation` route can name (those routed to servers).
pub const MEMCACHE_OPERATIONS: &[&str] = &[
    "get", "gets", "gat", "gats", "set", "add", "replace", "append", "prepend", "cas", "incr", "decr", "delete",
    "touch",
];

/// Operation classes valid for both protocols: the command table's read-only commands (memcache: the retrievals)
/// and everything else that is routed.
pub const OPERATION_CLASSES: &[&str] = &["read", "write"];

/// Whether `name` (lowercase) is an operation a `protocol` listener can route on.
pub fn operation_fits(name: &str, protocol: super::Protocol) -> bool {
    if OPERATION_CLASSES.contains(&name) {
        return true;
    }
    match protocol {
        super::Protocol::Memcache => MEMCACHE_OPERATIONS.contains(&name),
        super::Protocol::Redis => crate::protocol::redis::lookup(name.as_bytes()).is_some_and(|info| {
            matches!(
                info.kind,
                crate::protocol::redis::CommandKind::Forward | crate::protocol::redis::CommandKind::Split(_)
            )
        }),
    }
}

/// The names the route builder resolves children against.
pub(super) struct Names<'a> {
    /// Pool name -> its server count.
    pub pools: &'a [(String, usize)],
    pub routes: &'a [String],
}

impl Names<'_> {
    fn pool(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|(n, _)| n == name)
    }

    fn route(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|n| n == name)
    }

    /// A single destination: a pool or a route.
    pub fn resolve(&self, name: &str) -> Result<Target, String> {
        if let Some(pool) = name.strip_suffix("/*") {
            if self.pool(pool).is_some() {
                return Err(format!(
                    "{name:?} names every server of pool {pool:?}, but this key takes one destination \
                     (use it in a `children` list, or name the pool itself)"
                ));
            }
        }
        if let Some(p) = self.pool(name) {
            return Ok(Target::Pool(p));
        }
        if let Some(r) = self.route(name) {
            return Ok(Target::Route(r));
        }
        Err(self.unknown(name))
    }

    /// One `children` entry: a pool, a route, or every server of a pool.
    fn expand(&self, name: &str) -> Result<Vec<Target>, String> {
        if let Some(pool_name) = name.strip_suffix("/*") {
            return match self.pool(pool_name) {
                Some(pool) => Ok((0..self.pools[pool].1).map(|server| Target::Server { pool, server }).collect()),
                None => Err(format!("{name:?}: no pool named {pool_name:?}; {}", self.known())),
            };
        }
        self.resolve(name).map(|t| vec![t])
    }

    fn unknown(&self, name: &str) -> String {
        format!("no pool or route named {name:?}; {}", self.known())
    }

    fn known(&self) -> String {
        let list = |names: Vec<&str>| if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        format!(
            "defined pools: {}; defined routes: {}",
            list(self.pools.iter().map(|(n, _)| n.as_str()).collect()),
            list(self.routes.iter().map(String::as_str).collect())
        )
    }
}

/// A route as read, with where its keys are, for the checks that run once every table is read.
pub(super) struct RouteDraft {
    pub config: RouteConfig,
    /// The `type` value's location.
    pub type_span: Range<usize>,
    pub type_key: String,
    /// Each operation name with its location (operation routes), checked against the protocol later.
    pub operation_keys: Vec<(String, String, Range<usize>)>,
    /// A key set that memcache listeners cannot execute (`strip_prefix`: memcache replies carry the key): key path
    /// and location.
    pub redis_only: Option<(String, Range<usize>)>,
}

fn allowed_keys(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "prefix" => &["type", "prefixes", "default", "strip_prefix", "case_insensitive"],
        "operation" => &["type", "operations", "default"],
        "all_sync" | "random" => &["type", "children"],
        "all_async" | "all_initial" | "all_fastest" | "all_majority" => &["type", "children", "max_outstanding"],
        "failover" => &["type", "children", "max_tries", "failover_errors"],
        "miss_failover" => &["type", "children", "max_tries"],
        "shadow" => &["type", "child", "shadows", "max_outstanding"],
        "warmup" => &["type", "cold", "warm", "exptime"],
        "l1l2" => &["type", "l1", "l2", "l1_ttl_s", "write_l2"],
        "migrate" => &["type", "from", "to", "start_time", "interval_s"],
        "hash" => &["type", "children", "hash"],
        "error" => &["type", "message"],
        _ => &["type"],
    }
}

/// Reads one `[routes.NAME]` table.
pub(super) fn build_route(s: &Section<'_>, name: &str, names: &Names<'_>) -> Result<RouteDraft, ConfigError> {
    let type_field = s.required("type")?;
    let type_name = type_field.string()?;
    if !ROUTE_TYPES.contains(&type_name) {
        return Err(type_field.error(format!(
            "unknown route type {type_name:?}; expected one of: {} (a listener names a pool directly)",
            ROUTE_TYPES.join(", ")
        )));
    }
    s.reject_unknown_keys(allowed_keys(type_name))?;
    let dest = |key: &str| -> Result<Dest, ConfigError> {
        let f = s.required(key)?;
        parse_dest(&f, names)
    };
    let opt_dest =
        |key: &str| -> Result<Option<Dest>, ConfigError> { s.get(key).map(|f| parse_dest(&f, names)).transpose() };
    let children = || -> Result<Children, ConfigError> { parse_children(s.text(), &s.required("children")?, names) };
    let mut operation_keys = Vec::new();
    let redis_only = s
        .get("strip_prefix")
        .filter(|f| matches!(f.value(), Value::Boolean(true)))
        .map(|f| (f.key().to_owned(), f.span()));
    let kind = match type_name {
        "prefix" => {
            let case_insensitive = s.parse_or("case_insensitive", false, Field::boolean)?;
            let f = s.required("prefixes")?;
            let mut prefixes = Vec::new();
            for (prefix, value, span) in table_entries(s.text(), &f)? {
                let key = format!("{}.{prefix:?}", f.key());
                if prefix.is_empty() {
                    return Err(f.error_at(&span, &key, "an empty prefix matches every key; use `default` instead"));
                }
                let written =
                    prefix_value(value).ok_or_else(|| f.error_at(&span, &key, "expected a pool or route name"))?;
                let target = names.resolve(written).map_err(|why| f.error_at(&span, &key, why))?;
                let stored = if case_insensitive { prefix.to_ascii_lowercase() } else { prefix.to_owned() };
                if prefixes.iter().any(|(p, _): &(String, Dest)| *p == stored) {
                    return Err(f.error_at(&span, &key, "this prefix is listed twice (case_insensitive is on)"));
                }
                prefixes.push((stored, Dest { name: written.to_owned(), target }));
            }
            if prefixes.is_empty() {
                return Err(f.error("must map at least one prefix (a route with only a default is that default)"));
            }
            // Longest first: the first match is the longest match.
            prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
            RouteKind::Prefix {
                prefixes,
                default: opt_dest("default")?,
                strip_prefix: s.parse_or("strip_prefix", false, Field::boolean)?,
                case_insensitive,
            }
        }
        "operation" => {
            let f = s.required("operations")?;
            let mut operations: Vec<(String, Dest)> = Vec::new();
            for (op, value, span) in table_entries(s.text(), &f)? {
                let key = format!("{}.{op}", f.key());
                let lower = op.to_ascii_lowercase();
                let fits_any = super::Protocol::ALL.into_iter().any(|p| operation_fits(&lower, p));
                if !fits_any {
                    return Err(f.error_at(
                        &span,
                        &key,
                        format!(
                            "unknown operation {op:?}; expected read, write, a memcache verb ({}) or a redis command \
                             that is forwarded to servers",
                            MEMCACHE_OPERATIONS.join(", ")
                        ),
                    ));
                }
                if operations.iter().any(|(o, _)| *o == lower) {
                    return Err(f.error_at(&span, &key, "this operation is listed twice"));
                }
                let written =
                    prefix_value(value).ok_or_else(|| f.error_at(&span, &key, "expected a pool or route name"))?;
                let target = names.resolve(written).map_err(|why| f.error_at(&span, &key, why))?;
                operation_keys.push((lower.clone(), key, span));
                operations.push((lower, Dest { name: written.to_owned(), target }));
            }
            if operations.is_empty() {
                return Err(f.error("must map at least one operation"));
            }
            RouteKind::Operation { operations, default: opt_dest("default")? }
        }
        "all_sync" | "all_async" | "all_initial" | "all_fastest" | "all_majority" => {
            let mode = match type_name {
                "all_sync" => AllMode::Sync,
                "all_async" => AllMode::Async,
                "all_initial" => AllMode::Initial,
                "all_fastest" => AllMode::Fastest,
                _ => AllMode::Majority,
            };
            let max_outstanding =
                s.parse_or("max_outstanding", DEFAULT_ALL_MAX_OUTSTANDING, |f| f.integer_at_least(1usize))?;
            RouteKind::All { mode, children: children()?, max_outstanding }
        }
        "failover" | "miss_failover" => {
            let children = children()?;
            let n = children.targets.len();
            let max_tries = s.parse_or("max_tries", n, |f| f.integer_at_least(1usize))?.min(n);
            if type_name == "miss_failover" {
                RouteKind::MissFailover { children, max_tries }
            } else {
                let failover_errors =
                    s.parse_or("failover_errors", FailureClass::ALL.to_vec(), parse_failure_classes)?;
                RouteKind::Failover { children, max_tries, failover_errors }
            }
        }
        "shadow" => {
            let f = s.required("shadows")?;
            let items = f.array()?;
            if items.is_empty() {
                return Err(f.error("must list at least one shadow"));
            }
            let mut shadows = Vec::new();
            for (index, item) in items.iter().enumerate() {
                shadows.push(parse_shadow(&f, index, item, names)?);
            }
            RouteKind::Shadow {
                child: dest("child")?,
                shadows,
                max_outstanding: s
                    .parse_or("max_outstanding", DEFAULT_SHADOW_MAX_OUTSTANDING, |f| f.integer_at_least(1usize))?,
            }
        }
        "warmup" => RouteKind::Warmup {
            cold: dest("cold")?,
            warm: dest("warm")?,
            exptime: s.parse_or("exptime", None, |f| f.integer_at_least(0u32).map(Some))?,
        },
        "l1l2" => RouteKind::L1l2 {
            l1: dest("l1")?,
            l2: dest("l2")?,
            l1_ttl_s: s.required("l1_ttl_s")?.integer_at_least(1u32)?,
            write_l2: s.parse_or("write_l2", false, Field::boolean)?,
        },
        "migrate" => RouteKind::Migrate {
            from: dest("from")?,
            to: dest("to")?,
            start_time: s.required("start_time")?.integer_at_least(0u64)?,
            interval_s: s.required("interval_s")?.integer_at_least(1u64)?,
        },
        "hash" => RouteKind::Hash {
            children: children()?,
            hash: s.parse_or("hash", super::DEFAULT_HASH, super::validate::parse_hash)?,
        },
        "random" => RouteKind::Random { children: children()? },
        "error" => RouteKind::Error {
            message: s.parse_or("message", DEFAULT_ERROR_MESSAGE.to_owned(), |f| {
                let m = f.non_empty_string()?;
                if m.contains(['\r', '\n']) {
                    return Err(f.error("must be one line (it becomes the error reply)"));
                }
                Ok(m.to_owned())
            })?,
        },
        _ => RouteKind::Null,
    };
    Ok(RouteDraft {
        config: RouteConfig { name: name.to_owned(), kind },
        type_span: type_field.span(),
        type_key: type_field.key().to_owned(),
        operation_keys,
        redis_only,
    })
}

fn parse_dest(f: &Field<'_>, names: &Names<'_>) -> Result<Dest, ConfigError> {
    let written = f.non_empty_string()?;
    let target = names.resolve(written).map_err(|why| f.error(why))?;
    Ok(Dest { name: written.to_owned(), target })
}

fn parse_children(text: &str, f: &Field<'_>, names: &Names<'_>) -> Result<Children, ConfigError> {
    let items = f.array()?;
    if items.is_empty() {
        return Err(f.error("must list at least one child"));
    }
    let mut written = Vec::new();
    let mut targets = Vec::new();
    let mut search_from = f.span().start;
    for (index, item) in items.iter().enumerate() {
        let key = format!("{}[{index}]", f.key());
        let Value::String(name) = item else {
            return Err(f.error(format!("{key} is not a pool or route name")));
        };
        let span = super::validate::locate_string(text, search_from..f.span().end, name).unwrap_or_else(|| f.span());
        search_from = span.end.max(search_from);
        let expanded = names.expand(name).map_err(|why| f.error_at(&span, &key, why))?;
        if expanded.iter().any(|t| targets.contains(t)) {
            return Err(f.error_at(&span, &key, format!("{name:?} repeats a child already listed")));
        }
        written.push(name.clone());
        targets.extend(expanded);
    }
    Ok(Children { written, targets })
}

fn parse_failure_classes(f: &Field<'_>) -> Result<Vec<FailureClass>, ConfigError> {
    let mut classes = Vec::new();
    for item in f.array()? {
        let class = match item {
            Value::String(s) => FailureClass::from_name(s),
            _ => None,
        }
        .ok_or_else(|| {
            let known: Vec<&str> = FailureClass::ALL.iter().map(|c| c.name()).collect();
            f.error(format!("{item} is not a failure class; expected some of: {}", known.join(", ")))
        })?;
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    classes.sort();
    Ok(classes)
}

fn parse_shadow(f: &Field<'_>, index: usize, item: &Value, names: &Names<'_>) -> Result<Shadow, ConfigError> {
    let key = format!("{}[{index}]", f.key());
    let err = |why: String| f.error_at(&f.span(), &key, why);
    let Value::Table(table) = item else {
        return Err(err("expected a table like { target = \"new_cluster\", key_fraction = [0.0, 0.1] }".into()));
    };
    const SHADOW_KEYS: &[&str] = &["target", "key_fraction", "request_fraction"];
    if let Some(unknown) = table.keys().find(|k| !SHADOW_KEYS.contains(&k.as_str())) {
        return Err(err(format!("unknown key `{unknown}`; expected one of: {}", SHADOW_KEYS.join(", "))));
    }
    let target = match table.get("target") {
        Some(Value::String(name)) => {
            let t = names.resolve(name).map_err(|why| err(format!("target: {why}")))?;
            Dest { name: name.clone(), target: t }
        }
        Some(_) => return Err(err("target: expected a pool or route name".into())),
        None => return Err(err("missing required key `target`".into())),
    };
    let number = |v: &Value| match v {
        Value::Float(x) => Some(*x),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    };
    let key_fraction = match table.get("key_fraction") {
        None => (0.0, 1.0),
        Some(Value::Array(pair)) if pair.len() == 2 => match (number(&pair[0]), number(&pair[1])) {
            (Some(a), Some(b)) if (0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b) && a <= b => (a, b),
            _ => return Err(err("key_fraction: expected [from, to] with 0 <= from <= to <= 1".into())),
        },
        Some(_) => return Err(err("key_fraction: expected [from, to] with 0 <= from <= to <= 1".into())),
    };
    let request_fraction = match table.get("request_fraction") {
        None => 1.0,
        Some(v) => match number(v) {
            Some(x) if (0.0..=1.0).contains(&x) => x,
            _ => return Err(err("request_fraction: expected a number from 0 to 1".into())),
        },
    };
    Ok(Shadow { target, key_fraction, request_fraction })
}

/// The entries of an inline table value (`{ "a:" = "x", ... }`) with the location of each key.
/// One entry of an inline table: key, value, where the key is written.
type Entry<'t> = (&'t str, &'t Value, Range<usize>);

fn table_entries<'t>(text: &str, f: &Field<'t>) -> Result<Vec<Entry<'t>>, ConfigError> {
    let Value::Table(table) = f.value() else {
        return Err(f.error("expected a table like { \"user:\" = \"pool_a\" }"));
    };
    let mut out = Vec::new();
    // toml sorts the entries; locate each key in the value's text for error messages.
    for (key, value) in table {
        let span = super::validate::locate_string(text, f.span(), key)
            .or_else(|| locate_bare(text, f.span(), key))
            .unwrap_or_else(|| f.span());
        out.push((key.as_str(), value, span));
    }
    Ok(out)
}

fn locate_bare(text: &str, range: Range<usize>, key: &str) -> Option<Range<usize>> {
    let haystack = text.get(range.clone())?;
    haystack.find(key).map(|i| range.start + i..range.start + i + key.len())
}

fn prefix_value(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The route names that form a cycle through `start`, if any (`a -> b -> a`).
pub(super) fn find_cycle(routes: &[RouteConfig]) -> Option<Vec<usize>> {
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state = vec![0u8; routes.len()];
    let mut stack = Vec::new();
    fn visit(r: usize, routes: &[RouteConfig], state: &mut [u8], stack: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[r] = 1;
        stack.push(r);
        for t in routes[r].kind.targets() {
            if let Target::Route(next) = t {
                if state[next] == 1 {
                    let from = stack.iter().position(|&x| x == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                if state[next] == 0 {
                    if let Some(c) = visit(next, routes, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state[r] = 2;
        None
    }
    (0..routes.len()).find_map(|r| if state[r] == 0 { visit(r, routes, &mut state, &mut stack) } else { None })
}

/// Every pool and route reachable from `target` (including itself).
pub fn reachable(routes: &[RouteConfig], target: Target, pools: &mut Vec<usize>, seen_routes: &mut Vec<usize>) {
    match target {
        Target::Pool(p) | Target::Server { pool: p, .. } => {
            if !pools.contains(&p) {
                pools.push(p);
            }
        }
        Target::Route(r) => {
            if seen_routes.contains(&r) {
                return;
            }
            seen_routes.push(r);
            for t in routes[r].kind.targets() {
                reachable(routes, t, pools, seen_routes);
            }
        }
    }
}

/// A route as a TOML table, every key written out, for GET /config (it parses back to the same route).
pub(super) fn route_to_toml(route: &RouteConfig) -> toml::Table {
    let mut t = toml::Table::new();
    let s = |v: &str| Value::String(v.to_owned());
    let dest_map = |entries: &[(String, Dest)]| {
        Value::Table(entries.iter().map(|(k, d)| (k.clone(), s(&d.name))).collect::<toml::Table>())
    };
    let list = |c: &Children| Value::Array(c.written.iter().map(|n| s(n)).collect());
    t.insert("type".into(), s(route.kind.type_name()));
    match &route.kind {
        RouteKind::Prefix { prefixes, default, strip_prefix, case_insensitive } => {
            t.insert("prefixes".into(), dest_map(prefixes));
            if let Some(d) = default {
                t.insert("default".into(), s(&d.name));
            }
            t.insert("strip_prefix".into(), Value::Boolean(*strip_prefix));
            t.insert("case_insensitive".into(), Value::Boolean(*case_insensitive));
        }
        RouteKind::Operation { operations, default } => {
            t.insert("operations".into(), dest_map(operations));
            if let Some(d) = default {
                t.insert("default".into(), s(&d.name));
            }
        }
        RouteKind::All { children, mode, max_outstanding } => {
            t.insert("children".into(), list(children));
            if *mode != AllMode::Sync {
                t.insert("max_outstanding".into(), Value::Integer(*max_outstanding as i64));
            }
        }
        RouteKind::Random { children } => {
            t.insert("children".into(), list(children));
        }
        RouteKind::Failover { children, max_tries, failover_errors } => {
            t.insert("children".into(), list(children));
            t.insert("max_tries".into(), Value::Integer(*max_tries as i64));
            t.insert("failover_errors".into(), Value::Array(failover_errors.iter().map(|c| s(c.name())).collect()));
        }
        RouteKind::MissFailover { children, max_tries } => {
            t.insert("children".into(), list(children));
            t.insert("max_tries".into(), Value::Integer(*max_tries as i64));
        }
        RouteKind::Shadow { child, shadows, max_outstanding } => {
            t.insert("child".into(), s(&child.name));
            let items = shadows
                .iter()
                .map(|sh| {
                    let mut e = toml::Table::new();
                    e.insert("target".into(), s(&sh.target.name));
                    e.insert(
                        "key_fraction".into(),
                        Value::Array(vec![Value::Float(sh.key_fraction.0), Value::Float(sh.key_fraction.1)]),
                    );
                    e.insert("request_fraction".into(), Value::Float(sh.request_fraction));
                    Value::Table(e)
                })
                .collect();
            t.insert("shadows".into(), Value::Array(items));
            t.insert("max_outstanding".into(), Value::Integer(*max_outstanding as i64));
        }
        RouteKind::Warmup { cold, warm, exptime } => {
            t.insert("cold".into(), s(&cold.name));
            t.insert("warm".into(), s(&warm.name));
            if let Some(e) = exptime {
                t.insert("exptime".into(), Value::Integer(i64::from(*e)));
            }
        }
        RouteKind::L1l2 { l1, l2, l1_ttl_s, write_l2 } => {
            t.insert("l1".into(), s(&l1.name));
            t.insert("l2".into(), s(&l2.name));
            t.insert("l1_ttl_s".into(), Value::Integer(i64::from(*l1_ttl_s)));
            t.insert("write_l2".into(), Value::Boolean(*write_l2));
        }
        RouteKind::Migrate { from, to, start_time, interval_s } => {
            t.insert("from".into(), s(&from.name));
            t.insert("to".into(), s(&to.name));
            t.insert("start_time".into(), Value::Integer(*start_time as i64));
            t.insert("interval_s".into(), Value::Integer(*interval_s as i64));
        }
        RouteKind::Hash { children, hash } => {
            t.insert("children".into(), list(children));
            t.insert("hash".into(), s(hash.name()));
        }
        RouteKind::Error { message } => {
            t.insert("message".into(), s(message));
        }
        RouteKind::Null => {}
    }
    t
}

/// The tree below `target`, one node a line, indented: what `ferrule -t` prints for each listener.
pub fn render_tree(config: &super::Config, target: Target, out: &mut String) {
    fn node(
        config: &super::Config,
        target: Target,
        depth: usize,
        label: &str,
        out: &mut String,
        path: &mut Vec<usize>,
    ) {
        let indent = "  ".repeat(depth);
        let label = if label.is_empty() { String::new() } else { format!("{label} -> ") };
        match target {
            Target::Pool(p) => {
                let pool = &config.pools[p];
                match &pool.cluster {
                    Some(c) => out.push_str(&format!(
                        "{indent}{label}pool {} (redis_cluster, {} seed nodes, read_from {}, refresh every {} ms)\n",
                        pool.name,
                        pool.servers.len(),
                        c.read_from.name(),
                        c.refresh_ms
                    )),
                    None => out.push_str(&format!(
                        "{indent}{label}pool {} ({} servers, {} {})\n",
                        pool.name,
                        pool.servers.len(),
                        pool.hash.name(),
                        pool.distribution.name()
                    )),
                }
            }
            Target::Server { pool, server } => {
                let p = &config.pools[pool];
                out.push_str(&format!("{indent}{label}server {}/{}\n", p.name, p.servers[server].spec));
            }
            Target::Route(r) => {
                let route = &config.routes[r];
                out.push_str(&format!("{indent}{label}route {} ({})", route.name, route.kind.type_name()));
                match &route.kind {
                    RouteKind::Error { message } => out.push_str(&format!(": {message:?}")),
                    RouteKind::Failover { max_tries, .. } | RouteKind::MissFailover { max_tries, .. } => {
                        out.push_str(&format!(", max_tries {max_tries}"))
                    }
                    RouteKind::Prefix { strip_prefix, case_insensitive, .. } => {
                        if *strip_prefix {
                            out.push_str(", strip_prefix");
                        }
                        if *case_insensitive {
                            out.push_str(", case_insensitive");
                        }
                    }
                    _ => {}
                }
                out.push('\n');
                if path.contains(&r) {
                    return;
                }
                path.push(r);
                let targets = route.kind.targets();
                let mut edges = route.kind.edges();
                // Children lists name "POOL/*" once but expand to one child per server: show the expansion.
                if edges.len() != targets.len() {
                    edges = targets.iter().map(|_| (String::new(), String::new())).collect();
                }
                for ((edge, _), t) in edges.iter().zip(targets) {
                    node(config, t, depth + 1, edge, out, path);
                }
                path.pop();
            }
        }
    }
    node(config, target, 1, "", out, &mut Vec::new());
}

/// Lower-cased route type names for error messages.
pub(super) fn not_executable_message(type_name: &str) -> String {
    format!(
        "route type {type_name:?} is not implemented yet (the proxy cannot execute it); implemented: {}",
        EXECUTABLE_TYPES.join(", ")
    )
}
