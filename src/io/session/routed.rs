//! Requests of listeners whose `route` names a route rather than a pool: every key is decided by the worker's
//! route tree (`crate::routes`), then resolved to a server, and the request is sent as a pool listener sends it
//! (one server: forwarded whole; several: split per server and merged in request order). Keys whose route answers
//! by itself (`error`, `null`, no match) become fragments completed on the spot. A listener naming a pool never
//! comes here: it keeps the plain path.

use crate::config::Config;
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
    /// A route that sends to several destinations (`io::fan`), the key's first `strip` bytes removed.
    Fan {
        route: usize,
        strip: usize,
    },
}

/// A fragment of a routed request: one server, one kind of canned reply, or one multi-destination route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Server { pool: usize, server: usize },
    Canned(Canned),
    Fan { route: usize },
}

impl KeyDest {
    fn group(self) -> Group {
        match self {
            KeyDest::Server { pool, server, .. } => Group::Server { pool, server },
            KeyDest::Canned(c) => Group::Canned(c),
            KeyDest::Fan { route, .. } => Group::Fan { route },
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

/// Decides every key (given as byte slices in request order) into `dests`.
pub fn resolve<'k>(
    tree: &RouteTree,
    pools: &[PoolRt],
    target: crate::config::Target,
    op: Op,
    keys: impl Iterator<Item = &'k [u8]>,
    ctx: &Ctx,
    dests: &mut Vec<KeyDest>,
) -> Result<(), Unroutable> {
    dests.clear();
    for key in keys {
        let dest = match tree.decide(target, op, key, ctx) {
            Decision::Send { leaf: Leaf::Pool(pool), strip } => {
                let server = pools
                    .get(pool)
                    .and_then(|p| p.router.server_for(&key[strip.min(key.len())..]))
                    .ok_or(Unroutable::NoServer(pool))?;
                KeyDest::Server { pool, server, strip }
            }
            Decision::Send { leaf: Leaf::Server { pool, server }, strip } => KeyDest::Server { pool, server, strip },
            Decision::Reply(c) => KeyDest::Canned(c),
            Decision::Fan { route, strip } => KeyDest::Fan { route, strip },
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

/// The error text for a multi-key request whose keys reach a multi-destination route and other destinations.
pub fn mixed_fan_message(cfg: &Config, groups: &[Group]) -> String {
    let route = groups.iter().find_map(|g| match g {
        Group::Fan { route } => Some(*route),
        _ => None,
    });
    let name = route.and_then(|r| cfg.routes.get(r)).map_or("?", |r| r.name.as_str());
    format!(
        "ferrule: the keys of this request reach route '{name}', which sends to several destinations, and other \
         destinations: send them in separate requests"
    )
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
