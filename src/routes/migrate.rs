//! `migrate`: mcrouter's MigrateRoute. Keys move from `from` to `to` one at a time over `interval_s` seconds
//! starting at `start_time` (unix seconds): a key switches at `start_time + hash(key) % interval_s` (hash: fnv1a_64,
//! mixed), so before `start_time` every request goes to `from`, from `start_time + interval_s` on every request goes
//! to `to`, and in between a growing, stable share of the keys (the same keys every time) has moved.
//!
//! Deletes go to both during the window [start_time, start_time + interval_s), so a key deleted mid-migration is
//! gone from both whether or not it has moved yet; the worse reply answers. (mcrouter waits one more interval before
//! the first key moves; ferrule's window is the one the config names: keys start moving at `start_time`.)
//!
//! The clock is an input (`now`, unix seconds): the I/O layer reads it once per tick, never per request.

use super::OpClass;
use crate::config::Target;
use crate::hash::HashKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    One(Target),
    /// Send to both, answer with the worse reply.
    Both(Target, Target),
}

/// The second (unix) at which `key` moves.
pub fn switch_time(start: u64, interval: u64, key: &[u8]) -> u64 {
    let interval = interval.max(1);
    start.saturating_add(super::mix(u64::from(HashKind::Fnv1a_64.hash(key))) % interval)
}

pub fn decide(from: Target, to: Target, start: u64, interval: u64, class: OpClass, key: &[u8], now: u64) -> Migration {
    let interval = interval.max(1);
    if class == OpClass::Delete && now >= start && now < start.saturating_add(interval) {
        return Migration::Both(from, to);
    }
    Migration::One(if now >= switch_time(start, interval, key) { to } else { from })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: Target = Target::Pool(0);
    const TO: Target = Target::Pool(1);

    fn at(now: u64, key: &str) -> Migration {
        decide(FROM, TO, 1000, 100, OpClass::Get, key.as_bytes(), now)
    }

    #[test]
    fn before_the_start_everything_reads_from_and_after_the_interval_everything_reads_to() {
        for i in 0..200 {
            let key = format!("k{i}");
            assert_eq!(at(999, &key), Migration::One(FROM), "{key}");
            assert_eq!(at(1100, &key), Migration::One(TO), "{key}");
            assert_eq!(at(u64::MAX, &key), Migration::One(TO), "{key}");
        }
    }

    #[test]
    fn keys_move_one_at_a_time_over_the_interval_and_stay_moved() {
        let moved = |now| (0..1000).filter(|i| at(now, &format!("k{i}")) == Migration::One(TO)).count();
        let shares: Vec<usize> = [1000, 1025, 1050, 1075, 1099].into_iter().map(moved).collect();
        assert!(shares.windows(2).all(|w| w[0] <= w[1]), "a moved key never moves back: {shares:?}");
        assert!((400..600).contains(&shares[2]), "about half moved mid-way: {shares:?}");
        assert!(shares[0] < 50 && shares[4] > 950, "{shares:?}");
        // Each key switches exactly once, at its own second.
        let t = switch_time(1000, 100, b"user:7");
        assert!((1000..1100).contains(&t));
        assert_eq!(at(t - 1, "user:7"), Migration::One(FROM));
        assert_eq!(at(t, "user:7"), Migration::One(TO));
    }

    #[test]
    fn deletes_go_to_both_during_the_window_only() {
        let del = |now| decide(FROM, TO, 1000, 100, OpClass::Delete, b"k", now);
        assert_eq!(del(999), Migration::One(FROM));
        assert_eq!(del(1000), Migration::Both(FROM, TO));
        assert_eq!(del(1099), Migration::Both(FROM, TO));
        assert_eq!(del(1100), Migration::One(TO));
        // Writes other than deletes follow the key.
        let set = |now| decide(FROM, TO, 1000, 100, OpClass::Update, b"k", now);
        assert_eq!(
            set(1050),
            if 1050 >= switch_time(1000, 100, b"k") { Migration::One(TO) } else { Migration::One(FROM) }
        );
    }

    #[test]
    fn a_zero_interval_is_a_switch_at_the_start() {
        assert_eq!(decide(FROM, TO, 1000, 0, OpClass::Get, b"k", 999), Migration::One(FROM));
        assert_eq!(decide(FROM, TO, 1000, 0, OpClass::Get, b"k", 1000), Migration::One(TO));
    }
}
