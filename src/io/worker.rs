//! A worker executor: one pinned core with its own listeners, sessions, pools, rings and backend connections.

use super::backend::Backend;
use super::exhaustion;
use super::messages::{FromWorker, ServerKey, ToWorker};
use super::pool::PoolRt;
use super::replies::{BufferBudget, ClientLimits};
use super::session;
use super::stats::{WorkerSnapshot, WorkerStats};
use super::takeover;
use super::tls;
use super::uring::{self, Conn, Doorbell, Listener};
use crate::config::{Config, ListenAddr, ListenerConfig, PoolConfig, Protocol, ProxyConfig, ServerConfig, Target};
use crate::routes::RouteTree;
use futures_lite::Stream;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender};
use glommio::Task;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a session sees of its listener; updated in place by a reload so open connections follow the new routes.
pub struct ListenerSlot {
    pub name: String,
    pub protocol: Protocol,
    /// The pool or route name, to find it again in a new config.
    route: RefCell<String>,
    target: Cell<Target>,
    /// Memcache: the largest value a storage command may carry (the largest of the pools the route reaches).
    max_value_bytes: Cell<usize>,
    /// Redis: who may connect (the `default` user's `auth` and the named users), shared by the sessions.
    access: RefCell<Rc<crate::config::Access>>,
    /// This worker's TLS for the listener: new connections take the one in force when they are accepted.
    tls: RefCell<Option<tls::Acceptor>>,
    closed: Cell<bool>,
    /// Once closed: until when its sessions still read what their clients send (see `session::Session::refill`).
    read_until: Cell<Option<Instant>>,
    /// Client connections of this listener open on this worker.
    clients: Cell<usize>,
    /// This worker's share of the listener's `client_connections` (`usize::MAX`: no limit).
    client_limit: Cell<usize>,
    /// `client_idle_timeout_ms` (0: never).
    pub idle_timeout_ms: Cell<u64>,
    /// `tcpkeepalive`.
    keepalive: Cell<bool>,
}

/// A target no config has: a closed listener whose pool or route is gone (its sessions get "listener has no pool").
const GONE: Target = Target::Pool(usize::MAX);

impl ListenerSlot {
    fn new(lc: &ListenerConfig, cfg: &Config, share: Share) -> ListenerSlot {
        ListenerSlot {
            clients: Cell::new(0),
            client_limit: Cell::new(share.of_listener(lc)),
            idle_timeout_ms: Cell::new(lc.client_idle_timeout_ms),
            keepalive: Cell::new(lc.tcpkeepalive),
            name: lc.name.clone(),
            protocol: lc.protocol,
            route: RefCell::new(lc.route.clone()),
            target: Cell::new(lc.target),
            max_value_bytes: Cell::new(max_value_bytes(cfg, lc.target)),
            access: RefCell::new(Rc::new(lc.access())),
            tls: RefCell::new(acceptor(lc)),
            closed: Cell::new(false),
            read_until: Cell::new(None),
        }
    }

    /// Where requests go: a pool (the plain path) or a route of the worker's route tree.
    #[inline]
    pub fn target(&self) -> Target {
        self.target.get()
    }
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes.get()
    }
    pub fn access(&self) -> Rc<crate::config::Access> {
        self.access.borrow().clone()
    }
    /// Whether clients must authenticate first; asked on every request of a client that has not (no clone).
    #[inline]
    pub fn auth_required(&self) -> bool {
        self.access.borrow().required()
    }
    /// The listener was removed by a reload, or the worker is shutting down or handing over: sessions drain (they
    /// answer what their clients send until each is quiet, see `session::Session::refill`) and close.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Once closed: the moment after which its sessions read nothing more (they answer what they have read and
    /// close).
    pub fn read_until(&self) -> Option<Instant> {
        self.read_until.get()
    }

    /// Follows a new config: route, target (pools and routes are sorted by name, so indices move) and auth.
    fn update(&self, lc: &ListenerConfig, cfg: &Config, share: Share) {
        self.client_limit.set(share.of_listener(lc));
        self.idle_timeout_ms.set(lc.client_idle_timeout_ms);
        self.keepalive.set(lc.tcpkeepalive);
        *self.route.borrow_mut() = lc.route.clone();
        self.target.set(lc.target);
        self.max_value_bytes.set(max_value_bytes(cfg, lc.target));
        *self.access.borrow_mut() = Rc::new(lc.access());
        *self.tls.borrow_mut() = acceptor(lc);
    }

    /// Marks the listener closed; its sessions read until `read_until`. The target is re-resolved in `cfg` (the
    /// sessions still open finish on the pool or route of the same name, or get "listener has no pool" when it is
    /// gone).
    fn close(&self, cfg: &Config, read_until: Instant) {
        let target = cfg
            .resolve(&self.route.borrow())
            .filter(|&t| cfg.pools_reached(t).iter().all(|&p| cfg.pools[p].protocol == self.protocol))
            .unwrap_or(GONE);
        self.target.set(target);
        self.read_until.set(Some(read_until));
        self.closed.set(true);
    }
}

/// Which part of a proxy-wide or per-listener client limit this worker admits: limits are split over the workers
/// (`limit / workers`, the remainder going to the first ones), so admission needs no count shared between cores.
/// The kernel spreads connections over the workers' SO_REUSEPORT sockets evenly but not exactly, so a client can be
/// refused by a full worker while another still has room: a limit is a bound, reached a little early at worst.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    pub worker: usize,
    pub workers: usize,
}

impl Share {
    /// This worker's part of `limit`, `usize::MAX` for 0 (no limit). A limit smaller than the worker count leaves
    /// the last workers a share of none: they refuse every client.
    pub fn of(self, limit: usize) -> usize {
        if limit == 0 {
            return usize::MAX;
        }
        let workers = self.workers.max(1);
        limit / workers + usize::from(self.worker < limit % workers)
    }

    /// The listener's `client_connections` on this worker: a unix socket listener is served by worker 0 alone.
    fn of_listener(self, lc: &ListenerConfig) -> usize {
        match lc.listen {
            ListenAddr::Unix(_) if lc.client_connections > 0 => lc.client_connections,
            _ => self.of(lc.client_connections),
        }
    }
}

fn max_value_bytes(cfg: &Config, target: Target) -> usize {
    cfg.pools_reached(target)
        .iter()
        .filter_map(|&p| cfg.pools.get(p))
        .map(|p| p.max_value_bytes)
        .max()
        .unwrap_or(crate::config::DEFAULT_MAX_VALUE_BYTES)
}

/// An open client connection, known to its worker so that closing its listener can wake it.
struct SessionEntry {
    slot: Rc<ListenerSlot>,
    conn: Conn,
}

struct ListenerRt {
    slot: Rc<ListenerSlot>,
    listen: ListenAddr,
    /// The listening TCP sockets, owned by the accept loops (for `shutdown`; see [`Worker::close_listener`]): one,
    /// or several after a takeover by a process with fewer workers (see `handover::share`).
    tcp_fds: Vec<RawFd>,
    /// The sockets' records for a future hand-over (`takeover::register`).
    registered: Vec<u64>,
    /// The accept loops, each with the handle that stops it for a hand-over; dropping a loop stops accepting and
    /// closes its socket.
    accepts: Vec<(Task<()>, uring::AcceptStop)>,
}

pub struct Worker {
    pub id: usize,
    pub pools: RefCell<Vec<PoolRt>>,
    /// The routes of the running config, rebuilt on reload with the pools (indices into both match `config`).
    pub routes: RefCell<Rc<RouteTree>>,
    /// How this worker executes the multi-destination routes of the running config, with their counters.
    pub fans: RefCell<Rc<super::fan::Plans>>,
    listeners: RefCell<HashMap<String, ListenerRt>>,
    /// Backend connections removed by a reload that still have requests in flight: their deadlines are still
    /// checked, and they are dropped once they closed.
    retired: RefCell<Vec<Rc<Backend>>>,
    /// Open client connections by a worker-local number.
    sessions: RefCell<HashMap<u64, SessionEntry>>,
    next_session: Cell<u64>,
    /// How many workers there are (client limits are split over them).
    workers: usize,
    /// Throttles the warning about clients refused over a limit.
    refusal_warning: exhaustion::Throttle,
    /// Client connections that ended so far: the tick gives freed memory back to the system after some did.
    sessions_ended: Cell<u64>,
    /// The running config (route names and messages for routed requests' replies).
    pub config: RefCell<Arc<Config>>,
    /// The random state of `random` routes (xorshift; never 0).
    pub rng: Cell<u64>,
    /// Wall-clock unix seconds for routes that switch by time (`migrate`) and TTLs written by routes: read once per
    /// tick (every 5 ms), never per request.
    pub unix_now: Cell<u64>,
    next_client: Cell<u64>,
    pub stats: RefCell<WorkerStats>,
    started: Instant,
    /// Reply bytes held for all clients of this worker (see `BufferBudget`).
    client_buffers: Rc<Cell<usize>>,
    /// The listening sockets passed by the process this one took over from, by address, until the first
    /// `install_listeners` has taken what the config still has.
    inherited: RefCell<takeover::WorkerSockets>,
}

impl Worker {
    fn share(&self) -> Share {
        Share { worker: self.id, workers: self.workers }
    }

    /// Which client limit a new client of `slot` would exceed, if any: the listener's `client_connections` or
    /// `proxy.max_client_connections` (this worker's share of each).
    fn over_client_limit(&self, slot: &ListenerSlot) -> Option<&'static str> {
        if slot.clients.get() >= slot.client_limit.get() {
            return Some("client_connections");
        }
        let proxy_limit = self.share().of(self.config.borrow().proxy.max_client_connections);
        if self.sessions.borrow().len() >= proxy_limit {
            return Some("proxy.max_client_connections");
        }
        None
    }

    /// Answers a client over a limit with the protocol's error and closes it; the connected clients are not
    /// touched. Counted per listener, logged at most once per interval.
    fn refuse_client(self: &Rc<Self>, slot: &Rc<ListenerSlot>, conn: Conn, limit: &'static str) {
        let meters = self.stats.borrow_mut().listener(&slot.name, slot.protocol);
        meters.borrow_mut().clients.limit_refusals += 1;
        if let Some(held_back) = self.refusal_warning.allow(Instant::now()) {
            log::warn!(
                "worker {}: listener {}: refused a client: max number of clients reached ({limit}){}",
                self.id,
                slot.name,
                exhaustion::suppressed_note(held_back)
            );
        }
        let reply: &'static [u8] = match slot.protocol {
            Protocol::Redis => b"-ERR max number of clients reached\r\n",
            Protocol::Memcache => b"SERVER_ERROR max number of clients reached\r\n",
        };
        glommio::spawn_local(async move {
            let (sent, _) = conn.send_all(reply.to_vec()).await;
            if sent.is_ok() {
                session::linger(&tls::Stream::Plain(conn.clone())).await;
            }
            conn.shutdown();
        })
        .detach();
    }

    pub fn next_client_id(&self) -> u64 {
        let id = self.next_client.get();
        self.next_client.set(id + 1);
        id
    }

    pub fn client_limits(&self) -> ClientLimits {
        let cfg = self.config.borrow();
        ClientLimits {
            max_inflight: cfg.proxy.client_max_inflight,
            max_unsent_bytes: cfg.proxy.client_max_unsent_bytes,
        }
    }

    /// The hard bounds for a new client's reply buffers, sharing this worker's total.
    pub fn buffer_budget(&self) -> BufferBudget {
        let cfg = self.config.borrow();
        BufferBudget {
            client_max: cfg.proxy.client_max_buffered_bytes,
            worker_max: cfg.proxy.client_buffers_max_bytes,
            slow_after: cfg.proxy.client_max_unsent_bytes,
            worker_used: self.client_buffers.clone(),
        }
    }

    /// Proxy-level INFO for redis clients (every worker's redis listeners, not a random backend's).
    pub fn info_text(&self, section: Option<&[u8]>) -> String {
        super::metrics::redis_info(self.id, &self.stats.borrow(), self.started.elapsed(), section)
    }

    /// Proxy-level `stats` for memcache clients (every worker's memcache listeners).
    pub fn memcache_stats_text(&self) -> String {
        super::metrics::memcache_stats(self.id, &self.stats.borrow(), self.started.elapsed())
    }

    fn all_backends(&self) -> Vec<Rc<Backend>> {
        self.pools.borrow().iter().flat_map(|p| p.servers.iter().flat_map(|s| s.conns.iter().cloned())).collect()
    }

    /// Builds pools from `cfg`, reusing the connections of servers that stay; retires the rest (they finish what is
    /// queued on them, then close). Servers in `ejected` start out of their rings. Runs before `self.config` is
    /// replaced: the previous config tells which connections can be reused.
    fn install_pools(&self, cfg: &Config, ejected: &[ServerKey]) {
        // Several servers of a pool may share an address (under different names): a list per key.
        let mut old: HashMap<String, Vec<Vec<Rc<Backend>>>> = HashMap::new();
        let old_proxy = self.config.borrow().proxy.clone();
        let old_pools = std::mem::take(&mut *self.pools.borrow_mut());
        // Dedicated connections held through the reload finish their transaction or block on the old set (which
        // then closes them); the tick keeps checking their deadlines meanwhile.
        let mut held: Vec<Rc<Backend>> = Vec::new();
        // A cluster pool whose settings did not change keeps its map and node connections.
        let mut old_clusters: HashMap<String, (PoolConfig, Rc<super::cluster::ClusterRt>)> = HashMap::new();
        for p in old_pools {
            if let Some(c) = &p.cluster {
                old_clusters.insert(p.name.clone(), (p.cfg.clone(), c.clone()));
            }
            for (sc, s) in p.cfg.servers.iter().zip(p.servers) {
                held.extend(s.dedicated.borrow().leased().iter().cloned());
                old.entry(reuse_key(&p.cfg, &old_proxy, sc)).or_default().push(s.conns);
            }
        }
        let mut reuse = |pc: &PoolConfig, sc: &ServerConfig| {
            old.get_mut(&reuse_key(pc, &cfg.proxy, sc))
                .and_then(|v| if v.is_empty() { None } else { Some(v.remove(0)) })
        };
        let pools: Vec<PoolRt> = cfg
            .pools
            .iter()
            .map(|pc| {
                let is_ejected = |spec: &str| ejected.iter().any(|(p, s)| *p == pc.name && s == spec);
                let same =
                    old_clusters.get(&pc.name).is_some_and(|(old_cfg, _)| old_cfg == pc && old_proxy == cfg.proxy);
                let cluster = if same { old_clusters.remove(&pc.name).map(|(_, c)| c) } else { None };
                let pool = PoolRt::build(pc, &cfg.proxy, &mut reuse, &is_ejected, cluster);
                // A changed cluster pool gets new connections but routes by the map in force meanwhile, rather
                // than refusing requests until control broadcasts it again.
                if let (false, Some(new), Some((_, old))) = (same, &pool.cluster, old_clusters.get(&pc.name)) {
                    new.install(old.map(), old.version.get());
                }
                pool
            })
            .collect();
        let mut retired = self.retired.borrow_mut();
        for (_, c) in old_clusters.into_values() {
            retired.extend(c.retire_all());
        }
        for c in old.into_values().flatten().flatten() {
            c.retire();
            retired.push(c);
        }
        retired.extend(held);
        *self.pools.borrow_mut() = pools;
    }

    /// Starts accepting on listeners new in `cfg`, updates kept ones, and stops removed ones (their open sessions
    /// finish what they have read and close). Returns what could not be done; everything else is applied.
    fn install_listeners(self: &Rc<Self>, cfg: &Config) -> Vec<String> {
        let mut problems = Vec::new();
        let mut closed = Vec::new();
        {
            let mut listeners = self.listeners.borrow_mut();
            let mut keep: HashMap<String, ListenerRt> = HashMap::new();
            for lc in &cfg.listeners {
                match listeners.remove(&lc.name) {
                    Some(rt) if rt.listen == lc.listen && rt.slot.protocol == lc.protocol => {
                        rt.slot.update(lc, cfg, self.share());
                        keep.insert(lc.name.clone(), rt);
                    }
                    old => {
                        if let Some(old) = old {
                            // Same name, new address or protocol: a new listener replaces the old one.
                            log::info!("worker {}: listener {} stops accepting on {}", self.id, lc.name, old.listen);
                            closed.push(old);
                        }
                        match self.bind(lc) {
                            Ok(Some(rt)) => {
                                keep.insert(lc.name.clone(), rt);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                log::error!("worker {}: {}", self.id, e);
                                problems.push(e);
                            }
                        }
                    }
                }
            }
            for (name, rt) in listeners.drain() {
                log::info!("worker {}: listener {} stops accepting on {}", self.id, name, rt.listen);
                closed.push(rt);
            }
            *listeners = keep;
        }
        // The sessions of a removed listener drain as at shutdown.
        let read_until = Instant::now() + SHUTDOWN_READING.min(Duration::from_millis(cfg.proxy.shutdown_timeout_ms));
        for rt in closed {
            self.close_listener(rt, cfg, read_until);
        }
        problems
    }

    /// Stops accepting on `rt` (dropping it cancels its accept loop and closes this core's socket) and wakes its idle
    /// sessions, which then find the listener closed and end once their replies are written.
    fn close_listener(&self, rt: ListenerRt, cfg: &Config, read_until: Instant) {
        rt.slot.close(cfg, read_until);
        for &fd in &rt.tcp_fds {
            // Dropping the accept loop alone is not enough: its io_uring accept, already submitted, keeps the socket
            // listening (and accepting connections nobody serves) until the kernel sees the cancellation. shutdown()
            // takes the socket out of LISTEN (and out of the SO_REUSEPORT group) at once.
            // SAFETY: the descriptor is still open, owned by the accept task that `rt` holds until the drop below.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
        if let ListenAddr::Unix(path) = &rt.listen {
            // Unless a listener that replaces this one (new protocol, same path) has just bound it.
            let rebound = self.listeners.borrow().values().any(|l| l.listen == rt.listen);
            if self.id == 0 && !rebound {
                let _ = std::fs::remove_file(path);
            }
        }
        self.release_listener(rt);
    }

    /// Drops a listener whose slot is closed and nudges its idle sessions, which start draining.
    fn release_listener(&self, rt: ListenerRt) {
        for &id in &rt.registered {
            takeover::unregister(id);
        }
        let slot = rt.slot.clone();
        drop(rt);
        for s in self.sessions.borrow().values().filter(|s| Rc::ptr_eq(&s.slot, &slot)) {
            // A session waiting for its client to send something starts its drain (its wait becomes a bounded
            // one); one that is busy finds the listener closed at its next read. Nothing the client sent is lost.
            s.conn.nudge_reader();
        }
    }

    /// Serves an accepted connection in its own task, registered until it ends.
    fn spawn_session(self: &Rc<Self>, slot: &Rc<ListenerSlot>, conn: Conn) {
        let key = self.next_session.get();
        self.next_session.set(key + 1);
        self.sessions.borrow_mut().insert(key, SessionEntry { slot: slot.clone(), conn: conn.clone() });
        slot.clients.set(slot.clients.get() + 1);
        let registered = SessionRegistration { worker: self.clone(), key };
        let (worker, slot) = (self.clone(), slot.clone());
        let acceptor = slot.tls.borrow().clone();
        // Two tasks, not one with a match: the session's task lives as long as its client, and the handshake's
        // state inside it would cost every plaintext client its size (about 460 bytes) for nothing.
        match acceptor {
            None => {
                glommio::spawn_local(async move {
                    let _registered = registered;
                    session::serve(worker, slot, tls::Stream::Plain(conn)).await;
                })
                .detach();
            }
            Some(a) => {
                glommio::spawn_local(async move {
                    let _registered = registered;
                    let peer = || conn.peer_addr().map_or_else(|| "a unix socket client".into(), |a| a.to_string());
                    // Boxed: its state is freed when the handshake ends rather than held for the session's life.
                    let accepted = Box::pin(tls::accept(conn.clone(), &a, &slot.name, peer)).await;
                    drop(a);
                    if let Some(stream) = accepted {
                        session::serve(worker, slot, stream).await;
                    }
                })
                .detach();
            }
        }
    }

    fn bind(self: &Rc<Self>, lc: &ListenerConfig) -> Result<Option<ListenerRt>, String> {
        let slot = Rc::new(ListenerSlot::new(lc, &self.config.borrow(), self.share()));
        let key = lc.listen.to_string();
        // The sockets the previous process served at this address (a binary upgrade), else fresh ones.
        let inherited = self.inherited.borrow_mut().remove(&key).unwrap_or_default();
        let taken_over = if inherited.is_empty() { "" } else { " (taken over)" };
        let mut rt = ListenerRt {
            slot: slot.clone(),
            listen: lc.listen.clone(),
            tcp_fds: Vec::new(),
            registered: Vec::new(),
            accepts: Vec::new(),
        };
        let sockets: Vec<(Listener, RawFd)> = match &lc.listen {
            ListenAddr::Tcp(addr) => {
                let sockets = if inherited.is_empty() {
                    vec![bind_tcp(*addr, lc.backlog)
                        .map_err(|e| format!("listener {}: cannot listen on {}: {}", lc.name, addr, e))?]
                } else {
                    inherited.into_iter().map(|fd| adopt_tcp(fd, lc.backlog)).collect()
                };
                log::info!(
                    "worker {}: listener {} ({}) accepting on {}{taken_over}",
                    self.id,
                    lc.name,
                    lc.protocol.name(),
                    addr
                );
                rt.tcp_fds = sockets.iter().map(|(_, fd)| *fd).collect();
                sockets
            }
            ListenAddr::Unix(path) => {
                // A unix socket path can be bound once: the first worker serves it.
                if self.id != 0 {
                    return Ok(None);
                }
                let listener = match inherited.into_iter().next() {
                    Some(fd) => fd,
                    None => {
                        let _ = std::fs::remove_file(path);
                        bind_unix(path)
                            .map_err(|e| format!("listener {}: cannot listen on {}: {}", lc.name, path.display(), e))?
                    }
                };
                log::info!(
                    "worker {}: listener {} ({}) accepting on {}{taken_over}",
                    self.id,
                    lc.name,
                    lc.protocol.name(),
                    path.display()
                );
                // Closing removes the path, so nobody can connect to it any more.
                let fd = listener.as_raw_fd();
                vec![(Listener::from_fd(listener), fd)]
            }
        };
        let wrap: fn(OwnedFd) -> Conn = match lc.listen {
            ListenAddr::Tcp(_) => Conn::accepted_tcp,
            ListenAddr::Unix(_) => Conn::from_fd,
        };
        for (listener, fd) in sockets {
            // SAFETY: the descriptor is open, owned by `listener`, which outlives this call.
            let borrowed = unsafe { std::os::unix::io::BorrowedFd::borrow_raw(fd) };
            match takeover::register(crate::handover::Kind::Listener, self.id, key.clone(), borrowed) {
                Ok(id) => rt.registered.push(id),
                Err(e) => {
                    log::warn!("worker {}: listener {}: a binary upgrade could not take it over: {e}", self.id, lc.name)
                }
            }
            let stop = listener.stop_handle();
            rt.accepts.push((glommio::spawn_local(accept_loop(self.clone(), slot.clone(), listener, wrap)), stop));
        }
        Ok(Some(rt))
    }

    fn snapshot(&self) -> WorkerSnapshot {
        let servers = super::metrics::server_snapshots(&self.pools.borrow());
        let mut snap = self.stats.borrow().snapshot(self.id, &self.config.borrow(), servers);
        snap.clusters = self
            .pools
            .borrow()
            .iter()
            .filter_map(|p| p.cluster.as_ref())
            .map(|c| (c.pool.clone(), c.counters()))
            .collect();
        snap
    }
}

/// This worker's own TLS config for a listener (its own session cache: nothing shared with other cores).
fn acceptor(lc: &ListenerConfig) -> Option<tls::Acceptor> {
    lc.tls.as_ref().map(|t| tls::Acceptor {
        config: crate::tls::for_worker_server(&t.server.config),
        handshake_timeout: Duration::from_millis(t.handshake_timeout_ms),
    })
}

/// Connections are reused across a reload when the server (pool, address, name: the name is in the connection's
/// label) and everything that shapes a connection are unchanged. A new weight, hash or distribution only rebuilds
/// the ring.
fn reuse_key(pc: &PoolConfig, proxy: &ProxyConfig, sc: &ServerConfig) -> String {
    format!(
        "{}|{}|{:?}|{}|{:?}|{}|{}|{}|{}|{}|{}|{}|{:?}|{}",
        pc.name,
        sc.addr,
        sc.name,
        pc.timeout_ms,
        pc.redis_auth,
        pc.redis_db,
        pc.server_connections,
        pc.connect_timeout_ms,
        pc.protocol.name(),
        pc.batching.name(),
        pc.batching_max_hold_us,
        proxy.backend_max_queued_bytes,
        pc.tls,
        pc.tcpkeepalive
    )
}

/// Removes a session from its worker's registry when the session's task ends (or is dropped with the executor).
struct SessionRegistration {
    worker: Rc<Worker>,
    key: u64,
}

impl Drop for SessionRegistration {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.worker.sessions.try_borrow_mut() {
            if let Some(entry) = sessions.remove(&self.key) {
                entry.slot.clients.set(entry.slot.clients.get().saturating_sub(1));
            }
            // A map that held 10,000 clients once must not keep their room after they left.
            if sessions.capacity() > 64 && sessions.len() < sessions.capacity() / 4 {
                let keep = sessions.len() * 2;
                sessions.shrink_to(keep);
            }
        }
        self.worker.sessions_ended.set(self.worker.sessions_ended.get() + 1);
    }
}

/// A listening socket with SO_REUSEPORT (one per core; the kernel spreads connections), and its descriptor.
fn bind_tcp(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<(Listener, RawFd)> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog as i32)?;
    let fd = sock.as_raw_fd();
    Ok((Listener::from_fd(OwnedFd::from(sock)), fd))
}

fn bind_unix(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(OwnedFd::from(listener))
}

/// A listening TCP socket passed by the previous process: listen(2) again applies this config's backlog (the queue
/// and the connections in it stay).
fn adopt_tcp(fd: OwnedFd, backlog: u32) -> (Listener, RawFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: listen on a socket we own.
    unsafe {
        libc::listen(raw, backlog as i32);
    }
    (Listener::from_fd(fd), raw)
}

async fn accept_loop(worker: Rc<Worker>, slot: Rc<ListenerSlot>, listener: Listener, wrap: fn(OwnedFd) -> Conn) {
    // A successor accepts only once all its workers serve (see takeover::hold_accepts); bounded by start-up's 10 s.
    while takeover::accepts_held() {
        uring::sleep(Duration::from_millis(1)).await;
    }
    let mut backoff = exhaustion::AcceptBackoff::default();
    let warn = exhaustion::Throttle::new(exhaustion::WARN_INTERVAL);
    loop {
        match listener.accept().await {
            Ok(fd) => {
                backoff.succeeded();
                let conn = wrap(fd);
                if slot.keepalive.get() {
                    conn.set_keepalive();
                }
                match worker.over_client_limit(&slot) {
                    Some(limit) => worker.refuse_client(&slot, conn, limit),
                    None => worker.spawn_session(&slot, conn),
                }
            }
            Err(e) if exhaustion::is_out_of_descriptors(&e) => {
                if let Some(held_back) = warn.allow(Instant::now()) {
                    log::warn!(
                        "worker {}: accept on {} failed: {} ({}); new clients wait in the backlog until descriptors are free{}",
                        worker.id,
                        slot.name,
                        e,
                        exhaustion::errno_name(&e),
                        exhaustion::suppressed_note(held_back)
                    );
                }
                // Out of descriptors or memory: pause instead of spinning. The multishot accept ended with the
                // error; the next accept() arms it again.
                uring::sleep(backoff.failed()).await;
            }
            // Stopped for a hand-over (AcceptStop), and every connection accepted until then is served.
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => return,
            // A connection that failed before we took it (reset, aborted, a network error): accept(2) says to try
            // again, and the others are fine.
            Err(e) => log::debug!("worker {}: accept on {}: {}", worker.id, slot.name, e),
        }
    }
}

/// How often at most a worker hands freed heap memory back to the system, once clients have left.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// The wall clock in unix seconds (0 before 1970, which no real clock reads).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Timer work: request deadlines and forwarding health observations to control.
async fn tick(worker: Rc<Worker>, tx: Rc<ConnectedSender<FromWorker>>) {
    let mut trimmed = (Instant::now(), 0u64, 0u64);
    loop {
        uring::sleep(Duration::from_millis(5)).await;
        let now = Instant::now();
        worker.unix_now.set(unix_seconds());
        let (ended, freed) = (worker.sessions_ended.get(), super::bufpool::freed());
        if (ended, freed) != (trimmed.1, trimmed.2) && now.duration_since(trimmed.0) >= TRIM_EVERY {
            // Clients came and went, or a burst freed buffers the pool had no room for: that memory goes back to
            // the system (docs/architecture.md, "Memory per connection"). Not on the request path: at most once a
            // second, only after such a change.
            super::sys::release_freed_memory();
            trimmed = (now, ended, freed);
        }
        let pools = worker.pools.borrow();
        let mut events = Vec::new();
        for p in pools.iter() {
            for s in &p.servers {
                // A blocking command's deadline is its block time plus timeout_ms (or none): see io::dedicated.
                let leased = s.dedicated.borrow().leased().to_vec();
                for c in &leased {
                    c.check_deadline(now);
                }
                for c in &s.conns {
                    c.check_deadline(now);
                    for h in c.take_health_events() {
                        let failed = match h {
                            super::backend::Health::Failed(r) => Some(r),
                            super::backend::Health::Recovered => None,
                        };
                        events.push(FromWorker::Health {
                            worker: worker.id,
                            pool: p.name.clone(),
                            server: s.spec.clone(),
                            failed,
                        });
                    }
                }
            }
        }
        for c in pools.iter().filter_map(|p| p.cluster.as_ref()) {
            for (_, set) in c.dedicated_sets() {
                let leased = set.borrow().leased().to_vec();
                for b in &leased {
                    b.check_deadline(now);
                    // A node that fails under a transaction or a blocked command may be a primary that died.
                    if b.take_health_events().iter().any(|h| matches!(h, super::backend::Health::Failed(_))) {
                        c.want_refresh();
                    }
                }
            }
            for (_, conns) in c.connections() {
                for b in &conns {
                    b.check_deadline(now);
                    // A node that fails may be a primary that died: the map is read again (control rate-limits).
                    if b.take_health_events().iter().any(|h| matches!(h, super::backend::Health::Failed(_))) {
                        c.want_refresh();
                    }
                }
            }
            c.check_retired(now);
            if c.take_refresh_wanted() {
                events.push(FromWorker::ClusterRefresh { pool: c.pool.clone() });
            }
        }
        drop(pools);
        for e in events {
            let _ = tx.try_send(e);
        }
        // Connections removed by a reload: their requests still time out; nobody needs their health any more.
        worker.retired.borrow_mut().retain(|c| {
            c.check_deadline(now);
            c.take_health_events();
            c.inflight() > 0 || c.is_connected()
        });
    }
}

/// Runs one worker until control tells it to stop.
// Each argument is one of the worker's own ends (channels, doorbell, start-up report, sockets taken over): a struct
// would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    id: usize,
    workers: usize,
    cfg: Arc<Config>,
    rx: SharedReceiver<ToWorker>,
    tx: SharedSender<FromWorker>,
    doorbell: Arc<Doorbell>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    inherited: takeover::WorkerSockets,
) {
    let rx = super::messages::connect_end(rx.connect()).await;
    // The data path's ring, before anything (a preconnecting pool, a listener) uses it.
    let busy_poll = Duration::from_micros(cfg.proxy.busy_poll_us);
    let _driver = match uring::install(Some(doorbell.fd()), busy_poll) {
        Ok(task) => task,
        Err(e) => {
            let _ = ready.send(Err(format!("worker {id}: cannot set up its io_uring: {e}")));
            return;
        }
    };
    let tx = Rc::new(super::messages::connect_end(tx.connect()).await);
    let mut stats = WorkerStats::new(cfg.proxy.stats);
    let fans = super::fan::Plans::build(&cfg, &mut stats);
    let worker = Rc::new(Worker {
        id,
        pools: RefCell::new(Vec::new()),
        routes: RefCell::new(Rc::new(RouteTree::build(&cfg))),
        fans: RefCell::new(Rc::new(fans)),
        listeners: RefCell::new(HashMap::new()),
        retired: RefCell::new(Vec::new()),
        sessions: RefCell::new(HashMap::new()),
        next_session: Cell::new(0),
        sessions_ended: Cell::new(0),
        workers,
        refusal_warning: exhaustion::Throttle::new(exhaustion::WARN_INTERVAL),
        config: RefCell::new(cfg.clone()),
        rng: Cell::new(0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) << 32) ^ u64::from(std::process::id())),
        unix_now: Cell::new(unix_seconds()),
        next_client: Cell::new((id as u64) << 48),
        stats: RefCell::new(stats),
        started: Instant::now(),
        client_buffers: Rc::new(Cell::new(0)),
        inherited: RefCell::new(inherited),
    });
    worker.install_pools(&cfg, &[]);
    let problems = worker.install_listeners(&cfg);
    for addr in worker.inherited.take().into_keys() {
        // Dropped here: the previous process closes its copies as it exits, and with them the sockets.
        log::info!("worker {id}: the socket on {addr} taken over is in no listener of the config: closed");
    }
    if !problems.is_empty() {
        let _ = ready.send(Err(problems.join("; ")));
        return;
    }
    let _ = ready.send(Ok(()));
    // A task, not this (main) future: glommio polls its main future only when its own loop runs, which the
    // data-path driver keeps rare (see io::uring).
    glommio::spawn_local(serve_control(worker, rx, tx)).await;
}

/// Debug builds only (the integration tests' binary): `FERRULE_TEST_RELOAD_STALL=<worker>:<ms>` makes that worker
/// take `ms` before applying and confirming each reload, so that the tests can see what a reload that a worker
/// does not confirm in time answers. Release builds have no such hook.
#[cfg(debug_assertions)]
fn reload_stall_for_tests(id: usize) -> Option<Duration> {
    let spec = std::env::var("FERRULE_TEST_RELOAD_STALL").ok()?;
    let (worker, ms) = spec.split_once(':')?;
    (worker.parse::<usize>().ok()? == id).then_some(Duration::from_millis(ms.parse().ok()?))
}

/// Debug builds only (the integration tests' binary): `FERRULE_TEST_HANDOVER_STALL=<ms>` makes every worker of the
/// process that hands over block its thread for `ms` before it stops accepting, so that a test can connect clients
/// in the moment between this process's last accept and the cancellation of its accepts. Release builds have no
/// such hook.
#[cfg(debug_assertions)]
fn handover_stall_for_tests() -> Option<Duration> {
    let ms = std::env::var("FERRULE_TEST_HANDOVER_STALL").ok()?;
    Some(Duration::from_millis(ms.parse().ok()?))
}

/// Applies control's messages until told to stop.
async fn serve_control(worker: Rc<Worker>, mut rx: ConnectedReceiver<ToWorker>, tx: Rc<ConnectedSender<FromWorker>>) {
    let id = worker.id;
    let ticker = glommio::spawn_local(tick(worker.clone(), tx.clone()));
    let _publisher = glommio::spawn_local(super::metrics::publish_summaries(worker.clone()));
    loop {
        // The channel is polled again whenever control rings this worker's doorbell after sending.
        let next = poll_fn(|cx| {
            uring::on_doorbell(cx.waker());
            Pin::new(&mut rx).poll_next(cx)
        });
        let Some(msg) = next.await else { break };
        match msg {
            ToWorker::Reload { generation, config, ejected } => {
                #[cfg(debug_assertions)]
                if let Some(stall) = reload_stall_for_tests(id) {
                    glommio::timer::sleep(stall).await;
                }
                // Between two requests of any session (this runs on the same thread): requests already queued stay
                // on the backends they were queued on, the next ones route with the new rings.
                worker.install_pools(&config, &ejected);
                super::session::subscriptions_moved(&worker.pools.borrow(), "the configuration was reloaded");
                *worker.routes.borrow_mut() = Rc::new(RouteTree::build(&config));
                *worker.fans.borrow_mut() = Rc::new(super::fan::Plans::build(&config, &mut worker.stats.borrow_mut()));
                *worker.config.borrow_mut() = config.clone();
                worker.stats.borrow_mut().set_enabled(config.proxy.stats);
                let problems = worker.install_listeners(&config);
                let _ = tx.send(FromWorker::Reloaded { worker: id, generation, problems }).await;
            }
            ToWorker::Eject { pool, server } => set_ejected(&worker, &pool, &server, true),
            ToWorker::Restore { pool, server } => set_ejected(&worker, &pool, &server, false),
            ToWorker::ClusterMap { pool, version, map } => {
                let pools = worker.pools.borrow();
                if let Some(c) = pools.iter().find(|p| p.name == pool).and_then(|p| p.cluster.as_ref()) {
                    if version > c.version.get() {
                        c.install(map, version);
                        // Subscriptions on a node that left the map end (see `session::redis::pubsub`).
                        super::session::cluster_subscriptions_moved(c);
                    }
                }
            }
            ToWorker::ClusterUnreachable { pool, why } => {
                let pools = worker.pools.borrow();
                if let Some(c) = pools.iter().find(|p| p.name == pool).and_then(|p| p.cluster.as_ref()) {
                    c.set_unreachable(why);
                }
            }
            ToWorker::Snapshot { id: sid } => {
                let _ = tx.send(FromWorker::Snapshot { worker: id, id: sid, stats: Box::new(worker.snapshot()) }).await;
            }
            ToWorker::Shutdown { grace_ms, handover: false } => {
                shutdown(&worker, Duration::from_millis(grace_ms)).await;
                break;
            }
            ToWorker::Shutdown { grace_ms, handover: true } => {
                hand_over(&worker, Duration::from_millis(grace_ms)).await;
                break;
            }
        }
    }
    drop(ticker);
    // Sessions and backends are done: the driver can end, which lets glommio's loop run and this executor finish.
    uring::stop();
    let _ = tx.send(FromWorker::Stopped { worker: id }).await;
}

fn set_ejected(worker: &Worker, pool: &str, server: &str, ejected: bool) {
    let mut pools = worker.pools.borrow_mut();
    let what = if ejected { "ejected" } else { "restored" };
    if let Some(p) = pools.iter_mut().find(|p| p.name == pool) {
        if let Some(i) = p.servers.iter().position(|s| s.spec == server) {
            p.set_ejected(i, ejected);
            log::debug!("worker {}: pool {pool}: server {server} {what}", worker.id);
        }
    }
    drop(pools);
    // Subscriptions follow the ring: a client whose channel (or pattern) now belongs on another server resubscribes.
    super::session::subscriptions_moved(&worker.pools.borrow(), &format!("pool {pool}: server {server} {what}"));
}

/// At shutdown (and for a listener a reload removed), how long sessions go on reading: what their clients had sent
/// when the signal came (in the kernel's buffers or on its way) is read and answered, but a client that never
/// pauses does not hold the shutdown until `shutdown_timeout_ms`: there is no successor to hand it to.
const SHUTDOWN_READING: Duration = Duration::from_millis(100);

/// After a hand-over, how much of the grace period is kept, at the end, for the replies to what the sessions read
/// last: they stop reading at `grace - min(grace / 5, 1 s)`, then answer and close.
fn reading_deadline(start: Instant, grace: Duration) -> Instant {
    start + grace - (grace / 5).min(Duration::from_secs(1))
}

/// Stops accepting on every listener, then drains (at most `grace`): every session answers what its client sends
/// until it closes or is quiet (`session::Session::refill`), for [`SHUTDOWN_READING`] at most, and closes; no
/// backend has requests in flight.
/// Request deadlines keep being checked meanwhile (the ticker still runs).
async fn shutdown(worker: &Rc<Worker>, grace: Duration) {
    let cfg = worker.config.borrow().clone();
    let start = Instant::now();
    let listeners: Vec<ListenerRt> = worker.listeners.borrow_mut().drain().map(|(_, rt)| rt).collect();
    let read_until = start + SHUTDOWN_READING.min(grace);
    for rt in listeners {
        worker.close_listener(rt, &cfg, read_until);
    }
    drain(worker, read_until, start + grace).await;
}

/// How long, after a hand-over, the sessions of this process are served as before, unless `shutdown_timeout_ms`
/// is shorter (half of it then): a client that connected just before the successor took over has its first
/// request answered rather than its connection closed before that request arrived.
const HANDOVER_SETTLE: Duration = Duration::from_millis(250);

/// Like [`shutdown`], after the successor took the listening sockets over: stops accepting without closing them
/// (the successor serves them and the connections in their queues), serves every connection accepted until the
/// accept's cancellation took effect, lets the sessions run a moment ([`HANDOVER_SETTLE`]), then drains them as
/// shutdown does. A unix socket's path stays: the successor serves it.
async fn hand_over(worker: &Rc<Worker>, grace: Duration) {
    let start = Instant::now();
    let deadline = start + grace;
    #[cfg(debug_assertions)]
    if let Some(stall) = handover_stall_for_tests() {
        log::info!("test hook: worker {} stalls {} ms before it stops accepting", worker.id, stall.as_millis());
        // The thread itself, not a task: the ring is not entered meanwhile, so a connection arriving now wakes this
        // process's accept (see `uring::Listener::accept`) but is not taken before the accept is cancelled.
        std::thread::sleep(stall);
    }
    let cfg = worker.config.borrow().clone();
    let mut listeners: Vec<ListenerRt> = worker.listeners.borrow_mut().drain().map(|(_, rt)| rt).collect();
    for rt in &listeners {
        for (_, stop) in &rt.accepts {
            stop.stop();
        }
    }
    for rt in &mut listeners {
        for (task, _) in rt.accepts.drain(..) {
            if uring::timeout(deadline.saturating_duration_since(Instant::now()), task).await.is_none() {
                log::warn!(
                    "worker {}: listener {}: its accept did not end within the grace period",
                    worker.id,
                    rt.slot.name
                );
            }
        }
    }
    log::info!("worker {}: stopped accepting (the listening sockets are served by the new process)", worker.id);
    uring::sleep(HANDOVER_SETTLE.min(grace / 2)).await;
    let read_until = reading_deadline(start, grace);
    for rt in listeners {
        rt.slot.close(&cfg, read_until);
        worker.release_listener(rt);
    }
    drain(worker, read_until, deadline).await;
}

/// Waits (until `deadline`) until every client connection has received the replies to what it sent and closed,
/// and no backend has requests in flight.
async fn drain(worker: &Rc<Worker>, read_until: Instant, deadline: Instant) {
    let mut read_on = true;
    loop {
        let sessions = worker.sessions.borrow().len();
        let busy: usize = worker.all_backends().iter().map(|b| b.inflight()).sum();
        if sessions == 0 && busy == 0 {
            log::info!("worker {}: all client connections finished", worker.id);
            break;
        }
        if read_on && Instant::now() >= read_until {
            read_on = false;
            log::info!(
                "worker {}: reading deadline: {sessions} client connections still open read no more and close after \
                 the replies to what they sent",
                worker.id
            );
        }
        if Instant::now() >= deadline {
            log::warn!(
                "worker {}: shutdown grace period over with {sessions} client connections and {busy} requests left",
                worker.id
            );
            break;
        }
        uring::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Share;

    #[test]
    fn limits_split_over_workers_add_up() {
        for (limit, workers) in [(10, 3), (1, 2), (7, 1), (10_000, 4)] {
            let shares: Vec<usize> = (0..workers).map(|worker| Share { worker, workers }.of(limit)).collect();
            assert_eq!(shares.iter().sum::<usize>(), limit, "{shares:?}");
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1, "{shares:?}");
        }
        assert_eq!(Share { worker: 1, workers: 2 }.of(0), usize::MAX, "0 is no limit");
    }
}
