//! `warmup`: mcrouter's WarmUpRoute, carrying the TTL. Reads (single-key memcache `get`, redis `GET`) go to `cold`;
//! on a cold miss (or failure) the key is read from `warm`: memcache `mg <key> v t f` (value, remaining TTL, client
//! flags; the warm server needs the meta protocol, memcached 1.6+), redis `GET` and `PTTL` in one pipeline. A warm
//! hit answers the client and is copied into cold in the background with `add` / `SET ... NX`, expiring when the
//! warm copy does ([`super::fill::memcache_expiry`], [`super::fill::redis_expiry`]); the configured `exptime` is
//! the fallback when the TTL cannot be learned, and without one no copy is written rather than an immortal one.
//!
//! Other requests go to cold: writes, other reads (gets, gat, multi-key gets, HGET, ...). Deletes go to both (the
//! worse reply answers): a delete in cold alone would be undone by the next read filling the key back from warm.

use super::fill::{self, Action};
use super::Op;

pub fn action(op: Op, nkeys: usize) -> Action {
    fill::action(op, nkeys, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::memcache::Command;

    #[test]
    fn reads_go_through_writes_to_cold_deletes_to_both() {
        assert_eq!(action(Op::Memcache(Command::Get), 1), Action::ReadThrough);
        assert_eq!(action(Op::Memcache(Command::Set), 1), Action::Only(0));
        assert_eq!(action(Op::Memcache(Command::Add), 1), Action::Only(0));
        assert_eq!(action(Op::Memcache(Command::Delete), 1), Action::Both);
    }
}
