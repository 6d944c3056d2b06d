//! A connected socket on the data path: a client connection or a backend connection.
//!
//! The receive side is a multishot receive armed once: the reactor appends what arrives to the connection's inbox
//! and wakes its reader, who copies it out. The inbox is bounded: past `PAUSE_AT` unread bytes the receive is
//! cancelled (the kernel's socket buffer and TCP flow control then push back on the peer), and re-armed once the
//! reader caught up. Sends own their buffer until the kernel is done with it, so a dropped future never leaves the
//! kernel reading freed memory.

use super::{current, try_current, Awaited, Reactor};
use crate::io::bufpool;
use io_uring::{opcode, types};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Unread bytes at which receiving pauses, and at which it resumes.
const PAUSE_AT: usize = 512 * 1024;
const RESUME_AT: usize = 64 * 1024;

/// The part the reactor's operations hold on to: the descriptor is closed when the last of them is done.
pub(crate) struct ConnIo {
    pub(super) fd: RawFd,
    inbox: RefCell<Vec<u8>>,
    head: Cell<usize>,
    eof: Cell<bool>,
    error: Cell<Option<i32>>,
    reader: Cell<Option<Waker>>,
    pub(super) recv_slot: Cell<Option<usize>>,
    paused: Cell<bool>,
    closed: Cell<bool>,
    /// Set by [`Conn::nudge_reader`]: the next read that finds nothing returns `Interrupted` instead of waiting.
    nudged: Cell<bool>,
    /// Bytes received and sent over the connection's life: progress, for timeouts that must not fire while a big
    /// request or reply is on its way.
    moved: Cell<u64>,
}

impl ConnIo {
    fn new(fd: RawFd) -> Rc<ConnIo> {
        Rc::new(ConnIo {
            fd,
            inbox: RefCell::new(Vec::new()),
            head: Cell::new(0),
            eof: Cell::new(false),
            error: Cell::new(None),
            reader: Cell::new(None),
            recv_slot: Cell::new(None),
            paused: Cell::new(false),
            closed: Cell::new(false),
            nudged: Cell::new(false),
            moved: Cell::new(0),
        })
    }

    pub(super) fn received(&self, data: &[u8]) {
        let mut inbox = self.inbox.borrow_mut();
        let head = self.head.get();
        // Drop what the reader already took once it is at least as much as what it has not: a client that streams
        // steadily never lets the inbox run empty, and without this it would keep every byte it ever sent. Moving
        // at most as many bytes as were consumed keeps this amortized O(1) per byte.
        if head > 0 && head >= inbox.len() - head {
            inbox.drain(..head);
            self.head.set(0);
        }
        if inbox.capacity() == 0 {
            // Bytes arrived on a connection that holds no buffer (it had read everything): take a spare one.
            *inbox = bufpool::take_for(data.len());
        }
        inbox.extend_from_slice(data);
        self.moved.set(self.moved.get() + data.len() as u64);
    }

    /// After a receive completion (its data already taken): note the end of stream or an error, re-arm a receive
    /// that ended while we still want data, pause one that is too far ahead of its reader, and wake the reader.
    pub(super) fn on_recv_result(self: &Rc<Self>, reactor: &Reactor, result: i32, more: bool) {
        match result {
            0 => self.eof.set(true),
            r if r > 0 => {}
            r if r == -libc::ENOBUFS || r == -libc::ECANCELED => {}
            r => self.error.set(Some(-r)),
        }
        let unread = self.inbox.borrow().len() - self.head.get();
        if more {
            if unread >= PAUSE_AT && !self.paused.get() {
                self.paused.set(true);
                if let Some(slot) = self.recv_slot.get() {
                    reactor.cancel(slot);
                }
            }
        } else if self.wants_data() && unread < PAUSE_AT {
            self.paused.set(false);
            reactor.arm_recv(self);
        }
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Hands up to `max` unread bytes to `sink`: how many, or `None` when there are none. An inbox read to the end
    /// gives its buffer back, so a connection between requests holds none.
    fn take_unread(&self, max: usize, sink: impl FnOnce(&[u8])) -> Option<usize> {
        let mut inbox = self.inbox.borrow_mut();
        let head = self.head.get();
        let unread = inbox.len() - head;
        if unread == 0 {
            return None;
        }
        let n = unread.min(max);
        sink(&inbox[head..head + n]);
        if n == unread {
            bufpool::give(std::mem::take(&mut *inbox));
            self.head.set(0);
        } else {
            self.head.set(head + n);
        }
        Some(n)
    }

    /// Arms the receive again when it has ended (paused, or out of buffers) while we still want data and the reader
    /// has caught up.
    fn resume_receiving(self: &Rc<Self>, reactor: &Reactor) {
        let unread = self.inbox.borrow().len() - self.head.get();
        if self.recv_slot.get().is_none() && self.wants_data() && unread < RESUME_AT {
            self.paused.set(false);
            reactor.arm_recv(self);
        }
    }

    fn set_reader(&self, waker: &Waker) {
        let w = self.reader.take();
        self.reader.set(Some(match w {
            Some(w) if w.will_wake(waker) => w,
            _ => waker.clone(),
        }));
    }

    fn wants_data(&self) -> bool {
        !self.closed.get() && !self.eof.get() && self.error.get().is_none()
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and nothing in the kernel refers to it any more (operations hold `Rc`s).
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// A cloneable handle to one connection; the connection closes when the last handle is dropped and the kernel has
/// finished with it.
#[derive(Clone)]
pub struct Conn(Rc<Handle>);

struct Handle {
    io: Rc<ConnIo>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.io.closed.set(true);
        if let (Some(slot), Some(reactor)) = (self.io.recv_slot.get(), try_current()) {
            reactor.cancel(slot);
        }
    }
}

impl Conn {
    /// Bytes received (whether read yet or not) and sent so far.
    pub fn bytes_moved(&self) -> u64 {
        self.0.io.moved.get()
    }

    /// Takes ownership of a connected, non-blocking stream socket (TCP or unix).
    pub fn from_fd(fd: OwnedFd) -> Conn {
        Conn(Rc::new(Handle { io: ConnIo::new(fd.into_raw_fd()) }))
    }

    /// Takes ownership of an accepted TCP socket: no Nagle delay for small replies.
    pub fn accepted_tcp(fd: OwnedFd) -> Conn {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a descriptor we own, with a valid int option.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Conn::from_fd(fd)
    }

    /// Turns TCP keepalive on (`tcpkeepalive`): the kernel's probes find a peer that vanished without a FIN.
    pub fn set_keepalive(&self) {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a descriptor we hold open, with a valid int option.
        unsafe {
            libc::setsockopt(
                self.0.io.fd,
                libc::SOL_SOCKET,
                libc::SO_KEEPALIVE,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Bytes received and not read yet.
    pub fn unread(&self) -> usize {
        self.0.io.inbox.borrow().len() - self.0.io.head.get()
    }

    /// Reads what is available (at least one byte, or 0 at end of stream).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Appends what is available to `buf`, at most its spare capacity (at least one byte, or 0 at end of stream).
    pub async fn read_append(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let max = buf.capacity() - buf.len();
        poll_fn(|cx| self.poll_take(cx, max, |bytes| buf.extend_from_slice(bytes))).await
    }

    /// Waits until a read would not wait: bytes are there, or the end of stream or an error. Lets a reader hold
    /// no buffer while its peer is quiet.
    pub async fn readable(&self) {
        let io = &self.0.io;
        poll_fn(|cx| {
            let reactor = current();
            io.resume_receiving(&reactor);
            // Nudged: the read that follows returns `Interrupted` (the flag stays set for it).
            if io.inbox.borrow().len() > io.head.get() || io.error.get().is_some() || io.eof.get() || io.nudged.get() {
                return Poll::Ready(());
            }
            reactor.note_activity();
            io.set_reader(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// [`Conn::read`] as a poll: ready with what the inbox holds, or pending with the task's waker kept (the TLS
    /// layer hands the inbox straight to rustls this way, without another buffer in between).
    pub fn poll_read(&self, cx: &mut std::task::Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let max = buf.len();
        self.poll_take(cx, max, |bytes| buf[..bytes.len()].copy_from_slice(bytes))
    }

    /// Hands at most `max` unread bytes to `sink` (called only when bytes are there), or reports the end of stream
    /// or an error, or keeps the task's waker and is pending.
    fn poll_take(
        &self,
        cx: &mut std::task::Context<'_>,
        max: usize,
        sink: impl FnOnce(&[u8]),
    ) -> Poll<io::Result<usize>> {
        let io = &self.0.io;
        let taken = io.take_unread(max, sink);
        let reactor = current();
        io.resume_receiving(&reactor);
        if let Some(n) = taken {
            return Poll::Ready(Ok(n));
        }
        if let Some(e) = io.error.get() {
            return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
        }
        if io.eof.get() {
            return Poll::Ready(Ok(0));
        }
        if io.nudged.replace(false) {
            return Poll::Ready(Err(io::ErrorKind::Interrupted.into()));
        }
        reactor.note_activity();
        io.set_reader(cx.waker());
        Poll::Pending
    }

    /// Sends the whole buffer and gives it back (cleared by nobody: the caller decides) for reuse.
    pub async fn send_all(&self, mut buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut sent = 0usize;
        while sent < buf.len() {
            let reactor = current();
            let fd = self.0.io.fd;
            let awaited = Awaited::holding(buf, Some(self.0.io.clone()), None);
            let op = reactor.submit_awaited(awaited, false, |a| {
                let chunk = &a.buf[sent..];
                let len = chunk.len().min(u32::MAX as usize) as u32;
                opcode::Send::new(types::Fd(fd), chunk.as_ptr(), len).flags(libc::MSG_NOSIGNAL).build()
            });
            drop(reactor);
            let (result, back) = op.await;
            buf = back;
            match result {
                n if n > 0 => {
                    sent += n as usize;
                    self.0.io.moved.set(self.0.io.moved.get() + n as u64);
                }
                0 => return (Err(io::Error::new(io::ErrorKind::WriteZero, "connection closed while writing")), buf),
                e => return (Err(io::Error::from_raw_os_error(-e)), buf),
            }
        }
        (Ok(()), buf)
    }

    /// The peer's address (for logs; `None` for a unix socket or a connection already gone).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        // SAFETY: the descriptor stays open while we hold a handle; the borrow ends with this call.
        let fd = unsafe { std::os::unix::io::BorrowedFd::borrow_raw(self.0.io.fd) };
        socket2::SockRef::from(&fd).peer_addr().ok().and_then(|a| a.as_socket())
    }

    /// Sends FIN after what was written; the peer still can send (we drain it before closing).
    pub fn shutdown_write(&self) {
        self.shutdown_how(libc::SHUT_WR);
    }

    /// Shuts the receive side down: a read waiting for the peer returns end of stream (after the bytes already
    /// received), while writing still works.
    pub fn shutdown_read(&self) {
        self.shutdown_how(libc::SHUT_RD);
    }

    /// Wakes a reader waiting for the peer without ending the stream: its read (or the next one that would wait)
    /// returns `ErrorKind::Interrupted` once, and the connection reads on as before. Used to tell the idle client
    /// sessions of a listener that closed to start draining (`session::Session::refill`): unlike a shutdown of
    /// the receive side, nothing the client sent, or sends next, is lost.
    pub fn nudge_reader(&self) {
        let io = &self.0.io;
        io.nudged.set(true);
        if let Some(w) = io.reader.take() {
            w.wake();
        }
    }

    /// Shuts both directions down so that the other task's pending read or write fails promptly.
    pub fn shutdown(&self) {
        self.shutdown_how(libc::SHUT_RDWR);
    }

    fn shutdown_how(&self, how: libc::c_int) {
        // SAFETY: the descriptor is open (we hold a reference); shutdown does not close it.
        unsafe {
            libc::shutdown(self.0.io.fd, how);
        }
    }
}

/// Connects to `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), None)?;
    sock.set_nodelay(true)?;
    let io = ConnIo::new(sock.into_raw_fd());
    let addr = Box::new(socket2::SockAddr::from(addr));
    let (ptr, len) = (addr.as_ptr(), addr.len());
    let fd = io.fd;
    let op = current().submit_awaited(Awaited::holding(Vec::new(), Some(io.clone()), Some(addr)), true, |_| {
        opcode::Connect::new(types::Fd(fd), ptr, len).build()
    });
    match super::timeout(timeout, op).await {
        Some((0, _)) => Ok(Conn(Rc::new(Handle { io }))),
        Some((e, _)) => Err(io::Error::from_raw_os_error(-e)),
        None => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}
