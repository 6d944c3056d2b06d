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
    /// Handing over (see [`AcceptStop`]): the accept is cancelled and not armed again; what it accepted before the
    /// cancellation took effect is still served.
    stopping: Cell<bool>,
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

    /// After a hand-over's cancellation: a connection still waiting in the socket's queue, taken without waiting
    /// (`None` once the queue is empty).
    ///
    /// An io_uring accept waits on the listening socket as an exclusive waiter (`EPOLLEXCLUSIVE`: each new
    /// connection wakes one waiter), and ours was armed before the successor's, so every connection wakes ours
    /// alone for as long as it is armed. One that arrives after our last accept and before the cancellation takes
    /// effect wakes our accept, which the cancellation then discards without taking the connection: no other waiter
    /// was woken for it, so it would wait in the queue until the next connection to this socket wakes the
    /// successor (for ever on a quiet listener). Our accept is off the socket by now, so every later connection
    /// wakes the successor; what is in the queue is taken here and served like the connections accepted before.
    /// One system call per hand-over and listening socket, plus one per connection taken: never on the request path.
    fn take_left_behind(&self) -> io::Result<Option<OwnedFd>> {
        // SAFETY: fcntl on our listening descriptor. The sockets are bound non-blocking, but a descriptor passed by
        // another process is made so here in any case: a blocking accept would hold this core if the successor
        // took the last connection first.
        unsafe {
            let flags = libc::fcntl(self.fd, libc::F_GETFL);
            if flags >= 0 && flags & libc::O_NONBLOCK == 0 {
                libc::fcntl(self.fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        loop {
            // SAFETY: accept4 on our listening descriptor; the result is a new descriptor we own.
            let fd = unsafe {
                libc::accept4(
                    self.fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: just accepted, owned by nobody else.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Interrupted, or a connection that was reset before we took it: the next one.
                Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                // Out of descriptors or memory: the accept loop pauses and asks again.
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => return Err(e),
                // Empty (or the successor took the rest), or the socket no longer listens: done.
                _ => return Ok(None),
            }
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
                stopping: Cell::new(false),
            }),
        }
    }

    /// A handle that stops this listener's accepting without losing a connection (see [`AcceptStop::stop`]).
    pub fn stop_handle(&self) -> AcceptStop {
        AcceptStop(self.io.clone())
    }

    /// The next accepted connection's descriptor (non-blocking, close-on-exec). After [`AcceptStop::stop`], once
    /// every connection accepted before the cancellation and every one left in the socket's queue was taken:
    /// `ECANCELED`.
    pub async fn accept(&self) -> io::Result<OwnedFd> {
        let io = &self.io;
        poll_fn(|cx| {
            if let Some(r) = io.queue.borrow_mut().pop_front() {
                // SAFETY: a descriptor the kernel just created for us, owned by nobody else.
                return Poll::Ready(
                    r.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).map_err(io::Error::from_raw_os_error),
                );
            }
            if io.stopping.get() && io.slot.get().is_none() {
                // Stopped, and the last completion of the accept (the cancellation) has arrived: the kernel takes
                // nothing more for us. What its cancellation left in the socket's queue is still ours to serve.
                return Poll::Ready(match io.take_left_behind() {
                    Ok(Some(fd)) => Ok(fd),
                    Ok(None) => Err(io::Error::from_raw_os_error(libc::ECANCELED)),
                    Err(e) => Err(e),
                });
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

/// Stops a listener's accepting for a hand-over to another process that serves the same socket: unlike dropping the
/// [`Listener`] (which closes what its multishot accept still delivers until the kernel sees the cancellation),
/// every connection accepted before the cancellation took effect is still handed to the accept loop, then the
/// connections still waiting in the socket's queue (see `ListenerIo::take_left_behind`), and the socket stays open
/// for the other process.
pub struct AcceptStop(Rc<ListenerIo>);

impl AcceptStop {
    pub fn stop(&self) {
        let io = &self.0;
        if io.stopping.replace(true) {
            return;
        }
        match (io.slot.get(), try_current()) {
            (Some(slot), Some(reactor)) => reactor.cancel(slot),
            _ => {
                if let Some(w) = io.waker.take() {
                    w.wake();
                }
            }
        }
    }
}
