//! The configuration: ferrule's TOML model, its parsing and its validation.
//!
//! Everything here is pure (text in, a validated [`Config`] or one [`ConfigError`] out) except
//! [`Config::load`], which reads the file, and the resolution of server host names that are not IP
//! literals. A `Config` value exists only when the whole text is valid, so a reload can never be
//! half-applied: the control core either swaps in a complete new `Config` or keeps the old one.
//!
//! The format is documented key by key in docs/configuration.md; conf/ holds examples that the unit
//! tests parse.

mod address;
mod error;
mod fields;
pub mod import;
mod redact;
mod routes;
mod server;
mod tls;
mod users;
mod validate;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::hash::{DistributionKind, HashKind};

pub use error::ConfigError;
pub use routes::{
    operation_fits, render_tree, AllMode, Children, Dest, FailureClass, RouteConfig, RouteKind, Shadow, Target,
    DEFAULT_ALL_MAX_OUTSTANDING, DEFAULT_ERROR_MESSAGE, DEFAULT_SHADOW_MAX_OUTSTANDING, EXECUTABLE_TYPES,
    MEMCACHE_OPERATIONS, OPERATION_CLASSES, ROUTE_TYPES,
};
pub use tls::{Built, ClientAuth, ListenerTls, PoolTls, DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS};
pub use users::{sha256, Access, AuthRefusal, Permissions, UserConfig, UserPassword};

/// Default admin/stats HTTP endpoint: loopback only, the port twemproxy uses for its stats.
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 22222);
/// Default bound on the connections the admin endpoint (and, separately, the stats port) serves at once.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// Default time an admin or stats port connection may take to send its request and to read the answer.
pub const DEFAULT_ADMIN_TIMEOUT_MS: u64 = 5000;
/// Default grace period for in-flight requests on shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5000;
/// Default period between histogram dumps.
pub const DEFAULT_HISTOGRAM_INTERVAL_S: u64 = 60;
/// Default bound on requests a client may have in flight before ferrule stops reading it.
pub const DEFAULT_CLIENT_MAX_INFLIGHT: usize = 256;
pub const DEFAULT_CLIENT_MAX_UNSENT_BYTES: usize = 4 << 20;
/// Default hard cap on the reply bytes one client may hold before ferrule closes it.
pub const DEFAULT_CLIENT_MAX_BUFFERED_BYTES: usize = 64 << 20;
/// Default bound on the reply bytes all clients of one worker may hold together.
pub const DEFAULT_CLIENT_BUFFERS_MAX_BYTES: usize = 512 << 20;
/// Default bound on bytes queued for one backend connection before its clients are paused.
pub const DEFAULT_BACKEND_MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Default glommio `io_memory` per executor, in KiB (ferrule does no file I/O, so keep it small).
pub const DEFAULT_IO_MEMORY_KIB: usize = 512;
/// Default listen backlog (twemproxy uses 512; busy proxies overflow that during reconnect storms).
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Default per-request timeout. twemproxy waits forever, which lets one stuck server hold every
/// request queued behind it; one second is far above a healthy cache's latency and still short
/// enough for clients to fail over.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Default time allowed to establish a backend connection.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
/// Default (and twemproxy's) number of connections per server per worker.
pub const DEFAULT_SERVER_CONNECTIONS: usize = 1;
/// Dedicated connections per server per worker: enough for a few dozen blocked job-queue workers per core.
pub const DEFAULT_MAX_DEDICATED_CONNECTIONS: usize = 64;
/// Default (and twemproxy's) consecutive failures before a server is ejected.
pub const DEFAULT_SERVER_FAILURE_LIMIT: u32 = 2;
/// Default (and twemproxy's) time an ejected server stays out of the ring.
pub const DEFAULT_SERVER_RETRY_TIMEOUT_MS: u64 = 30_000;
/// Default memcache value size limit: memcached's own default item size limit.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Default key hash, as in twemproxy.
pub const DEFAULT_HASH: HashKind = HashKind::Fnv1a_64;
/// Default distribution, as in twemproxy.
pub const DEFAULT_DISTRIBUTION: DistributionKind = DistributionKind::Ketama;
/// Longest `busy_poll_us`: a worker that polls for longer than this is simply never idle.
pub const MAX_BUSY_POLL_US: u64 = 1_000_000;
/// Default bound on how long adaptive batching holds a request.
pub const DEFAULT_BATCHING_MAX_HOLD_US: u64 = 1000;
/// Default batching of writes to a backend connection.
pub const DEFAULT_BATCHING: Batching = Batching::Adaptive;
/// What [`Config::to_redacted_toml`] writes in place of a secret.
pub const REDACTED: &str = "********";

/// A complete, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub proxy: ProxyConfig,
    /// Sorted by name.
    pub listeners: Vec<ListenerConfig>,
    /// Sorted by name; [`Target::Pool`] indexes into this.
    pub pools: Vec<PoolConfig>,
    /// Sorted by name; [`Target::Route`] indexes into this. Acyclic, every name resolved.
    pub routes: Vec<RouteConfig>,
}

impl Config {
    /// Parses and validates a whole configuration; nothing is returned unless everything is valid.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        validate::build(text)
    }

    /// Parses and validates like [`Config::parse`], but accepts every route kind of the model, including those the
    /// proxy cannot execute yet ([`EXECUTABLE_TYPES`]): for tools that read or write configs (import, conversion).
    pub fn parse_model(text: &str) -> Result<Config, ConfigError> {
        validate::build_with(text, false)
    }

    /// Reads and parses the file at `path`; every error message starts with the path.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::unreadable(path, &err))?;
        Config::parse(&text).map_err(|err| err.with_origin(path))
    }

    /// The pool called `name`, if any.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|pool| pool.name == name)
    }

    /// The index into [`Config::pools`] of the pool called `name`, if any.
    pub fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|pool| pool.name == name)
    }

    /// The running config as TOML with secrets (`auth`, `redis_auth`) replaced by
    /// [`REDACTED`], for GET /config. Every default is written out, so the output shows exactly
    /// what is in force, and it parses back to the same config (secrets aside).
    pub fn to_redacted_toml(&self) -> String {
        redact::to_redacted_toml(self)
    }

    /// The index into [`Config::routes`] of the route called `name`, if any.
    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|route| route.name == name)
    }

    /// What a listener's `route` name means in this config (a reload re-resolves names, as indices move).
    pub fn resolve(&self, name: &str) -> Option<Target> {
        self.pool_index(name).map(Target::Pool).or_else(|| self.route_index(name).map(Target::Route))
    }

    /// The pools a target can send to, in the order first reached.
    pub fn pools_reached(&self, target: Target) -> Vec<usize> {
        let (mut pools, mut seen) = (Vec::new(), Vec::new());
        routes::reachable(&self.routes, target, &mut pools, &mut seen);
        pools
    }

    /// The route tree of every listener, as `ferrule -t` prints it.
    pub fn describe_routes(&self) -> String {
        let mut out = String::new();
        for l in &self.listeners {
            out.push_str(&format!("listener {} ({}, {}):\n", l.name, l.protocol.name(), l.listen));
            render_tree(self, l.target, &mut out);
        }
        out
    }

    /// Things that are valid but probably unintended, for the caller to log (parsing itself does
    /// not log): pools and routes that no listener reaches.
    pub fn warnings(&self) -> Vec<String> {
        let (mut pools, mut routes) = (Vec::new(), Vec::new());
        for l in &self.listeners {
            routes::reachable(&self.routes, l.target, &mut pools, &mut routes);
        }
        let idle_pools = self
            .pools
            .iter()
            .enumerate()
            .filter(|(index, _)| !pools.contains(index))
            .map(|(_, pool)| format!("pools.{}: no listener routes to this pool; it is idle", pool.name));
        let idle_routes = self
            .routes
            .iter()
            .enumerate()
            .filter(|(index, _)| !routes.contains(index))
            .map(|(_, route)| format!("routes.{}: no listener reaches this route; it is unused", route.name));
        idle_pools.chain(idle_routes).collect()
    }
}

/// Process-wide settings: cores, admin endpoint, limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub workers: Workers,
    /// CPUs to pin workers to, in order; `None` means the CPUs the process may run on.
    pub cpus: Option<Vec<usize>>,
    /// Admin/stats HTTP endpoint; `None` when disabled.
    pub admin: Option<SocketAddr>,
    /// Optional twemproxy-style raw stats port (connect, read one JSON object, closed).
    pub stats_port: Option<SocketAddr>,
    /// Bearer token required by the admin endpoint's mutating routes, when set.
    pub admin_token: Option<String>,
    /// Connections the admin endpoint serves at once (the stats port has its own as many); more are closed at once.
    pub admin_max_connections: usize,
    /// How long an admin or stats port connection may take to send its request, and to read the answer.
    pub admin_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    /// Where latency histograms are dumped; `None` disables dumping.
    pub histogram_dir: Option<PathBuf>,
    /// Where this process waits for a new ferrule binary to take its sockets over (`ferrule --takeover`, SIGUSR2);
    /// `None`: no binary upgrade without a restart. A unix socket path (see docs/operations.md, "Binary upgrade").
    pub upgrade_socket: Option<PathBuf>,
    pub histogram_interval_s: u64,
    /// Per-request stats: per-command counters and latency histograms (connection and server counters are always
    /// kept). Off only to measure their cost.
    pub stats: bool,
    /// Per client connection: requests in flight before ferrule stops reading the client.
    pub client_max_inflight: usize,
    /// Per client connection: bytes of replies the client has not read before ferrule stops reading it.
    pub client_max_unsent_bytes: usize,
    /// Per client connection: reply bytes held for the client (unsent, being sent, or arrived out of order) past
    /// which ferrule closes it (one reply of any size is always allowed).
    pub client_max_buffered_bytes: usize,
    /// Per worker: reply bytes held for all its clients together; past it, a client holding more than
    /// `client_max_unsent_bytes` is closed.
    pub client_buffers_max_bytes: usize,
    /// Per backend connection: bytes queued before clients feeding it are paused.
    pub backend_max_queued_bytes: usize,
    /// glommio `io_memory` per executor, in KiB.
    pub io_memory_kib: usize,
    /// How long a worker keeps polling its ring after its last work before it sleeps, in microseconds (0: sleep
    /// as soon as it is idle).
    pub busy_poll_us: u64,
    /// Client connections the whole proxy holds at most, over every listener (0: no limit). Each worker admits
    /// its share (docs/configuration.md).
    pub max_client_connections: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            workers: Workers::Auto,
            cpus: None,
            admin: Some(DEFAULT_ADMIN),
            stats_port: None,
            admin_token: None,
            admin_max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            admin_timeout_ms: DEFAULT_ADMIN_TIMEOUT_MS,
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
            histogram_dir: None,
            upgrade_socket: None,
            histogram_interval_s: DEFAULT_HISTOGRAM_INTERVAL_S,
            stats: true,
            client_max_inflight: DEFAULT_CLIENT_MAX_INFLIGHT,
            client_max_unsent_bytes: DEFAULT_CLIENT_MAX_UNSENT_BYTES,
            client_max_buffered_bytes: DEFAULT_CLIENT_MAX_BUFFERED_BYTES,
            client_buffers_max_bytes: DEFAULT_CLIENT_BUFFERS_MAX_BYTES,
            backend_max_queued_bytes: DEFAULT_BACKEND_MAX_QUEUED_BYTES,
            io_memory_kib: DEFAULT_IO_MEMORY_KIB,
            busy_poll_us: 0,
            max_client_connections: 0,
        }
    }
}

/// How many pinned worker executors to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// One per CPU in `cpus`, or per CPU the process may run on.
    #[default]
    Auto,
    /// Exactly this many (at least 1).
    Count(usize),
}

/// Where a listener accepts clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// An absolute path to a unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The wire protocol a listener and the pool behind it speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Redis,
    /// The memcached ASCII protocol.
    Memcache,
}

impl Protocol {
    /// Every protocol, for messages that list the accepted names.
    pub const ALL: [Protocol; 2] = [Protocol::Redis, Protocol::Memcache];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Redis => "redis",
            Protocol::Memcache => "memcache",
        }
    }

    /// The protocol called `name` in the config file.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// When a backend connection writes what its clients queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Batching {
    /// Nagle's rule per connection: with nothing in flight, write at once; while requests are in flight, hold new
    /// ones until their replies are all back (or the batch is large), then write them together. A lone request
    /// waits for nothing; under load, batches grow and the server does fewer reads and wake-ups per request.
    Adaptive,
    /// Write whatever is queued at every turn of the worker's loop, replies in flight or not.
    Eager,
}

impl Batching {
    pub const ALL: [Batching; 2] = [Batching::Adaptive, Batching::Eager];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Batching::Adaptive => "adaptive",
            Batching::Eager => "eager",
        }
    }

    pub fn from_name(name: &str) -> Option<Batching> {
        Batching::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// One `[listeners.<name>]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: ListenAddr,
    pub protocol: Protocol,
    /// The pool or route name, as written.
    pub route: String,
    /// What `route` names.
    pub target: Target,
    /// Redis only: the password clients must AUTH with before anything else (the `default` user's).
    pub auth: Option<String>,
    /// Redis only: named users (`[listeners.X.users.NAME]`), sorted by name.
    pub users: Vec<UserConfig>,
    pub backlog: u32,
    /// Client connections this listener holds at most (twemproxy's key; 0: no limit of its own). Split over the
    /// workers that accept on it, as `proxy.max_client_connections` is.
    pub client_connections: usize,
    /// A client that sends nothing for this long, with nothing in flight, is closed (0: never).
    pub client_idle_timeout_ms: u64,
    /// TCP keepalive on accepted client connections (twemproxy's key).
    pub tcpkeepalive: bool,
    /// Clients must speak TLS (`tls_cert`/`tls_key` set).
    pub tls: Option<ListenerTls>,
}

impl Config {
    /// About how many descriptors the configured client limits need with `workers` workers: the clients the
    /// limits admit (`proxy.max_client_connections`, else the listeners' `client_connections` summed), every
    /// backend connection (per worker, per server, `server_connections`, twice for RESP3 clients' own ones),
    /// each worker's listening sockets, and a margin for rings, eventfds, the admin endpoint and logs. `None`
    /// when no client limit is configured (then nothing bounds what is needed). A `redis_cluster` pool's nodes are
    /// not known before its map is read: it counts as its seeds or [`CLUSTER_NODES_ESTIMATE`] nodes, whichever is
    /// more (every node of the map gets connections, replicas too).
    pub fn descriptors_needed(&self, workers: usize) -> Option<usize> {
        let listeners: Option<usize> =
            self.listeners.iter().map(|l| (l.client_connections > 0).then_some(l.client_connections)).sum();
        let clients = match (self.proxy.max_client_connections, listeners) {
            (0, None) => return None,
            (0, Some(l)) => l,
            (p, None) => p,
            (p, Some(l)) => p.min(l),
        };
        let nodes = |p: &PoolConfig| match p.cluster {
            Some(_) => p.servers.len().max(CLUSTER_NODES_ESTIMATE),
            None => p.servers.len(),
        };
        let backends: usize = self.pools.iter().map(|p| nodes(p) * p.server_connections * 2).sum::<usize>() * workers;
        Some(clients + backends + self.listeners.len() * workers + 64)
    }
}

impl ListenerConfig {
    /// Who may connect, as sessions check it.
    pub fn access(&self) -> Access {
        Access::new(self.auth.as_deref(), &self.users)
    }

    /// The pool, when the listener names one directly (no route above it).
    pub fn pool(&self) -> Option<usize> {
        match self.target {
            Target::Pool(p) => Some(p),
            _ => None,
        }
    }
}

/// One `[pools.<name>]` table: a set of servers and how keys are spread over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    /// The protocol of the listeners routing here, or the `protocol` key for a pool none reaches.
    pub protocol: Protocol,
    /// In the order written; this order matters to `modula` distribution.
    pub servers: Vec<ServerConfig>,
    pub hash: HashKind,
    pub distribution: DistributionKind,
    /// Two bytes, e.g. `{}`: only the text between them is hashed.
    pub hash_tag: Option<[u8; 2]>,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Connections per server per worker, at least 1.
    pub server_connections: usize,
    /// Redis only: per server per worker, the most connections held by one client each (transactions, blocking
    /// commands); 0 refuses those commands.
    pub max_dedicated_connections: usize,
    pub preconnect: bool,
    pub batching: Batching,
    /// Adaptive batching: the longest a request is held behind a batch in flight, in microseconds.
    pub batching_max_hold_us: u64,
    /// Redis only: sent as AUTH on every new backend connection.
    pub redis_auth: Option<String>,
    /// Redis only: sent as SELECT on every new backend connection when not 0.
    pub redis_db: u32,
    pub auto_eject_hosts: bool,
    pub server_failure_limit: u32,
    pub server_retry_timeout_ms: u64,
    /// Memcache only: the largest value a storage command may carry.
    pub max_value_bytes: usize,
    /// TCP keepalive on the backend connections (twemproxy's `tcpkeepalive`).
    pub tcpkeepalive: bool,
    /// TLS to the servers (`tls = true`).
    pub tls: Option<PoolTls>,
    /// `kind = "redis_cluster"`: the servers are seed nodes of a Redis Cluster and keys route by its slot map.
    pub cluster: Option<ClusterOptions>,
}

/// The settings of a `kind = "redis_cluster"` pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterOptions {
    /// How often control reads the topology again when nothing asked it to.
    pub refresh_ms: u64,
    pub read_from: crate::cluster::ReadFrom,
    /// Redirects (MOVED/ASK) one request may follow before it fails with an error that says so.
    pub max_redirects: u8,
    /// The shortest time between two topology reads that redirects or failures asked for (a storm of MOVED
    /// replies causes one read per interval, not one per reply).
    pub refresh_min_interval_ms: u64,
}

/// Default period of topology refreshes of a `redis_cluster` pool (redirects and failures refresh at once).
pub const DEFAULT_CLUSTER_REFRESH_MS: u64 = 5000;

/// The nodes a `redis_cluster` pool is assumed to have when estimating descriptors (its map is read at run time):
/// the smallest cluster redis recommends, 3 primaries with a replica each.
pub const CLUSTER_NODES_ESTIMATE: usize = 6;

/// Default shortest gap between two asked-for topology reads of a `redis_cluster` pool.
pub const DEFAULT_CLUSTER_REFRESH_MIN_INTERVAL_MS: u64 = 200;

/// What kind of pool a `[pools.<name>]` table is (its `kind` key).
pub const POOL_KINDS: [&str; 2] = ["sharded", "redis_cluster"];

/// One backend server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// As written, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `host` resolved once, at parse time.
    pub addr: SocketAddr,
    pub weight: u32,
    pub name: Option<String>,
    /// The server's identity on the ketama ring (see [`crate::hash::ketama_ident`]).
    pub ident: String,
    /// The original `host:port:weight [name]` text, trimmed.
    pub spec: String,
}
