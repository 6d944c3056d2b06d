//! The Memcached (ASCII) side of a client session: parse requests, route by key, split multi-key gets.

use super::routed::{self, Group, KeyDest, Unroutable};
use super::{InBuf, Next, Session};
use crate::config::Target;
use crate::fanout::MergeKind;
use crate::io::backend::{Backend, Framer, Waiter};
use crate::io::fan;
use crate::io::replies::ClientLimits;
use crate::io::stats::{client_key, CommandId, Meter};
use crate::protocol::memcache::{self, Command, Parse, Request};
use crate::router::group_by_server;
use crate::routes::{canned_reply, Canned, Ctx, Op};
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

#[derive(Default)]
struct Scratch {
    keys: Vec<Range<usize>>,
    servers: Vec<usize>,
    groups: Vec<usize>,
    key_frag: Vec<u32>,
    /// Routed listeners: each key's destination, the fragments they form, and canned replies.
    dests: Vec<KeyDest>,
    route_groups: Vec<Group>,
    reply: Vec<u8>,
}

thread_local! {
    /// The worker's one `Scratch`, shared by its memcache sessions: a batch of requests is parsed and routed
    /// without awaiting, so no two sessions use it at once, and an idle client carries no scratch buffers.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

pub async fn read_loop(s: &mut Session) {
    let mut inb = InBuf::new();
    let limits = s.worker.client_limits();
    // Bytes of an oversized or rejected value still to be discarded as they arrive.
    let mut skip: usize = 0;
    loop {
        s.wait_until_unsaturated(limits).await;
        if s.q.borrow().closed {
            return;
        }
        // `Err`: the session ends; `Ok`: read more, after the backend this client filled has drained (if any).
        let Ok(blocked_on) = SCRATCH.with_borrow_mut(|sc| parse_batch(s, &mut inb, sc, &mut skip, limits)) else {
            return;
        };
        if let Next::Stop = s.refill(&mut inb, blocked_on, limits).await {
            return;
        }
    }
}

/// Parses and handles every complete request buffered, up to the client's in-flight bound. `Err` when the
/// session ends (quit, a fatal protocol error).
fn parse_batch(
    s: &mut Session,
    inb: &mut InBuf,
    sc: &mut Scratch,
    skip: &mut usize,
    limits: ClientLimits,
) -> Result<Option<Rc<Backend>>, ()> {
    let now = Instant::now();
    let mut blocked_on: Option<Rc<Backend>> = None;
    while !s.q.borrow().saturated(limits) {
        if *skip > 0 {
            let n = (*skip).min(inb.data().len());
            inb.consume(n);
            *skip -= n;
            if *skip > 0 {
                break;
            }
        }
        let max_value = s.listener.max_value_bytes();
        match memcache::parse_request(inb.data(), &mut sc.keys, max_value) {
            Parse::Request(req) => {
                let len = req.len;
                let close = handle(s, &inb.data()[..len], &req, sc, now, &mut blocked_on);
                inb.consume(len);
                if close {
                    return Err(());
                }
            }
            Parse::Incomplete => break,
            Parse::Error { reply, consumed, skip: more } => {
                s.local(reply.as_bytes());
                inb.consume(consumed);
                *skip = more;
            }
            Parse::TooLarge { consumed, skip: more } => {
                s.local(b"SERVER_ERROR object too large for cache\r\n");
                inb.consume(consumed);
                *skip = more;
            }
            Parse::Fatal { reply } => {
                s.local(reply.as_bytes());
                s.meters.borrow_mut().clients.protocol_errors += 1;
                return Err(());
            }
            Parse::Binary { opcode, opaque } => {
                let mut reply = Vec::with_capacity(memcache::BINARY_HEADER_LEN + 64);
                memcache::write_binary_refusal(&mut reply, opcode, opaque);
                s.local(&reply);
                s.meters.borrow_mut().clients.protocol_errors += 1;
                binary_client_log::report(&s.listener.name);
                return Err(());
            }
        }
    }
    Ok(blocked_on)
}

/// Handles one request; returns true when the connection should close.
fn handle(
    s: &Session,
    raw: &[u8],
    req: &Request,
    sc: &mut Scratch,
    now: Instant,
    blocked_on: &mut Option<Rc<Backend>>,
) -> bool {
    let command = s.meters.borrow_mut().count_memcache(req.command);
    match req.command {
        Command::Quit => return true,
        Command::Version => {
            s.local(memcache::VERSION_REPLY.as_bytes());
            return false;
        }
        Command::Verbosity => {
            if !req.noreply {
                s.local(b"OK\r\n");
            }
            return false;
        }
        Command::Stats => {
            let text = s.worker.memcache_stats_text();
            s.local(text.as_bytes());
            return false;
        }
        Command::FlushAll => {
            // Refused either way; with noreply silently, as a reply the client does not expect would be read as
            // the answer to its next request.
            if !req.noreply {
                s.local(
                    b"SERVER_ERROR flush_all is not supported by ferrule (it would have to reach every server)\r\n",
                );
            }
            return false;
        }
        _ if req.command.is_meta() => return handle_meta(s, raw, req, sc, now, blocked_on, command),
        _ => {}
    }
    let target = s.listener.target();
    let Target::Pool(pool_index) = target else {
        return route_tree(s, raw, req, sc, now, blocked_on, target, command);
    };
    let pools = s.worker.pools.borrow();
    let Some(pool) = pools.get(pool_index) else {
        s.local(b"SERVER_ERROR ferrule: listener has no pool\r\n");
        return false;
    };
    sc.servers.clear();
    for k in &sc.keys {
        match pool.router.server_for(&raw[k.clone()]) {
            Some(server) => sc.servers.push(server),
            None => {
                s.meters.borrow_mut().clients.unroutable += 1;
                let msg =
                    format!("SERVER_ERROR ferrule: pool '{}' has no server available (all ejected)\r\n", pool.name);
                if !req.noreply {
                    s.local(msg.as_bytes());
                }
                return false;
            }
        }
    }
    group_by_server(&sc.servers, &mut sc.groups, &mut sc.key_frag);
    let framer = Framer::Memcache(req.command);
    if sc.groups.len() <= 1 {
        let Some(&server) = sc.groups.first() else {
            s.local(b"CLIENT_ERROR bad command line format\r\n");
            return false;
        };
        let backend = pool.backend(server, s.id);
        // noreply requests get no reply from the server, so they take no slot and no pending entry.
        let waiter = if req.noreply {
            None
        } else {
            let seq = s.q.borrow_mut().reserve();
            let meter = command.map(|c| Meter::new(&s.meters, c, now, false));
            Some(Waiter::Client { client: s.q.clone(), seq, frag: None, meter })
        };
        backend.enqueue(|out| out.extend_from_slice(raw), waiter, framer, now);
        if backend.over_queue_bound() {
            *blocked_on = Some(backend.clone());
        }
        return false;
    }
    // A multi-key retrieval spanning servers: one sub-request per server, reassembled in request order.
    let mut fan = s.q.borrow_mut().take_fanout(MergeKind::McRetrieval, sc.groups.len());
    fan.key_frag.extend_from_slice(&sc.key_frag);
    for k in &sc.keys {
        let start = fan.keys.len();
        fan.keys.extend_from_slice(&raw[k.clone()]);
        fan.key_ranges.push(start..fan.keys.len());
    }
    let seq = s.q.borrow_mut().reserve_fanout(fan);
    s.meters.borrow_mut().begin_split((client_key(&s.q), seq), sc.groups.len() as u32, command.is_some());
    let exptime = req.exptime.clone().map(|r| &raw[r]);
    for (frag, &server) in sc.groups.iter().enumerate() {
        let backend = pool.backend(server, s.id);
        let meter = command.map(|c| Meter::new(&s.meters, c, now, true));
        let waiter = Waiter::Client { client: s.q.clone(), seq, frag: Some(frag as u32), meter };
        let keys = &sc.keys;
        let key_frag = &sc.key_frag;
        backend.enqueue(
            |out| {
                let ks = keys.iter().zip(key_frag).filter(|(_, &f)| f as usize == frag).map(|(k, _)| &raw[k.clone()]);
                memcache::write_retrieval(out, req.command, exptime, ks);
            },
            Some(waiter),
            framer,
            now,
        );
        if backend.over_queue_bound() {
            *blocked_on = Some(backend.clone());
        }
    }
    false
}

/// A meta request (mg, ms, md, ma, mn, me): one key, routed by its decoded bytes when it is base64 (`b`), sent as
/// the client wrote it except for a `q` flag, which is stripped: memcached then answers every request, and the
/// reply it would have hidden is dropped on delivery ([`Framer::MemcacheQuiet`]). `mn` is answered here, in order
/// after every earlier reply of this client, which is all memcached promises.
fn handle_meta(
    s: &Session,
    raw: &[u8],
    req: &Request,
    sc: &mut Scratch,
    now: Instant,
    blocked_on: &mut Option<Rc<Backend>>,
    command: Option<CommandId>,
) -> bool {
    let (Some(meta), Some(key)) = (req.meta.as_ref(), sc.keys.first().cloned()) else {
        // mn, the only meta request without a key.
        s.local(memcache::meta::NOOP_REPLY.as_bytes());
        return false;
    };
    let token = &raw[key];
    let mut decoded = [0u8; memcache::meta::MAX_DECODED_KEY_LEN];
    let route_key = match meta.base64 {
        true => memcache::meta::decode_key(token, &mut decoded).map_or(token, |n| &decoded[..n]),
        false => token,
    };
    let quiet = meta.quiet.is_some();
    let pools = s.worker.pools.borrow();
    let (pool, server) = match s.listener.target() {
        Target::Pool(pool_index) => {
            let Some(pool) = pools.get(pool_index) else {
                s.local(b"SERVER_ERROR ferrule: listener has no pool\r\n");
                return false;
            };
            let Some(server) = pool.router.server_for(route_key) else {
                s.meters.borrow_mut().clients.unroutable += 1;
                let msg =
                    format!("SERVER_ERROR ferrule: pool '{}' has no server available (all ejected)\r\n", pool.name);
                s.local(msg.as_bytes());
                return false;
            };
            (pool_index, server)
        }
        target => {
            let tree = s.worker.routes.borrow();
            let cfg = s.worker.config.borrow();
            // Routes see the text operation the request acts as (mg: get, ms with ME: add, ...).
            let op = Op::Memcache(meta.op);
            let ctx = Ctx { now_unix: s.worker.unix_now.get(), random: routed::draw(&s.worker.rng) };
            let keys = std::iter::once(route_key);
            let plans = s.worker.fans.borrow().clone();
            if let Err(why) = routed::resolve(&tree, &pools, &plans, target, op, keys, &ctx, &mut sc.dests) {
                if matches!(why, Unroutable::NoServer(_)) {
                    s.meters.borrow_mut().clients.unroutable += 1;
                }
                s.local(format!("SERVER_ERROR {}\r\n", routed::unroutable_message(&cfg, &why)).as_bytes());
                return false;
            }
            match sc.dests.first() {
                Some(&KeyDest::Server { pool, server, .. }) => (pool, server),
                Some(&KeyDest::Canned(Canned::Null)) => {
                    sc.reply.clear();
                    memcache::meta::write_null_reply(&mut sc.reply, req.command, quiet, raw);
                    if !sc.reply.is_empty() {
                        s.local(&sc.reply);
                    }
                    return false;
                }
                Some(&KeyDest::Canned(c)) => {
                    sc.reply.clear();
                    canned_reply(&cfg, c, op, 1, Default::default(), &mut sc.reply);
                    s.local(&sc.reply);
                    return false;
                }
                Some(&KeyDest::Fan { route, .. }) => {
                    let plans = s.worker.fans.borrow().clone();
                    let Some(plan) = plans.get(route) else {
                        s.local(b"SERVER_ERROR ferrule: no such route\r\n");
                        return false;
                    };
                    let env = fan::Env { cfg: &cfg, tree: &tree, pools: &pools, client_id: s.id, proto: s.proto, ctx };
                    // Every child is asked without `q`; what the client sees is decided after combining.
                    let mut bytes = Vec::with_capacity(raw.len());
                    memcache::meta::write_forwarded(&mut bytes, raw, Some(meta));
                    let request = fan::Request {
                        op,
                        keys: &[route_key],
                        bytes,
                        framer: Framer::Memcache(req.command),
                        now,
                        meta: Some(fan::MetaReq { command: req.command, quiet }),
                    };
                    let meter = command.map(|c| Meter::new(&s.meters, c, now, false));
                    let reply = fan::ReplyTo { q: s.q.clone(), meter, fragment: None };
                    if let Err(fan::Refused(why)) = fan::dispatch(&env, plan, request, Some(reply)) {
                        s.local(format!("SERVER_ERROR {why}\r\n").as_bytes());
                    }
                    return false;
                }
                None => {
                    s.local(memcache::BAD_FORMAT_REPLY.as_bytes());
                    return false;
                }
            }
        }
    };
    let backend = pools[pool].backend(server, s.id);
    let seq = s.q.borrow_mut().reserve();
    let meter = command.map(|c| Meter::new(&s.meters, c, now, false));
    let waiter = Waiter::Client { client: s.q.clone(), seq, frag: None, meter };
    let framer = if quiet { Framer::MemcacheQuiet(req.command) } else { Framer::Memcache(req.command) };
    backend.enqueue(|out| memcache::meta::write_forwarded(out, raw, Some(meta)), Some(waiter), framer, now);
    if backend.over_queue_bound() {
        *blocked_on = Some(backend.clone());
    }
    false
}

/// The log line for binary-protocol clients, at most once per [`binary_client_log::INTERVAL`] per worker: a
/// misconfigured client fleet reconnecting in a loop must not flood the log.
mod binary_client_log {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    pub const INTERVAL: Duration = Duration::from_secs(10);

    thread_local! {
        // Per worker thread: no atomics or locks. (When it last logged, how many went unlogged since.)
        static STATE: Cell<(Option<Instant>, u64)> = const { Cell::new((None, 0)) };
    }

    pub fn report(listener: &str) {
        STATE.with(|state| {
            let (last, unlogged) = state.get();
            let now = Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < INTERVAL) {
                state.set((last, unlogged + 1));
                return;
            }
            state.set((Some(now), 0));
            let more = if unlogged > 0 { format!(" ({unlogged} more since the last report)") } else { String::new() };
            log::warn!(
                "listener {listener}: closed a client that spoke the memcached binary protocol (first byte 0x80); \
                 ferrule speaks the text protocol only: configure the client for the ASCII protocol{more}"
            );
        });
    }
}

/// A request of a listener whose `route` is a route: each key decided by the route tree, then sent like a pool
/// listener's request (see `routed`). Memcache routes never strip prefixes (validation refuses it: replies carry the
/// key), so the request bytes go out unchanged.
#[allow(clippy::too_many_arguments)]
fn route_tree(
    s: &Session,
    raw: &[u8],
    req: &Request,
    sc: &mut Scratch,
    now: Instant,
    blocked_on: &mut Option<Rc<Backend>>,
    target: Target,
    command: Option<CommandId>,
) -> bool {
    let pools = s.worker.pools.borrow();
    let tree = s.worker.routes.borrow();
    let cfg = s.worker.config.borrow();
    let op = Op::Memcache(req.command);
    let ctx = Ctx { now_unix: s.worker.unix_now.get(), random: routed::draw(&s.worker.rng) };
    let keys = sc.keys.iter().map(|k| &raw[k.clone()]);
    let plans = s.worker.fans.borrow().clone();
    if let Err(why) = routed::resolve(&tree, &pools, &plans, target, op, keys, &ctx, &mut sc.dests) {
        if matches!(why, Unroutable::NoServer(_)) {
            s.meters.borrow_mut().clients.unroutable += 1;
        }
        if !req.noreply {
            s.local(format!("SERVER_ERROR {}\r\n", routed::unroutable_message(&cfg, &why)).as_bytes());
        }
        return false;
    }
    let env = fan::Env { cfg: &cfg, tree: &tree, pools: &pools, client_id: s.id, proto: s.proto, ctx };
    if sc.dests.len() > 1 && sc.dests.iter().any(|d| matches!(d, KeyDest::Fan { .. })) {
        let keys = sc.keys.iter().map(|k| &raw[k.clone()]);
        routed::split_fans(&env, &plans, op, keys, &mut sc.dests);
    }
    routed::group(&sc.dests, &mut sc.route_groups, &mut sc.key_frag);
    let framer = Framer::Memcache(req.command);
    if let [Group::Fan { route, .. }] = sc.route_groups[..] {
        let Some(plan) = plans.get(route) else {
            if !req.noreply {
                s.local(b"SERVER_ERROR ferrule: no such route\r\n");
            }
            return false;
        };
        let keys: Vec<&[u8]> = sc.keys.iter().map(|k| &raw[k.clone()]).collect();
        let request = fan::Request { op, keys: &keys, bytes: raw.to_vec(), framer, now, meta: None };
        let reply = (!req.noreply).then(|| fan::ReplyTo {
            q: s.q.clone(),
            meter: command.map(|c| Meter::new(&s.meters, c, now, false)),
            fragment: None,
        });
        if let Err(fan::Refused(why)) = fan::dispatch(&env, plan, request, reply) {
            if !req.noreply {
                s.local(format!("SERVER_ERROR {why}\r\n").as_bytes());
            }
        }
        return false;
    }
    match sc.route_groups[..] {
        [] => {
            s.local(b"CLIENT_ERROR bad command line format\r\n");
            return false;
        }
        [Group::Canned(c)] => {
            if !req.noreply {
                sc.reply.clear();
                canned_reply(&cfg, c, op, sc.keys.len(), Default::default(), &mut sc.reply);
                s.local(&sc.reply);
            }
            return false;
        }
        [Group::Server { pool, server }] => {
            let backend = pools[pool].backend(server, s.id);
            let waiter = if req.noreply {
                None
            } else {
                let seq = s.q.borrow_mut().reserve();
                let meter = command.map(|c| Meter::new(&s.meters, c, now, false));
                Some(Waiter::Client { client: s.q.clone(), seq, frag: None, meter })
            };
            backend.enqueue(|out| out.extend_from_slice(raw), waiter, framer, now);
            if backend.over_queue_bound() {
                *blocked_on = Some(backend.clone());
            }
            return false;
        }
        _ => {}
    }
    // A multi-key retrieval spanning routes and servers: one sub-request per server, canned fragments completed
    // here, reassembled in request order.
    let mut fan = s.q.borrow_mut().take_fanout(MergeKind::McRetrieval, sc.route_groups.len());
    fan.key_frag.extend_from_slice(&sc.key_frag);
    for k in &sc.keys {
        let start = fan.keys.len();
        fan.keys.extend_from_slice(&raw[k.clone()]);
        fan.key_ranges.push(start..fan.keys.len());
    }
    let seq = s.q.borrow_mut().reserve_fanout(fan);
    let sent = sc.route_groups.iter().filter(|g| !matches!(g, Group::Canned(_))).count() as u32;
    s.meters.borrow_mut().begin_split((client_key(&s.q), seq), sent, command.is_some() && sent > 0);
    let exptime = req.exptime.clone().map(|r| &raw[r]);
    for (frag, &group) in sc.route_groups.iter().enumerate() {
        match group {
            Group::Fan { route, .. } => {
                // The group's keys as one retrieval through the route, answering its fragment.
                let keys: Vec<&[u8]> = sc
                    .keys
                    .iter()
                    .zip(&sc.key_frag)
                    .filter(|(_, &f)| f as usize == frag)
                    .map(|(k, _)| &raw[k.clone()])
                    .collect();
                let mut bytes = Vec::new();
                memcache::write_retrieval(&mut bytes, req.command, exptime, keys.iter().copied());
                let request = fan::Request { op, keys: &keys, bytes, framer, now, meta: None };
                let meter = command.map(|c| Meter::new(&s.meters, c, now, true));
                let to = fan::ReplyTo { q: s.q.clone(), meter, fragment: Some((seq, frag as u32)) };
                let refused = match plans.get(route) {
                    Some(plan) => fan::dispatch(&env, plan, request, Some(to)).err().map(|fan::Refused(why)| why),
                    None => Some("ferrule: no such route".to_string()),
                };
                if let Some(why) = refused {
                    if let Some(c) = command {
                        Meter::new(&s.meters, c, now, true).finish(client_key(&s.q), seq, now.elapsed(), true);
                    }
                    s.q.borrow_mut().complete_fragment(seq, frag, format!("SERVER_ERROR {why}\r\n").as_bytes());
                }
            }
            Group::Canned(c) => {
                sc.reply.clear();
                canned_reply(&cfg, c, op, 0, Default::default(), &mut sc.reply);
                s.q.borrow_mut().complete_fragment(seq, frag, &sc.reply);
            }
            Group::Server { pool, server } => {
                let backend = pools[pool].backend(server, s.id);
                let meter = command.map(|c| Meter::new(&s.meters, c, now, true));
                let waiter = Waiter::Client { client: s.q.clone(), seq, frag: Some(frag as u32), meter };
                let keys = &sc.keys;
                let key_frag = &sc.key_frag;
                backend.enqueue(
                    |out| {
                        let ks = keys
                            .iter()
                            .zip(key_frag)
                            .filter(|(_, &f)| f as usize == frag)
                            .map(|(k, _)| &raw[k.clone()]);
                        memcache::write_retrieval(out, req.command, exptime, ks);
                    },
                    Some(waiter),
                    framer,
                    now,
                );
                if backend.over_queue_bound() {
                    *blocked_on = Some(backend.clone());
                }
            }
        }
    }
    false
}
