//! The provided-buffer ring that multishot receives draw from.
//!
//! Every connection's receive is armed once and then delivers whatever arrives into a buffer the kernel picks from
//! this shared pool, so idle connections pin no receive memory and a read costs no system call. A completion names
//! the buffer it filled; we copy the bytes out to the connection and hand the buffer straight back.

use io_uring::types::BufRingEntry;
use io_uring::IoUring;
use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// The buffer group id every multishot receive names.
pub const GROUP: u16 = 0;

pub struct BufRing {
    /// The ring of entries shared with the kernel (page-aligned, `entries` long).
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    /// The buffers themselves: `entries` slices of `buf_len` bytes, written by the kernel (hence a raw mapping, not
    /// a Rust-owned slice).
    memory: *mut u8,
    entries: u16,
    buf_len: usize,
    /// Our producer index: entries we published so far (wraps at 2^16 like the kernel's).
    tail: Cell<u16>,
}

impl BufRing {
    /// Allocates `entries` (a power of two) buffers of `buf_len` bytes and registers them with `ring`.
    pub fn new(ring: &IoUring, entries: u16, buf_len: usize) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let ring_bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let ptr = map(ring_bytes)?;
        let memory = match map(entries as usize * buf_len) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: the mapping made just above.
                unsafe { libc::munmap(ptr, ring_bytes) };
                return Err(e);
            }
        };
        let this =
            BufRing { ring: ptr.cast(), ring_bytes, memory: memory.cast(), entries, buf_len, tail: Cell::new(0) };
        // SAFETY: the mapping lives as long as `this`, which the reactor drops only after the ring itself.
        unsafe { ring.submitter().register_buf_ring_with_flags(ptr as u64, entries, GROUP, 0)? };
        for bid in 0..entries {
            this.push(bid);
        }
        this.publish();
        Ok(this)
    }

    /// Hands the `len` bytes the kernel wrote into buffer `bid` to `consume`, then gives the buffer back to the
    /// kernel. One call for both, so nobody can hold on to the bytes after the kernel may write there again.
    pub fn consume(&self, bid: u16, len: usize, consume: impl FnOnce(&[u8])) {
        if bid >= self.entries {
            return;
        }
        // SAFETY: within the mapping; the kernel is done with a buffer once it reported it filled, and gets it back
        // only through `recycle` below, after `consume` returned (the slice does not outlive this call).
        let bytes =
            unsafe { std::slice::from_raw_parts(self.memory.add(bid as usize * self.buf_len), len.min(self.buf_len)) };
        consume(bytes);
        self.recycle(bid);
    }

    /// Gives buffer `bid` back to the kernel.
    fn recycle(&self, bid: u16) {
        if bid < self.entries {
            self.push(bid);
            self.publish();
        }
    }

    fn push(&self, bid: u16) {
        let index = self.tail.get() & (self.entries - 1);
        // SAFETY: `index` is within the mapping; only the producer (us) writes entries the kernel does not own.
        let entry = unsafe { &mut *self.ring.add(index as usize) };
        entry.set_addr(self.memory as u64 + bid as u64 * self.buf_len as u64);
        entry.set_len(self.buf_len as u32);
        entry.set_bid(bid);
        self.tail.set(self.tail.get().wrapping_add(1));
    }

    fn publish(&self) {
        // The kernel reads the tail concurrently: the entry writes must be visible before it (a release store, a
        // plain store on x86).
        // SAFETY: the tail field lives in the first entry of our mapping, which is suitably aligned for u16.
        let tail = unsafe { &*(BufRingEntry::tail(self.ring) as *const AtomicU16) };
        tail.store(self.tail.get(), Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the ring that used it is gone (see `Reactor`'s field order).
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
            libc::munmap(self.memory.cast(), self.entries as usize * self.buf_len);
        }
    }
}

/// An anonymous private read-write mapping (page-aligned, as the kernel requires for the entry ring).
fn map(bytes: usize) -> io::Result<*mut libc::c_void> {
    // SAFETY: a fresh anonymous mapping; checked for failure.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(ptr)
    }
}
