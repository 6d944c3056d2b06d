//! A worker's runtime view of one pool: its router and its backend connections (per server, `server_connections`).

use super::backend::{Backend, BackendOptions};
use super::cluster::ClusterRt;
use super::dedicated::{DedicatedRef, DedicatedSet};
use crate::config::{PoolConfig, Protocol, ProxyConfig, ServerConfig};
use crate::protocol::redis::Proto;
use crate::router::PoolRouter;
use std::rc::Rc;
use std::time::Duration;

pub struct ServerRt {
    pub ident: String,
    pub spec: String,
    pub weight: u32,
    pub ejected: bool,
    /// The first `server_connections` speak RESP2. A redis pool has as many again after them that switched to
    /// RESP3 (`HELLO 3` in their prelude) for RESP3 clients, so every client gets replies in the version it chose
    /// without the proxy translating them; those connect on first use, so RESP2-only clients cost nothing more.
    pub conns: Vec<Rc<Backend>>,
    /// Connections held by one client at a time (transactions, blocking commands), up to
    /// `max_dedicated_connections`; a reload starts a new set.
    pub dedicated: DedicatedRef,
}

/// Hands over a previous generation's connections to a server, if they can serve it unchanged.
pub type ReuseConnections<'a> = dyn FnMut(&PoolConfig, &ServerConfig) -> Option<Vec<Rc<Backend>>> + 'a;

pub struct PoolRt {
    pub name: String,
    pub cfg: PoolConfig,
    pub router: PoolRouter,
    /// A `redis_cluster` pool has none: its nodes are in `cluster`.
    pub servers: Vec<ServerRt>,
    /// `kind = "redis_cluster"`: the slot map and the node connections. Checked once per request, before the
    /// sharded path, which is otherwise untouched.
    pub cluster: Option<Rc<ClusterRt>>,
    /// Connections per server and protocol version (`server_connections`).
    per_proto: usize,
}

impl PoolRt {
    /// Builds the pool, reusing connections from `reuse` (a previous generation of pools) for servers that remain,
    /// so that a reload does not reconnect to servers it did not change. Servers for which `ejected` says so start
    /// out of the ring (control still holds them ejected).
    pub fn build(
        cfg: &PoolConfig,
        proxy: &ProxyConfig,
        reuse: &mut ReuseConnections<'_>,
        ejected: &dyn Fn(&str) -> bool,
        cluster: Option<Rc<ClusterRt>>,
    ) -> PoolRt {
        if cfg.cluster.is_some() {
            // The seeds are for control's topology reads; requests go to the nodes of the slot map.
            let cluster = cluster.unwrap_or_else(|| ClusterRt::new(cfg, proxy));
            let router = router_for(cfg, &[]);
            let per_proto = cfg.server_connections;
            return PoolRt {
                name: cfg.name.clone(),
                cfg: cfg.clone(),
                router,
                servers: Vec::new(),
                cluster: Some(cluster),
                per_proto,
            };
        }
        let opts = backend_options(cfg, proxy, Proto::Resp2);
        let resp3 = (cfg.protocol == Protocol::Redis).then(|| backend_options(cfg, proxy, Proto::Resp3));
        // This worker's own copy (its own session cache), shared by the pool's servers on this core.
        let tls_config = cfg.tls.as_ref().map(|t| crate::tls::for_worker_client(&t.client.config));
        let mut dedicated_opts = (opts.clone(), backend_options(cfg, proxy, Proto::Resp3));
        let servers: Vec<ServerRt> =
            cfg.servers
                .iter()
                .map(|s| {
                    let label =
                        format!("{}/{}", cfg.name, s.name.clone().unwrap_or_else(|| format!("{}:{}", s.host, s.port)));
                    let tls = cfg.tls.as_ref().zip(tls_config.as_ref()).map(|(t, config)| super::tls::Connector {
                        config: config.clone(),
                        server_name: t.server_name(s),
                    });
                    // Dedicated connections speak TLS like the shared ones.
                    dedicated_opts.0.tls = tls.clone();
                    dedicated_opts.1.tls = tls.clone();
                    let dedicated = DedicatedSet::new(
                        s.addr,
                        label.clone(),
                        dedicated_opts.0.clone(),
                        dedicated_opts.1.clone(),
                        cfg.max_dedicated_connections,
                    );
                    let conns = reuse(cfg, s).unwrap_or_else(|| {
                        let spawn = |opts: &BackendOptions, preconnect: bool| {
                            let mut opts = opts.clone();
                            opts.tls = tls.clone();
                            let b = Backend::new(s.addr, label.clone(), opts);
                            glommio::spawn_local(b.clone().run(preconnect)).detach();
                            b
                        };
                        let mut conns: Vec<Rc<Backend>> =
                            (0..cfg.server_connections).map(|_| spawn(&opts, cfg.preconnect)).collect();
                        if let Some(opts3) = &resp3 {
                            conns.extend((0..cfg.server_connections).map(|_| spawn(opts3, false)));
                        }
                        conns
                    });
                    ServerRt {
                        ident: s.ident.clone(),
                        spec: s.spec.clone(),
                        weight: s.weight,
                        ejected: ejected(&s.spec),
                        conns,
                        dedicated,
                    }
                })
                .collect();
        let router = router_for(cfg, &servers);
        let per_proto = cfg.server_connections;
        PoolRt { name: cfg.name.clone(), cfg: cfg.clone(), router, servers, cluster: None, per_proto }
    }

    /// The connection a client uses for a server: fixed per client, so one client's requests to one server stay in
    /// order even with several connections per server (twemproxy breaks read-your-writes there).
    #[inline]
    pub fn backend(&self, server: usize, client_id: u64) -> &Rc<Backend> {
        self.backend_for(server, client_id, Proto::Resp2)
    }

    /// The connection a client of protocol version `proto` uses for a server: one of those that speak its version
    /// (a memcache pool has RESP2 ones only, which is all memcache clients ask for).
    #[inline]
    pub fn backend_for(&self, server: usize, client_id: u64, proto: Proto) -> &Rc<Backend> {
        let conns = &self.servers[server].conns;
        let first = match proto {
            Proto::Resp3 if conns.len() > self.per_proto => self.per_proto,
            _ => 0,
        };
        let count = self.per_proto.min(conns.len() - first).max(1);
        &conns[first + (client_id % count as u64) as usize]
    }

    /// Marks a server in or out of the ring and rebuilds the ring; every core does the same on the same broadcast.
    /// A restored server's connections forget their reconnect back-off: control's probe just found it answering.
    pub fn set_ejected(&mut self, server: usize, ejected: bool) {
        let Some(s) = self.servers.get_mut(server) else { return };
        if s.ejected == ejected {
            return;
        }
        s.ejected = ejected;
        if !ejected {
            for c in &s.conns {
                c.reset_backoff();
            }
        }
        self.router = router_for(&self.cfg, &self.servers);
    }
}

fn router_for(cfg: &PoolConfig, servers: &[ServerRt]) -> PoolRouter {
    let members: Vec<(&str, u32, bool)> = servers.iter().map(|s| (s.ident.as_str(), s.weight, !s.ejected)).collect();
    PoolRouter::new(cfg.hash, cfg.distribution, cfg.hash_tag, &members)
}

/// How a pool's connections are set up; for redis, `proto` says which protocol version they switch to.
fn backend_options(cfg: &PoolConfig, proxy: &ProxyConfig, proto: Proto) -> BackendOptions {
    backend_options_with(cfg, proxy, proto, false)
}

/// The connections to the nodes of a cluster pool: as a sharded pool's, with `READONLY` in the prelude when reads
/// may go to replicas (`read_from` other than primary; on a primary it changes nothing).
pub fn cluster_backend_options(cfg: &PoolConfig, proxy: &ProxyConfig, proto: Proto, readonly: bool) -> BackendOptions {
    backend_options_with(cfg, proxy, proto, readonly)
}

fn backend_options_with(cfg: &PoolConfig, proxy: &ProxyConfig, proto: Proto, readonly: bool) -> BackendOptions {
    let mut prelude = Vec::new();
    let mut prelude_replies = 0;
    if cfg.protocol == Protocol::Redis {
        if let Some(pw) = &cfg.redis_auth {
            crate::protocol::redis::write_command(&mut prelude, &[b"AUTH", pw.as_bytes()]);
            prelude_replies += 1;
        }
        if cfg.redis_db != 0 {
            let db = cfg.redis_db.to_string();
            crate::protocol::redis::write_command(&mut prelude, &[b"SELECT", db.as_bytes()]);
            prelude_replies += 1;
        }
        if readonly {
            crate::protocol::redis::write_command(&mut prelude, &[b"READONLY"]);
            prelude_replies += 1;
        }
        if proto == Proto::Resp3 {
            // After AUTH: redis refuses HELLO from a client that has not authenticated.
            crate::protocol::redis::write_command(&mut prelude, &[b"HELLO", b"3"]);
            prelude_replies += 1;
        }
    }
    BackendOptions {
        protocol: cfg.protocol,
        timeout: Duration::from_millis(cfg.timeout_ms),
        connect_timeout: Duration::from_millis(cfg.connect_timeout_ms.min(cfg.timeout_ms).max(1)),
        max_queued_bytes: proxy.backend_max_queued_bytes,
        batching: cfg.batching,
        max_hold: Duration::from_micros(cfg.batching_max_hold_us),
        prelude,
        prelude_replies,
        prelude_ends_with_hello3: cfg.protocol == Protocol::Redis && proto == Proto::Resp3,
        keepalive: cfg.tcpkeepalive,
        one_shot: false,
        tls: None,
    }
}
