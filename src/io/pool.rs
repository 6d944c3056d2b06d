//! A worker's runtime view of one pool: its router and its backend connections (per server, `server_connections`).

use super::backend::{Backend, BackendOptions};
use crate::config::{PoolConfig, Protocol, ProxyConfig, ServerConfig};
use crate::router::PoolRouter;
use std::rc::Rc;
use std::time::Duration;

pub struct ServerRt {
    pub ident: String,
    pub spec: String,
    pub weight: u32,
    pub ejected: bool,
    pub conns: Vec<Rc<Backend>>,
}

/// Hands over a previous generation's connections to a server, if they can serve it unchanged.
pub type ReuseConnections<'a> = dyn FnMut(&PoolConfig, &ServerConfig) -> Option<Vec<Rc<Backend>>> + 'a;

pub struct PoolRt {
    pub name: String,
    pub cfg: PoolConfig,
    pub router: PoolRouter,
    pub servers: Vec<ServerRt>,
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
    ) -> PoolRt {
        let opts = backend_options(cfg, proxy);
        // This worker's own copy (its own session cache), shared by the pool's servers on this core.
        let tls_config = cfg.tls.as_ref().map(|t| crate::tls::for_worker_client(&t.client.config));
        let servers: Vec<ServerRt> = cfg
            .servers
            .iter()
            .map(|s| {
                let conns = reuse(cfg, s).unwrap_or_else(|| {
                    (0..cfg.server_connections)
                        .map(|_| {
                            let label = format!(
                                "{}/{}",
                                cfg.name,
                                s.name.clone().unwrap_or_else(|| format!("{}:{}", s.host, s.port))
                            );
                            let mut opts = opts.clone();
                            opts.tls = cfg.tls.as_ref().zip(tls_config.as_ref()).map(|(t, config)| {
                                super::tls::Connector { config: config.clone(), server_name: t.server_name(s) }
                            });
                            let b = Backend::new(s.addr, label, opts);
                            glommio::spawn_local(b.clone().run(cfg.preconnect)).detach();
                            b
                        })
                        .collect()
                });
                ServerRt {
                    ident: s.ident.clone(),
                    spec: s.spec.clone(),
                    weight: s.weight,
                    ejected: ejected(&s.spec),
                    conns,
                }
            })
            .collect();
        let router = router_for(cfg, &servers);
        PoolRt { name: cfg.name.clone(), cfg: cfg.clone(), router, servers }
    }

    /// The connection a client uses for a server: fixed per client, so one client's requests to one server stay in
    /// order even with several connections per server (twemproxy breaks read-your-writes there).
    #[inline]
    pub fn backend(&self, server: usize, client_id: u64) -> &Rc<Backend> {
        let conns = &self.servers[server].conns;
        &conns[(client_id % conns.len() as u64) as usize]
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

fn backend_options(cfg: &PoolConfig, proxy: &ProxyConfig) -> BackendOptions {
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
        tls: None,
    }
}
