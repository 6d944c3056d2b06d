//! Redis Cluster, the pure part: hash slots, the slot map, topology replies, redirects. No I/O here; the I/O side
//! (discovering the topology, following redirects) is `io::cluster` and `io::control`.
//!
//! - [`slot`]: CRC16 hash slots with `{hash tags}`, as redis computes them;
//! - [`map`]: the slot map (slot -> shard -> primary and replicas) and the `read_from` policy;
//! - [`resp`]: decoding topology replies (RESP2 and RESP3);
//! - [`topology`]: CLUSTER SHARDS and CLUSTER SLOTS into a topology;
//! - [`redirect`]: `-MOVED` / `-ASK` and the bounded redirect decision;
//! - [`group_by_slot`]: how a multi-key request splits (per slot, since redis refuses keys of two slots in one
//!   command even when one node serves both).

pub mod map;
pub mod redirect;
pub mod resp;
pub mod slot;
pub mod topology;

pub use map::{NoNode, ReadFrom, SlotMap};
pub use redirect::{
    decide, is_tryagain, parse_redirect, tryagain_delay, Decision, Redirect, RedirectKind, DEFAULT_MAX_REDIRECTS,
};
pub use slot::{key_slot, SLOTS};

/// Whether every slot in `slots` is the same (commands that must not span slots).
#[inline]
pub fn one_slot(slots: &[usize]) -> bool {
    slots.windows(2).all(|w| w[0] == w[1])
}

/// The error redis gives for keys of several slots in one command, which ferrule gives for the same commands.
pub const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_slot_check() {
        assert!(one_slot(&[]));
        assert!(one_slot(&[5, 5, 5]));
        assert!(!one_slot(&[5, 6]));
        let a = key_slot(b"{u}.a") as usize;
        let b = key_slot(b"{u}.b") as usize;
        assert!(one_slot(&[a, b]));
    }
}
