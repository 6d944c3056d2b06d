//! The route decision, free of I/O: which server of a pool a key belongs to, and how a multi-key request splits.

use crate::hash::{locate_key, DistributionKind, HashKind, Ring, RingMember};

/// A pool's placement function: the ring over its live servers plus the hash settings.
pub struct PoolRouter {
    ring: Ring,
    hash: HashKind,
    tag: Option<[u8; 2]>,
}

impl PoolRouter {
    /// `servers` are (ketama identity, weight, live) in config order; returned indices refer to that order.
    pub fn new(hash: HashKind, dist: DistributionKind, tag: Option<[u8; 2]>, servers: &[(&str, u32, bool)]) -> Self {
        let members: Vec<RingMember<'_>> =
            servers.iter().map(|&(ident, weight, live)| RingMember { ident, weight, live }).collect();
        PoolRouter { ring: Ring::build(dist, &members), hash, tag }
    }

    /// The server for `key`, or `None` when every server of the pool is ejected.
    #[inline]
    pub fn server_for(&self, key: &[u8]) -> Option<usize> {
        locate_key(&self.ring, self.hash, self.tag, key)
    }

    pub fn live_count(&self) -> usize {
        self.ring.live_count()
    }
}

/// Groups keys by server for a split request, keeping each server's keys in request order.
/// `servers[i]` is the server of key i; returns the distinct servers in first-seen order and, per key, the index of
/// its group (the fragment number).
pub fn group_by_server(servers: &[usize], groups: &mut Vec<usize>, key_frag: &mut Vec<u32>) {
    groups.clear();
    key_frag.clear();
    for &s in servers {
        let frag = match groups.iter().position(|&g| g == s) {
            Some(i) => i,
            None => {
                groups.push(s);
                groups.len() - 1
            }
        };
        key_frag.push(frag as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_first_seen_order() {
        let (mut g, mut f) = (Vec::new(), Vec::new());
        group_by_server(&[2, 0, 2, 1, 0], &mut g, &mut f);
        assert_eq!(g, vec![2, 0, 1]);
        assert_eq!(f, vec![0, 1, 0, 2, 1]);
    }
}
