//! `l1l2`: mcrouter's L1L2CacheRoute. Reads (single-key memcache `get`, redis `GET`) go to `l1`; on an l1 miss (or
//! failure) to `l2` (a plain `get` / `GET`), whose hit answers the client and is added into l1 in the background
//! with `add` / `SET ... NX` and the configured `l1_ttl_s` (mcrouter's upgradingL1Exptime): l1 holds a short-lived
//! copy of l2's hot keys.
//!
//! Writes go to l1, and to both (the worse reply answers) with `write_l2 = true`. Deletes always go to both: a
//! delete in l1 alone would be undone by the next read filling the key back from l2. Other reads go to l1.

use super::fill::{self, Action};
use super::Op;

pub fn action(op: Op, nkeys: usize, write_l2: bool) -> Action {
    fill::action(op, nkeys, write_l2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::memcache::Command;

    #[test]
    fn writes_reach_l2_only_when_asked() {
        assert_eq!(action(Op::Memcache(Command::Get), 1, false), Action::ReadThrough);
        assert_eq!(action(Op::Memcache(Command::Set), 1, false), Action::Only(0));
        assert_eq!(action(Op::Memcache(Command::Set), 1, true), Action::Both);
        assert_eq!(action(Op::Memcache(Command::Delete), 1, false), Action::Both);
    }
}
