//! The session side of transactions and blocking commands: the client's dedicated connections (`io::dedicated`)
//! and the commands that go on them. What each command does is decided by `protocol::redis::transaction` (pure);
//! this module takes, uses and gives back the connections.
//!
//! Order across connections: a client's requests on a dedicated connection must not overtake its earlier ones on
//! the shared connections (a WATCH must see the write sent before it), nor the other way round. So before the
//! first request on a newly taken connection the session waits for the replies of what it has in flight
//! ([`Flow::Retry`]), and after a transaction ends or while a command blocks it takes no new request until the
//! replies are in ([`Flow::DrainFirst`], [`Flow::Blocked`]) — a blocked redis connection reads nothing either.
//!
//! On a `redis_cluster` pool a transaction belongs to the hash slot of its first key ([`ServerId::Slot`]) and its
//! connection is a dedicated one to the node that serves the slot in the map in force when it is taken (each node
//! has its dedicated set, by address, in `io::cluster`). Its commands are sent as cluster requests that never
//! follow a redirect ([`Follow::Never`]); a blocking command's connection is held in a cell its request can reach,
//! so that a redirect (it has not blocked) is followed on a dedicated connection to the named node
//! ([`Follow::Dedicated`]).

use super::{Flow, Scratch};
use crate::cluster::key_slot;
use crate::config::Target;
use crate::io::backend::{Backend, Framer, Waiter};
use crate::io::cluster::{ClusterRt, Follow};
use crate::io::dedicated::{DedicatedSet, Lease};
use crate::io::pool::PoolRt;
use crate::io::session::routed::{self, KeyDest};
use crate::io::session::{InBuf, Next, Session};
use crate::io::stats::{CommandId, Meter};
use crate::protocol::redis::blocking::{self, Block, BlockTime};
use crate::protocol::redis::transaction::{self, Gate, Placement, ServerId, TxnState};
use crate::protocol::redis::{self, CommandInfo, ReplyShape};
use crate::routes::{Ctx, Op};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Commands without keys held before a transaction has a server: beyond this the transaction is aborted.
const MAX_HELD_BYTES: usize = 1 << 20;
/// While a command blocks, what the client sends meanwhile is read (to notice it leaving) up to this much.
const MAX_READ_WHILE_BLOCKED: usize = 1 << 20;

/// A session's transaction and dedicated connections.
#[derive(Default)]
pub(super) struct Pinned {
    pub txn: TxnState,
    /// The connection of the transaction (or of the WATCH before it), for the server the state names.
    txn_lease: Option<Lease>,
    /// The cluster pool of `txn_lease`, when it is a cluster node's: its commands go as cluster requests that
    /// turn a redirect into an error.
    txn_cluster: Option<Rc<ClusterRt>>,
    /// Commands without keys queued before the transaction had a server, encoded, and how many.
    held: Vec<u8>,
    held_count: usize,
    /// The connection of a blocking command in flight, when it is not the transaction's. In a cell the request
    /// reaches (weakly) on a cluster pool, where following a redirect replaces the connection.
    block_lease: Option<Rc<RefCell<Option<Lease>>>>,
    /// The per-command stats id of a request answered [`Flow::Retry`]: it was counted when first handled.
    pub retried: Option<Option<CommandId>>,
    /// Subscriptions and their connections, once the client subscribed (`super::pubsub`).
    pub pubsub: Option<Box<super::pubsub::PubSub>>,
}

impl Pinned {
    /// The WATCHing connection, when `server` is the one it watches on: the client's requests to that server go
    /// there, so none overtakes the WATCH.
    pub fn watching(&self, pool: usize, server: usize) -> Option<&Rc<Backend>> {
        self.watching_at(ServerId::Server(pool, server))
    }

    /// [`Pinned::watching`] for any place (on a cluster pool, a slot).
    pub fn watching_at(&self, at: ServerId) -> Option<&Rc<Backend>> {
        match self.txn {
            TxnState::Watching { server } if server == at => self.txn_lease.as_ref().map(Lease::backend),
            _ => None,
        }
    }

    /// Nothing to remember: no transaction, no WATCH, no connection held, no request to retry, no subscription
    /// or confirmation awaited (dropping `pubsub` would close the subscriber connections). The session then
    /// drops its boxed state (an idle client carries none).
    pub fn is_idle(&self) -> bool {
        self.txn == TxnState::Idle
            && self.txn_lease.is_none()
            && self.block_lease.is_none()
            && self.held_count == 0
            && self.retried.is_none()
            && self.pubsub.is_none()
    }

    fn end_transaction(&mut self) {
        self.held.clear();
        self.held_count = 0;
        if self.held.capacity() > MAX_HELD_BYTES {
            self.held = Vec::new();
        }
        if let Some(lease) = self.txn_lease.take() {
            lease.release();
        }
        self.txn_cluster = None;
    }
}

/// Carries out what the transaction gate decided for a command other than [`Gate::Run`].
pub(super) fn step(
    s: &mut Session,
    p: &mut Pinned,
    gate: Gate,
    info: &'static CommandInfo,
    req: &[u8],
    sc: &mut Scratch,
    now: Instant,
) -> Flow {
    match gate {
        Gate::Run => Flow::Continue,
        Gate::Answered => {
            s.local(&sc.reply);
            Flow::Continue
        }
        Gate::EndLocally => {
            s.local(&sc.reply);
            let had = p.txn_lease.is_some();
            if let Some(lease) = &p.txn_lease {
                // The server has a MULTI open (or WATCHes): DISCARD clears both, so the connection is clean.
                let shape = ReplyShape::of(info).status();
                lease.backend().enqueue(
                    |out| redis::write_command(out, &[b"DISCARD"]),
                    Some(Waiter::Ignored),
                    Framer::Redis(shape),
                    now,
                );
            }
            p.end_transaction();
            if had {
                Flow::DrainFirst
            } else {
                Flow::Continue
            }
        }
        Gate::Send { release } => {
            let Some(lease) = &p.txn_lease else {
                s.local(b"-ERR ferrule: the transaction lost its connection\r\n");
                p.txn = TxnState::Idle;
                return Flow::Continue;
            };
            let shape = if info.name == "EXEC" { ReplyShape::of(info).array() } else { ReplyShape::of(info).status() };
            send_txn(s, lease.backend(), p.txn_cluster.as_ref(), info, sc, req, shape, now);
            if release {
                p.end_transaction();
                Flow::DrainFirst
            } else {
                Flow::Continue
            }
        }
        Gate::QueueKeyless => {
            if let Some(lease) = &p.txn_lease {
                send_txn(s, lease.backend(), p.txn_cluster.as_ref(), info, sc, req, ReplyShape::of(info).status(), now);
            } else if p.held.len() + req.len() > MAX_HELD_BYTES {
                transaction::abort(&mut p.txn);
                s.local(b"-ERR ferrule: too many commands without keys before the transaction's first key; the transaction is aborted\r\n");
            } else {
                encode_request(&mut p.held, sc, req);
                p.held_count += 1;
                s.local(b"+QUEUED\r\n");
            }
            Flow::Continue
        }
        Gate::ExecKeyless => exec_keyless(s, p, info, req, sc, now),
        Gate::Watch | Gate::Queue => {
            let queued = gate == Gate::Queue;
            let server = match one_server(s, info, req, sc) {
                Ok(server) => server,
                Err(why) => {
                    if queued {
                        transaction::abort(&mut p.txn);
                    }
                    s.local(why.as_bytes());
                    return Flow::Continue;
                }
            };
            sc.reply.clear();
            match transaction::place(&mut p.txn, server, &mut sc.reply) {
                Placement::CrossSlot => {
                    s.local(&sc.reply);
                    Flow::Continue
                }
                Placement::Same => {
                    if let Some(lease) = &p.txn_lease {
                        let status = ReplyShape::of(info).status();
                        send_txn(s, lease.backend(), p.txn_cluster.as_ref(), info, sc, req, status, now);
                    }
                    Flow::Continue
                }
                Placement::Bind => {
                    if s.q.borrow().inflight() > 0 {
                        // Nothing was changed yet: the command is handled again once earlier replies are in.
                        return Flow::Retry;
                    }
                    let (lease, cluster) = match take(s, server) {
                        Ok(taken) => taken,
                        Err(msg) => {
                            if queued {
                                transaction::abort(&mut p.txn);
                            }
                            s.local(msg.as_bytes());
                            return Flow::Continue;
                        }
                    };
                    transaction::bind(&mut p.txn, server);
                    let backend = lease.backend().clone();
                    p.txn_lease = Some(lease);
                    p.txn_cluster = cluster;
                    if queued {
                        // MULTI was answered when it came; the held commands were answered +QUEUED.
                        open_transaction(&backend, p, now);
                    }
                    let status = ReplyShape::of(info).status();
                    send_txn(s, &backend, p.txn_cluster.as_ref(), info, sc, req, status, now);
                    Flow::Continue
                }
            }
        }
    }
}

/// Sends MULTI and the held commands on the transaction's new connection; their replies were given already.
fn open_transaction(backend: &Backend, p: &mut Pinned, now: Instant) {
    let status = ReplyShape::any().status();
    backend.enqueue(|out| redis::write_command(out, &[b"MULTI"]), Some(Waiter::Ignored), Framer::Redis(status), now);
    if p.held_count > 0 {
        backend.enqueue(|out| out.extend_from_slice(&p.held), None, Framer::Redis(status), now);
        for _ in 0..p.held_count {
            backend.enqueue(|_| {}, Some(Waiter::Ignored), Framer::Redis(status), now);
        }
    }
    p.held.clear();
    p.held_count = 0;
}

/// EXEC of a transaction whose commands have no keys (PING, ECHO): they run on any server of the pool.
fn exec_keyless(
    s: &mut Session,
    p: &mut Pinned,
    info: &'static CommandInfo,
    req: &[u8],
    sc: &mut Scratch,
    now: Instant,
) -> Flow {
    if p.held_count == 0 {
        p.end_transaction();
        s.local(b"*0\r\n");
        return Flow::Continue;
    }
    let server = match s.listener.target() {
        Target::Pool(pool_index) => {
            let pools = s.worker.pools.borrow();
            match pools.get(pool_index) {
                // A cluster pool: the slot of the empty key, as for a sharded pool its server.
                Some(pool) if pool.cluster.is_some() => Ok(ServerId::Slot(pool_index, key_slot(b""))),
                pool => pool
                    .and_then(|pool| pool.router.server_for(b""))
                    .map(|server| ServerId::Server(pool_index, server))
                    .ok_or_else(|| "-ERR ferrule: the pool has no server available\r\n".to_string()),
            }
        }
        target => routed_server(s, info, target, std::iter::once(&b""[..])),
    };
    let lease = server.and_then(|server| take(s, server));
    match lease {
        Ok((lease, cluster)) => {
            open_transaction(lease.backend(), p, now);
            send_txn(s, lease.backend(), cluster.as_ref(), info, sc, req, ReplyShape::of(info).array(), now);
            lease.release();
        }
        Err(msg) => s.local(msg.as_bytes()),
    }
    p.end_transaction();
    Flow::Continue
}

/// A blocking command outside MULTI: on a dedicated connection to its keys' server, for as long as it blocks.
pub(super) fn blocking(
    s: &mut Session,
    p: &mut Pinned,
    info: &'static CommandInfo,
    how: Block,
    req: &[u8],
    sc: &mut Scratch,
    now: Instant,
) -> Option<Flow> {
    let block = match blocking::block_time(how, info, &sc.args, req) {
        Ok(BlockTime::No) => return None,
        Ok(block) => block,
        Err(e) => {
            sc.reply.clear();
            redis::write_error(&mut sc.reply, e.as_bytes());
            s.local(&sc.reply);
            return Some(Flow::Continue);
        }
    };
    let server = match one_server(s, info, req, sc) {
        Ok(server) => server,
        Err(why) => {
            s.local(why.as_bytes());
            return Some(Flow::Continue);
        }
    };
    let shape = ReplyShape::for_request(info, &sc.args, req);
    if let Some(b) = p.watching_at(server) {
        // On the WATCHing connection: on a cluster pool, a redirect there is not followed (the WATCH stays on
        // this node), as for the transaction's own commands.
        let (b, cluster) = (b.clone(), p.txn_cluster.clone());
        let timeout = block.request_timeout(b.timeout());
        match cluster {
            None => send(s, &b, sc, req, shape, now, Some(timeout)),
            Some(cl) => {
                let follow = Follow::Never { command: info.name, timeout: Some(timeout) };
                send_cluster(s, &b, &cl, sc, req, shape, now, follow);
            }
        }
        return Some(Flow::Blocked);
    }
    if s.q.borrow().inflight() > 0 {
        return Some(Flow::Retry);
    }
    let (lease, cluster) = match take(s, server) {
        Ok(taken) => taken,
        Err(msg) => {
            s.local(msg.as_bytes());
            return Some(Flow::Continue);
        }
    };
    let backend = lease.backend().clone();
    let timeout = block.request_timeout(backend.timeout());
    let held = Rc::new(RefCell::new(Some(lease)));
    match cluster {
        None => send(s, &backend, sc, req, shape, now, Some(timeout)),
        Some(cl) => {
            // Not blocked yet if it is redirected: followed, on a dedicated connection to the named node.
            let follow = Follow::Dedicated { lease: Rc::downgrade(&held), timeout };
            send_cluster(s, &backend, &cl, sc, req, shape, now, follow);
        }
    }
    p.block_lease = Some(held);
    Some(Flow::Blocked)
}

/// Waits for the reply of a blocking command (and everything before it), reading what the client sends meanwhile
/// so that a client that leaves is noticed: its connection is then closed (the server forgets the block) and the
/// session ends. Otherwise the connection goes back to the idle set.
pub(super) async fn wait_blocked(s: &Session, inb: &mut InBuf, p: &mut Pinned) -> Next {
    loop {
        if s.q.borrow().inflight() == 0 || s.q.borrow().closed {
            break;
        }
        if inb.data().len() >= MAX_READ_WHILE_BLOCKED {
            s.wait_for_replies().await;
            break;
        }
        let replies = async {
            s.wait_for_replies().await;
            None
        };
        let read = async { Some(inb.fill(&s.conn).await) };
        match futures_lite::future::or(replies, read).await {
            None => break,
            Some(Ok(0)) => {
                s.meters.borrow_mut().clients.eof += 1;
                return Next::Stop;
            }
            // The worker nudged the read (the listener closed): the reply is still awaited.
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Some(Err(_)) => {
                s.meters.borrow_mut().clients.errors += 1;
                return Next::Stop;
            }
            Some(Ok(_)) => {}
        }
    }
    if s.q.borrow().closed {
        return Next::Stop;
    }
    if let Some(held) = p.block_lease.take() {
        let lease = held.borrow_mut().take();
        if let Some(lease) = lease {
            lease.release();
        }
    }
    Next::Parse
}

/// The one server of the pool that all the command's keys map to (for WATCH, a queued command, a blocking one),
/// or the error reply. On a listener whose route is a route, the keys go through the worker's route tree.
fn one_server(s: &Session, info: &'static CommandInfo, req: &[u8], sc: &mut Scratch) -> Result<ServerId, String> {
    sc.keys.clear();
    if let Err(e) = redis::key_indices(info, &sc.args, req, &mut sc.keys) {
        return Err(format!("-{e}\r\n"));
    }
    if sc.keys.is_empty() {
        return Err(format!("-ERR ferrule: {} needs at least one key to route by\r\n", info.name));
    }
    let pool_index = match s.listener.target() {
        Target::Pool(pool_index) => pool_index,
        target => return routed_server(s, info, target, sc.keys.iter().map(|&k| &req[sc.args[k].clone()])),
    };
    let pools = s.worker.pools.borrow();
    let pool = pools.get(pool_index).ok_or_else(|| "-ERR ferrule: listener has no pool\r\n".to_string())?;
    if pool.cluster.is_some() {
        // Redis Cluster runs a command whose keys share one slot (even two slots of one node are refused).
        let slot = key_slot(&req[sc.args[sc.keys[0]].clone()]);
        if sc.keys.iter().any(|&k| key_slot(&req[sc.args[k].clone()]) != slot) {
            return Err(String::from_utf8_lossy(crate::cluster::CROSSSLOT).into_owned());
        }
        return Ok(ServerId::Slot(pool_index, slot));
    }
    let mut server = None;
    for &k in &sc.keys {
        let Some(this) = pool.router.server_for(&req[sc.args[k].clone()]) else {
            s.meters.borrow_mut().clients.unroutable += 1;
            return Err(format!("-ERR ferrule: pool '{}' has no server available (all ejected)\r\n", pool.name));
        };
        if server.is_some_and(|s| s != this) {
            return Err("-CROSSSLOT Keys in request don't hash to the same server\r\n".to_string());
        }
        server = Some(this);
    }
    Ok(ServerId::Server(pool_index, server.unwrap_or_default()))
}

/// A listener whose route is a route: every key decided by the route tree must reach one server of one pool,
/// unchanged, for the command to run on a connection of its own there. A multi-destination route (failover,
/// all_*, shadow), an `error` or `null` route, or a prefix stripped on the way cannot give that: refused.
fn routed_server<'k>(
    s: &Session,
    info: &'static CommandInfo,
    target: Target,
    keys: impl Iterator<Item = &'k [u8]>,
) -> Result<ServerId, String> {
    let pools = s.worker.pools.borrow();
    let tree = s.worker.routes.borrow();
    let cfg = s.worker.config.borrow();
    let ctx = Ctx { now_unix: 0, random: routed::draw(&s.worker.rng) };
    let mut dests = Vec::new();
    let plans = s.worker.fans.borrow().clone();
    if let Err(why) = routed::resolve(&tree, &pools, &plans, target, Op::Redis(info), keys, &ctx, &mut dests) {
        s.meters.borrow_mut().clients.unroutable += 1;
        return Err(format!("-ERR {}\r\n", routed::unroutable_message(&cfg, &why)));
    }
    let cannot =
        |why: String| Err(format!("-ERR ferrule: {} cannot run on a connection of its own here: {why}\r\n", info.name));
    let mut server = None;
    for d in dests {
        let this = match d {
            KeyDest::Server { pool, server, strip: 0 } => ServerId::Server(pool, server),
            KeyDest::Server { .. } => return cannot("its route strips a key prefix".into()),
            KeyDest::Canned(_) => return cannot("its route answers by itself (an error or null route)".into()),
            KeyDest::Fan { route, .. } => {
                let name = cfg.routes.get(route).map_or("?", |r| r.name.as_str());
                return cannot(format!("route '{name}' sends to several destinations"));
            }
        };
        if server.is_some_and(|s| s != this) {
            return Err("-CROSSSLOT Keys in request don't hash to the same server\r\n".to_string());
        }
        server = Some(this);
    }
    server.ok_or_else(|| format!("-ERR ferrule: {} needs at least one key to route by\r\n", info.name))
}

/// A dedicated connection to `server` in the client's protocol version (with the cluster pool it is a node of,
/// if it is one), or the error reply. A slot's connection is to its primary in the map in force.
fn take(s: &Session, at: ServerId) -> Result<(Lease, Option<Rc<ClusterRt>>), String> {
    let pools = s.worker.pools.borrow();
    let no_pool = || "-ERR ferrule: listener has no pool\r\n".to_string();
    let (set, cluster) = match at {
        ServerId::Server(pool_index, server) => {
            let set = pools
                .get(pool_index)
                .and_then(|pool: &PoolRt| pool.servers.get(server))
                .map(|srv| srv.dedicated.clone())
                .ok_or_else(no_pool)?;
            (set, None)
        }
        ServerId::Slot(pool_index, slot) => {
            let cl = pools.get(pool_index).and_then(|pool| pool.cluster.clone()).ok_or_else(no_pool)?;
            let map = cl.map();
            let Some(node) = map.node_for(slot, false, cl.read_from, s.id).ok().and_then(|i| map.nodes.get(i)) else {
                cl.counters.borrow_mut().unserved += 1;
                s.meters.borrow_mut().clients.unroutable += 1;
                let why = if cl.version.get() == 0 {
                    "the cluster's slot map is not known yet (no seed node answered so far)"
                } else {
                    "no node of the cluster serves it"
                };
                return Err(format!("-CLUSTERDOWN ferrule: pool '{}': hash slot {slot}: {why}\r\n", cl.pool));
            };
            (cl.dedicated_to(node.addr), Some(cl))
        }
    };
    drop(pools);
    let lease = DedicatedSet::lease(&set, s.proto).map_err(|e| format!("-{}\r\n", e.message()))?;
    Ok((lease, cluster))
}

/// Sends a command of a transaction (or a WATCH) on its connection: on a cluster node as a request whose
/// redirect becomes an error ([`Follow::Never`]).
#[allow(clippy::too_many_arguments)]
fn send_txn(
    s: &Session,
    backend: &Rc<Backend>,
    cluster: Option<&Rc<ClusterRt>>,
    info: &'static CommandInfo,
    sc: &Scratch,
    req: &[u8],
    shape: ReplyShape,
    now: Instant,
) {
    match cluster {
        None => send(s, backend, sc, req, shape, now, None),
        Some(cl) => {
            let follow = Follow::Never { command: info.name, timeout: None };
            send_cluster(s, backend, cl, sc, req, shape, now, follow);
        }
    }
}

/// Sends the client's request on a cluster node's dedicated connection as a cluster request (it carries its
/// bytes, and `follow` says what a redirect may do); its reply answers the client.
#[allow(clippy::too_many_arguments)]
fn send_cluster(
    s: &Session,
    backend: &Backend,
    cl: &Rc<ClusterRt>,
    sc: &Scratch,
    req: &[u8],
    shape: ReplyShape,
    now: Instant,
    follow: Follow,
) {
    let mut bytes = Vec::with_capacity(req.len());
    encode_request(&mut bytes, sc, req);
    let seq = s.q.borrow_mut().reserve();
    let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, false));
    super::cluster::request(s, cl, backend, (seq, None), meter, bytes, shape, follow).send(backend, now);
}

/// Sends the client's request on `backend`; its reply answers the client. `timeout`: the request's own (a
/// blocking command's; `Some(None)` has none), else `timeout_ms`.
fn send(
    s: &Session,
    backend: &Backend,
    sc: &Scratch,
    req: &[u8],
    shape: ReplyShape,
    now: Instant,
    timeout: Option<Option<Duration>>,
) {
    let seq = s.q.borrow_mut().reserve();
    let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, false));
    let waiter = Waiter::Client { client: s.q.clone(), seq, frag: None, meter };
    let timeout = timeout.unwrap_or(Some(backend.timeout()));
    backend.enqueue_with_timeout(|out| encode_request(out, sc, req), Some(waiter), Framer::Redis(shape), now, timeout);
}

/// The request as multibulk (re-encoded when the client used inline syntax).
fn encode_request(out: &mut Vec<u8>, sc: &Scratch, req: &[u8]) {
    if req.first() == Some(&b'*') {
        out.extend_from_slice(req);
    } else {
        redis::write_command_iter(out, sc.args.len(), sc.args.iter().map(|a| &req[a.clone()]));
    }
}
