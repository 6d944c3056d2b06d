//! A worker's runtime view of one `redis_cluster` pool: the slot map control broadcast last, the backend
//! connections to each node (created when a node is first needed: nodes appear with the map or with a redirect),
//! and the following of redirects.
//!
//! A request to a cluster pool carries its own bytes ([`Redirectable`]), because a `-MOVED` or `-ASK` reply means
//! sending it again elsewhere, and the backend keeps nothing of a request once written. The reply passes through
//! [`arrive`]: a redirect ferrule can follow is followed (MOVED: resend to the named node and ask control for a
//! new map; ASK: `ASKING` and the request to the named node, map unchanged), up to the pool's
//! `cluster_max_redirects` times; a `-TRYAGAIN` (a multi-key request while its slot migrates) is sent again after
//! a short timer, a few times ([`crate::cluster::redirect::TRYAGAIN_RETRIES`]); anything else completes the
//! client's slot as on a sharded pool.
//! None of this is on a sharded pool's path: its requests carry a plain `Waiter::Client`.
//!
//! Transactions and blocking commands (`io::session::redis::pinned`) run on dedicated connections to the node
//! that serves their slot (each node has its own [`DedicatedSet`], keyed like the shared connections by the
//! node's address). Their requests are `Redirectable`s too, with a [`Follow`] that says what a redirect may do:
//! inside a transaction nothing is followed (the rest of it is on this node's connection, behind a MULTI or a
//! WATCH that the other node never saw): the redirect becomes an error that says so and the map is refreshed; a
//! blocking command that was redirected has not blocked (nothing ran), so it is followed on a dedicated
//! connection to the named node, which replaces the client's lease.

use super::backend::{Backend, BackendOptions, Framer, Waiter};
use super::dedicated::{DedicatedRef, DedicatedSet, Lease, SubscriberSlot};
use super::replies::ClientRef;
use super::stats::Meter;
use crate::cluster::redirect::{in_transaction, too_many_redirects, Decision, RedirectKind};
use crate::cluster::{decide, is_tryagain, tryagain_delay, ReadFrom, SlotMap};
use crate::config::{PoolConfig, ProxyConfig};
use crate::protocol::redis::{self, Proto, ReplyShape};
use crate::stats::ClusterCounters;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The connections of one worker to one node: `server_connections` speaking RESP2, then as many speaking RESP3
/// (connected on first use), as for a sharded pool's server.
struct NodeConns {
    conns: Vec<Rc<Backend>>,
    /// The host name the node was known by when connected (its certificate is checked against it with TLS).
    hostname: String,
    /// Transactions and blocking commands on this node: up to `max_dedicated_connections` per node per worker,
    /// as per server on a sharded pool.
    dedicated: DedicatedRef,
}

pub struct ClusterRt {
    pub pool: String,
    pub read_from: ReadFrom,
    /// `cluster_max_redirects`.
    max_redirects: u8,
    opts: BackendOptions,
    opts3: BackendOptions,
    /// The pool's TLS (`tls = true`): this worker's own client config (its own session cache) and the settings that
    /// name each node's certificate.
    tls: Option<(Arc<rustls::ClientConfig>, crate::config::PoolTls)>,
    per_proto: usize,
    preconnect: bool,
    max_dedicated: usize,
    map: RefCell<Arc<SlotMap>>,
    /// The topology version of `map` (control's count; 0 before the first map).
    pub version: Cell<u64>,
    /// Per node of `map`, in its order.
    by_index: RefCell<Vec<Rc<NodeConns>>>,
    /// Every node connected to, by address (redirects may name a node the map does not have yet).
    by_addr: RefCell<HashMap<SocketAddr, Rc<NodeConns>>>,
    /// Connections of nodes that left the map: they finish what is queued on them, checked by the tick.
    retired: RefCell<Vec<Rc<Backend>>>,
    refresh_wanted: Cell<bool>,
    /// Why control could not read the topology, while no map is known (empty: nothing failed yet).
    unreachable: RefCell<String>,
    pub counters: RefCell<ClusterCounters>,
}

impl ClusterRt {
    pub fn new(cfg: &PoolConfig, proxy: &ProxyConfig) -> Rc<ClusterRt> {
        let cluster = cfg.cluster.expect("a redis_cluster pool");
        let readonly = cluster.read_from != ReadFrom::Primary;
        let opts = super::pool::cluster_backend_options(cfg, proxy, Proto::Resp2, readonly);
        let opts3 = super::pool::cluster_backend_options(cfg, proxy, Proto::Resp3, readonly);
        Rc::new(ClusterRt {
            pool: cfg.name.clone(),
            read_from: cluster.read_from,
            max_redirects: cluster.max_redirects,
            opts,
            opts3,
            tls: cfg.tls.as_ref().map(|t| (crate::tls::for_worker_client(&t.client.config), t.clone())),
            per_proto: cfg.server_connections,
            preconnect: cfg.preconnect,
            max_dedicated: cfg.max_dedicated_connections,
            map: RefCell::new(Arc::new(SlotMap::empty())),
            version: Cell::new(0),
            by_index: RefCell::new(Vec::new()),
            by_addr: RefCell::new(HashMap::new()),
            retired: RefCell::new(Vec::new()),
            refresh_wanted: Cell::new(false),
            unreachable: RefCell::new(String::new()),
            counters: RefCell::new(ClusterCounters::default()),
        })
    }

    /// A place for a subscriber connection of version `proto` to the node at `addr` (which the caller opens and
    /// runs), or the error reply (without its `-`) when the node's dedicated set is full: subscriber connections
    /// share `max_dedicated_connections` with transactions and blocking commands, and the node's TLS options, as
    /// on a sharded pool's server.
    pub fn subscriber(&self, addr: SocketAddr, proto: Proto) -> Result<SubscriberSlot, String> {
        let set = self.dedicated_to(addr);
        let place = DedicatedSet::subscriber(&set, proto).map_err(|e| e.message())?;
        self.counters.borrow_mut().subscribers_opened += 1;
        Ok(place)
    }

    /// Subscriber connections open now, over every node connected to.
    pub fn subscribers(&self) -> u64 {
        self.by_addr.borrow().values().map(|n| n.dedicated.borrow().subscribers() as u64).sum()
    }

    /// The map in force.
    pub fn map(&self) -> Arc<SlotMap> {
        self.map.borrow().clone()
    }

    /// Installs a map broadcast by control: its nodes get connections (kept for nodes that stay), and nodes that
    /// left have theirs retired, so nothing new is sent to a node the map does not own.
    pub fn install(&self, map: Arc<SlotMap>, version: u64) {
        let mut by_addr = self.by_addr.borrow_mut();
        let mut index = Vec::with_capacity(map.nodes.len());
        let mut retired = self.retired.borrow_mut();
        for node in &map.nodes {
            let conns = by_addr.entry(node.addr).or_insert_with(|| self.connect(node.addr, &node.hostname));
            if self.tls.is_some() && conns.hostname != node.hostname {
                // Known by another name now (a redirect reached it before the map named it): its certificate is
                // checked against the name the map gives, so it gets connections made for that name.
                for c in &conns.conns {
                    c.retire();
                    retired.push(c.clone());
                }
                // Its transactions and blocked commands finish (or fail) on their connections, as for a node that
                // left the map; new ones lease from the new set.
                retired.extend(conns.dedicated.borrow().leased().iter().cloned());
                *conns = self.connect(node.addr, &node.hostname);
            }
            index.push(conns.clone());
        }
        by_addr.retain(|addr, conns| {
            let keep = map.nodes.iter().any(|n| n.addr == *addr);
            if !keep {
                for c in &conns.conns {
                    c.retire();
                    retired.push(c.clone());
                }
                // A transaction or a blocked command there finishes (or fails) on its connection; the tick keeps
                // checking its deadline. Nothing new is leased there: the set is gone from the map's nodes.
                retired.extend(conns.dedicated.borrow().leased().iter().cloned());
            }
            keep
        });
        *self.by_index.borrow_mut() = index;
        *self.map.borrow_mut() = map;
        self.version.set(version);
    }

    /// The options of a connection to the node at `addr`, known by `hostname` (empty: by its address only), for a
    /// client of `proto`: the pool's, with TLS to that node when the pool has it.
    pub fn node_options(&self, addr: SocketAddr, hostname: &str, proto: Proto) -> BackendOptions {
        let mut opts = if proto == Proto::Resp3 { self.opts3.clone() } else { self.opts.clone() };
        opts.tls = self.tls.as_ref().map(|(config, t)| super::tls::Connector {
            config: config.clone(),
            server_name: t.node_name(Some(hostname), addr.ip()),
        });
        opts
    }

    fn connect(&self, addr: SocketAddr, hostname: &str) -> Rc<NodeConns> {
        let label = format!("{}/{addr}", self.pool);
        let (opts, opts3) =
            (self.node_options(addr, hostname, Proto::Resp2), self.node_options(addr, hostname, Proto::Resp3));
        let spawn = |opts: &BackendOptions, preconnect: bool| {
            let b = Backend::new(addr, label.clone(), opts.clone());
            glommio::spawn_local(b.clone().run(preconnect)).detach();
            b
        };
        let mut conns: Vec<Rc<Backend>> = (0..self.per_proto).map(|_| spawn(&opts, self.preconnect)).collect();
        conns.extend((0..self.per_proto).map(|_| spawn(&opts3, false)));
        // Dedicated connections speak TLS to the node under the same name as its shared ones.
        let dedicated = DedicatedSet::new(addr, label.clone(), opts, opts3, self.max_dedicated);
        Rc::new(NodeConns { conns, hostname: hostname.to_owned(), dedicated })
    }

    /// The dedicated connections of the node at `addr` (connecting its shared ones too if it is new: a redirect
    /// may name a node before the map does).
    pub fn dedicated_to(&self, addr: SocketAddr) -> DedicatedRef {
        let conns = self.by_addr.borrow_mut().entry(addr).or_insert_with(|| self.connect(addr, "")).clone();
        conns.dedicated.clone()
    }

    /// Every node's dedicated connections, with its address, for the tick's deadline checks and for stats.
    pub fn dedicated_sets(&self) -> Vec<(SocketAddr, DedicatedRef)> {
        let mut out: Vec<_> = self.by_addr.borrow().iter().map(|(a, n)| (*a, n.dedicated.clone())).collect();
        out.sort_by_key(|(a, _)| *a);
        out
    }

    /// The connection of node `index` of the map in force that a client of `proto` uses (fixed per client, so
    /// one client's requests to one node stay in order).
    #[inline]
    pub fn backend_at(&self, index: usize, client_id: u64, proto: Proto) -> Option<Rc<Backend>> {
        let by_index = self.by_index.borrow();
        by_index.get(index).map(|n| self.pick(n, client_id, proto))
    }

    /// The connection to the node at `addr` (connecting to it if it is new: a redirect may name a node before the
    /// map does; it is then known by its address only, its certificate checked as [`crate::config::PoolTls::node_name`]
    /// says, until a map names it).
    pub fn backend_to(&self, addr: SocketAddr, client_id: u64, proto: Proto) -> Rc<Backend> {
        let conns = self.by_addr.borrow_mut().entry(addr).or_insert_with(|| self.connect(addr, "")).clone();
        self.pick(&conns, client_id, proto)
    }

    fn pick(&self, n: &NodeConns, client_id: u64, proto: Proto) -> Rc<Backend> {
        let first = if proto == Proto::Resp3 { self.per_proto } else { 0 };
        n.conns[first + (client_id % self.per_proto as u64) as usize].clone()
    }

    /// Control's reason for having no map yet (see `ToWorker::ClusterUnreachable`).
    pub fn set_unreachable(&self, why: String) {
        *self.unreachable.borrow_mut() = why;
    }

    /// Why no map is known yet: the last topology read's failure, or empty.
    pub fn unreachable(&self) -> std::cell::Ref<'_, String> {
        self.unreachable.borrow()
    }

    /// Asks for a topology refresh at the next tick (the tick sends one request however many came in).
    pub fn want_refresh(&self) {
        if !self.refresh_wanted.replace(true) {
            self.counters.borrow_mut().refresh_requests += 1;
        }
    }

    /// Whether a refresh was asked for since the last call.
    pub fn take_refresh_wanted(&self) -> bool {
        self.refresh_wanted.replace(false)
    }

    /// This worker's counters, with the map version it routes by.
    pub fn counters(&self) -> ClusterCounters {
        ClusterCounters {
            version: self.version.get(),
            subscribers: self.subscribers(),
            ..self.counters.borrow().clone()
        }
    }

    /// Every connection, for the tick's deadline checks and for stats, with the node's address.
    pub fn connections(&self) -> Vec<(SocketAddr, Vec<Rc<Backend>>)> {
        let mut out: Vec<_> = self.by_addr.borrow().iter().map(|(a, n)| (*a, n.conns.clone())).collect();
        out.sort_by_key(|(a, _)| *a);
        out
    }

    /// Checks the deadlines of retired connections and forgets those that are done.
    pub fn check_retired(&self, now: Instant) {
        self.retired.borrow_mut().retain(|c| {
            c.check_deadline(now);
            c.take_health_events();
            c.inflight() > 0 || c.is_connected()
        });
    }

    /// Retires every connection (the pool left the config or changed).
    pub fn retire_all(&self) -> Vec<Rc<Backend>> {
        let mut out: Vec<Rc<Backend>> = self.retired.borrow_mut().drain(..).collect();
        for (_, n) in self.by_addr.borrow_mut().drain() {
            for c in &n.conns {
                c.retire();
                out.push(c.clone());
            }
            out.extend(n.dedicated.borrow().leased().iter().cloned());
        }
        self.by_index.borrow_mut().clear();
        out
    }
}

/// A request (or one fragment of a split request) to a cluster pool, with what is needed to send it again.
pub struct Redirectable {
    pub client: ClientRef,
    pub seq: u64,
    pub frag: Option<u32>,
    pub meter: Option<Meter>,
    /// The request as sent.
    pub bytes: Vec<u8>,
    pub shape: ReplyShape,
    pub client_id: u64,
    pub proto: Proto,
    /// Where it was sent last (an empty host in a redirect means this node's host).
    pub sent_to: SocketAddr,
    /// Redirects followed so far.
    pub followed: u8,
    /// Whether `sent_to` was reached by an ASK (a retry there must send ASKING again).
    pub asked: bool,
    /// `-TRYAGAIN` replies retried so far.
    pub retried: u8,
    pub rt: Rc<ClusterRt>,
    /// What a redirect may do with it.
    pub follow: Follow,
}

/// What a redirect of a cluster request may do.
pub enum Follow {
    /// An ordinary request: followed on the shared connections.
    Shared,
    /// A command on the dedicated connection of a transaction or a WATCH (`command`: its name): never followed.
    /// The transaction's MULTI, queued commands and WATCHes are on this node, which answers EXEC with
    /// `-EXECABORT` once a queued command was redirected (redis flags the transaction), or answers EXEC itself
    /// with the redirect when the slot moved after the commands were queued (and discards the transaction).
    /// So the client gets an error naming the move, the transaction is not applied anywhere, and the map is
    /// refreshed for the next one. `timeout`: a blocking command's own (on the WATCHing connection), `None` for
    /// `timeout_ms`.
    Never { command: &'static str, timeout: Option<Option<Duration>> },
    /// A blocking command on a dedicated connection of its own, held in `lease` by the client's session (weak:
    /// a client that left drops its lease, which closes the connection). A redirect means it has not blocked,
    /// so it is followed on a dedicated connection to the named node, which replaces the lease. `timeout`: the
    /// command's own (its block time plus `timeout_ms`; `None`: it blocks for ever).
    Dedicated { lease: Weak<std::cell::RefCell<Option<Lease>>>, timeout: Option<Duration> },
}

impl Redirectable {
    pub fn meter_started(&self) -> Option<Instant> {
        self.meter.as_ref().map(|m| m.started())
    }

    /// Queues it on `backend`.
    pub fn send(self: Box<Self>, backend: &Backend, now: Instant) {
        let framer = Framer::Redis(self.shape);
        let timeout = match &self.follow {
            Follow::Dedicated { timeout, .. } => Some(*timeout),
            Follow::Never { timeout, .. } => *timeout,
            Follow::Shared => None,
        };
        match timeout {
            None => backend.enqueue_redirectable(self, framer, now),
            Some(timeout) => backend.enqueue_redirectable_with_timeout(self, framer, now, timeout),
        }
    }

    fn into_client(self) -> Waiter {
        Waiter::Client { client: self.client, seq: self.seq, frag: self.frag, meter: self.meter }
    }
}

/// A reply (or a failure made by the proxy, `failed`) for a cluster request: follow it if it is a redirect,
/// else complete the client's slot.
pub fn arrive(mut r: Box<Redirectable>, reply: &[u8], latency: Option<Duration>, failed: bool) {
    if failed {
        // The node's connection failed or is backing off: the map may be stale (a failover).
        r.rt.want_refresh();
        return super::backend::deliver_to((*r).into_client(), reply, latency, true);
    }
    let max = r.rt.max_redirects;
    let redirect = match decide(reply, r.followed, max) {
        // On a dedicated connection a TRYAGAIN is the client's to retry: a timer resending it would hold the
        // transaction's or the blocked command's place on a node that may have left the map meanwhile.
        Decision::Deliver if is_tryagain(reply) && !matches!(r.follow, Follow::Shared) => {
            return super::backend::deliver_to((*r).into_client(), reply, latency, false);
        }
        Decision::Deliver if is_tryagain(reply) => {
            let Some(delay) = tryagain_delay(r.retried) else {
                // Still migrating after every retry: the client gets redis' own answer, which it may retry.
                return super::backend::deliver_to((*r).into_client(), reply, latency, false);
            };
            r.retried += 1;
            r.rt.counters.borrow_mut().tryagain += 1;
            // A timer task, so the worker goes on serving everyone else meanwhile; the client's later replies
            // wait behind this one in its queue, as they would behind a slow reply.
            glommio::spawn_local(async move {
                glommio::timer::sleep(delay).await;
                // Nothing goes to a node the map in force does not have (a failover or a reshard meanwhile).
                if !r.rt.map().nodes.iter().any(|n| n.addr == r.sent_to) {
                    let msg = format!(
                        "-TRYAGAIN ferrule: pool '{}': {} answered TRYAGAIN and has left the slot map since\r\n",
                        r.rt.pool, r.sent_to
                    );
                    let latency = r.meter_started().map(|t| t.elapsed());
                    return super::backend::deliver_to((*r).into_client(), msg.as_bytes(), latency, true);
                }
                let backend = r.rt.backend_to(r.sent_to, r.client_id, r.proto);
                resend(r, &backend);
            })
            .detach();
            return;
        }
        Decision::Deliver => return super::backend::deliver_to((*r).into_client(), reply, latency, false),
        Decision::TooMany(last) => {
            r.rt.counters.borrow_mut().redirect_failures += 1;
            log::warn!("pool {}: a request was redirected {max} times; failing it", r.rt.pool);
            let msg = too_many_redirects(&r.rt.pool, max, &last);
            return super::backend::deliver_to((*r).into_client(), msg.as_bytes(), latency, true);
        }
        Decision::Follow(redirect) => redirect,
    };
    if let Follow::Never { command, .. } = r.follow {
        r.rt.want_refresh();
        r.rt.counters.borrow_mut().redirect_failures += 1;
        let msg = in_transaction(&r.rt.pool, command, &redirect);
        return super::backend::deliver_to((*r).into_client(), msg.as_bytes(), latency, true);
    }
    let addr = if redirect.host.is_empty() {
        Some(SocketAddr::new(r.sent_to.ip(), redirect.port))
    } else if let Some(ip) = std::str::from_utf8(redirect.host).ok().and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(SocketAddr::new(ip, redirect.port))
    } else {
        // A host name: the map knows it when control resolved it; resolving here would block the core.
        r.rt.map().node_named(redirect.host, redirect.port)
    };
    let kind = redirect.kind;
    if kind == RedirectKind::Moved {
        r.rt.want_refresh();
    }
    let Some(addr) = addr else {
        r.rt.counters.borrow_mut().redirect_failures += 1;
        r.rt.want_refresh();
        let msg = format!(
            "-TRYAGAIN ferrule: pool '{}': redirected to {}:{}, a host not in the slot map yet; the map is being \
             refreshed\r\n",
            r.rt.pool,
            String::from_utf8_lossy(redirect.host),
            redirect.port
        );
        return super::backend::deliver_to((*r).into_client(), msg.as_bytes(), latency, true);
    };
    {
        let mut c = r.rt.counters.borrow_mut();
        match kind {
            RedirectKind::Moved => c.moved += 1,
            RedirectKind::Ask => c.ask += 1,
        }
    }
    r.followed += 1;
    r.sent_to = addr;
    r.asked = kind == RedirectKind::Ask;
    let backend = match &r.follow {
        Follow::Dedicated { lease, .. } => {
            // The client left: its lease is gone, and with it the reason to send this anywhere.
            let Some(held) = lease.upgrade() else { return };
            match DedicatedSet::lease(&r.rt.dedicated_to(addr), r.proto) {
                Ok(new) => {
                    let backend = new.backend().clone();
                    // The old connection answered the redirect: nothing blocks there, it is clean to reuse.
                    if let Some(old) = held.borrow_mut().replace(new) {
                        old.release();
                    }
                    backend
                }
                Err(e) => {
                    let msg = format!("-{}\r\n", e.message());
                    return super::backend::deliver_to((*r).into_client(), msg.as_bytes(), latency, true);
                }
            }
        }
        Follow::Shared | Follow::Never { .. } => r.rt.backend_to(addr, r.client_id, r.proto),
    };
    resend(r, &backend);
}

/// Sends `r` again to `backend` (where it was redirected, or where it was answered TRYAGAIN), preceded by ASKING
/// when an ASK led there.
fn resend(r: Box<Redirectable>, backend: &Backend) {
    let now = Instant::now();
    if r.asked {
        // ASKING holds for the next command on the connection only; both go in the same queue, in this order.
        backend.enqueue(
            |out| redis::write_command(out, &[b"ASKING"]),
            Some(Waiter::Ignored),
            Framer::Redis(ReplyShape::any().status()),
            now,
        );
    }
    r.send(backend, now);
}
