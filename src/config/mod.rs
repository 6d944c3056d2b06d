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
mod redact;
mod server;
mod tls;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::hash::{DistributionKind, HashKind};

pub use error::ConfigError;
pub use tls::{Built, ClientAuth, ListenerTls, PoolTls, DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS};

/// Default admin/stats HTTP endpoint: loopback only, the port twemproxy uses for its stats.
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 22222);
/// Default grace period for in-flight requests on shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5000;
/// Default period between histogram dumps.
pub const DEFAULT_HISTOGRAM_INTERVAL_S: u64 = 60;
/// Default bound on requests a client may have in flight before ferrule stops reading it.
pub const DEFAULT_CLIENT_MAX_INFLIGHT: usize = 256;
pub const DEFAULT_CLIENT_MAX_UNSENT_BYTES: usize = 4 << 20;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub proxy: ProxyConfig,
    /// Sorted by name.
    pub listeners: Vec<ListenerConfig>,
    /// Sorted by name; [`ListenerConfig::pool`] indexes into this.
    pub pools: Vec<PoolConfig>,
}

impl Config {
    /// Parses and validates a whole configuration; nothing is returned unless everything is valid.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        validate::build(text)
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

    /// Things that are valid but probably unintended, for the caller to log (parsing itself does
    /// not log): currently pools that no listener routes to.
    pub fn warnings(&self) -> Vec<String> {
        self.pools
            .iter()
            .enumerate()
            .filter(|(index, _)| !self.listeners.iter().any(|l| l.pool == *index))
            .map(|(_, pool)| format!("pools.{}: no listener routes to this pool; it is idle", pool.name))
            .collect()
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
    pub shutdown_timeout_ms: u64,
    /// Where latency histograms are dumped; `None` disables dumping.
    pub histogram_dir: Option<PathBuf>,
    pub histogram_interval_s: u64,
    /// Per-request stats: per-command counters and latency histograms (connection and server counters are always
    /// kept). Off only to measure their cost.
    pub stats: bool,
    /// Per client connection: requests in flight before ferrule stops reading the client.
    pub client_max_inflight: usize,
    /// Per client connection: bytes of replies the client has not read before ferrule stops reading it.
    pub client_max_unsent_bytes: usize,
    /// Per backend connection: bytes queued before clients feeding it are paused.
    pub backend_max_queued_bytes: usize,
    /// glommio `io_memory` per executor, in KiB.
    pub io_memory_kib: usize,
    /// How long a worker keeps polling its ring after its last work before it sleeps, in microseconds (0: sleep
    /// as soon as it is idle).
    pub busy_poll_us: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            workers: Workers::Auto,
            cpus: None,
            admin: Some(DEFAULT_ADMIN),
            stats_port: None,
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
            histogram_dir: None,
            histogram_interval_s: DEFAULT_HISTOGRAM_INTERVAL_S,
            stats: true,
            client_max_inflight: DEFAULT_CLIENT_MAX_INFLIGHT,
            client_max_unsent_bytes: DEFAULT_CLIENT_MAX_UNSENT_BYTES,
            backend_max_queued_bytes: DEFAULT_BACKEND_MAX_QUEUED_BYTES,
            io_memory_kib: DEFAULT_IO_MEMORY_KIB,
            busy_poll_us: 0,
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
    /// The pool name, as written.
    pub route: String,
    /// Index of `route` in [`Config::pools`].
    pub pool: usize,
    /// Redis only: the password clients must AUTH with before anything else.
    pub auth: Option<String>,
    pub backlog: u32,
    /// Clients must speak TLS (`tls_cert`/`tls_key` set).
    pub tls: Option<ListenerTls>,
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
    /// TLS to the servers (`tls = true`).
    pub tls: Option<PoolTls>,
}

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
