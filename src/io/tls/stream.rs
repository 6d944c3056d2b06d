//! One TLS connection over a transport that moves bytes: rustls holds the session state, the transport's own
//! receive and send paths carry the ciphertext. On the data path the transport is the ring's `Conn`: what the
//! multishot receive put in the connection's inbox is handed to rustls directly (`read_tls` reads the inbox), and
//! records go out through `send_all`, batched with every other send of the pass. No thread, no socket of rustls's.
//!
//! A session's reader and writer are two tasks on one core. rustls is borrowed only between awaits, and one send is
//! in flight at a time (the send lane): the reader also sends, after a handshake message or an alert, and two
//! interleaved sends would corrupt the record stream.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::task::{Context, Poll, Waker};

/// What a TLS connection needs of the connection beneath it.
pub trait Transport {
    /// Ready with what has arrived (0 at end of stream), or pending with the task's waker kept.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Sends all of `buf`, and gives it back for reuse.
    fn send_all(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)>;
}

impl Transport for crate::io::uring::Conn {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        crate::io::uring::Conn::poll_read(self, cx, buf)
    }

    fn send_all(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)> {
        crate::io::uring::Conn::send_all(self, buf)
    }
}

/// Control's sockets (health probes).
impl Transport for crate::io::stream::Conn {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        crate::io::stream::Conn::poll_read(self, cx, buf)
    }

    async fn send_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        (self.write_all(&buf).await, buf)
    }
}

/// A ciphertext buffer that grew for one large write is dropped afterwards rather than kept for the connection's
/// life.
const OUT_KEEP: usize = 64 * 1024;

/// A failed handshake: rustls's verdict, or the transport's.
#[derive(Debug)]
pub enum HandshakeError {
    Tls(rustls::Error),
    /// The peer closed before the handshake completed (`None`), or the transport failed.
    Closed(Option<io::Error>),
}

impl HandshakeError {
    pub fn cause(&self) -> crate::tls::Failure {
        match self {
            HandshakeError::Tls(e) => crate::tls::Failure::of(e),
            HandshakeError::Closed(_) => crate::tls::Failure::Closed,
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Tls(e) => f.write_str(&crate::tls::describe(e)),
            HandshakeError::Closed(None) => f.write_str("the peer closed the connection during the handshake"),
            HandshakeError::Closed(Some(e)) => write!(f, "the connection failed during the handshake: {e}"),
        }
    }
}

pub struct TlsStream<T> {
    io: T,
    tls: RefCell<rustls::Connection>,
    /// A send is in flight; others wait in `lane_waiters`.
    sending: Cell<bool>,
    lane_waiters: RefCell<Vec<Waker>>,
    out: Cell<Vec<u8>>,
    /// Some plaintext was read: a TLS error from now on is not part of the handshake.
    got_data: Cell<bool>,
    late_failure: Cell<Option<crate::tls::Failure>>,
}

/// Hands the transport to rustls's `read_tls` as an `io::Read`: pending becomes `WouldBlock` (the waker is kept).
struct Source<'a, 'c, T> {
    io: &'a T,
    cx: &'a mut Context<'c>,
}

impl<T: Transport> Read for Source<'_, '_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io.poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl<T: Transport> TlsStream<T> {
    pub fn new(io: T, mut tls: rustls::Connection) -> TlsStream<T> {
        // No bound on what rustls buffers for sending: every write is flushed at once, and the session and backend
        // already bound what they queue.
        tls.set_buffer_limit(None);
        TlsStream {
            io,
            tls: RefCell::new(tls),
            sending: Cell::new(false),
            lane_waiters: RefCell::new(Vec::new()),
            out: Cell::new(Vec::new()),
            got_data: Cell::new(false),
            late_failure: Cell::new(None),
        }
    }

    /// The handshake failure found after the handshake seemed done (see [`TlsStream::read`]), once.
    pub fn take_late_failure(&self) -> Option<crate::tls::Failure> {
        self.late_failure.take()
    }

    pub fn transport(&self) -> &T {
        &self.io
    }

    /// Runs the handshake to its end (the caller bounds it in time).
    pub async fn handshake(&self) -> Result<(), HandshakeError> {
        loop {
            self.flush().await.map_err(|e| HandshakeError::Closed(Some(e)))?;
            if !self.tls.borrow().is_handshaking() {
                return Ok(());
            }
            match self.receive().await {
                Ok(0) => return Err(HandshakeError::Closed(None)),
                Ok(_) => {}
                Err(e) => return Err(HandshakeError::Closed(Some(e))),
            }
            // Not borrowed across the flush below (an `if let` would hold the borrow through its body).
            let processed = self.tls.borrow_mut().process_new_packets().map(|_| ());
            if let Err(e) = processed {
                // The alert rustls queued tells the peer why.
                let _ = self.flush().await;
                return Err(HandshakeError::Tls(e));
            }
        }
    }

    /// Moves what has arrived into rustls: how many bytes (0 at end of stream).
    async fn receive(&self) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut tls = self.tls.borrow_mut();
            match tls.read_tls(&mut Source { io: &self.io, cx }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                r => Poll::Ready(r),
            }
        })
        .await
    }

    /// Reads plaintext: at least one byte, or 0 at end of stream (with or without the peer's close_notify: clients
    /// that just close are common, and a plaintext connection ends the same way).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let read = self.tls.borrow_mut().reader().read(buf);
            match read {
                Ok(n) => {
                    self.got_data.set(true);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            self.receive().await?;
            let processed = self.tls.borrow_mut().process_new_packets().map(|_| ());
            // Whatever the records asked for (a key update, an alert on error) goes out before we go on.
            self.flush().await?;
            if let Err(e) = processed {
                if !self.got_data.get() {
                    // TLS 1.3 ends the handshake on our side before the server has checked our certificate: its
                    // refusal arrives as the first record after. That is a failed handshake, and says so.
                    self.late_failure.set(Some(crate::tls::Failure::of(&e)));
                    return Err(io::Error::other(format!("TLS handshake failed: {}", crate::tls::describe(&e))));
                }
                return Err(tls_error(e));
            }
        }
    }

    /// rustls holds decrypted plaintext not read yet, or has seen the stream end or fail: a read would not wait for
    /// the transport. Every read processes what it received before it returns, so this only reports that state.
    pub fn has_buffered(&self) -> bool {
        match self.tls.borrow_mut().process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }

    /// Encrypts and sends all of `buf`; gives it back for reuse.
    pub async fn send_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let written = self.tls.borrow_mut().writer().write_all(&buf);
        if let Err(e) = written {
            return (Err(e), buf);
        }
        (self.flush().await, buf)
    }

    /// Sends close_notify (best effort) so the peer knows the stream ended here and was not cut.
    pub async fn close_notify(&self) {
        self.tls.borrow_mut().send_close_notify();
        let _ = self.flush().await;
    }

    /// Sends every record rustls has ready, one send at a time per connection.
    async fn flush(&self) -> io::Result<()> {
        if !self.tls.borrow().wants_write() {
            return Ok(());
        }
        poll_fn(|cx| {
            if self.sending.replace(true) {
                self.lane_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let _lane = Lane(self);
        loop {
            let mut out = self.out.take();
            out.clear();
            {
                let mut tls = self.tls.borrow_mut();
                while tls.wants_write() {
                    tls.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                self.out.set(out);
                return Ok(());
            }
            let (result, mut back) = self.io.send_all(out).await;
            if back.capacity() > OUT_KEEP {
                back = Vec::new();
            }
            self.out.set(back);
            result?;
        }
    }
}

/// The send lane, released (and its waiters woken) when the sender is done or its future dropped.
struct Lane<'a, T>(&'a TlsStream<T>);

impl<T> Drop for Lane<'_, T> {
    fn drop(&mut self) {
        self.0.sending.set(false);
        for w in self.0.lane_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}
