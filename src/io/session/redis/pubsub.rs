//! The session side of pub/sub: subscriber connections of the client's own, one per server it subscribed on,
//! whose messages reach the client's one connection interleaved at message boundaries.
//!
//! Placement: a channel (and a shard channel) lives on the server the pool's hash and hash tag give it as a key,
//! so PUBLISH (routed as a key) and SUBSCRIBE of one channel meet there; a pattern is subscribed on every live
//! server, since a message that matches it may be published on any of them.
//!
//! Replies: the confirmations of (P|S)(UN)SUBSCRIBE, with their counts, are the proxy's own
//! (`protocol::redis::pubsub`), since the count is the client's total across servers; each command's
//! confirmations are released once every server it went to confirmed its part, so a message published after the
//! client saw "subscribe" is delivered. Messages go to the client as they arrive, behind any reply still awaited
//! (never inside one): for a channel the client is no longer subscribed to (unsubscribed, the server not yet
//! told) they are dropped.
//!
//! A subscriber connection that fails ends the client's connection after an error: the client's library then
//! reconnects and subscribes again, rather than silently missing that server's messages. So does a server that
//! does not confirm a (P|S)(UN)SUBSCRIBE within the pool's `timeout_ms` (the connection is out of step), and a
//! change of placement: when an ejection, a restore or a reload means a subscription would now be placed on a server
//! it is not subscribed on (a channel's server changed, a pattern's pool gained a live server, the pool's servers
//! changed), the client's connection is closed with a warning in the log, as a Redis Cluster client's subscription
//! connection is on a reshard; subscribing again places every subscription where publishers now publish.
//!
//! On a `redis_cluster` pool a subscription lives on a node (by address): the primary serving the name's slot,
//! for channels and patterns too, since a cluster delivers every PUBLISH to every node (see [`cluster_placed`]).
//! A node that loses a shard channel's slot unsubscribes its subscribers itself (`sunsubscribe`), which is passed
//! on so the client subscribes again by the new map; an SSUBSCRIBE sent by a stale map follows the node's
//! `-MOVED`. A node that fails, or leaves the map ([`cluster_map_changed`]), ends its subscribed clients as above:
//! re-subscribing for them would hide the messages lost meanwhile.

use super::{Flow, Pinned, Scratch};
use crate::cluster::redirect::RedirectKind;
use crate::cluster::{key_slot, one_slot, parse_redirect, CROSSSLOT};
use crate::config::Target;
use crate::io::backend::BackendOptions;
use crate::io::cluster::ClusterRt;
use crate::io::dedicated::{DedicatedSet, SubscriberSlot};
use crate::io::pool::PoolRt;
use crate::io::replies::ClientRef;
use crate::io::session::Session;
use crate::io::tls::{self, Stream};
use crate::io::uring::{self, Conn};
use crate::protocol::redis::pubsub::{self, Frame, PubSubCmd, SubKind, Subscriptions};
use crate::protocol::redis::{self, CommandInfo, CommandKind, Local, Proto, ReplyParser};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};

/// Where a subscription lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ServerId {
    /// A sharded pool's server: (pool index, server index).
    Server(usize, usize),
    /// A node of a cluster pool's map, by address.
    Node(SocketAddr),
}

/// How often one SSUBSCRIBE follows `-MOVED` before the client's connection is ended (a map that keeps changing).
const MAX_SUBSCRIBE_REDIRECTS: u8 = 5;

/// A session's subscriptions and subscriber connections (boxed in [`Pinned`] only once it subscribed).
pub(super) struct PubSub {
    st: Rc<RefCell<State>>,
}

struct State {
    subs: Subscriptions<Vec<ServerId>>,
    conns: Vec<Rc<SubConn>>,
    /// Commands whose confirmations are not all in: slot -> (servers still to confirm, the client's reply).
    waiting: HashMap<u64, (usize, Vec<u8>)>,
    client: ClientRef,
    /// The client's socket, whose reading is shut down when a subscriber connection fails (the session then ends).
    client_conn: Conn,
    proto: Proto,
    /// The pool the subscriptions live in (the listener's), as it was when the client first subscribed: its index,
    /// name and servers, to tell a reload that changed it.
    pool: (usize, String, Vec<String>),
    /// How long a server may take to confirm (the pool's `timeout_ms`; zero: no bound).
    confirm_timeout: std::time::Duration,
    /// A `redis_cluster` pool: its runtime (the slot map places subscriptions on nodes; see [`cluster_placed`]).
    cluster: Option<Rc<ClusterRt>>,
    /// The client's connection was ended (a failure, a placement change): nothing more is done for it.
    ended: bool,
}

thread_local! {
    /// This worker's subscribed clients, for [`placement_changed`] (pruned as clients go).
    static SUBSCRIBED: RefCell<Vec<Weak<RefCell<State>>>> = const { RefCell::new(Vec::new()) };
}

/// The worker's rings or pools changed (an ejection, a restore, a reload): every client with a subscription that
/// would now be placed on a server it is not subscribed on has its connection ended with a log line (see the
/// module doc), `why` saying what changed.
pub(crate) fn placement_changed(pools: &[PoolRt], why: &str) {
    let clients: Vec<Rc<RefCell<State>>> = SUBSCRIBED.with(|list| {
        let mut list = list.borrow_mut();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    });
    for st in clients {
        let Ok(mut state) = st.try_borrow_mut() else { continue };
        if state.ended {
            continue;
        }
        if let Some(what) = moved(&state, pools) {
            log::warn!("{why}: a subscribed client's {what}; closing its connection so that it subscribes again");
            let msg = format!("-ERR ferrule: {why}: {what}; subscribe again\r\n");
            end_client(&mut state, &msg);
        }
    }
}

/// A cluster pool's worker installed a new slot map: every client subscribed through it whose subscriber
/// connection is to a node the map no longer has is ended as on a placement change. Subscriptions on nodes that
/// stay are kept: PUBLISH reaches every node of a cluster, and a node that loses a shard channel's slot tells
/// its subscribers itself (`sunsubscribe`, passed on to the client; see [`arrive`]).
pub(crate) fn cluster_map_changed(cl: &Rc<ClusterRt>) {
    let clients: Vec<Rc<RefCell<State>>> = SUBSCRIBED.with(|list| {
        let mut list = list.borrow_mut();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    });
    let map = cl.map();
    for st in clients {
        let Ok(mut state) = st.try_borrow_mut() else { continue };
        if state.ended || !state.cluster.as_ref().is_some_and(|c| Rc::ptr_eq(c, cl)) {
            continue;
        }
        let gone = state.subs.iter().find_map(|(kind, sub, place)| {
            place.iter().find_map(|p| match p {
                ServerId::Node(addr) if !map.nodes.iter().any(|n| n.addr == *addr) => Some((kind, sub, *addr)),
                _ => None,
            })
        });
        if let Some((kind, sub, addr)) = gone {
            let what = format!(
                "{} '{}' was subscribed on node {addr}, which left the cluster's slot map",
                kind_name(kind),
                redis::printable(sub, 64)
            );
            log::warn!(
                "pool {}: a subscribed client's {what}; closing its connection so that it subscribes again",
                cl.pool
            );
            let msg = format!("-ERR ferrule: pool '{}': {what}; subscribe again\r\n", cl.pool);
            end_client(&mut state, &msg);
        }
    }
}

fn kind_name(kind: SubKind) -> &'static str {
    match kind {
        SubKind::Channel => "channel",
        SubKind::Pattern => "pattern",
        SubKind::Shard => "shard channel",
    }
}

/// The first subscription of `state` that `pools` would place elsewhere now, described; `None` when all stay.
fn moved(state: &State, pools: &[PoolRt]) -> Option<String> {
    let (index, name, specs) = &state.pool;
    let Some(pool) =
        pools.get(*index).filter(|p| p.name == *name && p.servers.iter().map(|s| &s.spec).eq(specs.iter()))
    else {
        return Some(format!("pool '{name}' changed"));
    };
    if let Some(cl) = &state.cluster {
        // The cluster's own changes are `cluster_map_changed`'s; here only a reload that rebuilt the pool.
        return match &pool.cluster {
            Some(now) if Rc::ptr_eq(now, cl) => None,
            _ => Some(format!("pool '{name}' changed")),
        };
    }
    let live = |i: usize| pool.servers.get(i).is_some_and(|s| !s.ejected);
    for (kind, sub, place) in state.subs.iter() {
        let now: Vec<usize> = match kind {
            SubKind::Pattern => (0..pool.servers.len()).filter(|&i| live(i)).collect(),
            SubKind::Channel | SubKind::Shard => pool.router.server_for(sub).into_iter().collect(),
        };
        if let Some(&i) = now.iter().find(|&&i| !place.contains(&ServerId::Server(*index, i))) {
            let what = if kind == SubKind::Pattern { "pattern" } else { "channel" };
            return Some(format!(
                "{what} '{}' now belongs on server {} too",
                redis::printable(sub, 64),
                pool.servers[i].spec
            ));
        }
    }
    None
}

impl Drop for State {
    /// The client left (or let go of its last subscription): the connections close, and replies still waiting for
    /// confirmations are given as they are, so the client's queue drains and its session can end.
    fn drop(&mut self) {
        for c in &self.conns {
            c.close();
        }
        let mut waiting: Vec<(u64, Vec<u8>)> = self.waiting.drain().map(|(slot, (_, reply))| (slot, reply)).collect();
        waiting.sort_unstable_by_key(|(slot, _)| *slot);
        if let Ok(mut q) = self.client.try_borrow_mut() {
            for (slot, reply) in waiting {
                q.complete(slot, &reply);
            }
        }
    }
}

/// One subscriber connection: written to by the session, read by its own task.
struct SubConn {
    server: ServerId,
    label: String,
    addr: SocketAddr,
    opts: BackendOptions,
    stream: RefCell<Option<Stream>>,
    out: RefCell<Vec<u8>>,
    writing: Cell<bool>,
    closed: Cell<bool>,
    /// Confirmations expected, oldest first, one entry per command sent.
    expect: RefCell<VecDeque<Expect>>,
    /// Its place in its server's (or cluster node's) dedicated set, given back when the connection goes.
    _hold: SubscriberSlot,
}

/// One (un)subscribe command sent: the server confirms each of its names, in order.
struct Expect {
    /// The client command's reply slot.
    slot: u64,
    kind: SubKind,
    subscribe: bool,
    names: Vec<Box<[u8]>>,
    /// Names confirmed so far.
    next: usize,
    /// `-MOVED` followed so far (an SSUBSCRIBE on a cluster).
    redirects: u8,
}

impl Expect {
    /// Whether a confirmation of (`kind`, `subscribe`, `name`) is this command's next one.
    fn is_next(&self, kind: SubKind, subscribe: bool, name: Option<&[u8]>) -> bool {
        self.kind == kind && self.subscribe == subscribe && self.names.get(self.next).map(|n| &n[..]) == name
    }
}

impl SubConn {
    fn close(&self) {
        self.closed.set(true);
        if let Some(s) = self.stream.borrow_mut().take() {
            s.shutdown();
        }
    }

    /// Queues a command; it is written now, or once connected.
    fn send(self: &Rc<Self>, kind: SubKind, subscribe: bool, names: &[&[u8]], slot: u64, redirects: u8) {
        let word = command_word(kind, subscribe);
        redis::write_command_iter(
            &mut self.out.borrow_mut(),
            names.len() + 1,
            std::iter::once(word).chain(names.iter().copied()),
        );
        let names = names.iter().map(|&n| Box::from(n)).collect();
        self.expect.borrow_mut().push_back(Expect { slot, kind, subscribe, names, next: 0, redirects });
        self.kick();
    }

    /// Starts the writer when there is something to write and none runs.
    fn kick(self: &Rc<Self>) {
        if self.writing.get() || self.out.borrow().is_empty() {
            return;
        }
        let Some(stream) = self.stream.borrow().clone() else { return };
        self.writing.set(true);
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                let batch = std::mem::take(&mut *me.out.borrow_mut());
                if batch.is_empty() || me.closed.get() {
                    break;
                }
                let (result, _) = stream.send_all(batch).await;
                if result.is_err() {
                    // The reader sees the connection fail too, and reports it.
                    break;
                }
            }
            me.writing.set(false);
        })
        .detach();
    }
}

/// What the session asks before anything else while the client has subscriptions: a RESP2 client in subscribe
/// mode may only run the (un)subscribe commands, PING (answered `*2 pong ...`), QUIT and RESET, as in redis; a
/// RESP3 client runs everything, its messages arriving as pushes between replies. Neither can switch version with
/// HELLO while it has subscriptions or confirmations still to come (the connections speak the version it had).
pub(super) fn gate(s: &Session, p: &mut Pinned, info: &CommandInfo, req: &[u8], sc: &mut Scratch) -> Option<Flow> {
    let ps = p.pubsub.as_ref()?;
    let (total, waiting) = {
        let st = ps.st.borrow();
        (st.subs.total(), st.waiting.len())
    };
    if total == 0 && waiting == 0 {
        // Unsubscribed from everything and confirmed: the connections go.
        p.pubsub = None;
        return None;
    }
    sc.reply.clear();
    if s.proto == Proto::Resp2 && total > 0 {
        if info.kind == CommandKind::Local(Local::Ping) && sc.args.len() <= 2 {
            pubsub::write_subscribed_pong(&mut sc.reply, sc.args.get(1).map(|a| &req[a.clone()]));
        } else if !pubsub::allowed_while_subscribed(info) {
            pubsub::write_subscribed_refusal(&mut sc.reply, info);
        } else {
            return None;
        }
    } else if info.kind == CommandKind::Local(Local::Hello) {
        // The subscriber connections speak the version the client had.
        redis::write_error(
            &mut sc.reply,
            b"ERR ferrule: HELLO is not supported while subscribed (unsubscribe from everything first)",
        );
    } else {
        return None;
    }
    s.local(&sc.reply);
    Some(Flow::Continue)
}

/// (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE.
pub(super) fn command(s: &mut Session, p: &mut Pinned, info: &CommandInfo, cmd: PubSubCmd, req: &[u8], sc: &Scratch) {
    let Target::Pool(pool_index) = s.listener.target() else {
        let msg = format!("-ERR ferrule: {} needs a listener whose route is a pool\r\n", info.name);
        return s.local(msg.as_bytes());
    };
    let names: Vec<&[u8]> = sc.args[1..].iter().map(|a| &req[a.clone()]).collect();
    // As redis answers it, before anything changes: the channels of one SSUBSCRIBE must share a slot.
    if cmd == PubSubCmd::Subscribe(SubKind::Shard) && super::on_cluster_pool(s) {
        let slots: Vec<usize> = names.iter().map(|n| key_slot(n) as usize).collect();
        if !one_slot(&slots) {
            return s.local(CROSSSLOT);
        }
    }
    let ps = p.pubsub.get_or_insert_with(|| {
        let (pool, confirm_timeout, cluster) = {
            let pools = s.worker.pools.borrow();
            let pool = pools.get(pool_index);
            let specs = pool.map(|p| p.servers.iter().map(|s| s.spec.clone()).collect()).unwrap_or_default();
            let name = pool.map(|p| p.name.clone()).unwrap_or_default();
            let timeout = pool.map(|p| std::time::Duration::from_millis(p.cfg.timeout_ms)).unwrap_or_default();
            let cluster = pool.and_then(|p| p.cluster.clone());
            ((pool_index, name, specs), timeout, cluster)
        };
        let st = Rc::new(RefCell::new(State {
            subs: Subscriptions::default(),
            conns: Vec::new(),
            waiting: HashMap::new(),
            client: s.q.clone(),
            client_conn: s.conn.conn().clone(),
            proto: s.proto,
            pool,
            confirm_timeout,
            cluster,
            ended: false,
        }));
        SUBSCRIBED.with(|list| {
            let mut list = list.borrow_mut();
            // Clients that left are pruned here too, now and then, so the list stays within twice the subscribed
            // clients (plus 64) between placement changes.
            if list.len() >= 64 && list.len().is_power_of_two() {
                list.retain(|w| w.strong_count() > 0);
            }
            list.push(Rc::downgrade(&st));
        });
        Box::new(PubSub { st })
    });
    ps.st.borrow_mut().proto = s.proto;
    let result = match cmd {
        PubSubCmd::Subscribe(kind) => subscribe(s, &ps.st, pool_index, kind, &names),
        PubSubCmd::Unsubscribe(kind) => {
            unsubscribe(&ps.st, kind, &names);
            Ok(())
        }
    };
    if let Err(msg) = result {
        s.local(msg.as_bytes());
    }
    // A client with nothing left subscribed and nothing awaited gives its connections back.
    let idle = {
        let st = ps.st.borrow();
        st.subs.total() == 0 && st.waiting.is_empty()
    };
    if idle {
        p.pubsub = None;
    }
}

/// Where a new subscription goes on a cluster pool: the primary serving the name's slot (CRC16 with hash tags,
/// as a key). A shard channel must be there (SPUBLISH reaches its shard only). A channel or pattern could be on
/// any node, since PUBLISH reaches every node of a cluster; its slot's primary is as good as any and spreads the
/// subscribers of many channels over the cluster's nodes, like their publishers. The primary and not a replica
/// under `read_from`: it is the node the map is surest of, and the one that a failover ends the subscription on
/// (the client hears of it) rather than a replica that may be reassigned quietly.
fn cluster_placed(cl: &ClusterRt, name: &[u8]) -> Result<ServerId, String> {
    let map = cl.map();
    let slot = key_slot(name);
    match map.shard_of(slot) {
        Some(shard) => Ok(ServerId::Node(map.nodes[shard.primary].addr)),
        None => {
            cl.counters.borrow_mut().unserved += 1;
            let why = if cl.version.get() == 0 {
                "the cluster's slot map is not known yet (no seed node answered so far)"
            } else {
                "no node of the cluster serves it"
            };
            Err(format!("-CLUSTERDOWN ferrule: pool '{}': hash slot {slot}: {why}\r\n", cl.pool))
        }
    }
}

fn subscribe(
    s: &Session,
    st: &Rc<RefCell<State>>,
    pool_index: usize,
    kind: SubKind,
    names: &[&[u8]],
) -> Result<(), String> {
    // Where each new name goes, decided before anything changes: a refusal leaves the client as it was.
    let mut new: Vec<(&[u8], Vec<ServerId>)> = Vec::new();
    {
        let pools = s.worker.pools.borrow();
        let pool = pools.get(pool_index).ok_or_else(|| "-ERR ferrule: listener has no pool\r\n".to_string())?;
        let state = st.borrow();
        for &name in names {
            if state.subs.contains(kind, name) || new.iter().any(|(n, _)| *n == name) {
                continue;
            }
            if let Some(cl) = &state.cluster {
                let place = cluster_placed(cl, name).inspect_err(|_| s.meters.borrow_mut().clients.unroutable += 1)?;
                new.push((name, vec![place]));
                continue;
            }
            let place: Vec<ServerId> = match kind {
                SubKind::Pattern => (0..pool.servers.len())
                    .filter(|&i| !pool.servers[i].ejected)
                    .map(|i| ServerId::Server(pool_index, i))
                    .collect(),
                SubKind::Channel | SubKind::Shard => {
                    pool.router.server_for(name).map(|i| vec![ServerId::Server(pool_index, i)]).unwrap_or_default()
                }
            };
            if place.is_empty() {
                s.meters.borrow_mut().clients.unroutable += 1;
                return Err(format!("-ERR ferrule: pool '{}' has no server available (all ejected)\r\n", pool.name));
            }
            new.push((name, place));
        }
    }
    let mut servers: Vec<ServerId> = new.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    servers.sort_unstable();
    servers.dedup();
    for &server in &servers {
        connection(s, st, server)?;
    }
    let mut sent: Vec<(ServerId, Vec<&[u8]>)> = servers.iter().map(|&server| (server, Vec::new())).collect();
    for (name, place) in &new {
        for server in place {
            if let Some((_, list)) = sent.iter_mut().find(|(s, _)| s == server) {
                list.push(name);
            }
        }
    }
    let mut state = st.borrow_mut();
    let mut reply = Vec::new();
    for &name in names {
        if let Some(i) = new.iter().position(|(n, _)| *n == name) {
            let place = std::mem::take(&mut new[i].1);
            state.subs.add(kind, name, place);
        }
        let count = state.subs.count(kind);
        pubsub::write_confirmation(&mut reply, state.proto, kind.subscribe_word(), Some(name), count);
    }
    drop(state);
    release_after(st, sent, kind, true, reply);
    Ok(())
}

fn unsubscribe(st: &Rc<RefCell<State>>, kind: SubKind, names: &[&[u8]]) {
    let mut state = st.borrow_mut();
    let all: Vec<Box<[u8]>>;
    let names: Vec<&[u8]> = if names.is_empty() {
        all = state.subs.names(kind);
        all.iter().map(|n| &n[..]).collect()
    } else {
        names.to_vec()
    };
    let mut reply = Vec::new();
    let mut per_server: Vec<(ServerId, Vec<&[u8]>)> = Vec::new();
    if names.is_empty() {
        let count = state.subs.count(kind);
        pubsub::write_confirmation(&mut reply, state.proto, kind.unsubscribe_word(), None, count);
    }
    for &name in &names {
        if let Some(place) = state.subs.remove(kind, name) {
            for server in place {
                match per_server.iter_mut().find(|(s, _)| *s == server) {
                    Some((_, list)) => list.push(name),
                    None => per_server.push((server, vec![name])),
                }
            }
        }
        let count = state.subs.count(kind);
        pubsub::write_confirmation(&mut reply, state.proto, kind.unsubscribe_word(), Some(name), count);
    }
    drop(state);
    release_after(st, per_server, kind, false, reply);
}

/// The command sent to a server.
fn command_word(kind: SubKind, subscribe: bool) -> &'static [u8] {
    match (kind, subscribe) {
        (SubKind::Channel, true) => b"SUBSCRIBE",
        (SubKind::Pattern, true) => b"PSUBSCRIBE",
        (SubKind::Shard, true) => b"SSUBSCRIBE",
        (SubKind::Channel, false) => b"UNSUBSCRIBE",
        (SubKind::Pattern, false) => b"PUNSUBSCRIBE",
        (SubKind::Shard, false) => b"SUNSUBSCRIBE",
    }
}

/// Sends the (un)subscribe of `kind` for `names...` to each server and gives the client `reply` once every one of
/// them confirmed its part (at once when none was asked: a second SUBSCRIBE of a channel, an UNSUBSCRIBE of one
/// never subscribed).
fn release_after(
    st: &Rc<RefCell<State>>,
    sent: Vec<(ServerId, Vec<&[u8]>)>,
    kind: SubKind,
    subscribe: bool,
    reply: Vec<u8>,
) {
    let mut state = st.borrow_mut();
    let sent: Vec<_> = sent.into_iter().filter(|(_, names)| !names.is_empty()).collect();
    if sent.is_empty() {
        state.client.borrow_mut().push_local(&reply);
        return;
    }
    let slot = state.client.borrow_mut().reserve();
    let mut asked = 0;
    for (server, names) in sent {
        let Some(conn) = state.conns.iter().find(|c| c.server == server && !c.closed.get()).cloned() else { continue };
        if kind == SubKind::Shard && matches!(server, ServerId::Node(_)) {
            // A cluster node refuses shard channels of two slots in one command (-CROSSSLOT), even its own:
            // one command per slot (the shard channels of a client's SUNSUBSCRIBE may be of several).
            let mut by_slot: Vec<(u16, Vec<&[u8]>)> = Vec::new();
            for name in names {
                let slot = key_slot(name);
                match by_slot.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, list)) => list.push(name),
                    None => by_slot.push((slot, vec![name])),
                }
            }
            for (_, names) in by_slot {
                conn.send(kind, subscribe, &names, slot, 0);
                asked += 1;
            }
        } else {
            conn.send(kind, subscribe, &names, slot, 0);
            asked += 1;
        }
    }
    if asked == 0 {
        state.client.borrow_mut().complete(slot, &reply);
        return;
    }
    state.waiting.insert(slot, (asked, reply));
    let timeout = state.confirm_timeout;
    if timeout.is_zero() {
        return;
    }
    // A server that never confirms would leave the client waiting forever: after timeout_ms, the connections
    // still owing this command's confirmations fail (and with them the client's connection).
    let st = Rc::downgrade(st);
    let word = String::from_utf8_lossy(command_word(kind, subscribe)).into_owned();
    glommio::spawn_local(async move {
        glommio::timer::sleep(timeout).await;
        let Some(strong) = st.upgrade() else { return };
        let late: Vec<Rc<SubConn>> = {
            let state = strong.borrow();
            if !state.waiting.contains_key(&slot) {
                return;
            }
            state.conns.iter().filter(|c| c.expect.borrow().iter().any(|e| e.slot == slot)).cloned().collect()
        };
        drop(strong);
        let why = format!("did not confirm {word} within timeout_ms ({} ms)", timeout.as_millis());
        for conn in late {
            fail(&st, &conn, &why);
        }
    })
    .detach();
}

/// The client's subscriber connection to `server`, opened when it has none.
fn connection(s: &Session, st: &Rc<RefCell<State>>, server: ServerId) -> Result<Rc<SubConn>, String> {
    if let Some(c) = st.borrow().conns.iter().find(|c| c.server == server && !c.closed.get()) {
        return Ok(c.clone());
    }
    st.borrow_mut().conns.retain(|c| !c.closed.get());
    let (pool_index, index) = match server {
        ServerId::Node(addr) => return node_connection(st, addr),
        ServerId::Server(pool, index) => (pool, index),
    };
    let set = {
        let pools = s.worker.pools.borrow();
        pools
            .get(pool_index)
            .and_then(|pool| pool.servers.get(index))
            .map(|srv| srv.dedicated.clone())
            .ok_or_else(|| "-ERR ferrule: listener has no pool\r\n".to_string())?
    };
    let slot = DedicatedSet::subscriber(&set, s.proto).map_err(|e| format!("-{}\r\n", e.message()))?;
    let (label, addr, opts) = (slot.label.clone(), slot.addr, slot.opts.clone());
    Ok(open(st, server, label, addr, opts, slot))
}

/// The client's subscriber connection to the cluster node at `addr`, opened when it has none (also from a
/// redirect, which has no session at hand).
fn node_connection(st: &Rc<RefCell<State>>, addr: SocketAddr) -> Result<Rc<SubConn>, String> {
    let server = ServerId::Node(addr);
    if let Some(c) = st.borrow().conns.iter().find(|c| c.server == server && !c.closed.get()) {
        return Ok(c.clone());
    }
    let (cl, proto) = {
        let state = st.borrow();
        (state.cluster.clone().ok_or_else(|| "-ERR ferrule: not a cluster pool\r\n".to_string())?, state.proto)
    };
    let place = cl.subscriber(addr, proto).map_err(|e| format!("-{e}\r\n"))?;
    let (label, opts) = (place.label.clone(), place.opts.clone());
    Ok(open(st, server, label, addr, opts, place))
}

fn open(
    st: &Rc<RefCell<State>>,
    server: ServerId,
    label: String,
    addr: SocketAddr,
    opts: BackendOptions,
    hold: SubscriberSlot,
) -> Rc<SubConn> {
    let conn = Rc::new(SubConn {
        server,
        label,
        addr,
        opts,
        stream: RefCell::new(None),
        out: RefCell::new(Vec::new()),
        writing: Cell::new(false),
        closed: Cell::new(false),
        expect: RefCell::new(VecDeque::new()),
        _hold: hold,
    });
    st.borrow_mut().conns.push(conn.clone());
    glommio::spawn_local(run(conn.clone(), Rc::downgrade(st))).detach();
    conn
}

/// The connection's task: connects, sends the prelude (AUTH, SELECT, HELLO 3) and what was queued meanwhile, then
/// frames what the server sends.
async fn run(conn: Rc<SubConn>, st: Weak<RefCell<State>>) {
    let opts = conn.opts.clone();
    let addr = conn.addr;
    let connected = match uring::connect(addr, opts.connect_timeout).await {
        Err(e) => Err(format!("connect failed: {e}")),
        Ok(c) => {
            if opts.keepalive {
                c.set_keepalive();
            }
            match &opts.tls {
                None => Ok(Stream::Plain(c)),
                Some(connector) => tls::connect(c, connector, opts.connect_timeout).await,
            }
        }
    };
    let stream = match connected {
        Ok(stream) => stream,
        Err(why) => return fail(&st, &conn, &why),
    };
    if conn.closed.get() {
        stream.shutdown();
        return;
    }
    {
        let mut out = conn.out.borrow_mut();
        let mut first = opts.prelude.clone();
        first.extend_from_slice(&out);
        *out = first;
    }
    *conn.stream.borrow_mut() = Some(stream.clone());
    conn.kick();
    let mut prelude = opts.prelude_replies;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut start = 0;
    let mut parser = ReplyParser::new();
    loop {
        match stream.read_append(&mut buf).await {
            Ok(0) => return fail(&st, &conn, "closed the connection"),
            Err(e) => return fail(&st, &conn, &format!("read failed: {e}")),
            Ok(_) => {}
        }
        loop {
            if buf.len() - start < parser.needed() {
                break;
            }
            let len = match parser.parse(&buf[start..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => return fail(&st, &conn, &format!("sent a malformed reply: {}", e.0)),
            };
            parser = ReplyParser::new();
            let frame = &buf[start..start + len];
            start += len;
            if prelude > 0 {
                prelude -= 1;
                if redis::is_error_reply(frame) {
                    let msg = String::from_utf8_lossy(frame).trim_end().to_string();
                    return fail(&st, &conn, &format!("rejected the connection setup: {msg}"));
                }
                continue;
            }
            if let Err(why) = arrive(&st, &conn, frame) {
                return fail(&st, &conn, &why);
            }
        }
        if start == buf.len() {
            buf.clear();
            start = 0;
            if buf.capacity() > 64 * 1024 {
                buf = Vec::with_capacity(16 * 1024);
            }
        } else if start > 64 * 1024 {
            buf.drain(..start);
            start = 0;
        }
    }
}

/// One frame from a subscriber connection: a message for the client, or a confirmation the client's reply waits
/// for; on a cluster also a node's notice that it lost a shard channel's slot, and `-MOVED` for a shard
/// command sent by a map that was out of date. Anything else means the connection is out of step.
///
/// Telling a node's notice (`sunsubscribe X` unasked) from the confirmation of the client's own SUNSUBSCRIBE X
/// needs no guess: the client's own removes X from its subscriptions before it is sent, so a `sunsubscribe X`
/// while X is still subscribed on this connection is the node's. Whatever else does not fit is a shard frame
/// that lost a race with a slot move (the node's notice and its answer to a SUNSUBSCRIBE of the same channel, a
/// `-MOVED` for a command already settled) and is dropped: the proxy writes the client's confirmations itself, so
/// no client reply depends on them.
fn arrive(st: &Weak<RefCell<State>>, conn: &SubConn, frame: &[u8]) -> Result<(), String> {
    let Some(st) = st.upgrade() else { return Ok(()) };
    let mut state = st.borrow_mut();
    let cluster = state.cluster.is_some();
    match pubsub::classify(frame) {
        Frame::Message(kind, name) => {
            if state.subs.contains(kind, name) {
                state.client.borrow_mut().push_local(frame);
            }
            Ok(())
        }
        Frame::Confirmation { kind: SubKind::Shard, subscribe: false, name: Some(name) }
            if cluster && state.subs.place(SubKind::Shard, name).is_some_and(|p| p.contains(&conn.server)) =>
        {
            lost_slot(&mut state, name);
            Ok(())
        }
        Frame::Confirmation { kind, subscribe, name } => {
            let mut expect = conn.expect.borrow_mut();
            let Some(head) = expect.front_mut().filter(|e| e.is_next(kind, subscribe, name)) else {
                if cluster && kind == SubKind::Shard && !subscribe {
                    return Ok(());
                }
                return Err("sent a subscription confirmation nobody asked for".into());
            };
            head.next += 1;
            if head.next < head.names.len() {
                return Ok(());
            }
            let slot = head.slot;
            expect.pop_front();
            confirmed(&mut state, slot);
            Ok(())
        }
        Frame::Other => {
            let redirect = parse_redirect(frame).filter(|r| cluster && r.kind == RedirectKind::Moved);
            let Some(redirect) = redirect else {
                let what = redis::printable(frame, 80);
                return Err(format!("sent {what} on a subscriber connection"));
            };
            let mut expect = conn.expect.borrow_mut();
            let for_head = expect.front().is_some_and(|e| {
                e.kind == SubKind::Shard && e.names.first().is_some_and(|n| key_slot(n) == redirect.slot)
            });
            if !for_head {
                return Ok(());
            }
            let head = expect.pop_front().expect("checked above");
            drop(expect);
            if !head.subscribe {
                // The node lost the slot, and with it (redis' `removeChannelsInSlot`) these subscriptions.
                confirmed(&mut state, head.slot);
                return Ok(());
            }
            let host = redirect.host.to_vec();
            let port = redirect.port;
            drop(state);
            follow(&st, conn, head, &host, port)
        }
    }
}

/// Every server asked for the client command of reply slot `slot` confirmed one part more.
fn confirmed(state: &mut State, slot: u64) {
    let done = match state.waiting.get_mut(&slot) {
        Some((left, _)) => {
            *left -= 1;
            *left == 0
        }
        None => false,
    };
    if done {
        if let Some((_, reply)) = state.waiting.remove(&slot) {
            state.client.borrow_mut().complete(slot, &reply);
        }
    }
}

/// A cluster node lost the slot of the client's shard channel `name` and unsubscribed it (redis 7 sends
/// `sunsubscribe`): the client is told as redis tells it, with its own count, so it subscribes again; that
/// subscription goes by the new map, which is asked for now.
fn lost_slot(state: &mut State, name: &[u8]) {
    state.subs.remove(SubKind::Shard, name);
    if let Some(cl) = &state.cluster {
        cl.counters.borrow_mut().slot_unsubscribes += 1;
        cl.want_refresh();
    }
    let mut out = Vec::new();
    let count = state.subs.count(SubKind::Shard);
    pubsub::write_confirmation(&mut out, state.proto, SubKind::Shard.unsubscribe_word(), Some(name), count);
    state.client.borrow_mut().push_local(&out);
}

/// An SSUBSCRIBE answered `-MOVED` (the map ferrule routed it by was out of date): it is sent to the node named,
/// its subscriptions placed there, and a new map asked for; the client's confirmations wait for that node's.
fn follow(st: &Rc<RefCell<State>>, from: &SubConn, head: Expect, host: &[u8], port: u16) -> Result<(), String> {
    let cl = st.borrow().cluster.clone().ok_or_else(|| "redirected on a sharded pool".to_string())?;
    cl.want_refresh();
    if head.redirects >= MAX_SUBSCRIBE_REDIRECTS {
        cl.counters.borrow_mut().redirect_failures += 1;
        return Err(format!("redirected an SSUBSCRIBE {MAX_SUBSCRIBE_REDIRECTS} times"));
    }
    let addr = if host.is_empty() {
        Some(SocketAddr::new(from.addr.ip(), port))
    } else if let Some(ip) = std::str::from_utf8(host).ok().and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(SocketAddr::new(ip, port))
    } else {
        cl.map().node_named(host, port)
    };
    let Some(addr) = addr else {
        cl.counters.borrow_mut().redirect_failures += 1;
        return Err(format!(
            "redirected an SSUBSCRIBE to {}:{port}, a host not in the slot map yet",
            String::from_utf8_lossy(host)
        ));
    };
    cl.counters.borrow_mut().moved += 1;
    {
        let mut state = st.borrow_mut();
        for name in &head.names {
            if let Some(place) = state.subs.place_mut(SubKind::Shard, name) {
                if *place == [from.server] {
                    *place = vec![ServerId::Node(addr)];
                }
            }
        }
    }
    let conn = node_connection(st, addr).map_err(|e| e.trim_start_matches('-').trim_end().to_string())?;
    let names: Vec<&[u8]> = head.names.iter().map(|n| &n[..]).collect();
    conn.send(SubKind::Shard, true, &names, head.slot, head.redirects + 1);
    Ok(())
}

/// A subscriber connection failed: the client gets an error and its connection ends (it reconnects and subscribes
/// again), since it would otherwise miss that server's messages without knowing.
fn fail(st: &Weak<RefCell<State>>, conn: &SubConn, why: &str) {
    if conn.closed.get() {
        return;
    }
    conn.close();
    let Some(st) = st.upgrade() else { return };
    let mut state = st.borrow_mut();
    if state.ended {
        return;
    }
    log::warn!("backend {} (subscriber): {why}; closing its client's connection", conn.label);
    let msg = format!("-ERR ferrule: subscriber connection to backend {} failed: {why}\r\n", conn.label);
    end_client(&mut state, &msg);
}

/// Ends the client's connection after `msg`: its subscriber connections close, replies that wait for
/// confirmations get `msg` instead (they will never come), so the client's queue drains and its connection ends.
fn end_client(state: &mut State, msg: &str) {
    state.ended = true;
    for c in &state.conns {
        c.close();
    }
    let mut waiting: Vec<u64> = state.waiting.drain().map(|(slot, _)| slot).collect();
    waiting.sort_unstable();
    let mut q = state.client.borrow_mut();
    if waiting.is_empty() {
        q.push_local(msg.as_bytes());
    }
    for slot in waiting {
        q.complete(slot, msg.as_bytes());
    }
    q.close_after_flush = true;
    q.wake_all();
    drop(q);
    state.client_conn.shutdown_read();
}
