//! Executing the routes that send one request to several destinations (`failover`, `miss_failover`, `all_*`,
//! `shadow`): the I/O half of `crate::routes`, which decides and combines; this module sends and collects.
//!
//! A fanned-out request is one [`Attempt`], shared (`Rc`) by the [`Waiter::Fan`] entries it has on backends. It
//! keeps the request's bytes until its last reply, so a failover can send them again to the next child. Every
//! reply (or failure made by the backend: connect error, timeout, server unavailable) comes back through
//! [`arrive`], which feeds the kind's rule and, once the rule answers, completes the client's reply slot: the client
//! gets exactly one reply, in its request order. Replies arriving after that are accounted for and dropped.
//!
//! Background copies (`all_async`'s children, `shadow`'s copies) never take a client reply slot, so they count
//! neither against the client's in-flight limit nor its reply order. Their memory is bounded: at most
//! [`MAX_BACKGROUND`] are outstanding per worker (and `max_outstanding` per shadow target), a copy for a backend
//! over its queue bound is not queued, and the excess is dropped and counted.
//!
//! Meta requests (mg, ms, md, ma, me) come here like text ones, with two differences ([`MetaReq`]): a default
//! reply ferrule makes (an `all_async` answer, a `null` child) is the meta one, and a quiet (`q`) request is sent
//! without its `q` so that every child answers; the combined reply is then dropped if memcached would have hidden
//! it, on the client side, after combining.
//!
//! Plain pool listeners and single-destination routes never come here: their path is unchanged.

use super::backend::{Backend, Framer, Waiter};
use super::pool::PoolRt;
use super::replies::ClientRef;
use super::stats::{client_key, Meter, RouteCounters, WorkerStats};
use crate::config::{AllMode, Config, Protocol, RouteKind, Target};
use crate::protocol::memcache;
use crate::protocol::redis::Proto;
use crate::routes::all::{Answer, Combine};
use crate::routes::failover::{Failover, Step};
use crate::routes::severity::{self, Outcome};
use crate::routes::{canned_reply, null, shadow, Canned, Ctx, Decision, Leaf, Op, OpClass, RouteTree};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

mod fill;

/// Background copies outstanding per worker before further ones are dropped.
pub const MAX_BACKGROUND: usize = 10_000;

thread_local! {
    /// This worker's background copies in flight (each worker is one thread).
    static BACKGROUND: Cell<usize> = const { Cell::new(0) };
}

/// Per route, what executing it needs; built with the route tree on every (re)load.
pub struct Plans {
    plans: Vec<Option<Rc<Plan>>>,
    /// Every route's counters on this worker, by route index.
    counters: Rc<[Rc<RouteCounters>]>,
}

/// One multi-destination route of the running config.
pub struct Plan {
    pub name: String,
    rule: Rule,
    children: Vec<Target>,
    /// This worker's counters of the route (shared with its `WorkerStats`).
    counters: Rc<RouteCounters>,
    /// Every route's, for the routes below this one that its children's decisions walk through.
    all_counters: Rc<[Rc<RouteCounters>]>,
    /// `all_*` but `all_sync`: the children's requests this worker may have in flight beyond those needed to
    /// answer (see [`dispatch_all`]), and how many it has.
    max_outstanding: usize,
    outstanding: Cell<usize>,
    /// memcache `l1l2`: an l2 server answered `mg` with `ERROR` (no meta protocol), so l2 is read with `get`.
    l2_text: Cell<bool>,
}

enum Rule {
    Failover(Failover),
    All(AllMode),
    Shadow {
        shadows: Vec<ShadowTarget>,
        max_outstanding: usize,
    },
    /// `warmup` and `l1l2`: child 0 is cold / l1, child 1 warm / l2 (see `fill`).
    Fill(fill::Kind),
}

struct ShadowTarget {
    target: Target,
    key_fraction: (f64, f64),
    request_fraction: f64,
    /// Copies in flight to this target on this worker.
    outstanding: Cell<usize>,
}

impl Plans {
    /// `stats` keeps each route's counters across reloads.
    pub fn build(cfg: &Config, stats: &mut WorkerStats) -> Plans {
        let counters: Rc<[Rc<RouteCounters>]> =
            cfg.routes.iter().map(|r| stats.route(&r.name, r.kind.type_name())).collect();
        let plans = cfg
            .routes
            .iter()
            .zip(counters.iter())
            .map(|(r, c)| Plan::build(&r.name, &r.kind, c.clone(), counters.clone()).map(Rc::new))
            .collect();
        Plans { plans, counters }
    }

    /// Counts a request decided by these routes (each once, however many of its keys they decided).
    pub fn count_requests(&self, routes: &[u32]) {
        for &r in routes {
            if let Some(c) = self.counters.get(r as usize) {
                RouteCounters::bump(&c.requests);
            }
        }
    }

    pub fn get(&self, route: usize) -> Option<&Rc<Plan>> {
        self.plans.get(route).and_then(Option::as_ref)
    }
}

impl Plan {
    fn build(
        name: &str,
        kind: &RouteKind,
        counters: Rc<RouteCounters>,
        all_counters: Rc<[Rc<RouteCounters>]>,
    ) -> Option<Plan> {
        let mut max_outstanding = usize::MAX;
        let (rule, children) = match kind {
            RouteKind::Failover { children, max_tries, failover_errors } => (
                Rule::Failover(Failover::new(children.targets.len(), *max_tries, failover_errors)),
                children.targets.clone(),
            ),
            RouteKind::MissFailover { children, max_tries } => {
                (Rule::Failover(Failover::miss(children.targets.len(), *max_tries)), children.targets.clone())
            }
            RouteKind::All { mode, children, max_outstanding: max } => {
                max_outstanding = *max;
                (Rule::All(*mode), children.targets.clone())
            }
            // The tree decides migrate's other requests; only deletes inside the window come here: to both, the
            // worse reply answers.
            RouteKind::Migrate { from, to, .. } => (Rule::All(AllMode::Sync), vec![from.target, to.target]),
            RouteKind::Warmup { cold, warm, exptime } => {
                (Rule::Fill(fill::Kind::Warmup { exptime: *exptime }), vec![cold.target, warm.target])
            }
            RouteKind::L1l2 { l1, l2, l1_ttl_s, write_l2 } => {
                (Rule::Fill(fill::Kind::L1l2 { ttl: *l1_ttl_s, write_l2: *write_l2 }), vec![l1.target, l2.target])
            }
            RouteKind::Shadow { child, shadows, max_outstanding } => {
                let shadows = shadows
                    .iter()
                    .map(|s| ShadowTarget {
                        target: s.target.target,
                        key_fraction: s.key_fraction,
                        request_fraction: s.request_fraction,
                        outstanding: Cell::new(0),
                    })
                    .collect();
                (Rule::Shadow { shadows, max_outstanding: *max_outstanding }, vec![child.target])
            }
            _ => return None,
        };
        Some(Plan {
            name: name.to_string(),
            rule,
            children,
            counters,
            all_counters,
            max_outstanding,
            outstanding: Cell::new(0),
            l2_text: Cell::new(false),
        })
    }
}

/// What a session hands over to fan a request out.
pub struct Env<'a> {
    pub cfg: &'a Config,
    pub tree: &'a RouteTree,
    pub pools: &'a [PoolRt],
    pub client_id: u64,
    pub proto: Proto,
    pub ctx: Ctx,
}

/// The request: its operation, its keys (after any prefix stripping above the route; children route on them), the
/// bytes every child gets, and how to frame the reply.
pub struct Request<'a> {
    pub op: Op,
    pub keys: &'a [&'a [u8]],
    pub bytes: Vec<u8>,
    pub framer: Framer,
    pub now: Instant,
    /// A meta request; `bytes` are then as forwarded (without `q`).
    pub meta: Option<MetaReq>,
}

/// What the executor needs of a meta request: its command, for the replies ferrule makes, and whether the client
/// sent `q`, for the reply shown after combining.
#[derive(Debug, Clone, Copy)]
pub struct MetaReq {
    pub command: memcache::Command,
    pub quiet: bool,
}

impl MetaReq {
    /// What of the combined `reply` the client sees: nothing when memcached would have hidden it.
    fn shown(meta: Option<MetaReq>, reply: &[u8]) -> &[u8] {
        match meta {
            Some(m) if m.quiet && memcache::meta::hides(m.command, reply) => &[],
            _ => reply,
        }
    }
}

/// Where the client's one reply goes; `None` for a memcache `noreply` request.
pub struct ReplyTo {
    pub q: ClientRef,
    pub meter: Option<Meter>,
    /// The request is fragment `.1` of the client's split request `.0` (its slot already reserved, its meter a
    /// split one): a multi-key request whose keys the session split by destination.
    pub fragment: Option<(u64, u32)>,
}

impl ReplyTo {
    /// The client's reply slot for this request: reserved now, or the fragment already reserved.
    fn reserve(self) -> ClientSlot {
        let (seq, frag) = match self.fragment {
            Some((seq, frag)) => (seq, Some(frag)),
            None => (self.q.borrow_mut().reserve(), None),
        };
        ClientSlot { q: self.q, seq, frag, meter: self.meter }
    }
}

/// The client's reply slot (or its fragment of a split request's slot), until it is answered.
struct ClientSlot {
    q: ClientRef,
    seq: u64,
    frag: Option<u32>,
    meter: Option<Meter>,
}

impl ClientSlot {
    fn deliver(&self, protocol: Protocol, reply: &[u8]) {
        let mut q = self.q.borrow_mut();
        let Some(frag) = self.frag else { return q.complete(self.seq, reply) };
        // Checked as a backend checks a fragment's reply, which the fan-out's waiters skip: a reply that cannot be
        // this fragment's fails the request as a whole rather than being merged.
        match q.fragment_fits(self.seq, frag as usize, reply) {
            Ok(()) => q.complete_fragment(self.seq, frag as usize, reply),
            Err(what) => {
                let out = failure_reply(protocol, &format!("a route's reply cannot answer {what}"));
                q.complete_fragment(self.seq, frag as usize, &out);
            }
        }
    }
}

/// One child, resolved for this request.
enum Dest {
    Backend(Rc<Backend>),
    /// The child answers by itself (an `error` or `null` route below this one).
    Reply(Vec<u8>),
    /// The child cannot be reached (ejected, no server): a failure of this class, with this reason.
    Failed(String),
}

/// Why a request cannot be fanned out at all: the client gets this error.
pub struct Refused(pub String);

/// Resolves child `target` for every key: they must all reach one server (or one canned reply).
fn resolve(env: &Env, plan: &Plan, target: Target, req: &Request) -> Result<Dest, Refused> {
    resolve_keys(env, plan, target, req, req.keys)
}

/// [`resolve`] for `keys` of `req` (a read-through resolves each key of a multi-get on its own).
fn resolve_keys(env: &Env, plan: &Plan, target: Target, req: &Request, keys: &[&[u8]]) -> Result<Dest, Refused> {
    let op = req.op;
    let mut found: Option<(usize, usize)> = None;
    for (i, key) in keys.iter().enumerate() {
        // The routes below this one count the request once per child it is sent through (the first key's walk).
        let decision = if i == 0 {
            env.tree.decide_visiting(target, op, key, &env.ctx, &mut |r| {
                if let Some(c) = plan.all_counters.get(r) {
                    RouteCounters::bump(&c.requests);
                }
            })
        } else {
            env.tree.decide(target, op, key, &env.ctx)
        };
        let (pool, server) = match decision {
            Decision::Send { strip, .. } if strip != 0 => {
                return Err(Refused(format!(
                    "ferrule: route '{}': strip_prefix below a multi-destination route is not supported",
                    plan.name
                )))
            }
            Decision::Send { leaf: Leaf::Pool(pool), .. } => {
                match env.pools.get(pool).and_then(|p| p.router.server_for(key)) {
                    Some(server) => (pool, server),
                    None => {
                        let name = env.pools.get(pool).map_or("?", |p| p.name.as_str());
                        return Ok(Dest::Failed(format!("pool '{name}' has no server available (all ejected)")));
                    }
                }
            }
            Decision::Send { leaf: Leaf::Server { pool, server }, .. } => (pool, server),
            Decision::Reply(canned) => {
                let mut out = Vec::new();
                match (canned, req.meta) {
                    // Unquiet: what the client sees is decided after combining.
                    (Canned::Null, Some(m)) => memcache::meta::write_null_reply(&mut out, m.command, false, &req.bytes),
                    _ => canned_reply(env.cfg, canned, op, keys.len(), env.proto, &mut out),
                }
                return Ok(Dest::Reply(out));
            }
            Decision::Fan { route, .. } => {
                let name = env.cfg.routes.get(route).map_or("?", |r| r.name.as_str());
                return Err(Refused(format!(
                    "ferrule: route '{name}' below route '{}': a multi-destination route below another is not \
                     implemented yet",
                    plan.name
                )));
            }
        };
        match found {
            Some(f) if f != (pool, server) => {
                return Err(Refused(format!(
                    "ferrule: route '{}': the keys of a multi-key request must reach one server of each child",
                    plan.name
                )))
            }
            _ => found = Some((pool, server)),
        }
    }
    let Some((pool, server)) = found else {
        return Err(Refused(format!("ferrule: route '{}' needs a key", plan.name)));
    };
    let Some(p) = env.pools.get(pool) else { return Err(Refused("ferrule: no such pool".into())) };
    if p.servers.get(server).is_some_and(|s| s.ejected) {
        return Ok(Dest::Failed(format!(
            "server {} of pool '{}' unavailable (ejected)",
            p.servers[server].ident, p.name
        )));
    }
    Ok(Dest::Backend(p.backend_for(server, env.client_id, env.proto).clone()))
}

/// A request fanned out: shared by its waiters on backends until its last reply.
pub struct Attempt {
    plan: Rc<Plan>,
    protocol: Protocol,
    class: OpClass,
    bytes: Vec<u8>,
    framer: Framer,
    meta: Option<MetaReq>,
    dests: Vec<Dest>,
    st: RefCell<AttemptState>,
}

struct AttemptState {
    /// The client's slot, until it is answered.
    client: Option<ClientSlot>,
    started: Instant,
    mode: Mode,
}

enum Mode {
    Failover,
    All {
        combine: Box<Combine>,
        replies: Vec<Option<Vec<u8>>>,
        /// The children whose request holds a background place (see [`dispatch_all`]).
        holds: Vec<bool>,
    },
    /// Background copies: child `i` is shadow target `i` (shadow) or child `i` (all_async).
    Copies,
    /// A read through `warmup` / `l1l2`.
    Fill(Box<fill::State>),
}

/// Fans `req` out through `plan`; `reply` is the client's (absent for memcache `noreply`).
pub fn dispatch(env: &Env, plan: &Rc<Plan>, req: Request, reply: Option<ReplyTo>) -> Result<(), Refused> {
    let Some(reply) = reply else { return dispatch_noreply(env, plan, &req) };
    let protocol = req.op.protocol();
    match &plan.rule {
        Rule::Shadow { shadows, max_outstanding } => {
            // Copies first resolved and decided, the main child sent first (it answers the client).
            let main = resolve(env, plan, plan.children[0], &req)?;
            let key = req.keys.first().copied().unwrap_or_default();
            let mut copies = Vec::new();
            for (i, s) in shadows.iter().enumerate() {
                let draw = mix_draw(env.ctx.random, i);
                if !shadow::shadowed(key, s.key_fraction, s.request_fraction, draw) {
                    continue;
                }
                // A shadow that cannot be reached is a dropped copy, never the client's problem.
                match resolve(env, plan, s.target, &req) {
                    Ok(Dest::Backend(b)) => copies.push((i, b)),
                    _ => RouteCounters::bump(&plan.counters.copies_dropped),
                }
            }
            send_single(main, &req, reply);
            if copies.is_empty() {
                return Ok(());
            }
            let mut dests: Vec<Dest> = shadows.iter().map(|_| Dest::Failed(String::new())).collect();
            let mut go = Vec::new();
            for (i, b) in copies {
                let s = &shadows[i];
                if s.outstanding.get() >= *max_outstanding || !take_background(&b) {
                    RouteCounters::bump(&plan.counters.copies_dropped);
                    continue;
                }
                RouteCounters::bump(&plan.counters.copies_sent);
                s.outstanding.set(s.outstanding.get() + 1);
                dests[i] = Dest::Backend(b);
                go.push(i);
            }
            let att = Attempt::new(
                plan,
                protocol,
                req.op.class(),
                req.bytes,
                req.framer,
                req.meta,
                dests,
                None,
                req.now,
                Mode::Copies,
            );
            for i in go {
                send(&att, i, req.now);
            }
        }
        Rule::Failover(_) => {
            let dests = plan.children.iter().map(|&t| resolve(env, plan, t, &req)).collect::<Result<Vec<_>, _>>()?;
            let client = Some(reply.reserve());
            let att = Attempt::new(
                plan,
                protocol,
                req.op.class(),
                req.bytes,
                req.framer,
                req.meta,
                dests,
                client,
                req.now,
                Mode::Failover,
            );
            send(&att, 0, req.now);
        }
        Rule::All(mode) => dispatch_all(env, plan, *mode, req, reply)?,
        Rule::Fill(kind) => fill::dispatch(env, plan, *kind, req, reply)?,
    }
    Ok(())
}

/// Sends `req` to every child of `plan` and combines the replies by `mode`.
///
/// The children beyond those needed to answer (`all_async`: every one; `all_initial` and `all_fastest`: all but the
/// first; `all_majority`: beyond floor(n/2)+1) are what keeps running once the client was answered, so they are
/// bounded as background copies are: each takes a place of the worker's [`MAX_BACKGROUND`] and of the route's
/// `max_outstanding` until its reply, and one over a bound (or for a backend over its queue bound) is not sent:
/// dropped and counted. The reply is combined over the children sent.
fn dispatch_all(env: &Env, plan: &Rc<Plan>, mode: AllMode, req: Request, reply: ReplyTo) -> Result<(), Refused> {
    let protocol = req.op.protocol();
    let dests = plan.children.iter().map(|&t| resolve(env, plan, t, &req)).collect::<Result<Vec<_>, _>>()?;
    let n = dests.len();
    let needed = match mode {
        AllMode::Sync => n,
        AllMode::Async => 0,
        AllMode::Initial | AllMode::Fastest => 1,
        AllMode::Majority => n / 2 + 1,
    };
    // Which children go, and which of them hold a background place.
    let mut go = vec![false; n];
    let mut holds = vec![false; n];
    for (i, dest) in dests.iter().enumerate() {
        if i < needed {
            go[i] = true;
            continue;
        }
        match dest {
            Dest::Backend(b) => {
                if plan.outstanding.get() >= plan.max_outstanding || !take_background(b) {
                    RouteCounters::bump(&plan.counters.copies_dropped);
                    continue;
                }
                plan.outstanding.set(plan.outstanding.get() + 1);
                RouteCounters::bump(&plan.counters.copies_sent);
                go[i] = true;
                holds[i] = true;
            }
            // all_async has no one to give the answer to.
            Dest::Reply(_) | Dest::Failed(_) if mode == AllMode::Async => {
                RouteCounters::bump(&plan.counters.copies_dropped)
            }
            // Answered at once: nothing stays in flight.
            Dest::Reply(_) | Dest::Failed(_) => go[i] = true,
        }
    }
    let (client, mode_state) = if mode == AllMode::Async {
        // The default reply now, the children in the background.
        let mut out = Vec::new();
        match req.meta {
            Some(m) => memcache::meta::write_null_reply(&mut out, m.command, m.quiet, &req.bytes),
            None => null::write(req.op, req.keys.len(), env.proto, &mut out),
        }
        if reply.fragment.is_some() {
            // A fragment is answered in its slot, and its split meter counted off.
            let slot = reply.reserve();
            if let Some(m) = &slot.meter {
                m.finish(client_key(&slot.q), slot.seq, req.now.elapsed(), false);
            }
            slot.deliver(protocol, &out);
        } else if !out.is_empty() {
            reply.q.borrow_mut().push_local(&out);
        }
        (None, Mode::Copies)
    } else {
        let sent = go.iter().filter(|&&g| g).count();
        let combine = Box::new(Combine::new(mode, sent));
        (Some(reply.reserve()), Mode::All { combine, replies: vec![None; n], holds })
    };
    let att = Attempt::new(
        plan,
        protocol,
        req.op.class(),
        req.bytes,
        req.framer,
        req.meta,
        dests,
        client,
        req.now,
        mode_state,
    );
    for (i, _) in go.iter().enumerate().filter(|(_, &g)| g) {
        send(&att, i, req.now);
    }
    Ok(())
}

/// A memcache `noreply` request: no server replies to it, so no waiter may be queued for it (the server's next
/// reply would be taken for its answer). With nothing to fail over on, failover kinds send it to the first child;
/// the others to every child (shadow: the child and the copies, bounded as copies are).
fn dispatch_noreply(env: &Env, plan: &Rc<Plan>, req: &Request) -> Result<(), Refused> {
    let mut targets: Vec<Target> = match &plan.rule {
        Rule::Failover(_) => plan.children.iter().take(1).copied().collect(),
        Rule::All(_) | Rule::Shadow { .. } => plan.children.clone(),
        Rule::Fill(kind) => match kind.action(req.op, req.keys.len()) {
            crate::routes::fill::Action::Only(i) => plan.children.get(i).copied().into_iter().collect(),
            _ => plan.children.clone(),
        },
    };
    if let Rule::Shadow { shadows, .. } = &plan.rule {
        let key = req.keys.first().copied().unwrap_or_default();
        for (i, s) in shadows.iter().enumerate() {
            if shadow::shadowed(key, s.key_fraction, s.request_fraction, mix_draw(env.ctx.random, i)) {
                targets.push(s.target);
            }
        }
    }
    let dests = targets.iter().map(|&t| resolve(env, plan, t, req)).collect::<Result<Vec<_>, _>>()?;
    for (i, dest) in dests.into_iter().enumerate() {
        if let Dest::Backend(b) = dest {
            // Copies (every destination but the first) are not queued on a backend over its bound.
            if i > 0 && b.over_queue_bound() {
                RouteCounters::bump(&plan.counters.copies_dropped);
                continue;
            }
            b.enqueue(|out| out.extend_from_slice(&req.bytes), None, req.framer, req.now);
        }
    }
    Ok(())
}

/// A different draw per shadow target from the request's one draw.
fn mix_draw(draw: u64, i: usize) -> u64 {
    crate::routes::mix(draw ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Takes a background place for a copy to `b`, unless the worker is at its bound or `b` over its queue bound.
fn take_background(b: &Backend) -> bool {
    if b.over_queue_bound() {
        return false;
    }
    BACKGROUND.with(|n| {
        if n.get() >= MAX_BACKGROUND {
            false
        } else {
            n.set(n.get() + 1);
            true
        }
    })
}

fn release_background() {
    BACKGROUND.with(|n| n.set(n.get().saturating_sub(1)));
}

fn release_outstanding(plan: &Plan) {
    plan.outstanding.set(plan.outstanding.get().saturating_sub(1));
}

/// Sends to one destination with the client's own waiter (shadow's main child): the plain path's waiter.
fn send_single(dest: Dest, req: &Request, reply: ReplyTo) {
    let slot = reply.reserve();
    match dest {
        Dest::Backend(b) => {
            // One reply, nothing to combine: a quiet meta request's is dropped on delivery, as on the plain path.
            let framer = match (req.framer, req.meta) {
                (Framer::Memcache(cmd), Some(MetaReq { quiet: true, .. })) => Framer::MemcacheQuiet(cmd),
                (framer, _) => framer,
            };
            let waiter = Waiter::Client { client: slot.q, seq: slot.seq, frag: slot.frag, meter: slot.meter };
            b.enqueue(|out| out.extend_from_slice(&req.bytes), Some(waiter), framer, req.now);
        }
        Dest::Reply(bytes) => {
            finish_meter(&slot, req.now, false);
            slot.deliver(req.op.protocol(), MetaReq::shown(req.meta, &bytes))
        }
        Dest::Failed(reason) => {
            finish_meter(&slot, req.now, true);
            slot.deliver(req.op.protocol(), &failure_reply(req.op.protocol(), &reason));
        }
    }
}

fn failure_reply(protocol: Protocol, reason: &str) -> Vec<u8> {
    match protocol {
        Protocol::Redis => format!("-ERR ferrule: {reason}\r\n").into_bytes(),
        Protocol::Memcache => format!("SERVER_ERROR {reason}\r\n").into_bytes(),
    }
}

impl Attempt {
    #[allow(clippy::too_many_arguments)]
    fn new(
        plan: &Rc<Plan>,
        protocol: Protocol,
        class: OpClass,
        bytes: Vec<u8>,
        framer: Framer,
        meta: Option<MetaReq>,
        dests: Vec<Dest>,
        client: Option<ClientSlot>,
        started: Instant,
        mode: Mode,
    ) -> Rc<Attempt> {
        Rc::new(Attempt {
            plan: plan.clone(),
            protocol,
            class,
            bytes,
            framer,
            meta,
            dests,
            st: RefCell::new(AttemptState { client, started, mode }),
        })
    }
}

/// Sends the request to child `i`. No borrow of the attempt is held while a backend is called: a backend that is
/// backing off fails the request at once, which comes straight back to [`arrive`].
fn send(att: &Rc<Attempt>, i: usize, now: Instant) {
    match &att.dests[i] {
        Dest::Backend(b) => {
            let waiter = Waiter::Fan { attempt: att.clone(), child: i as u32 };
            b.enqueue(|out| out.extend_from_slice(&att.bytes), Some(waiter), att.framer, now);
        }
        Dest::Reply(bytes) => arrive(att, i as u32, bytes, false),
        Dest::Failed(reason) => {
            let out = failure_reply(att.protocol, reason);
            arrive(att, i as u32, &out, true);
        }
    }
}

/// Child `child` of `att` replied (`failed`: the reply was made by the backend for a failure).
pub fn arrive(att: &Rc<Attempt>, child: u32, reply: &[u8], failed: bool) {
    let child = child as usize;
    if matches!(att.st.borrow().mode, Mode::Fill(_)) {
        return fill::arrive(att, child, reply, failed);
    }
    let outcome = if failed {
        Outcome::Failed(severity::classify_reason(&String::from_utf8_lossy(reply)))
    } else {
        Outcome::Reply(reply)
    };
    let failure = severity::failure_class(att.protocol, outcome);
    let next = {
        let mut st = att.st.borrow_mut();
        let waiting = st.client.is_some();
        match &mut st.mode {
            Mode::Fill(_) => return,
            Mode::Copies => {
                release_background();
                if matches!(att.plan.rule, Rule::All(_)) {
                    release_outstanding(&att.plan);
                }
                if failure.is_some() || failed {
                    RouteCounters::bump(&att.plan.counters.copies_failed);
                }
                if let Rule::Shadow { shadows, .. } = &att.plan.rule {
                    if let Some(s) = shadows.get(child) {
                        s.outstanding.set(s.outstanding.get().saturating_sub(1));
                    }
                }
                return;
            }
            Mode::Failover => {
                let Rule::Failover(rule) = &att.plan.rule else { return };
                let hit = severity::is_hit(att.protocol, outcome);
                match rule.next(att.class, child, failure, hit) {
                    Step::Try(n) if n < att.dests.len() => {
                        RouteCounters::bump(&att.plan.counters.failovers);
                        Some(n)
                    }
                    _ => None,
                }
            }
            Mode::All { combine, replies, holds } => {
                if holds.get(child).copied().unwrap_or(false) {
                    holds[child] = false;
                    release_background();
                    release_outstanding(&att.plan);
                }
                let sev = severity::severity(att.protocol, outcome);
                match combine.arrive(child, sev, failure.is_some()) {
                    Some(Answer::Child(c)) if c != child => {
                        let held = replies.get_mut(c).and_then(Option::take).unwrap_or_default();
                        let failed = failed_reply(att.protocol, &held);
                        drop(st);
                        answer(att, &held, failed);
                        return;
                    }
                    Some(_) => None,
                    None => {
                        // all_sync and all_majority may answer with a reply that came earlier: keep it while the
                        // client waits.
                        if let Some(slot) = replies.get_mut(child).filter(|_| waiting) {
                            *slot = Some(reply.to_vec());
                        }
                        return;
                    }
                }
            }
        }
    };
    match next {
        Some(n) => {
            send(att, n, Instant::now());
        }
        None => answer(att, reply, failed),
    }
}

/// Whether a held reply is one ferrule made for a failure (for the latency figures' failed count).
fn failed_reply(protocol: Protocol, reply: &[u8]) -> bool {
    severity::severity(protocol, Outcome::Reply(reply)) == severity::LOCAL_ERROR
}

/// Completes the client's slot with `reply`, once.
fn answer(att: &Attempt, reply: &[u8], failed: bool) {
    let (client, started) = {
        let mut st = att.st.borrow_mut();
        (st.client.take(), st.started)
    };
    let Some(slot) = client else { return };
    finish_meter(&slot, started, failed);
    slot.deliver(att.protocol, MetaReq::shown(att.meta, reply));
}

/// Records the request's latency (a fragment's: counted off its split request).
fn finish_meter(slot: &ClientSlot, started: Instant, failed: bool) {
    if let Some(m) = &slot.meter {
        m.finish(client_key(&slot.q), slot.seq, started.elapsed(), failed);
    }
}

/// Where every child of `plan` (and every shadow target) sends `key`, one entry per child appended to `out`: keys
/// with equal signatures can go through the route as one request, each child getting them all on one server.
/// `false` when the route reads each key on its own (a memcache multi-get through `warmup` / `l1l2`): the key then
/// takes a request of its own. Entries never have the top bit set.
pub fn signature(env: &Env, plan: &Plan, op: Op, key: &[u8], out: &mut Vec<u64>) -> bool {
    if matches!(plan.rule, Rule::Fill(_)) && matches!(op, Op::Memcache(memcache::Command::Get)) {
        return false;
    }
    let shadows = match &plan.rule {
        Rule::Shadow { shadows, .. } => &shadows[..],
        _ => &[],
    };
    const SERVER: u64 = 0;
    const NO_SERVER: u64 = 1 << 61;
    const REPLY: u64 = 2 << 61;
    const FAN: u64 = 3 << 61;
    for target in plan.children.iter().copied().chain(shadows.iter().map(|s| s.target)) {
        out.push(match env.tree.decide(target, op, key, &env.ctx) {
            Decision::Send { leaf, strip } => {
                let (pool, server) = match leaf {
                    Leaf::Pool(p) => {
                        (p, env.pools.get(p).and_then(|x| x.router.server_for(&key[strip.min(key.len())..])))
                    }
                    Leaf::Server { pool, server } => (pool, Some(server)),
                };
                match server {
                    Some(s) => SERVER | (pool as u64 & 0xff_ffff) << 32 | (s as u64 & 0xffff_ffff),
                    None => NO_SERVER | pool as u64 & 0xff_ffff,
                }
            }
            Decision::Reply(_) => REPLY,
            Decision::Fan { route, .. } => FAN | route as u64 & 0xff_ffff,
        });
    }
    true
}
