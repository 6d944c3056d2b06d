//! Each worker's spare I/O buffers: a connection takes one when bytes arrive or replies are ready and gives it
//! back once they are consumed or written, so an idle connection holds no buffer at all (thousands of idle clients
//! must not each pin 16 KiB or more), and a busy one costs a pop and a push, never an allocation.
//!
//! The pool is per thread (a worker's tasks all run on its thread; no locks, no atomics) and bounded: beyond
//! [`KEEP`] spare buffers, what comes back is freed, so a burst of many busy connections leaves no standing
//! memory behind. A buffer that grew past [`BUF_SIZE`] (one big request or reply) is freed rather than kept.

use std::cell::{Cell, RefCell};

/// The size of a pooled buffer: one provided receive buffer's worth, enough for most requests and replies whole.
pub const BUF_SIZE: usize = 16 * 1024;

/// Spare buffers each worker keeps: 1 MiB. Enough for the buffers that are in use at the same moment on a busy
/// worker (a connection holds one only between the arrival of bytes and their consumption), small against the
/// figure RSS returns to after a flood of clients.
pub const KEEP: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Pool-sized buffers freed because the pool was full: after a burst, the worker's tick gives the memory back.
    static FREED: Cell<u64> = const { Cell::new(0) };
}

/// Pool-sized buffers this thread freed so far (the pool was full when they came back).
pub fn freed() -> u64 {
    FREED.with(|f| f.get())
}

/// An empty buffer with room for [`BUF_SIZE`] bytes: a spare one, or a new one when there is none.
#[cfg(test)]
pub fn take() -> Vec<u8> {
    take_for(BUF_SIZE)
}

/// What a buffer taken for at most this many bytes is when there is no spare one (a burst of clients emptied the
/// pool): a small one, not a pool-sized one.
pub const SMALL_BUF_SIZE: usize = 1024;

/// A buffer for `len` bytes (more may follow): a spare one when there is one, else a new one, pool-sized unless
/// `len` fits in [`SMALL_BUF_SIZE`]. Thousands of clients that connect and send a short request at once would
/// otherwise each take a new 16 KiB buffer for a few bytes, allocated between the clients' long-lived state; once
/// given back those buffers leave holes whose partly used pages stay resident (measured: 1.3 KB per idle client,
/// docs/architecture.md). A small buffer that is given back is freed; one that must grow grows as any `Vec`.
pub fn take_for(len: usize) -> Vec<u8> {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(if len <= SMALL_BUF_SIZE { SMALL_BUF_SIZE } else { BUF_SIZE }))
}

/// Gives a buffer back (its contents are dropped): kept when it is pool-sized and the pool has room, else freed.
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() != BUF_SIZE {
        return;
    }
    buf.clear();
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < KEEP {
            spare.push(buf);
        } else {
            FREED.with(|f| f.set(f.get() + 1));
        }
    });
}

/// Spare buffers held by this thread now.
#[cfg(test)]
pub fn spare() -> usize {
    SPARE.with(|s| s.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let a = take();
        assert!(a.is_empty() && a.capacity() == BUF_SIZE);
        let ptr = a.as_ptr();
        give(a);
        let b = take();
        assert_eq!(b.as_ptr(), ptr, "the spare buffer is handed out again");
        give(b);
        let many: Vec<Vec<u8>> = (0..KEEP + 10).map(|_| take()).collect();
        for b in many {
            give(b);
        }
        assert_eq!(spare(), KEEP);
    }

    #[test]
    fn grown_or_foreign_buffers_are_freed() {
        let before = spare();
        let mut big = take();
        big.resize(BUF_SIZE + 1, 0);
        give(big);
        give(Vec::with_capacity(100));
        give(Vec::new());
        assert_eq!(spare(), before);
        let mut used = take();
        used.extend_from_slice(b"hello");
        give(used);
        assert!(take().is_empty(), "what comes back is cleared");
    }

    #[test]
    fn an_empty_pool_hands_out_small_buffers_for_small_needs() {
        let held: Vec<Vec<u8>> = (0..spare()).map(|_| take()).collect();
        assert_eq!(spare(), 0);
        assert_eq!(take_for(22).capacity(), SMALL_BUF_SIZE);
        assert_eq!(take_for(SMALL_BUF_SIZE + 1).capacity(), BUF_SIZE);
        for b in held {
            give(b);
        }
        give(take_for(22));
        assert_eq!(spare(), 0, "a small buffer given back is freed, not kept");
        give(Vec::with_capacity(BUF_SIZE));
        assert_eq!(take_for(22).capacity(), BUF_SIZE, "a spare buffer is used whatever the need");
    }
}
