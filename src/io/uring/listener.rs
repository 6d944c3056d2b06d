//! A listening socket served by a multishot accept: one submission accepts connection after connection.

use super::{current, try_current, Reactor};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::os::unix::io::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};

pub(crate) struct ListenerIo {
    pub(super) fd: RawFd,
    /// Accepted descriptors (or accept errors) not yet taken by the accept loop.
    queue: RefCell<VecDeque<Result<RawFd, i32>>>,
    waker: Cell<Option<Waker>>,
    pub(super) slot: Cell<Option<usize>>,
    closed: Cell<bool>,
}

impl ListenerIo {
    pub(super) fn on_result(&self, result: i32) {
        if result >= 0 {
            if self.closed.get() {
                // SAFETY: a descriptor the kernel just gave us and nobody else knows.
                unsafe { libc::close(result) };
                return;
            }
            self.queue.borrow_mut().push_back(Ok(result));
        } else if result != -libc::ECANCELED {
            self.queue.borrow_mut().push_back(Err(-result));
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Drop for ListenerIo {
    fn drop(&mut self) {
        for fd in self.queue.borrow_mut().drain(..).flatten() {
            // SAFETY: accepted descriptors nobody took.
            unsafe { libc::close(fd) };
        }
        // SAFETY: our listening descriptor; the accept operation that used it has completed.
        unsafe { libc::close(self.fd) };
    }
}

/// Owns a listening socket; dropping it cancels the accept and closes the socket.
pub struct Listener {
    io: Rc<ListenerIo>,
}

impl Listener {
    /// Takes ownership of a bound, listening socket.
    pub fn from_fd(fd: OwnedFd) -> Listener {
        Listener {
            io: Rc::new(ListenerIo {
                fd: fd.into_raw_fd(),
                queue: RefCell::new(VecDeque::new()),
                waker: Cell::new(None),
                slot: Cell::new(None),
                closed: Cell::new(false),
            }),
        }
    }

    /// The next accepted connection's descriptor (non-blocking, close-on-exec).
    pub async fn accept(&self) -> io::Result<OwnedFd> {
        let io = &self.io;
        poll_fn(|cx| {
            if let Some(r) = io.queue.borrow_mut().pop_front() {
                // SAFETY: a descriptor the kernel just created for us, owned by nobody else.
                return Poll::Ready(
                    r.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).map_err(io::Error::from_raw_os_error),
                );
            }
            let reactor: Rc<Reactor> = current();
            reactor.note_activity();
            if io.slot.get().is_none() {
                // Armed lazily: after an error (out of descriptors, say) the loop pauses before asking again.
                reactor.arm_accept(io);
            }
            io.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.io.closed.set(true);
        if let (Some(slot), Some(reactor)) = (self.io.slot.get(), try_current()) {
            reactor.cancel(slot);
        }
    }
}
