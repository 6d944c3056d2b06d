//! Requests of listeners whose `route` names a route rather than a pool: every key is decided by the worker's
//! route tree (`crate::routes`), then resolved to a server, and the request is sent as a pool listener sends it
//! (one server: forwarded whole; several: split per server and merged in request order). Keys whose route answers
//! by itself (`error`, `null`, no match) become fragments completed on the spot. A listener naming a pool never
//! comes here: it keeps the plain path.

use crate::config::Config;
use crate::io::fan::{self, Env, Plans};
use crate::io::pool::PoolRt;
use crate::routes::{Canned, Ctx, Decision, Leaf, Op, RouteTree};

/// Where one key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDest {
    /// This server of this pool, the key's first `strip` bytes removed.
    Server {
        pool: usize,
        server: usize,
        strip: usize,
    },
    Canned(Canned),
    /// A route that sends to several destinations (`io::fan`), the key's first `strip` bytes removed. Keys with
    /// the same `sub` (see [`split_fans`]) reach the same server of every child: they go as one sub-request.
    Fan {
        route: usize,
        strip: usize,
        sub: u32,
    },
}

/// A fragment of a routed request: one server, one kind of canned reply, or one multi-destination route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Server { pool: usize, server: usize },
    Canned(Canned),
    Fan { route: usize, sub: u32 },
}

impl KeyDest {
    fn group(self) -> Group {
        match self {
            KeyDest::Server { pool, server, .. } => Group::Server { pool, server },
            KeyDest::Canned(c) => Group::Canned(c),
            KeyDest::Fan { route, sub, .. } => Group::Fan { route, sub },
        }
    }

    pub fn strip(self) -> usize {
        match self {
            KeyDest::Server { strip, .. } | KeyDest::Fan { strip, .. } => strip,
            KeyDest::Canned(_) => 0,
        }
    }
}

/// Why a routed request cannot be sent at all (the client gets an error saying so).
pub enum Unroutable {
    /// Every server of this pool is ejected.
    NoServer(usize),
}

thread_local! {
    /// The routes one request's keys walked through (a worker is one thread): reused, no allocation per request.
    static VISITED: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Decides every key (given as byte slices in request order) into `dests`, and counts the request once in the
/// `requests` counter of every route its keys walked through (`plans`).
#[allow(clippy::too_many_arguments)]
pub fn resolve<'k>(
    tree: &RouteTree,
    pools: &[PoolRt],
    plans: &Plans,
    target: crate::config::Target,
    op: Op,
    keys: impl Iterator<Item = &'k [u8]>,
    ctx: &Ctx,
    dests: &mut Vec<KeyDest>,
) -> Result<(), Unroutable> {
    let mut visited = VISITED.take();
    visited.clear();
    let decided = decide_all(tree, pools, target, op, keys, ctx, dests, &mut visited);
    plans.count_requests(&visited);
    VISITED.set(visited);
    decided
}

#[allow(clippy::too_many_arguments)]
fn decide_all<'k>(
    tree: &RouteTree,
    pools: &[PoolRt],
    target: crate::config::Target,
    op: Op,
    keys: impl Iterator<Item = &'k [u8]>,
    ctx: &Ctx,
    dests: &mut Vec<KeyDest>,
    visited: &mut Vec<u32>,
) -> Result<(), Unroutable> {
    dests.clear();
    let mut visit = |r: usize| {
        if !visited.contains(&(r as u32)) {
            visited.push(r as u32);
        }
    };
    for key in keys {
        let dest = match tree.decide_visiting(target, op, key, ctx, &mut visit) {
            Decision::Send { leaf: Leaf::Pool(pool), strip } => {
                let server = pools
                    .get(pool)
                    .and_then(|p| p.router.server_for(&key[strip.min(key.len())..]))
                    .ok_or(Unroutable::NoServer(pool))?;
                KeyDest::Server { pool, server, strip }
            }
            Decision::Send { leaf: Leaf::Server { pool, server }, strip } => KeyDest::Server { pool, server, strip },
            Decision::Reply(c) => KeyDest::Canned(c),
            Decision::Fan { route, strip } => KeyDest::Fan { route, strip, sub: 0 },
        };
        dests.push(dest);
    }
    Ok(())
}

/// Groups keys by fragment in first-seen order; `key_frag[i]` is key i's fragment.
pub fn group(dests: &[KeyDest], groups: &mut Vec<Group>, key_frag: &mut Vec<u32>) {
    groups.clear();
    key_frag.clear();
    for d in dests {
        let g = d.group();
        let frag = match groups.iter().position(|&x| x == g) {
            Some(i) => i,
            None => {
                groups.push(g);
                groups.len() - 1
            }
        };
        key_frag.push(frag as u32);
    }
}

/// The error text for an unroutable request, without protocol framing.
pub fn unroutable_message(cfg: &Config, why: &Unroutable) -> String {
    match why {
        Unroutable::NoServer(pool) => {
            let name = cfg.pools.get(*pool).map_or("?", |p| p.name.as_str());
            format!("ferrule: pool '{name}' has no server available (all ejected)")
        }
    }
}

/// Splits the keys that reach multi-destination routes by their full destination: keys that every child of the
/// route sends to the same server get the same `sub`, so that each group goes through the route as its own
/// sub-request (a failover over sharded pools fails over per group). `keys` are the request's keys in order, as
/// `dests` has them (unstripped). A route that reads each key on its own (a memcache multi-get through a fill
/// route) gives every key its own group. Only requests with a key reaching such a route come here.
pub fn split_fans<'k>(env: &Env, plans: &Plans, op: Op, keys: impl Iterator<Item = &'k [u8]>, dests: &mut [KeyDest]) {
    // (route, where each child sends the key); a sub-request per distinct entry.
    let mut seen: Vec<(usize, Vec<u64>)> = Vec::new();
    let mut sig = Vec::new();
    for (i, (key, dest)) in keys.zip(dests.iter_mut()).enumerate() {
        let KeyDest::Fan { route, strip, sub } = dest else { continue };
        let Some(plan) = plans.get(*route) else { continue };
        sig.clear();
        if !fan::signature(env, plan, op, &key[(*strip).min(key.len())..], &mut sig) {
            // Its own group: an entry no other key's can equal (signatures never use the top bit).
            sig.clear();
            sig.push(u64::MAX - i as u64);
        }
        *sub = match seen.iter().position(|(r, s)| r == route && *s == sig) {
            Some(at) => at as u32,
            None => {
                seen.push((*route, sig.clone()));
                seen.len() as u32 - 1
            }
        };
    }
}

/// The random draw for `random` routes and sampling: a per-worker xorshift, no syscall and no shared state.
pub fn draw(state: &std::cell::Cell<u64>) -> u64 {
    let mut x = state.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.set(x);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_first_seen_order_and_canned_replies_group_apart() {
        let a = KeyDest::Server { pool: 0, server: 1, strip: 0 };
        let a_stripped = KeyDest::Server { pool: 0, server: 1, strip: 5 };
        let b = KeyDest::Server { pool: 1, server: 0, strip: 0 };
        let null = KeyDest::Canned(Canned::Null);
        let (mut groups, mut frag) = (Vec::new(), Vec::new());
        group(&[b, a, null, a_stripped, b, null], &mut groups, &mut frag);
        assert_eq!(
            groups,
            [Group::Server { pool: 1, server: 0 }, Group::Server { pool: 0, server: 1 }, Group::Canned(Canned::Null)]
        );
        assert_eq!(frag, [0, 1, 2, 1, 0, 2], "keys with different strips share their server's fragment");
    }
}
