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

use super::backend::{Backend, BackendOptions, Framer, Waiter};
use super::replies::ClientRef;
use super::stats::Meter;
use crate::cluster::redirect::{too_many_redirects, Decision, RedirectKind};
use crate::cluster::{decide, is_tryagain, tryagain_delay, ReadFrom, SlotMap};
use crate::config::{PoolConfig, ProxyConfig};
use crate::protocol::redis::{self, Proto, ReplyShape};
use crate::stats::ClusterCounters;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The connections of one worker to one node: `server_connections` speaking RESP2, then as many speaking RESP3
/// (connected on first use), as for a sharded pool's server.
struct NodeConns {
    conns: Vec<Rc<Backend>>,
}

pub struct ClusterRt {
    pub pool: String,
    pub read_from: ReadFrom,
    /// `cluster_max_redirects`.
    max_redirects: u8,
    opts: BackendOptions,
    opts3: BackendOptions,
    per_proto: usize,
    preconnect: bool,
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
    pub counters: RefCell<ClusterCounters>,
    /// Subscriber connections open now, per node (`io::session::redis::pubsub`), each node's bounded by the
    /// pool's `max_dedicated_connections` on this worker.
    subscribers: RefCell<HashMap<SocketAddr, usize>>,
    max_subscribers: usize,
}

/// A place for one subscriber connection to one node, counted until dropped (see [`ClusterRt::subscriber`]).
pub struct NodeSubscriber {
    rt: Rc<ClusterRt>,
    pub addr: SocketAddr,
    pub label: String,
    /// The options of the node's shared connections of the client's version (prelude: AUTH, READONLY, HELLO 3).
    pub opts: BackendOptions,
}

impl Drop for NodeSubscriber {
    fn drop(&mut self) {
        if let Some(n) = self.rt.subscribers.borrow_mut().get_mut(&self.addr) {
            *n = n.saturating_sub(1);
        }
    }
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
            per_proto: cfg.server_connections,
            preconnect: cfg.preconnect,
            map: RefCell::new(Arc::new(SlotMap::empty())),
            version: Cell::new(0),
            by_index: RefCell::new(Vec::new()),
            by_addr: RefCell::new(HashMap::new()),
            retired: RefCell::new(Vec::new()),
            refresh_wanted: Cell::new(false),
            counters: RefCell::new(ClusterCounters::default()),
            subscribers: RefCell::new(HashMap::new()),
            max_subscribers: cfg.max_dedicated_connections,
        })
    }

    /// A place for a subscriber connection of version `proto` to the node at `addr` (which the caller opens and
    /// runs), or the error reply (without its `-`) when the node has `max_dedicated_connections` already.
    pub fn subscriber(self: &Rc<Self>, addr: SocketAddr, proto: Proto) -> Result<NodeSubscriber, String> {
        let label = format!("{}/{addr}", self.pool);
        {
            let mut subs = self.subscribers.borrow_mut();
            let n = subs.entry(addr).or_insert(0);
            if *n >= self.max_subscribers {
                return Err(format!(
                    "ERR ferrule: node {label} has no subscriber connection available (max_dedicated_connections = {})",
                    self.max_subscribers
                ));
            }
            *n += 1;
        }
        self.counters.borrow_mut().subscribers_opened += 1;
        let opts = if proto == Proto::Resp3 { self.opts3.clone() } else { self.opts.clone() };
        Ok(NodeSubscriber { rt: self.clone(), addr, label, opts })
    }

    /// Subscriber connections open now, over every node.
    pub fn subscribers(&self) -> u64 {
        self.subscribers.borrow().values().sum::<usize>() as u64
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
        for node in &map.nodes {
            let conns = by_addr.entry(node.addr).or_insert_with(|| self.connect(node.addr)).clone();
            index.push(conns);
        }
        let mut retired = self.retired.borrow_mut();
        by_addr.retain(|addr, conns| {
            let keep = map.nodes.iter().any(|n| n.addr == *addr);
            if !keep {
                for c in &conns.conns {
                    c.retire();
                    retired.push(c.clone());
                }
            }
            keep
        });
        *self.by_index.borrow_mut() = index;
        *self.map.borrow_mut() = map;
        self.version.set(version);
    }

    fn connect(&self, addr: SocketAddr) -> Rc<NodeConns> {
        let label = format!("{}/{addr}", self.pool);
        let spawn = |opts: &BackendOptions, preconnect: bool| {
            let b = Backend::new(addr, label.clone(), opts.clone());
            glommio::spawn_local(b.clone().run(preconnect)).detach();
            b
        };
        let mut conns: Vec<Rc<Backend>> = (0..self.per_proto).map(|_| spawn(&self.opts, self.preconnect)).collect();
        conns.extend((0..self.per_proto).map(|_| spawn(&self.opts3, false)));
        Rc::new(NodeConns { conns })
    }

    /// The connection of node `index` of the map in force that a client of `proto` uses (fixed per client, so
    /// one client's requests to one node stay in order).
    #[inline]
    pub fn backend_at(&self, index: usize, client_id: u64, proto: Proto) -> Option<Rc<Backend>> {
        let by_index = self.by_index.borrow();
        by_index.get(index).map(|n| self.pick(n, client_id, proto))
    }

    /// The connection to the node at `addr` (connecting to it if it is new: a redirect may name a node before the
    /// map does).
    pub fn backend_to(&self, addr: SocketAddr, client_id: u64, proto: Proto) -> Rc<Backend> {
        let conns = self.by_addr.borrow_mut().entry(addr).or_insert_with(|| self.connect(addr)).clone();
        self.pick(&conns, client_id, proto)
    }

    fn pick(&self, n: &NodeConns, client_id: u64, proto: Proto) -> Rc<Backend> {
        let first = if proto == Proto::Resp3 { self.per_proto } else { 0 };
        n.conns[first + (client_id % self.per_proto as u64) as usize].clone()
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
}

impl Redirectable {
    pub fn meter_started(&self) -> Option<Instant> {
        self.meter.as_ref().map(|m| m.started())
    }

    /// Queues it on `backend`.
    pub fn send(self: Box<Self>, backend: &Backend, now: Instant) {
        let framer = Framer::Redis(self.shape);
        backend.enqueue_redirectable(self, framer, now);
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
    let backend = r.rt.backend_to(addr, r.client_id, r.proto);
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
