//! The Redis side of a client session: parse RESP requests, answer local commands, route the rest.

mod cluster;
mod pinned;
mod pubsub;

pub(crate) use pubsub::cluster_map_changed as cluster_subscriptions_moved;
pub(crate) use pubsub::placement_changed as subscriptions_moved;

use super::routed::{self, Group, KeyDest, Unroutable};
use super::{InBuf, Next, Session};
use crate::config::Target;
use crate::fanout::MergeKind;
use crate::io::backend::Backend;
use crate::io::backend::{Framer, Waiter};
use crate::io::fan;
use crate::io::pool::PoolRt;
use crate::io::replies::ClientLimits;
use crate::io::stats::{client_key, CommandId, Meter};
use crate::protocol::redis::transaction::{self, Gate, TxnState};
use crate::protocol::redis::{self, CommandInfo, CommandKind, KeySpec, Local, PoolCmd, Split};
use crate::router::group_by_server;
use crate::routes::{canned_reply, Ctx, Op};
use pinned::Pinned;
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

/// Reused per-session buffers, so routing a request does not allocate.
#[derive(Default)]
struct Scratch {
    args: Vec<Range<usize>>,
    keys: Vec<usize>,
    servers: Vec<usize>,
    groups: Vec<usize>,
    key_frag: Vec<u32>,
    reply: Vec<u8>,
    /// Routed listeners: each key's destination, and the fragments they form.
    dests: Vec<KeyDest>,
    route_groups: Vec<Group>,
    /// The request being routed, when per-command stats are on: its latency is recorded on completion.
    command: Option<CommandId>,
    /// Cluster pools: the slot map version this client's requests in flight were routed by.
    cluster_version: u64,
}

enum Flow {
    Continue,
    Close,
    /// The client switched protocol version: its next requests go to connections of the other version, so they
    /// wait until the earlier ones are answered (on one server, a write sent before `HELLO` must not be overtaken
    /// by a read sent after it on another connection).
    DrainFirst,
    /// The request was not handled: it is parsed again once the client's requests in flight are answered (its
    /// first request on a dedicated connection must not overtake them).
    Retry,
    /// A blocking command was sent: no request is taken until it is answered, but the client is watched for
    /// leaving.
    Blocked,
}

thread_local! {
    /// The worker's one `Scratch`, shared by its redis sessions: a batch of requests is parsed and routed without
    /// awaiting, so no two sessions use it at once, and an idle client carries no scratch buffers of its own.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// How a batch of parsed requests ended: what the session waits for next.
enum Batch {
    /// The session ends (QUIT, a protocol error, the listener closed).
    Stop,
    /// Parse what is buffered again once the client's requests in flight are answered.
    Drain,
    /// A blocking command was sent (see `pinned::wait_blocked`).
    Blocked,
    /// Read more (after the backend this client filled has drained, if any).
    Refill(Option<Rc<Backend>>),
}

pub async fn read_loop(s: &mut Session) {
    let mut inb = InBuf::new();
    // Transactions and blocking commands: boxed while a client uses them, `None` for a client that does not (the
    // state is freed again when it is back to idle), so that an idle plain client does not carry it.
    let mut pinned: Option<Box<Pinned>> = None;
    let limits = s.worker.client_limits();
    loop {
        s.wait_until_unsaturated(limits).await;
        if s.q.borrow().closed {
            return;
        }
        let batch = SCRATCH.with_borrow_mut(|sc| parse_batch(s, &mut inb, sc, &mut pinned, limits));
        match batch {
            Batch::Stop => return,
            Batch::Blocked => {
                let p = pinned.get_or_insert_with(Default::default);
                // Boxed: only a client with a blocking command in flight needs this state (one allocation per
                // blocking command), not every idle client's future.
                if let Next::Stop = Box::pin(pinned::wait_blocked(s, &mut inb, p)).await {
                    return;
                }
            }
            // What is already buffered is parsed next, without reading more first.
            Batch::Drain => s.wait_for_replies().await,
            Batch::Refill(blocked_on) => {
                if pinned.as_ref().is_some_and(|p| p.is_idle()) {
                    pinned = None;
                }
                if let Next::Stop = s.refill(&mut inb, blocked_on, limits).await {
                    return;
                }
            }
        }
    }
}

/// Parses and handles every complete request buffered, up to the client's in-flight bound.
fn parse_batch(
    s: &mut Session,
    inb: &mut InBuf,
    sc: &mut Scratch,
    pinned: &mut Option<Box<Pinned>>,
    limits: ClientLimits,
) -> Batch {
    let now = Instant::now();
    let mut blocked_on = None;
    while !s.q.borrow().saturated(limits) {
        match redis::parse_request(inb.data(), &mut sc.args) {
            Ok(Some(len)) => {
                let flow = handle(s, &inb.data()[..len], sc, pinned, now, &mut blocked_on);
                if !matches!(flow, Flow::Retry) {
                    inb.consume(len);
                }
                match flow {
                    Flow::Continue => {}
                    Flow::Close => return Batch::Stop,
                    Flow::DrainFirst | Flow::Retry => return Batch::Drain,
                    Flow::Blocked => return Batch::Blocked,
                }
            }
            Ok(None) => break,
            Err(e) => {
                let msg = format!("-ERR Protocol error: {}\r\n", e.0);
                s.local(msg.as_bytes());
                s.meters.borrow_mut().clients.protocol_errors += 1;
                return Batch::Stop;
            }
        }
    }
    Batch::Refill(blocked_on)
}

fn handle(
    s: &mut Session,
    req: &[u8],
    sc: &mut Scratch,
    pinned: &mut Option<Box<Pinned>>,
    now: Instant,
    blocked_on: &mut Option<std::rc::Rc<crate::io::backend::Backend>>,
) -> Flow {
    let Some(first) = sc.args.first() else { return Flow::Continue };
    let name = &req[first.clone()];
    let Some(info) = redis::lookup(name) else {
        s.meters.borrow_mut().count_unknown();
        sc.reply.clear();
        sc.reply.extend_from_slice(b"-ERR unknown command '");
        push_printable(&mut sc.reply, name, 64);
        sc.reply.extend_from_slice(b"', with args beginning with: ");
        for a in sc.args.iter().skip(1).take(8) {
            sc.reply.push(b'\'');
            push_printable(&mut sc.reply, &req[a.clone()], 64);
            sc.reply.extend_from_slice(b"' ");
        }
        sc.reply.extend_from_slice(b"\r\n");
        s.local(&sc.reply);
        return Flow::Continue;
    };
    // A request handled again after a Retry was counted the first time.
    sc.command = match pinned.as_mut().and_then(|p| p.retried.take()) {
        Some(command) => command,
        None => s.meters.borrow_mut().count_redis(info),
    };
    if !s.authed || s.read_only {
        if let Some(refusal) = refuse_access(s, info, req, &sc.args) {
            // As in redis, a malformed command gets its arity error before the access check.
            sc.reply.clear();
            if redis::arity_ok(info, sc.args.len()) {
                sc.reply.extend_from_slice(refusal.as_bytes());
            } else {
                redis::write_error(&mut sc.reply, redis::arity_error(info).as_bytes());
            }
            s.local(&sc.reply);
            return Flow::Continue;
        }
    }
    // A subscribed client: redis' subscribe-mode rules, see `pubsub`.
    if let Some(p) = pinned.as_deref_mut().filter(|p| p.pubsub.is_some()) {
        if let Some(flow) = pubsub::gate(s, p, info, req, sc) {
            return flow;
        }
    }
    // Transactions (and a refused MULTI, which refuses everything up to EXEC/DISCARD): see `pinned`.
    if transaction::needs_gate(pinned.as_ref().map_or(TxnState::Idle, |p| p.txn), info) {
        sc.reply.clear();
        // Every listener runs transactions: on a route, each keyed command must reach one server; on a cluster
        // pool, one slot (see `pinned`).
        let p = pinned.get_or_insert_with(Default::default);
        let gate = transaction::gate(&mut p.txn, info, sc.args.len(), &mut sc.reply);
        if gate != Gate::Run {
            let flow = pinned::step(s, p, gate, info, req, sc, now);
            if matches!(flow, Flow::Retry) {
                p.retried = Some(sc.command);
            }
            return flow;
        }
    }
    if !redis::arity_ok(info, sc.args.len()) {
        sc.reply.clear();
        redis::write_error(&mut sc.reply, redis::arity_error(info).as_bytes());
        s.local(&sc.reply);
        return Flow::Continue;
    }
    match info.kind {
        CommandKind::Local(l) => local(s, l, req, sc),
        CommandKind::Unsupported(reason) => {
            let msg = format!("-ERR {} is not supported by ferrule ({})\r\n", info.name, reason);
            s.local(msg.as_bytes());
            Flow::Continue
        }
        CommandKind::Forward => {
            let flow = route(s, pinned.as_deref(), info, None, req, sc, now, blocked_on);
            routed(flow, pinned, sc)
        }
        CommandKind::Split(kind) => {
            let flow = route(s, pinned.as_deref(), info, Some(kind), req, sc, now, blocked_on);
            routed(flow, pinned, sc)
        }
        CommandKind::Pool(cmd) => {
            whole_pool(s, info, cmd, req, sc, now, blocked_on);
            Flow::Continue
        }
        CommandKind::Blocking(how) => {
            match pinned::blocking(s, pinned.get_or_insert_with(Default::default), info, how, req, sc, now) {
                Some(flow) => routed(flow, pinned, sc),
                // It does not block (XREAD without BLOCK): an ordinary request.
                None => {
                    let flow = route(s, pinned.as_deref(), info, None, req, sc, now, blocked_on);
                    routed(flow, pinned, sc)
                }
            }
        }
        CommandKind::PubSub(cmd) => {
            pubsub::command(s, pinned.get_or_insert_with(Default::default), info, cmd, req, sc);
            Flow::Continue
        }
        // Always answered by the gate above.
        CommandKind::Transaction(_) => Flow::Continue,
    }
}

/// Whether the listener's pool is a `redis_cluster` pool (asked only by commands a cluster pool refuses).
fn on_cluster_pool(s: &Session) -> bool {
    let Target::Pool(p) = s.listener.target() else { return false };
    s.worker.pools.borrow().get(p).is_some_and(|pool| pool.cluster.is_some())
}

/// `-NOAUTH` for a client that must authenticate first, `-NOPERM` for a read-only user's write; `None` to go on.
fn refuse_access(s: &Session, info: &CommandInfo, req: &[u8], args: &[Range<usize>]) -> Option<String> {
    if !s.authed {
        let exempt = matches!(info.kind, CommandKind::Local(Local::Auth | Local::Quit | Local::Hello));
        if !exempt && s.listener.auth_required() {
            return Some("-NOAUTH Authentication required.\r\n".into());
        }
    }
    if s.read_only && !redis::read_only_may_run(info) {
        return Some(format!("-{}\r\n", redis::noperm_error(info, req, args)));
    }
    None
}

/// A request [`route`] could not take yet ([`Flow::Retry`]) is parsed again later, counted once (the state
/// that remembers it is made only then: a retry is rare).
fn routed(flow: Flow, pinned: &mut Option<Box<Pinned>>, sc: &Scratch) -> Flow {
    if matches!(flow, Flow::Retry) {
        pinned.get_or_insert_with(Default::default).retried = Some(sc.command);
    }
    flow
}

/// Sends a keyed request on; [`Flow::Retry`] when it must wait for the client's requests in flight (a cluster
/// pool's map changed since they were sent), [`Flow::Continue`] otherwise (answered or sent).
#[allow(clippy::too_many_arguments)]
fn route(
    s: &mut Session,
    pinned: Option<&Pinned>,
    info: &'static CommandInfo,
    split: Option<Split>,
    req: &[u8],
    sc: &mut Scratch,
    now: Instant,
    blocked_on: &mut Option<std::rc::Rc<crate::io::backend::Backend>>,
) -> Flow {
    route_keys(s, pinned, info, split, req, sc, now, blocked_on).unwrap_or(Flow::Continue)
}

#[allow(clippy::too_many_arguments)]
fn route_keys(
    s: &mut Session,
    pinned: Option<&Pinned>,
    info: &'static CommandInfo,
    split: Option<Split>,
    req: &[u8],
    sc: &mut Scratch,
    now: Instant,
    blocked_on: &mut Option<std::rc::Rc<crate::io::backend::Backend>>,
) -> Option<Flow> {
    sc.keys.clear();
    if let Err(e) = redis::key_indices(info, &sc.args, req, &mut sc.keys) {
        // `e` is a whole error text with its code ("ERR ..."): only the '-' is added.
        sc.reply.clear();
        redis::write_error(&mut sc.reply, e.as_bytes());
        s.local(&sc.reply);
        return None;
    }
    if sc.keys.is_empty() {
        let msg = format!("-ERR ferrule: {} needs at least one key to route by\r\n", info.name);
        s.local(msg.as_bytes());
        return None;
    }
    let target = s.listener.target();
    let Target::Pool(pool_index) = target else {
        route_tree(s, pinned, info, split, req, sc, now, blocked_on, target);
        return None;
    };
    let pools = s.worker.pools.borrow();
    let Some(pool) = pools.get(pool_index) else {
        s.local(b"-ERR ferrule: listener has no pool\r\n");
        return None;
    };
    if let Some(cl) = &pool.cluster {
        let cl = cl.clone();
        drop(pools);
        return cluster::route(s, &cl, pool_index, pinned, info, split, req, sc, now, blocked_on);
    }
    sc.servers.clear();
    for &k in &sc.keys {
        match pool.router.server_for(&req[sc.args[k].clone()]) {
            Some(server) => sc.servers.push(server),
            None => {
                s.meters.borrow_mut().clients.unroutable += 1;
                let msg = format!("-ERR ferrule: pool '{}' has no server available (all ejected)\r\n", pool.name);
                s.local(msg.as_bytes());
                return None;
            }
        }
    }
    group_by_server(&sc.servers, &mut sc.groups, &mut sc.key_frag);
    if sc.groups.len() == 1 {
        // While keys are WATCHed, requests to their server go on the WATCHing connection.
        let backend = pinned
            .and_then(|p| p.watching(pool_index, sc.groups[0]))
            .unwrap_or_else(|| pool.backend_for(sc.groups[0], s.id, s.proto));
        forward_whole(s, backend, info, req, sc, now);
        if backend.over_queue_bound() {
            *blocked_on = Some(backend.clone());
        }
        return None;
    }
    let Some(kind) = split else {
        let _ = matches!(info.keys, KeySpec::None);
        s.local(b"-CROSSSLOT Keys in request don't hash to the same server\r\n");
        return None;
    };
    split_request(s, pool, pool_index, pinned, info, kind, req, sc, now, blocked_on);
    None
}

/// SCAN, DBSIZE, SCRIPT, FUNCTION: about the whole pool. SCAN goes to the server its cursor names (see
/// `redis::split_scan_cursor`); the others go to every server and their replies are merged (`fanout::MergeKind`).
#[allow(clippy::too_many_arguments)]
fn whole_pool(
    s: &mut Session,
    info: &'static CommandInfo,
    cmd: PoolCmd,
    req: &[u8],
    sc: &mut Scratch,
    now: Instant,
    blocked_on: &mut Option<std::rc::Rc<crate::io::backend::Backend>>,
) {
    let Target::Pool(pool_index) = s.listener.target() else {
        let msg = format!("-ERR ferrule: {} needs a listener whose route is a pool\r\n", info.name);
        return s.local(msg.as_bytes());
    };
    let pools = s.worker.pools.borrow();
    let Some(pool) = pools.get(pool_index) else {
        return s.local(b"-ERR ferrule: listener has no pool\r\n");
    };
    let servers = match &pool.cluster {
        None => Whole::Pool(pool),
        Some(cl) => {
            let map = cl.map();
            if map.shards.is_empty() {
                let msg = format!(
                    "-CLUSTERDOWN ferrule: pool '{}': {} needs the cluster's slot map, not known yet\r\n",
                    pool.name, info.name
                );
                return s.local(msg.as_bytes());
            }
            // PUBSUB asks every node, replicas too: a client may subscribe on any node of a cluster (ferrule's
            // subscribers are on primaries, others may be on replicas), so only all of them give the whole count.
            if cmd == PoolCmd::Pubsub {
                Whole::Nodes(cl, map)
            } else {
                Whole::Cluster(cl, map)
            }
        }
    };
    let n = servers.len();
    let live = |i: usize| servers.live(i);
    let sub = sc.args.get(1).map(|r| req[r.clone()].to_ascii_uppercase()).unwrap_or_default();
    let merge = match cmd {
        PoolCmd::Scan => {
            let (server, cursor) = match redis::split_scan_cursor(&req[sc.args[1].clone()], n) {
                Ok(at) => at,
                Err(e) => {
                    sc.reply.clear();
                    redis::write_error(&mut sc.reply, e.as_bytes());
                    return s.local(&sc.reply);
                }
            };
            // A server ejected since the cursor was made is skipped: the scan goes on at the next live one.
            let Some(first_live) = (server..n).find(|&i| live(i)) else {
                return s.local(b"*2\r\n$1\r\n0\r\n*0\r\n");
            };
            let cursor = if first_live == server { cursor } else { 0 };
            let next = (first_live + 1..n).find(|&i| live(i)).map_or(u32::MAX, |i| i as u32);
            let kind = MergeKind::RedisScan { server: first_live as u32, next, servers: n as u32 };
            let text = cursor.to_string();
            let args = sc.args.iter().enumerate().map(|(i, r)| if i == 1 { text.as_bytes() } else { &req[r.clone()] });
            let shape = redis::ReplyShape::of(info);
            let Some(backend) = servers.backend(first_live, s.id, s.proto) else { return };
            let mut fan = s.q.borrow_mut().take_fanout(kind, 1);
            fan.proto = s.proto;
            let seq = s.q.borrow_mut().reserve_fanout(fan);
            s.meters.borrow_mut().begin_split((client_key(&s.q), seq), 1, sc.command.is_some());
            let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, true));
            let waiter = Waiter::Client { client: s.q.clone(), seq, frag: Some(0), meter };
            backend.enqueue(
                |out| redis::write_command_iter(out, sc.args.len(), args),
                Some(waiter),
                Framer::Redis(shape),
                now,
            );
            if backend.over_queue_bound() {
                *blocked_on = Some(backend);
            }
            return;
        }
        PoolCmd::Dbsize => MergeKind::RedisSum,
        PoolCmd::Script if sub == b"EXISTS" => MergeKind::RedisAndArray,
        PoolCmd::Script if sub == b"LOAD" || sub == b"FLUSH" => MergeKind::RedisSame,
        PoolCmd::Function if matches!(&sub[..], b"LOAD" | b"DELETE" | b"FLUSH" | b"LIST") => MergeKind::RedisSame,
        PoolCmd::Pubsub if matches!(&sub[..], b"CHANNELS" | b"SHARDCHANNELS") => MergeKind::RedisChannels,
        PoolCmd::Pubsub if matches!(&sub[..], b"NUMSUB" | b"SHARDNUMSUB") => MergeKind::RedisNumsub,
        // Each pattern of a cluster's clients is on one node (ferrule's on its slot's primary): the nodes' counts add
        // up (a pattern subscribed on two nodes counts twice); a sharded pool's are on every server.
        PoolCmd::Pubsub if sub == b"NUMPAT" && matches!(servers, Whole::Nodes(..)) => MergeKind::RedisSum,
        PoolCmd::Pubsub if sub == b"NUMPAT" => MergeKind::RedisMax,
        PoolCmd::Pubsub => {
            let msg = format!(
                "-ERR ferrule: PUBSUB {} is not supported (CHANNELS, NUMSUB, NUMPAT, SHARDCHANNELS and SHARDNUMSUB are asked of every server of the pool)\r\n",
                redis::printable(&sub, 32),
            );
            return s.local(msg.as_bytes());
        }
        PoolCmd::Script | PoolCmd::Function => {
            let served =
                if cmd == PoolCmd::Function { "LOAD, DELETE, FLUSH and LIST" } else { "LOAD, EXISTS and FLUSH" };
            let msg = format!(
                "-ERR ferrule: {} {} is not supported ({served} go to every server of the pool)\r\n",
                info.name,
                redis::printable(&sub, 32),
            );
            return s.local(msg.as_bytes());
        }
    };
    // DBSIZE and PUBSUB ask the live servers; scripts and functions go to every server, so that one ejected for now
    // shows up as an error rather than as a server silently missing a script.
    sc.servers.clear();
    sc.servers.extend((0..n).filter(|&i| !matches!(cmd, PoolCmd::Dbsize | PoolCmd::Pubsub) || live(i)));
    if sc.servers.is_empty() {
        s.meters.borrow_mut().clients.unroutable += 1;
        let msg = format!("-ERR ferrule: pool '{}' has no server available (all ejected)\r\n", pool.name);
        return s.local(msg.as_bytes());
    }
    let mut fan = s.q.borrow_mut().take_fanout(merge, sc.servers.len());
    fan.proto = s.proto;
    let seq = s.q.borrow_mut().reserve_fanout(fan);
    s.meters.borrow_mut().begin_split((client_key(&s.q), seq), sc.servers.len() as u32, sc.command.is_some());
    let shape = redis::ReplyShape::of(info);
    for (frag, &server) in sc.servers.iter().enumerate() {
        // Every server in `sc.servers` has a connection (a cluster's are made when its map is installed).
        let Some(backend) = servers.backend(server, s.id, s.proto) else { continue };
        let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, true));
        let waiter = Waiter::Client { client: s.q.clone(), seq, frag: Some(frag as u32), meter };
        backend.enqueue(|out| write_as_sent(out, req, &sc.args), Some(waiter), Framer::Redis(shape), now);
        if backend.over_queue_bound() {
            *blocked_on = Some(backend);
        }
    }
}

/// The servers a whole-pool command (SCAN, DBSIZE, SCRIPT, FUNCTION, PUBSUB) goes to: a sharded pool's servers, or
/// the primaries of a cluster pool's map in force, one per shard, in the map's order (a SCAN cursor carries the
/// index), or for PUBSUB every node of the map.
enum Whole<'a> {
    Pool(&'a PoolRt),
    Cluster(&'a Rc<crate::io::cluster::ClusterRt>, std::sync::Arc<crate::cluster::SlotMap>),
    Nodes(&'a Rc<crate::io::cluster::ClusterRt>, std::sync::Arc<crate::cluster::SlotMap>),
}

impl Whole<'_> {
    fn len(&self) -> usize {
        match self {
            Whole::Pool(p) => p.servers.len(),
            Whole::Cluster(_, map) => map.shards.len(),
            Whole::Nodes(_, map) => map.nodes.len(),
        }
    }

    /// A sharded pool's server that is not ejected; a cluster's primary that has connections (the cluster fails
    /// over by itself, so a primary of the map counts as live).
    fn live(&self, i: usize) -> bool {
        match self {
            Whole::Pool(p) => p.servers.get(i).is_some_and(|srv| !srv.ejected),
            Whole::Cluster(..) | Whole::Nodes(..) => i < self.len(),
        }
    }

    fn backend(&self, i: usize, client_id: u64, proto: redis::Proto) -> Option<Rc<Backend>> {
        match self {
            Whole::Pool(p) => Some(p.backend_for(i, client_id, proto).clone()),
            Whole::Cluster(cl, map) => cl.backend_at(map.shards.get(i)?.primary, client_id, proto),
            Whole::Nodes(cl, _) => cl.backend_at(i, client_id, proto),
        }
    }
}

/// Sends the client's request bytes unchanged (re-encoded as multibulk when the client used inline syntax).
fn forward_whole(
    s: &Session,
    backend: &crate::io::backend::Backend,
    info: &CommandInfo,
    req: &[u8],
    sc: &Scratch,
    now: Instant,
) {
    let seq = s.q.borrow_mut().reserve();
    let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, false));
    let waiter = Waiter::Client { client: s.q.clone(), seq, frag: None, meter };
    backend.enqueue(
        |out| write_as_sent(out, req, &sc.args),
        Some(waiter),
        Framer::Redis(redis::ReplyShape::for_request(info, &sc.args, req)),
        now,
    );
}

/// Reserves the client's reply slot for a request split into `fragments` fragments (pool servers, cluster slots or
/// route destinations; `sc.key_frag` maps each key to its fragment), merged by `kind`, and starts its metering over
/// the `sent` fragments that go to a backend (a route's canned replies are not metered); the fragments' replies
/// complete it.
fn reserve_split(s: &Session, kind: Split, sc: &Scratch, fragments: usize, sent: u32) -> u64 {
    let merge = match kind {
        Split::Mget => MergeKind::RedisMget,
        Split::Mset => MergeKind::RedisMset,
        Split::SumIntegers => MergeKind::RedisSum,
    };
    let mut fan = s.q.borrow_mut().take_fanout(merge, fragments);
    fan.proto = s.proto;
    fan.key_frag.extend_from_slice(&sc.key_frag);
    let seq = s.q.borrow_mut().reserve_fanout(fan);
    s.meters.borrow_mut().begin_split((client_key(&s.q), seq), sent, sc.command.is_some() && sent > 0);
    seq
}

#[allow(clippy::too_many_arguments)]
fn split_request(
    s: &Session,
    pool: &PoolRt,
    pool_index: usize,
    pinned: Option<&Pinned>,
    info: &CommandInfo,
    kind: Split,
    req: &[u8],
    sc: &Scratch,
    now: Instant,
    blocked_on: &mut Option<std::rc::Rc<crate::io::backend::Backend>>,
) {
    let seq = reserve_split(s, kind, sc, sc.groups.len(), sc.groups.len() as u32);
    // MSET carries a value after each key.
    let per_key = if kind == Split::Mset { 2 } else { 1 };
    let name = &req[sc.args[0].clone()];
    let shape = redis::ReplyShape::of(info);
    for (frag, &server) in sc.groups.iter().enumerate() {
        let backend = pinned
            .and_then(|p| p.watching(pool_index, server))
            .unwrap_or_else(|| pool.backend_for(server, s.id, s.proto));
        let n_keys = sc.key_frag.iter().filter(|&&f| f as usize == frag).count();
        let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, true));
        let waiter = Waiter::Client { client: s.q.clone(), seq, frag: Some(frag as u32), meter };
        backend.enqueue(
            |out| {
                let args = sc
                    .keys
                    .iter()
                    .zip(&sc.key_frag)
                    .filter(|(_, &f)| f as usize == frag)
                    .flat_map(|(&k, _)| (k..k + per_key).map(|i| &req[sc.args[i].clone()]));
                redis::write_command_iter(out, 1 + n_keys * per_key, std::iter::once(name).chain(args));
            },
            Some(waiter),
            // A fragment of a split MGET answers an array of exactly its own keys.
            Framer::Redis(if kind == Split::Mget { shape.with_array_len(n_keys) } else { shape }),
            now,
        );
        if backend.over_queue_bound() {
            *blocked_on = Some(backend.clone());
        }
    }
}

/// A request of a listener whose `route` is a route: each key decided by the route tree, then sent like a pool
/// listener's request (see `routed`).
#[allow(clippy::too_many_arguments)]
fn route_tree(
    s: &mut Session,
    pinned: Option<&Pinned>,
    info: &'static CommandInfo,
    split: Option<Split>,
    req: &[u8],
    sc: &mut Scratch,
    now: Instant,
    blocked_on: &mut Option<std::rc::Rc<crate::io::backend::Backend>>,
    target: Target,
) {
    let pools = s.worker.pools.borrow();
    let tree = s.worker.routes.borrow();
    let cfg = s.worker.config.borrow();
    let op = Op::Redis(info);
    let ctx = Ctx { now_unix: s.worker.unix_now.get(), random: routed::draw(&s.worker.rng) };
    let keys = sc.keys.iter().map(|&k| &req[sc.args[k].clone()]);
    let plans = s.worker.fans.borrow().clone();
    if let Err(why) = routed::resolve(&tree, &pools, &plans, target, op, keys, &ctx, &mut sc.dests) {
        if matches!(why, Unroutable::NoServer(_)) {
            s.meters.borrow_mut().clients.unroutable += 1;
        }
        let msg = format!("-ERR {}\r\n", routed::unroutable_message(&cfg, &why));
        s.local(msg.as_bytes());
        return;
    }
    let env = fan::Env { cfg: &cfg, tree: &tree, pools: &pools, client_id: s.id, proto: s.proto, ctx };
    if sc.dests.len() > 1 && sc.dests.iter().any(|d| matches!(d, KeyDest::Fan { .. })) {
        let keys = sc.keys.iter().map(|&k| &req[sc.args[k].clone()]);
        routed::split_fans(&env, &plans, op, keys, &mut sc.dests);
    }
    routed::group(&sc.dests, &mut sc.route_groups, &mut sc.key_frag);
    if let [only] = sc.route_groups[..] {
        match only {
            Group::Fan { .. } => fan_out(s, &env, info, req, sc, now),
            Group::Canned(c) => {
                sc.reply.clear();
                canned_reply(&cfg, c, op, sc.keys.len(), s.proto, &mut sc.reply);
                s.local(&sc.reply);
            }
            Group::Server { pool, server } => {
                // While keys are WATCHed, requests to their server go on the WATCHing connection.
                let backend = pinned
                    .and_then(|p| p.watching(pool, server))
                    .unwrap_or_else(|| pools[pool].backend_for(server, s.id, s.proto));
                if sc.dests.iter().all(|d| d.strip() == 0) {
                    forward_whole(s, backend, info, req, sc, now);
                } else {
                    forward_stripped(s, backend, info, req, sc, now);
                }
                if backend.over_queue_bound() {
                    *blocked_on = Some(backend.clone());
                }
            }
        }
        return;
    }
    let Some(kind) = split else {
        s.local(b"-CROSSSLOT Keys in request don't hash to the same server\r\n");
        return;
    };
    let sent = sc.route_groups.iter().filter(|g| !matches!(g, Group::Canned(_))).count() as u32;
    let seq = reserve_split(s, kind, sc, sc.route_groups.len(), sent);
    let per_key = if kind == Split::Mset { 2 } else { 1 };
    let name = &req[sc.args[0].clone()];
    let shape = redis::ReplyShape::of(info);
    let mut reply = std::mem::take(&mut sc.reply);
    for (frag, &group) in sc.route_groups.iter().enumerate() {
        let n_keys = sc.key_frag.iter().filter(|&&f| f as usize == frag).count();
        match group {
            Group::Fan { route, .. } => {
                // The group's keys (stripped as the routes above say) and their values, as one request through
                // the route, answering its fragment.
                let mut keys = Vec::with_capacity(n_keys);
                let mut bytes = Vec::new();
                let args =
                    sc.keys.iter().zip(&sc.key_frag).zip(&sc.dests).filter(|((_, &f), _)| f as usize == frag).flat_map(
                        |((&k, _), d)| {
                            let key = &req[sc.args[k].clone()];
                            let key = &key[d.strip().min(key.len())..];
                            keys.push(key);
                            let values = (k + 1..k + per_key).map(|i| &req[sc.args[i].clone()]);
                            std::iter::once(key).chain(values)
                        },
                    );
                redis::write_command_iter(&mut bytes, 1 + n_keys * per_key, std::iter::once(name).chain(args));
                let framer = Framer::Redis(if kind == Split::Mget { shape.with_array_len(n_keys) } else { shape });
                let request = fan::Request { op, keys: &keys, bytes, framer, now, meta: None };
                let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, true));
                let to = fan::ReplyTo { q: s.q.clone(), meter, fragment: Some((seq, frag as u32)) };
                let refused = match plans.get(route) {
                    Some(plan) => fan::dispatch(&env, plan, request, Some(to)).err().map(|fan::Refused(why)| why),
                    None => Some("ferrule: no such route".to_string()),
                };
                if let Some(why) = refused {
                    if let Some(c) = sc.command {
                        Meter::new(&s.meters, c, now, true).finish(client_key(&s.q), seq, now.elapsed(), true);
                    }
                    reply.clear();
                    reply.extend_from_slice(format!("-ERR {why}\r\n").as_bytes());
                    s.q.borrow_mut().complete_fragment(seq, frag, &reply);
                }
            }
            Group::Canned(c) => {
                reply.clear();
                canned_reply(&cfg, c, op, n_keys, s.proto, &mut reply);
                s.q.borrow_mut().complete_fragment(seq, frag, &reply);
            }
            Group::Server { pool, server } => {
                let backend = pinned
                    .and_then(|p| p.watching(pool, server))
                    .unwrap_or_else(|| pools[pool].backend_for(server, s.id, s.proto));
                let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, true));
                let waiter = Waiter::Client { client: s.q.clone(), seq, frag: Some(frag as u32), meter };
                backend.enqueue(
                    |out| {
                        let args = sc
                            .keys
                            .iter()
                            .zip(&sc.key_frag)
                            .zip(&sc.dests)
                            .filter(|((_, &f), _)| f as usize == frag)
                            .flat_map(|((&k, _), d)| {
                                let key = &req[sc.args[k].clone()];
                                let values = (k + 1..k + per_key).map(|i| &req[sc.args[i].clone()]);
                                std::iter::once(&key[d.strip()..]).chain(values)
                            });
                        redis::write_command_iter(out, 1 + n_keys * per_key, std::iter::once(name).chain(args));
                    },
                    Some(waiter),
                    // A fragment of a split MGET answers an array of exactly its own keys.
                    Framer::Redis(if kind == Split::Mget { shape.with_array_len(n_keys) } else { shape }),
                    now,
                );
                if backend.over_queue_bound() {
                    *blocked_on = Some(backend.clone());
                }
            }
        }
    }
    sc.reply = reply;
}

/// A request whose keys all reach one multi-destination route: executed by `io::fan` with the request's bytes
/// (keys stripped as the routes above it say). Keys that also reach other destinations are refused.
fn fan_out(s: &Session, env: &fan::Env, info: &'static CommandInfo, req: &[u8], sc: &Scratch, now: Instant) {
    let plans = s.worker.fans.borrow().clone();
    let plan = match sc.route_groups[..] {
        [Group::Fan { route, .. }] => plans.get(route),
        _ => None,
    };
    let Some(plan) = plan else {
        s.local(b"-ERR ferrule: no such route\r\n");
        return;
    };
    let keys: Vec<&[u8]> = sc
        .keys
        .iter()
        .zip(&sc.dests)
        .map(|(&k, d)| {
            let key = &req[sc.args[k].clone()];
            &key[d.strip().min(key.len())..]
        })
        .collect();
    let mut bytes = Vec::with_capacity(req.len());
    if sc.dests.iter().all(|d| d.strip() == 0) && req.first() == Some(&b'*') {
        bytes.extend_from_slice(req);
    } else {
        let args = sc.args.iter().enumerate().map(|(i, a)| {
            let arg = &req[a.clone()];
            match sc.keys.iter().position(|&k| k == i) {
                Some(j) => &arg[sc.dests[j].strip().min(arg.len())..],
                None => arg,
            }
        });
        redis::write_command_iter(&mut bytes, sc.args.len(), args);
    }
    let framer = Framer::Redis(redis::ReplyShape::for_request(info, &sc.args, req));
    let request = fan::Request { op: Op::Redis(info), keys: &keys, bytes, framer, now, meta: None };
    let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, false));
    let reply = fan::ReplyTo { q: s.q.clone(), meter, fragment: None };
    if let Err(fan::Refused(why)) = fan::dispatch(env, plan, request, Some(reply)) {
        s.local(format!("-ERR {why}\r\n").as_bytes());
    }
}

/// Sends the request to one server with each key's routing prefix removed (`strip_prefix`): re-encoded.
fn forward_stripped(
    s: &Session,
    backend: &crate::io::backend::Backend,
    info: &CommandInfo,
    req: &[u8],
    sc: &Scratch,
    now: Instant,
) {
    let seq = s.q.borrow_mut().reserve();
    let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, false));
    let waiter = Waiter::Client { client: s.q.clone(), seq, frag: None, meter };
    backend.enqueue(
        |out| {
            let args = sc.args.iter().enumerate().map(|(i, a)| {
                let arg = &req[a.clone()];
                match sc.keys.iter().position(|&k| k == i) {
                    Some(j) => &arg[sc.dests[j].strip().min(arg.len())..],
                    None => arg,
                }
            });
            redis::write_command_iter(out, sc.args.len(), args);
        },
        Some(waiter),
        Framer::Redis(redis::ReplyShape::for_request(info, &sc.args, req)),
        now,
    );
}

fn local(s: &mut Session, l: Local, req: &[u8], sc: &mut Scratch) -> Flow {
    let arg = |i: usize| sc.args.get(i).map(|r| &req[r.clone()]);
    sc.reply.clear();
    match l {
        Local::Ping if sc.args.len() > 2 => {
            redis::write_error(&mut sc.reply, b"ERR wrong number of arguments for 'ping' command");
            s.local(&sc.reply);
        }
        Local::Ping => match arg(1) {
            None => s.local(b"+PONG\r\n"),
            Some(m) => {
                redis::write_bulk(&mut sc.reply, m);
                s.local(&sc.reply);
            }
        },
        Local::Echo => {
            redis::write_bulk(&mut sc.reply, arg(1).unwrap_or_default());
            s.local(&sc.reply);
        }
        Local::Quit => {
            s.local(b"+OK\r\n");
            return Flow::Close;
        }
        Local::Auth => auth(s, req, sc),
        Local::Select => match arg(1).and_then(redis::strict_integer) {
            Some(0) => s.local(b"+OK\r\n"),
            Some(_) => {
                s.local(b"-ERR ferrule: SELECT is only supported for db 0 (set redis_db on the pool instead)\r\n")
            }
            None => s.local(b"-ERR value is not an integer or out of range\r\n"),
        },
        Local::Command if redis::docs_request(&mut sc.reply, req, &sc.args) && command_docs(s, &*sc) => {}
        Local::Command => {
            sc.reply.clear();
            redis::write_command_reply(&mut sc.reply, req, &sc.args, s.proto);
            s.local(&sc.reply);
        }
        Local::Hello => return hello(s, req, sc),
        Local::Info => {
            // A verbatim string in RESP3, as redis sends it.
            let text = s.worker.info_text(arg(1));
            redis::write_verbatim(&mut sc.reply, b"txt", text.as_bytes(), s.proto);
            s.local(&sc.reply);
        }
        Local::ClientSetname => client(s, req, sc),
    }
    Flow::Continue
}

/// COMMAND DOCS: the documentation is redis' own, so the request in `sc.reply` (see `redis::docs_request`) goes to
/// the first live server of the listener's pool, on a connection of the client's protocol version, and its reply is
/// passed through. `false` when there is none to ask (a route or cluster pool listener, every server ejected): the
/// caller answers from the command table.
fn command_docs(s: &mut Session, sc: &Scratch) -> bool {
    let Target::Pool(pool_index) = s.listener.target() else { return false };
    let pools = s.worker.pools.borrow();
    let Some(pool) = pools.get(pool_index).filter(|p| p.cluster.is_none()) else { return false };
    let Some(server) = pool.servers.iter().position(|srv| !srv.ejected) else { return false };
    let backend = pool.backend_for(server, s.id, s.proto);
    let now = Instant::now();
    let seq = s.q.borrow_mut().reserve();
    let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, false));
    let waiter = Waiter::Client { client: s.q.clone(), seq, frag: None, meter };
    let info = redis::lookup(b"COMMAND").expect("COMMAND is in the table");
    backend.enqueue(
        |out| out.extend_from_slice(&sc.reply),
        Some(waiter),
        Framer::Redis(redis::ReplyShape::of(info)),
        now,
    );
    true
}

/// AUTH password | AUTH username password, checked against the listener's `auth` and users.
fn auth(s: &mut Session, req: &[u8], sc: &mut Scratch) {
    let arg = |i: usize| sc.args.get(i).map(|r| &req[r.clone()]);
    let (user, pass) = match (arg(1), arg(2)) {
        _ if sc.args.len() > 3 => return s.local(b"-ERR syntax error\r\n"),
        (Some(p), None) => (None, p),
        (Some(u), Some(p)) => (Some(u), p),
        _ => (None, &b""[..]),
    };
    match s.listener.access().authenticate(user, pass) {
        Ok(permissions) => {
            login(s, user.unwrap_or(b"default"), permissions);
            s.local(b"+OK\r\n");
        }
        Err(crate::config::AuthRefusal::NoPasswordConfigured) => s.local(b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"),
        Err(crate::config::AuthRefusal::WrongPass) => {
            s.local(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        }
    }
}

/// The client is now `user` with `permissions` (a later AUTH replaces an earlier one, as in redis).
fn login(s: &mut Session, user: &[u8], permissions: crate::config::Permissions) {
    s.authed = true;
    s.read_only = permissions == crate::config::Permissions::ReadOnly;
    let user = if user == b"default" { &b""[..] } else { user };
    if !user.is_empty() || s.meta.is_some() {
        s.meta.get_or_insert_with(Default::default).user = Box::from(user);
    }
}

/// CLIENT subcommands, answered for this client (see `redis::parse_client`).
fn client(s: &mut Session, req: &[u8], sc: &mut Scratch) {
    let op = match redis::parse_client(req, &sc.args) {
        Ok(op) => op,
        Err(msg) => {
            redis::write_error(&mut sc.reply, msg.as_bytes());
            return s.local(&sc.reply);
        }
    };
    match op {
        redis::ClientOp::SetName(name) => {
            set_name(s, name);
            s.local(b"+OK\r\n");
        }
        redis::ClientOp::GetName => {
            match s.meta.as_ref().filter(|m| !m.name.is_empty()) {
                Some(meta) => redis::write_bulk(&mut sc.reply, &meta.name),
                None => redis::write_null(&mut sc.reply, s.proto),
            }
            s.local(&sc.reply);
        }
        redis::ClientOp::Id => {
            redis::write_integer(&mut sc.reply, s.id as i64);
            s.local(&sc.reply);
        }
        redis::ClientOp::Info | redis::ClientOp::List => {
            let mut line = Vec::new();
            let facts = redis::ClientFacts { id: s.id, addr: "", laddr: "", resp: s.proto.version() };
            redis::write_client_line(&mut line, s.meta.as_deref(), &facts);
            // A verbatim string in RESP3, as redis sends CLIENT INFO and LIST.
            redis::write_verbatim(&mut sc.reply, b"txt", &line, s.proto);
            s.local(&sc.reply);
        }
        redis::ClientOp::SetInfo(attr, value) => {
            let meta = s.meta.get_or_insert_with(Default::default);
            match attr {
                redis::LibAttr::Name => meta.lib_name = Box::from(value),
                redis::LibAttr::Version => meta.lib_ver = Box::from(value),
            }
            s.local(b"+OK\r\n");
        }
        redis::ClientOp::Ok => s.local(b"+OK\r\n"),
    }
}

/// CLIENT SETNAME / HELLO SETNAME: an empty name clears it.
fn set_name(s: &mut Session, name: &[u8]) {
    if name.is_empty() && s.meta.is_none() {
        return;
    }
    s.meta.get_or_insert_with(Default::default).name = Box::from(name);
}

/// HELLO [protover [AUTH user pass] [SETNAME name]], answered as redis 7 answers it. The client's later requests
/// get replies in the version it chose: they go to backend connections of that version, and the proxy's own
/// replies are written in it. SETNAME sets the name CLIENT GETNAME reports.
fn hello(s: &mut Session, req: &[u8], sc: &mut Scratch) -> Flow {
    let hello = match redis::parse_hello(req, &sc.args) {
        Ok(hello) => hello,
        Err(msg) => {
            redis::write_error(&mut sc.reply, msg.as_bytes());
            s.local(&sc.reply);
            return Flow::Continue;
        }
    };
    let access = s.listener.access();
    if let Some((user, pass)) = hello.auth {
        // Always with a user name: an open listener's default user takes any password (redis' `nopass`).
        match access.authenticate(Some(user), pass) {
            Ok(permissions) => login(s, user, permissions),
            Err(_) => {
                s.local(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
                return Flow::Continue;
            }
        }
    }
    if !s.authed && access.required() {
        s.local(b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n");
        return Flow::Continue;
    }
    if let Some(name) = hello.setname {
        set_name(s, name);
    }
    let previous = s.proto;
    s.proto = hello.proto.unwrap_or(s.proto);
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    let fields = redis::HelloFields { server: b"ferrule", version, id: s.id as i64, mode: b"proxy", role: b"master" };
    redis::write_hello(&mut sc.reply, &fields, s.proto);
    s.local(&sc.reply);
    if s.proto != previous && s.q.borrow().inflight() > 0 {
        Flow::DrainFirst
    } else {
        Flow::Continue
    }
}

/// Appends at most `max` bytes of `b`, replacing non-printable bytes, for echoing client input in errors.
fn push_printable(out: &mut Vec<u8>, b: &[u8], max: usize) {
    for &c in b.iter().take(max) {
        out.push(if (0x20..0x7f).contains(&c) && c != b'\'' { c } else { b'?' });
    }
}

/// Appends the client's request: its bytes unchanged, or re-encoded as multibulk when the client used inline syntax.
fn write_as_sent(out: &mut Vec<u8>, req: &[u8], args: &[std::ops::Range<usize>]) {
    if req.first() == Some(&b'*') {
        out.extend_from_slice(req)
    } else {
        redis::write_command_iter(out, args.len(), args.iter().map(|a| &req[a.clone()]));
    }
}
