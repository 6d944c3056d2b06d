//! Routing above pools (mcrouter's route handles), free of I/O.
//!
//! A listener's `route` names a pool or a route; routes form an acyclic tree whose leaves are pools (the key is
//! hashed onto one server) or single servers of a pool (`"POOL/*"` children). This module decides, for one
//! request's operation and key, what to send where ([`RouteTree::decide`]), and (for the kinds that send to several
//! destinations) how to combine the replies ([`severity`], [`all`], [`failover`]). It never touches a socket: the
//! I/O layer (`io::session`) executes what it decides on the backend connections it already has.
//!
//! One file per route kind; each opens with the kind's semantics and tests its rules against scripted fake
//! destinations ([`testing`]), in the manner of mcrouter's RouteHandleTest.

pub mod all;
pub mod error;
pub mod failover;
pub mod fill;
pub mod hash;
pub mod l1l2;
pub mod migrate;
pub mod null;
pub mod operation;
pub mod pool;
pub mod prefix;
pub mod random;
pub mod severity;
pub mod shadow;
pub mod warmup;

#[cfg(test)]
pub(crate) mod testing;

use crate::config::{Config, Protocol, RouteKind, Target};
use crate::protocol::{memcache, redis};

/// The operation of a request, as routes see it.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Memcache(memcache::Command),
    Redis(&'static redis::CommandInfo),
}

/// mcrouter's coarse operation classes, which decide default replies and which requests fail over on a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    /// Reads: memcache get/gets/gat/gats, redis read-only commands.
    Get,
    /// Writes that store a value: memcache storage commands and touch, redis writes other than deletes.
    Update,
    /// memcache delete, redis DEL/UNLINK/GETDEL.
    Delete,
    /// memcache incr/decr.
    Arithmetic,
}

impl Op {
    pub fn protocol(self) -> Protocol {
        match self {
            Op::Memcache(_) => Protocol::Memcache,
            Op::Redis(_) => Protocol::Redis,
        }
    }

    /// Whether the operation only reads (the `read` class of an operation route).
    pub fn is_read(self) -> bool {
        match self {
            Op::Memcache(c) => c.is_retrieval(),
            Op::Redis(info) => redis::is_readonly(info.name),
        }
    }

    pub fn class(self) -> OpClass {
        match self {
            Op::Memcache(c) if c.is_retrieval() => OpClass::Get,
            Op::Memcache(memcache::Command::Delete) => OpClass::Delete,
            Op::Memcache(memcache::Command::Incr | memcache::Command::Decr) => OpClass::Arithmetic,
            Op::Memcache(_) => OpClass::Update,
            Op::Redis(info) if redis::is_readonly(info.name) => OpClass::Get,
            Op::Redis(info) if matches!(info.name, "DEL" | "UNLINK" | "GETDEL") => OpClass::Delete,
            Op::Redis(_) => OpClass::Update,
        }
    }
}

/// A 64-bit finalizer (murmur3's fmix64): spreads a key hash whose low bits are weak (fnv over similar keys) before
/// it picks a child or a fraction.
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// What a request carries besides its operation and key: the clock (migrate) and a random draw (random, shadow
/// sampling). The executor supplies them so decisions stay pure and testable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx {
    pub now_unix: u64,
    pub random: u64,
}

/// Where a single-destination decision sends the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leaf {
    /// Hash the (stripped) key onto a server of this pool, as a listener naming the pool does.
    Pool(usize),
    /// This server of this pool.
    Server { pool: usize, server: usize },
}

/// A reply the route makes itself, without a server. Routes are named by index into [`Config::routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canned {
    /// An `error` route: redis `-ERR <message>`, memcache `SERVER_ERROR <message>`.
    Error { route: usize },
    /// A `null` route: the default reply (see [`null`]).
    Null,
    /// A prefix or operation route with no match and no `default`: an error naming the route.
    NoRoute { route: usize },
}

/// What to do with one key of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send to `leaf` with the first `strip` bytes of the key removed (a prefix route's `strip_prefix`).
    Send { leaf: Leaf, strip: usize },
    /// Answer without a server.
    Reply(Canned),
    /// A route that sends to several destinations (failover, all_*, shadow, ...): `route` indexes
    /// [`Config::routes`]; the executor combines its children's replies with the kind's rule.
    Fan { route: usize, strip: usize },
}

/// A worker's view of the routes of one config: per route, what its kind needs to decide quickly.
pub struct RouteTree {
    nodes: Vec<Node>,
}

enum Node {
    Prefix(prefix::Prefix),
    Operation(Box<operation::Operation>),
    Hash(hash::HashRoute),
    Random(random::RandomRoute),
    Error,
    Null,
    /// `migrate`: a selector by key and time, except deletes in the window, which fan out to both.
    Migrate {
        from: Target,
        to: Target,
        start: u64,
        interval: u64,
    },
    /// `warmup` / `l1l2`: requests that only ever reach the first child walk on into it here (so multi-key writes
    /// split by its servers as through a pool); reads that may fill and requests for both children fan out.
    Fill {
        first: Target,
        writes_to_both: bool,
    },
    /// Kinds that send to several destinations: decided by the executor with the kind's combiner.
    Fan,
}

impl RouteTree {
    /// Builds every route of `cfg` (validated: acyclic, every name resolved).
    pub fn build(cfg: &Config) -> RouteTree {
        let nodes = cfg
            .routes
            .iter()
            .map(|r| match &r.kind {
                RouteKind::Prefix { prefixes, default, strip_prefix, case_insensitive } => {
                    Node::Prefix(prefix::Prefix::new(prefixes, default.as_ref(), *strip_prefix, *case_insensitive))
                }
                RouteKind::Operation { operations, default } => {
                    Node::Operation(Box::new(operation::Operation::new(operations, default.as_ref())))
                }
                RouteKind::Hash { children, hash } => Node::Hash(hash::HashRoute::new(&children.targets, *hash)),
                RouteKind::Random { children } => Node::Random(random::RandomRoute::new(&children.targets)),
                RouteKind::Error { .. } => Node::Error,
                RouteKind::Null => Node::Null,
                RouteKind::Warmup { cold, .. } => Node::Fill { first: cold.target, writes_to_both: false },
                RouteKind::L1l2 { l1, write_l2, .. } => Node::Fill { first: l1.target, writes_to_both: *write_l2 },
                RouteKind::Migrate { from, to, start_time, interval_s } => {
                    Node::Migrate { from: from.target, to: to.target, start: *start_time, interval: *interval_s }
                }
                _ => Node::Fan,
            })
            .collect();
        RouteTree { nodes }
    }

    /// Decides where one key of a request goes, starting at `target`, walking selector routes (prefix, operation,
    /// hash, random) down to a leaf, a canned reply, or a route that fans out.
    pub fn decide(&self, target: Target, op: Op, key: &[u8], ctx: &Ctx) -> Decision {
        self.decide_visiting(target, op, key, ctx, &mut |_| {})
    }

    /// [`decide`](Self::decide), calling `visit` with every route the walk enters, in order (for the routes'
    /// request counters).
    pub fn decide_visiting(
        &self,
        target: Target,
        op: Op,
        key: &[u8],
        ctx: &Ctx,
        visit: &mut impl FnMut(usize),
    ) -> Decision {
        let mut at = target;
        let mut strip = 0usize;
        // The tree is acyclic (validated), so the walk ends; the bound guards against a bug all the same.
        for _ in 0..=self.nodes.len() {
            let route = match at {
                Target::Pool(p) => return Decision::Send { leaf: Leaf::Pool(p), strip },
                Target::Server { pool, server } => {
                    return Decision::Send { leaf: Leaf::Server { pool, server }, strip }
                }
                Target::Route(r) => r,
            };
            visit(route);
            let key = &key[strip.min(key.len())..];
            let next = match self.nodes.get(route) {
                Some(Node::Prefix(p)) => p.choose(key).map(|(t, s)| {
                    strip += s;
                    t
                }),
                Some(Node::Operation(o)) => o.choose(op),
                Some(Node::Hash(h)) => Some(h.choose(key)),
                Some(Node::Random(r)) => Some(r.choose(ctx.random)),
                Some(Node::Error) => return Decision::Reply(Canned::Error { route }),
                Some(Node::Null) => return Decision::Reply(Canned::Null),
                Some(Node::Fan) => return Decision::Fan { route, strip },
                Some(&Node::Fill { first, writes_to_both }) => {
                    // The executor decides with the number of keys; here only what cannot depend on it.
                    match fill::action(op, 1, writes_to_both) {
                        fill::Action::Only(0) => Some(first),
                        _ => return Decision::Fan { route, strip },
                    }
                }
                Some(&Node::Migrate { from, to, start, interval }) => {
                    match migrate::decide(from, to, start, interval, op.class(), key, ctx.now_unix) {
                        migrate::Migration::One(t) => Some(t),
                        migrate::Migration::Both(..) => return Decision::Fan { route, strip },
                    }
                }
                None => None,
            };
            match next {
                Some(t) => at = t,
                None => return Decision::Reply(Canned::NoRoute { route }),
            }
        }
        Decision::Reply(Canned::NoRoute { route: usize::MAX })
    }
}

/// The reply for a canned decision of a single-key request (or one whole request): appended to `out`.
/// `nkeys` is the number of keys the reply answers for (a redis MGET fragment answers with one element per key).
/// `proto` is the redis client's RESP version (ignored for memcache).
pub fn canned_reply(cfg: &Config, canned: Canned, op: Op, nkeys: usize, proto: redis::Proto, out: &mut Vec<u8>) {
    let name = |route: usize| cfg.routes.get(route).map_or("?", |r| r.name.as_str());
    match canned {
        Canned::Error { route } => {
            let message = match cfg.routes.get(route).map(|r| &r.kind) {
                Some(RouteKind::Error { message }) => message.as_str(),
                _ => crate::config::DEFAULT_ERROR_MESSAGE,
            };
            error::write(op.protocol(), message, out)
        }
        Canned::NoRoute { route } => {
            let message = format!("ferrule: route '{}' has no destination for this request", name(route));
            error::write(op.protocol(), &message, out)
        }
        Canned::Null => null::write(op, nkeys, proto, out),
    }
}

#[cfg(test)]
mod tests;
