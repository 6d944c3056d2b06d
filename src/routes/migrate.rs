//! `migrate`: mcrouter's MigrateRoute. Keys move from `from` to `to` one at a time over `interval_s` seconds
//! starting at `start_time` (unix seconds): a key switches at start_time + interval_s + (hash(key) % interval_s), hash being fnv1a_64 mixed
//! (mcrouter's rule; before it every request goes to `from`, after it to `to`). Deletes go to both during
//! [start_time, start_time + 2 interval_s), so a key deleted mid-migration is gone from both, and the worse reply
//! answers.

use super::OpClass;
use crate::config::Target;
use crate::hash::HashKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    One(Target),
    /// Send to both, answer with the worse reply.
    Both(Target, Target),
}

pub fn decide(from: Target, to: Target, start: u64, interval: u64, class: OpClass, key: &[u8], now: u64) -> Migration {
    let interval = interval.max(1);
    if class == OpClass::Delete && now >= start && now < start.saturating_add(2 * interval) {
        return Migration::Both(from, to);
    }
    let switch =
        start.saturating_add(interval).saturating_add(super::mix(u64::from(HashKind::Fnv1a_64.hash(key))) % interval);
    Migration::One(if now >= switch { to } else { from })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: Target = Target::Pool(0);
    const TO: Target = Target::Pool(1);

    #[test]
    fn keys_move_one_at_a_time_over_the_interval() {
        let at = |now, key: &str| decide(FROM, TO, 1000, 100, OpClass::Get, key.as_bytes(), now);
        assert_eq!(at(999, "a"), Migration::One(FROM));
        assert_eq!(at(1099, "a"), Migration::One(FROM), "nothing moves in the first interval");
        assert_eq!(at(1200, "a"), Migration::One(TO), "everything moved after two");
        let moved = (0..100).filter(|i| at(1150, &format!("k{i}")) == Migration::One(TO)).count();
        assert!((20..80).contains(&moved), "about half moved mid-way: {moved}");
    }

    #[test]
    fn deletes_go_to_both_during_the_window() {
        let del = |now| decide(FROM, TO, 1000, 100, OpClass::Delete, b"k", now);
        assert_eq!(del(999), Migration::One(FROM));
        assert_eq!(del(1000), Migration::Both(FROM, TO));
        assert_eq!(del(1199), Migration::Both(FROM, TO));
        assert_eq!(del(1200), Migration::One(TO));
    }
}
