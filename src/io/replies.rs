//! The per-client reply queue: replies leave in request order, whatever order the backends answer in.
//!
//! Every request that expects a reply takes a sequence number (a slot). Backends complete slots as their replies
//! arrive; completed slots at the head move into `out`, which the client's writer task sends in one write. A reply for
//! the head slot goes straight into `out` without being stored, so the common unpipelined case copies once.

use crate::fanout::{Fanout, MergeKind};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

pub type ClientRef = Rc<RefCell<ReplyQueue>>;

/// When to stop reading a client's requests (backpressure), from `proxy.client_max_inflight` and
/// `proxy.client_max_unsent_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Requests awaiting replies.
    pub max_inflight: usize,
    /// Reply bytes waiting for a client that does not read them: a client that sends but never reads must not make
    /// the proxy buffer its replies without bound. (The writer may hold one more batch, being sent.)
    pub max_unsent_bytes: usize,
}

#[derive(Default)]
struct Slot {
    done: bool,
    data: Vec<u8>,
    fanout: Option<Box<Fanout>>,
}

#[derive(Default)]
pub struct ReplyQueue {
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    base: u64,
    /// Replies ready to be written, in order.
    pub out: Vec<u8>,
    /// Reused slot buffers, so steady-state pipelining does not allocate.
    spare: Vec<Vec<u8>>,
    /// Reused split-request bookkeeping. Boxed because slots hold it boxed: moving the box in and out of a slot
    /// does not copy or reallocate the fanout.
    #[allow(clippy::vec_box)]
    spare_fanouts: Vec<Box<Fanout>>,
    writer: Option<Waker>,
    reader: Option<Waker>,
    /// The client is gone: replies that still arrive are dropped.
    pub closed: bool,
    /// Close the connection once `out` has been written (QUIT, protocol error).
    pub close_after_flush: bool,
}

impl ReplyQueue {
    pub fn new_ref() -> ClientRef {
        Rc::new(RefCell::new(ReplyQueue::default()))
    }

    /// Requests that await a reply.
    pub fn inflight(&self) -> usize {
        self.slots.len()
    }

    /// Whether to stop reading this client's requests for now: too many of them await replies, or too many reply
    /// bytes wait to be written.
    pub fn saturated(&self, limits: ClientLimits) -> bool {
        self.slots.len() >= limits.max_inflight || self.out.len() >= limits.max_unsent_bytes
    }

    /// Writer side: takes everything ready to write (swapped with `buf`, which must be empty), and lets a reader
    /// that waited for the backlog to shrink go on.
    pub fn take_out(&mut self, buf: &mut Vec<u8>) {
        std::mem::swap(&mut self.out, buf);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Reserves the next slot; the reply is delivered later with [`complete`](Self::complete).
    pub fn reserve(&mut self) -> u64 {
        let data = self.spare.pop().unwrap_or_default();
        self.slots.push_back(Slot { done: false, data, fanout: None });
        self.base + self.slots.len() as u64 - 1
    }

    /// A fanout for a split request, recycled from an earlier one when possible (no allocation in steady state).
    pub fn take_fanout(&mut self, kind: MergeKind, fragments: usize) -> Box<Fanout> {
        match self.spare_fanouts.pop() {
            Some(mut f) => {
                f.reset(kind, fragments);
                f
            }
            None => Box::new(Fanout::new(kind, fragments)),
        }
    }

    /// Reserves a slot for a request split into fragments, merged by `fanout`.
    pub fn reserve_fanout(&mut self, fanout: Box<Fanout>) -> u64 {
        let seq = self.reserve();
        if let Some(slot) = self.slots.back_mut() {
            slot.fanout = Some(fanout);
        }
        seq
    }

    /// A reply made by the proxy itself (PING, errors): ordered behind everything in flight.
    pub fn push_local(&mut self, reply: &[u8]) {
        if self.slots.is_empty() {
            self.out.extend_from_slice(reply);
            self.wake_writer();
        } else {
            let seq = self.reserve();
            self.complete(seq, reply);
        }
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let idx = seq.wrapping_sub(self.base);
        if idx >= self.slots.len() as u64 {
            return None;
        }
        self.slots.get_mut(idx as usize)
    }

    /// Delivers the whole reply for `seq`.
    pub fn complete(&mut self, seq: u64, reply: &[u8]) {
        if self.closed {
            return;
        }
        if seq == self.base && self.slots.front().is_some_and(|s| s.fanout.is_none()) {
            self.out.extend_from_slice(reply);
            if let Some(slot) = self.slots.pop_front() {
                self.recycle(slot);
            }
            self.base = self.base.wrapping_add(1);
            self.drain_ready();
            self.wake_writer();
            return;
        }
        if let Some(slot) = self.slot_mut(seq) {
            slot.data.extend_from_slice(reply);
            slot.done = true;
        }
    }

    /// Whether `reply` can be fragment `frag`'s reply to the split request `seq` (see [`Fanout::fits`]); a request
    /// no longer waiting (the client left) takes anything.
    pub fn fragment_fits(&mut self, seq: u64, frag: usize, reply: &[u8]) -> Result<(), &'static str> {
        if self.closed {
            return Ok(());
        }
        match self.slot_mut(seq).and_then(|slot| slot.fanout.as_mut()) {
            Some(fan) => fan.fits(frag, reply),
            None => Ok(()),
        }
    }

    /// Delivers fragment `frag`'s reply for the split request `seq`; merges when it was the last one.
    pub fn complete_fragment(&mut self, seq: u64, frag: usize, reply: &[u8]) {
        if self.closed {
            return;
        }
        let head = seq == self.base;
        let Some(slot) = self.slot_mut(seq) else { return };
        let start = slot.data.len();
        slot.data.extend_from_slice(reply);
        let end = slot.data.len();
        let Some(fan) = slot.fanout.as_mut() else { return };
        if !fan.arrived(frag, start..end) {
            return;
        }
        let mut fan = slot.fanout.take().expect("checked above");
        let mut merged = self.spare.pop().unwrap_or_default();
        let slot = self.slot_mut(seq).expect("slot exists");
        fan.merge(&slot.data, &mut merged);
        std::mem::swap(&mut slot.data, &mut merged);
        slot.done = true;
        merged.clear();
        self.spare.push(merged);
        if self.spare_fanouts.len() < 16 {
            self.spare_fanouts.push(fan);
        }
        if head {
            self.drain_ready();
            self.wake_writer();
        }
    }

    fn drain_ready(&mut self) {
        while self.slots.front().is_some_and(|s| s.done) {
            if let Some(slot) = self.slots.pop_front() {
                self.out.extend_from_slice(&slot.data);
                self.recycle(slot);
            }
            self.base = self.base.wrapping_add(1);
        }
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn recycle(&mut self, mut slot: Slot) {
        if self.spare.len() < 64 && slot.data.capacity() <= 64 * 1024 {
            slot.data.clear();
            self.spare.push(slot.data);
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Writer side: registers interest in `out` becoming non-empty.
    pub fn set_writer_waker(&mut self, w: &Waker) {
        self.writer = Some(w.clone());
    }

    /// Reader side: registers interest in in-flight requests draining (backpressure).
    pub fn set_reader_waker(&mut self, w: &Waker) {
        self.reader = Some(w.clone());
    }

    pub fn wake_all(&mut self) {
        self.wake_writer();
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_leave_in_request_order() {
        let mut q = ReplyQueue::default();
        let a = q.reserve();
        let b = q.reserve();
        let c = q.reserve();
        q.complete(c, b"C");
        q.complete(b, b"B");
        assert!(q.out.is_empty());
        q.complete(a, b"A");
        assert_eq!(q.out, b"ABC");
        assert_eq!(q.inflight(), 0);
    }

    #[test]
    fn a_backlog_of_unsent_replies_saturates_like_inflight_requests() {
        let limits = |max_inflight| ClientLimits { max_inflight, max_unsent_bytes: 4096 };
        let mut q = ReplyQueue::default();
        assert!(!q.saturated(limits(2)));
        let a = q.reserve();
        q.reserve();
        assert!(q.saturated(limits(2)), "two requests in flight of at most two");
        q.complete(a, &[b'x'; 4096]);
        assert!(q.saturated(limits(100)), "4 KiB of replies nobody read yet");
        let mut buf = Vec::new();
        q.take_out(&mut buf);
        assert_eq!(buf.len(), 4096);
        assert!(!q.saturated(limits(100)), "the writer took the backlog");
    }

    #[test]
    fn local_replies_wait_behind_inflight() {
        let mut q = ReplyQueue::default();
        let a = q.reserve();
        q.push_local(b"L");
        assert!(q.out.is_empty());
        q.complete(a, b"A");
        assert_eq!(q.out, b"AL");
        q.push_local(b"M");
        assert_eq!(q.out, b"ALM");
    }
}
