//! The per-client reply queue: replies leave in request order, whatever order the backends answer in.
//!
//! Every request that expects a reply takes a sequence number (a slot). Backends complete slots as their replies
//! arrive; completed slots at the head move into `out`, which the client's writer task sends in one write. A reply for
//! the head slot goes straight into `out` without being stored, so the common unpipelined case copies once.

use super::uring::Conn;
use crate::fanout::{Fanout, MergeKind};
use std::cell::{Cell, RefCell};
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
    /// Reply bytes held for a client that does not read them (unsent, being written, or arrived ahead of an
    /// earlier reply): a client that sends but never reads must not make the proxy buffer its replies without
    /// bound. Also bounds the reply bytes a client may have in flight, estimated from its recent replies.
    pub max_unsent_bytes: usize,
}

/// The hard bounds on reply bytes held for clients, past which a client is closed rather than merely not read
/// (the replies to requests already sent keep arriving whether it reads or not), and the worker's running total.
#[derive(Clone)]
pub struct BufferBudget {
    /// `proxy.client_max_buffered_bytes`: what one client may hold, not counting the batch being written to it.
    pub client_max: usize,
    /// `proxy.client_buffers_max_bytes`: what all clients of this worker may hold together.
    pub worker_max: usize,
    /// `proxy.client_max_unsent_bytes`: over the worker bound, a client holding more than this (one that is not
    /// keeping up) is closed.
    pub slow_after: usize,
    /// Reply bytes held by every client of this worker (their `held()` summed), shared by its reply queues.
    pub worker_used: Rc<Cell<usize>>,
}

impl Default for BufferBudget {
    fn default() -> Self {
        BufferBudget {
            client_max: usize::MAX,
            worker_max: usize::MAX,
            slow_after: usize::MAX,
            worker_used: Rc::new(Cell::new(0)),
        }
    }
}

/// Why a client was closed for holding too many reply bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Over `client_max_buffered_bytes`.
    Client { held: usize, limit: usize },
    /// The worker's clients together were over `client_buffers_max_bytes`, and this one, holding more than
    /// `client_max_unsent_bytes`, was not keeping up.
    Worker { held: usize, limit: usize },
}

#[derive(Default)]
struct Slot {
    done: bool,
    data: Vec<u8>,
    fanout: Option<Box<Fanout>>,
}

/// Requests a new client may have in flight before its first reply tells how big its replies are. A client that
/// pipelines hundreds of GETs of a 1 MiB value as it connects makes the server produce this many of them at once,
/// not `client_max_inflight`; a client pipelining small requests waits for one round trip before the rest go.
pub const FIRST_WINDOW: usize = 8;

/// Slot buffers and fanouts bigger than this are freed rather than kept for reuse.
const SPARE_KEEP_BYTES: usize = 64 * 1024;

#[derive(Default)]
pub struct ReplyQueue {
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    base: u64,
    /// Replies ready to be written, in order.
    pub out: Vec<u8>,
    /// Bytes of replies stored in slots (arrived ahead of an earlier one, or fragments of a split request).
    stored: usize,
    /// Bytes the writer took from `out` and has not finished writing.
    writing: usize,
    /// The size of this client's recent replies: the largest, decaying by 1/8 per later reply. Bounds the reply
    /// bytes it may have in flight, which are unknown when a request is sent. Until its first reply it is a guess
    /// that lets [`FIRST_WINDOW`] requests go out.
    reply_estimate: usize,
    /// Whether `reply_estimate` comes from a reply yet.
    estimated: bool,
    budget: BufferBudget,
    /// Shut down when the client is closed for holding too much, so that its writer, blocked on a client that does
    /// not read, lets go.
    conn: Option<Conn>,
    /// Set when the client was closed for holding too many reply bytes.
    pub overflow: Option<Overflow>,
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
    pub fn new_ref(budget: BufferBudget, conn: Option<Conn>) -> ClientRef {
        let mut q = ReplyQueue::default();
        q.reply_estimate = budget.slow_after / FIRST_WINDOW;
        q.budget = budget;
        q.conn = conn;
        Rc::new(RefCell::new(q))
    }

    /// Requests that await a reply.
    pub fn inflight(&self) -> usize {
        self.slots.len()
    }

    /// Reply bytes held for this client: ready, being written, or stored out of order.
    pub fn held(&self) -> usize {
        self.out.len() + self.stored + self.writing
    }

    /// Whether to stop reading this client's requests for now: too many of them await replies, too many reply
    /// bytes wait to be written, or the replies in flight, at the size of its recent replies, would be too many
    /// bytes (a client fetching 1 MiB values gets a few in flight, not `max_inflight`).
    pub fn saturated(&self, limits: ClientLimits) -> bool {
        let n = self.slots.len();
        n >= limits.max_inflight
            || self.held() >= limits.max_unsent_bytes
            || n.saturating_mul(self.reply_estimate) >= limits.max_unsent_bytes
    }

    /// Writer side: takes everything ready to write (swapped with `buf`, which must be empty); the bytes stay
    /// counted until [`written`](Self::written).
    pub fn take_out(&mut self, buf: &mut Vec<u8>) {
        std::mem::swap(&mut self.out, buf);
        self.writing += buf.len();
    }

    /// Gives `out`'s buffer back to the worker's spare buffers (the client is idle: nothing to write, nothing in
    /// flight).
    pub fn release_out(&mut self) {
        if self.out.is_empty() {
            super::bufpool::give(std::mem::take(&mut self.out));
        }
    }

    /// `out`, with a spare buffer taken when it holds none (so a reply after an idle spell allocates nothing);
    /// `len`: the bytes about to be appended.
    fn out_buf(&mut self, len: usize) -> &mut Vec<u8> {
        if self.out.capacity() == 0 {
            self.out = super::bufpool::take_for(len);
        }
        &mut self.out
    }

    /// Writer side: the batch taken last is written (or dropped); lets a reader that waited for the backlog to
    /// shrink go on.
    pub fn written(&mut self) {
        let before = self.held();
        self.writing = 0;
        self.account(before);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Closes the queue and frees what it holds: replies that still arrive for it are dropped.
    pub fn close(&mut self) {
        let before = self.held();
        self.closed = true;
        self.out = Vec::new();
        self.slots.clear();
        self.stored = 0;
        self.spare = Vec::new();
        self.spare_fanouts = Vec::new();
        self.account(before);
        self.wake_all();
    }

    /// Updates the worker's total after this queue's holding changed from `before`, and closes the client when
    /// it grew past a hard bound.
    fn account(&mut self, before: usize) {
        let after = self.held();
        let used = &self.budget.worker_used;
        used.set(used.get().saturating_sub(before) + after);
        if after <= before || self.closed {
            return;
        }
        // Not counting the batch being written: a client reading one huge value while the next reply arrives is
        // not a client that does not read. One reply of any size is always allowed.
        let queued = after - self.writing;
        let grew = after - before;
        if queued <= grew {
            return;
        }
        let overflow = if queued > self.budget.client_max {
            Overflow::Client { held: queued, limit: self.budget.client_max }
        } else if used.get() > self.budget.worker_max && queued > self.budget.slow_after {
            Overflow::Worker { held: queued, limit: self.budget.worker_max }
        } else {
            return;
        };
        self.overflow = Some(overflow);
        self.close();
        if let Some(conn) = &self.conn {
            conn.shutdown();
        }
    }

    /// Follows the size of the replies this client gets (see `reply_estimate`).
    fn observe_reply(&mut self, len: usize) {
        self.reply_estimate = if self.estimated { len.max(self.reply_estimate - self.reply_estimate / 8) } else { len };
        self.estimated = true;
    }

    /// Reserves the next slot; the reply is delivered later with [`complete`](Self::complete).
    pub fn reserve(&mut self) -> u64 {
        if self.slots.capacity() == 0 {
            // One slot first, not the four a `VecDeque` starts with: an unpipelined client never needs more, and
            // it keeps them for its connection's life. One that pipelines grows it once, by doubling.
            self.slots.reserve_exact(1);
        }
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
        if self.closed {
            return;
        }
        if self.slots.is_empty() {
            let before = self.held();
            self.out_buf(reply.len()).extend_from_slice(reply);
            self.account(before);
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
        self.observe_reply(reply.len());
        let before = self.held();
        if seq == self.base && self.slots.front().is_some_and(|s| s.fanout.is_none()) {
            self.out_buf(reply.len()).extend_from_slice(reply);
            if let Some(slot) = self.slots.pop_front() {
                self.recycle(slot);
            }
            self.base = self.base.wrapping_add(1);
            self.drain_ready();
            self.wake_writer();
        } else if let Some(slot) = self.slot_mut(seq) {
            slot.data.extend_from_slice(reply);
            slot.done = true;
            self.stored += reply.len();
        }
        self.account(before);
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
        self.observe_reply(reply.len());
        let before = self.held();
        let head = seq == self.base;
        let Some(slot) = self.slot_mut(seq) else { return };
        let start = slot.data.len();
        slot.data.extend_from_slice(reply);
        let end = slot.data.len();
        self.stored += reply.len();
        let slot = self.slot_mut(seq).expect("slot exists");
        let complete = slot.fanout.as_mut().is_some_and(|fan| fan.arrived(frag, start..end));
        if complete {
            let mut fan = slot.fanout.take().expect("checked above");
            let mut merged = self.spare.pop().unwrap_or_default();
            let slot = self.slot_mut(seq).expect("slot exists");
            fan.merge(&slot.data, &mut merged);
            std::mem::swap(&mut slot.data, &mut merged);
            slot.done = true;
            let merged_len = slot.data.len();
            self.stored = self.stored - merged.len() + merged_len;
            merged.clear();
            if merged.capacity() <= SPARE_KEEP_BYTES {
                self.spare.push(merged);
            }
            if self.spare_fanouts.len() < 16 && fan.retained_bytes() <= SPARE_KEEP_BYTES {
                self.spare_fanouts.push(fan);
            }
            if head {
                self.drain_ready();
                self.wake_writer();
            }
        }
        self.account(before);
    }

    fn drain_ready(&mut self) {
        while self.slots.front().is_some_and(|s| s.done) {
            if let Some(slot) = self.slots.pop_front() {
                let out = self.out_buf(slot.data.len());
                out.extend_from_slice(&slot.data);
                self.stored -= slot.data.len();
                self.recycle(slot);
            }
            self.base = self.base.wrapping_add(1);
        }
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn recycle(&mut self, mut slot: Slot) {
        // An empty one (the reply went straight to `out`) costs nothing to make again: keeping it would only give
        // an idle client a `spare` list to hold.
        if self.spare.len() < 64 && slot.data.capacity() > 0 && slot.data.capacity() <= SPARE_KEEP_BYTES {
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
        // Reader and writer are one task: each wake polls both halves, and a half that is still waiting must not
        // clone the waker (a reference count update) again.
        if !self.writer.as_ref().is_some_and(|old| old.will_wake(w)) {
            self.writer = Some(w.clone());
        }
    }

    /// Reader side: registers interest in in-flight requests draining (backpressure).
    pub fn set_reader_waker(&mut self, w: &Waker) {
        if !self.reader.as_ref().is_some_and(|old| old.will_wake(w)) {
            self.reader = Some(w.clone());
        }
    }

    pub fn wake_all(&mut self) {
        self.wake_writer();
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
}

impl Drop for ReplyQueue {
    /// Gives back this client's share of the worker's total.
    fn drop(&mut self) {
        let used = &self.budget.worker_used;
        used.set(used.get().saturating_sub(self.held()));
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
        assert!(q.saturated(limits(100)), "a batch being written is still held");
        q.written();
        assert_eq!(q.held(), 0);
        assert!(q.saturated(limits(100)), "one more 4 KiB reply in flight would be over the bound again");
    }

    /// A queue as a session makes it, sharing `used` with the other clients of its worker.
    fn budgeted(client_max: usize, worker_max: usize, slow_after: usize, used: &Rc<Cell<usize>>) -> ClientRef {
        ReplyQueue::new_ref(BufferBudget { client_max, worker_max, slow_after, worker_used: used.clone() }, None)
    }

    #[test]
    fn replies_in_flight_are_bounded_by_the_size_of_recent_replies() {
        let limits = ClientLimits { max_inflight: 256, max_unsent_bytes: 1 << 20 };
        let q = budgeted(usize::MAX, usize::MAX, 1 << 20, &Rc::default());
        let mut q = q.borrow_mut();
        let seqs: Vec<u64> = (0..FIRST_WINDOW).map(|_| q.reserve()).collect();
        assert!(q.saturated(limits), "a new client gets {FIRST_WINDOW} requests before its first reply");
        q.complete(seqs[0], b"+OK\r\n");
        assert!(!q.saturated(limits), "small replies: the window opens");
        let mut buf = Vec::new();
        let big = vec![b'x'; 256 << 10];
        for &seq in &seqs[1..] {
            q.complete(seq, &big);
            q.take_out(&mut buf);
            q.written();
            buf.clear();
        }
        for _ in 0..3 {
            q.reserve();
        }
        assert!(!q.saturated(limits), "three 256 KiB replies in flight");
        q.reserve();
        assert!(q.saturated(limits), "four of them would be 1 MiB");
    }

    #[test]
    fn a_client_over_its_cap_is_closed_and_its_later_replies_dropped() {
        let used = Rc::new(Cell::new(0));
        let q = budgeted(10_000, usize::MAX, 4096, &used);
        let mut q = q.borrow_mut();
        let (a, b, c, d) = (q.reserve(), q.reserve(), q.reserve(), q.reserve());
        q.complete(a, &[b'a'; 8000]);
        let mut buf = Vec::new();
        q.take_out(&mut buf);
        assert_eq!(used.get(), 8000, "the batch being written is counted");
        q.complete(b, &[b'b'; 8000]);
        assert!(q.overflow.is_none(), "the batch being written does not count toward the cap");
        q.complete(d, &[b'd'; 1000]);
        assert_eq!(q.held(), 17_000, "a reply ahead of its turn is held too");
        assert!(q.overflow.is_none());
        q.complete(c, &[b'c'; 2000]);
        assert_eq!(q.overflow, Some(Overflow::Client { held: 11_000, limit: 10_000 }));
        assert!(q.closed && q.out.is_empty() && q.inflight() == 0);
        assert_eq!(used.get(), 8000, "freed at once, but for the batch the writer holds");
        q.written();
        assert_eq!(used.get(), 0);
        let e = q.reserve();
        q.complete(e, b"late");
        assert!(q.out.is_empty(), "replies arriving for a closed client are dropped");
        assert_eq!(used.get(), 0);
    }

    #[test]
    fn one_reply_of_any_size_is_allowed() {
        let used = Rc::new(Cell::new(0));
        let q = budgeted(1024, 1024, 1024, &used);
        let mut q = q.borrow_mut();
        let a = q.reserve();
        q.complete(a, &[b'x'; 1 << 20]);
        assert!(q.overflow.is_none() && !q.closed);
        assert_eq!(used.get(), 1 << 20);
    }

    #[test]
    fn over_the_worker_bound_the_client_that_is_not_keeping_up_is_closed() {
        let used = Rc::new(Cell::new(0));
        let reader = budgeted(usize::MAX, 10_000, 4000, &used);
        let slow = budgeted(usize::MAX, 10_000, 4000, &used);
        let r = reader.borrow_mut().reserve();
        reader.borrow_mut().complete(r, &[b'r'; 3000]);
        let a = slow.borrow_mut().reserve();
        let b = slow.borrow_mut().reserve();
        slow.borrow_mut().complete(a, &[b's'; 6000]);
        assert_eq!(used.get(), 9000);
        slow.borrow_mut().complete(b, &[b's'; 2000]);
        assert_eq!(slow.borrow().overflow, Some(Overflow::Worker { held: 8000, limit: 10_000 }));
        assert_eq!(used.get(), 3000, "what the closed client held is freed");
        // One huge reply being written to a third client takes the worker over its bound again...
        let hog = budgeted(usize::MAX, 10_000, 4000, &used);
        let h = hog.borrow_mut().reserve();
        hog.borrow_mut().complete(h, &[b'h'; 9000]);
        hog.borrow_mut().take_out(&mut Vec::new());
        assert_eq!(used.get(), 12_000);
        // ...but a client holding less than the slow-client bound is not closed for it.
        let r = reader.borrow_mut().reserve();
        reader.borrow_mut().complete(r, &[b'r'; 500]);
        assert!(reader.borrow().overflow.is_none(), "over the worker bound, but under the slow-client bound");
        drop(reader);
        drop(slow);
        drop(hog);
        assert_eq!(used.get(), 0, "a queue dropped gives its bytes back");
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
