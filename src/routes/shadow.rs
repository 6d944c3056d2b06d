//! `shadow`: mcrouter's ShadowRoute (and pool `shadows`, Envoy's request mirroring).
//!
//! The normal `child` answers the client. A copy of the request also goes to each shadow `target` when the key's
//! hash (fnv1a_64, mixed), scaled to [0, 1), falls in `key_fraction = [from, to)` (a stable set of keys: the same keys are always
//! shadowed) and a per-request draw falls under `request_fraction`. Copies are fire-and-forget: their replies are
//! discarded, a slow or dead shadow never delays or fails the client, and at most `max_outstanding` copies per
//! target and worker are in flight ([`Outstanding`]); the excess is dropped and counted.

use crate::hash::HashKind;

/// Whether `key` is shadowed, given the request's random draw.
pub fn shadowed(key: &[u8], key_fraction: (f64, f64), request_fraction: f64, draw: u64) -> bool {
    let point = (super::mix(u64::from(HashKind::Fnv1a_64.hash(key))) >> 11) as f64 / (1u64 << 53) as f64;
    let in_keys = point >= key_fraction.0 && (point < key_fraction.1 || key_fraction.1 >= 1.0);
    in_keys && ((draw >> 11) as f64 / (1u64 << 53) as f64) < request_fraction
}

/// The bound on copies in flight to one shadow target.
#[derive(Debug, Default)]
pub struct Outstanding {
    pub inflight: usize,
    pub sent: u64,
    pub dropped: u64,
}

impl Outstanding {
    /// Takes a place for a copy; `false` (and counted as dropped) when `max` are in flight.
    pub fn try_send(&mut self, max: usize) -> bool {
        if self.inflight >= max {
            self.dropped += 1;
            return false;
        }
        self.inflight += 1;
        self.sent += 1;
        true
    }

    /// A copy's reply (or failure) came back.
    pub fn done(&mut self) {
        self.inflight = self.inflight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fraction_selects_a_stable_share_of_keys() {
        let share = |range| (0..1000).filter(|i| shadowed(format!("k{i}").as_bytes(), range, 1.0, 0)).count();
        assert_eq!(share((0.0, 1.0)), 1000);
        assert_eq!(share((0.0, 0.0)), 0);
        let quarter = share((0.0, 0.25));
        assert!((180..320).contains(&quarter), "{quarter}");
        assert_eq!(quarter + share((0.25, 1.0)), 1000, "complementary ranges partition the keys");
    }

    #[test]
    fn request_fraction_samples_requests() {
        assert!(!shadowed(b"k", (0.0, 1.0), 0.0, 0));
        assert!(shadowed(b"k", (0.0, 1.0), 0.5, 0));
        assert!(!shadowed(b"k", (0.0, 1.0), 0.5, u64::MAX));
    }

    #[test]
    fn outstanding_copies_are_bounded_and_the_excess_counted() {
        let mut o = Outstanding::default();
        assert!(o.try_send(2) && o.try_send(2));
        assert!(!o.try_send(2));
        o.done();
        assert!(o.try_send(2));
        assert_eq!((o.sent, o.dropped, o.inflight), (3, 1, 2));
    }
}
