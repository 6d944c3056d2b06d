//! `l1l2`: mcrouter's L1L2CacheRoute. Reads (single-key memcache `get`, redis `GET`) go to `l1`; on an l1 miss (or
//! failure) to `l2`, whose hit answers the client and is added into l1 in the background with `add` /
//! `SET ... NX` and the configured `l1_ttl_s` (mcrouter's upgradingL1Exptime): l1 holds a short-lived copy of l2's
//! hot keys. The copy never outlives l2's item: l2 is read with `mg <key> v t f` (memcache; a plain `get` once an
//! l2 server answered `ERROR`, having no meta protocol) or `GET` with a `PTTL` behind it (redis), and the copy gets
//! the smaller of `l1_ttl_s` and l2's remaining TTL ([`l1_expiry`]).
//!
//! Writes go to l1, and to both (the worse reply answers) with `write_l2 = true`. Deletes always go to both: a
//! delete in l1 alone would be undone by the next read filling the key back from l2. Other reads go to l1.

use super::fill::{self, Action, Expiry};
use super::Op;

pub fn action(op: Op, nkeys: usize, write_l2: bool) -> Action {
    fill::action(op, nkeys, write_l2)
}

/// The l1 copy's TTL from l2's remaining one in milliseconds (`None`: unknown, `-1`: no expiry, as redis PTTL
/// says): `l1_ttl_s`, capped at l2's remaining TTL, so that l1 never serves a value l2 has expired. `None`: no copy
/// (the item is gone from l2 or expires now).
pub fn l1_expiry(l1_ttl_s: u32, remaining_ms: Option<i64>) -> Option<Expiry> {
    let l1 = Expiry::Seconds(u64::from(l1_ttl_s));
    match remaining_ms {
        None | Some(-1) => Some(l1),
        Some(ms) if ms > 0 && (ms as u64) < u64::from(l1_ttl_s) * 1000 => Some(Expiry::Millis(ms as u64)),
        Some(ms) if ms > 0 => Some(l1),
        Some(_) => None,
    }
}

/// l2's remaining TTL in milliseconds from memcache `mg ... t` (seconds, -1: no expiry).
pub fn memcache_remaining_ms(ttl_s: Option<i64>) -> Option<i64> {
    ttl_s.map(|t| if t > 0 { t.saturating_mul(1000) } else { t })
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

    #[test]
    fn the_l1_copy_never_outlives_l2() {
        assert_eq!(l1_expiry(60, None), Some(Expiry::Seconds(60)), "unknown: the configured TTL");
        assert_eq!(l1_expiry(60, Some(-1)), Some(Expiry::Seconds(60)), "no expiry in l2: the configured TTL");
        assert_eq!(l1_expiry(60, Some(5_500)), Some(Expiry::Millis(5_500)), "l2 expires first: its remaining TTL");
        assert_eq!(l1_expiry(60, Some(60_000)), Some(Expiry::Seconds(60)));
        assert_eq!(l1_expiry(60, Some(3_600_000)), Some(Expiry::Seconds(60)), "l2 lives longer: the configured TTL");
        assert_eq!(l1_expiry(60, Some(-2)), None, "gone from l2: no copy");
        assert_eq!(l1_expiry(60, Some(0)), None, "expiring now: no copy");
        assert_eq!(memcache_remaining_ms(Some(7)), Some(7_000));
        assert_eq!(memcache_remaining_ms(Some(-1)), Some(-1));
        assert_eq!(memcache_remaining_ms(None), None);
    }
}
