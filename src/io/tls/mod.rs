//! TLS on the data path: the stream a session or backend connection reads and writes, plain or TLS, and the
//! handshakes that start them. The plain case is a match on the enum and nothing more: no extra copy, no extra
//! buffer. rustls configs are built per worker (`crate::tls::for_worker_*`), so no TLS state is shared between
//! cores.

mod stats;
mod stream;

pub use stats::snapshot;
use stats::{log_client_failure, Side};
pub use stream::TlsStream;

use super::uring::{self, Conn};
use crate::tls::Failure;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A data-path connection: its bytes in the clear, or through TLS.
#[derive(Clone)]
pub enum Stream {
    Plain(Conn),
    Tls(Rc<Tls>),
}

/// A TLS connection of the data path; counted open until the last handle is dropped.
pub struct Tls {
    stream: TlsStream<Conn>,
    side: Side,
}

impl Drop for Tls {
    fn drop(&mut self) {
        stats::connection_closed(self.side);
    }
}

impl Stream {
    /// Reads what is available (at least one byte, or 0 at end of stream).
    #[inline]
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(c) => c.read(buf).await,
            Stream::Tls(t) => {
                let read = t.stream.read(buf).await;
                if let Some(cause) = t.stream.take_late_failure() {
                    stats::handshake_failed(t.side, cause);
                }
                read
            }
        }
    }

    /// Appends what is available to `buf`, at most its spare capacity (at least one byte, or 0 at end of stream).
    #[inline]
    pub async fn read_append(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Stream::Plain(c) => c.read_append(buf).await,
            Stream::Tls(_) => {
                // rustls copies into a slice: lend it the spare capacity, zeroed, and keep what it wrote.
                let len = buf.len();
                buf.resize(buf.capacity(), 0);
                let read = self.read(&mut buf[len..]).await;
                buf.truncate(len + *read.as_ref().unwrap_or(&0));
                read
            }
        }
    }

    /// Waits until a read would not wait for the peer, so a quiet client can be waited on holding no buffer. TLS:
    /// ready at once when rustls holds plaintext it decrypted and has not handed out (it arrived with an earlier
    /// read), else when the socket has bytes, an end or an error (a read may then still wait for the rest of a
    /// record).
    #[inline]
    pub async fn readable(&self) {
        match self {
            Stream::Plain(c) => c.readable().await,
            Stream::Tls(t) => {
                if !t.stream.has_buffered() {
                    t.stream.transport().readable().await;
                }
            }
        }
    }

    /// Sends the whole buffer and gives it back for reuse.
    #[inline]
    pub async fn send_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Stream::Plain(c) => c.send_all(buf).await,
            Stream::Tls(t) => t.stream.send_all(buf).await,
        }
    }

    /// The socket beneath.
    pub fn conn(&self) -> &Conn {
        match self {
            Stream::Plain(c) => c,
            Stream::Tls(t) => t.stream.transport(),
        }
    }

    /// Ends the write side after what was written: close_notify first for TLS, then FIN.
    pub async fn finish_writes(&self) {
        if let Stream::Tls(t) = self {
            t.stream.close_notify().await;
        }
        self.conn().shutdown_write();
    }

    pub fn shutdown(&self) {
        self.conn().shutdown();
    }
}

/// A listener's TLS, as one worker holds it.
#[derive(Clone)]
pub struct Acceptor {
    pub config: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
}

/// Completes a client's handshake, bounded by the listener's handshake timeout. A failure is counted and logged
/// (rate-limited) here; the caller just closes the connection.
pub async fn accept(conn: Conn, acceptor: &Acceptor, listener: &str, peer: impl Fn() -> String) -> Option<Stream> {
    let server = match rustls::ServerConnection::new(acceptor.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("listener {listener}: cannot start a TLS session: {e}");
            return None;
        }
    };
    let stream = TlsStream::new(conn, server.into());
    let failure = match uring::timeout(acceptor.handshake_timeout, stream.handshake()).await {
        Some(Ok(())) => {
            stats::handshake_done(Side::Client);
            return Some(Stream::Tls(Rc::new(Tls { stream, side: Side::Client })));
        }
        Some(Err(e)) => (e.cause(), e.to_string()),
        None => {
            (Failure::Timeout, format!("no complete handshake within {} ms", acceptor.handshake_timeout.as_millis()))
        }
    };
    stats::handshake_failed(Side::Client, failure.0);
    let line = || format!("listener {listener}: TLS handshake with {} failed: {}", peer(), failure.1);
    if failure.0 == Failure::Closed {
        // TCP health checks and port probes connect and leave: not worth a warning each.
        log::debug!("{}", line());
    } else {
        log_client_failure(line);
    }
    stream.transport().shutdown();
    None
}

/// A pool's TLS, as one worker holds it, for one server.
#[derive(Clone)]
pub struct Connector {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// Completes the handshake with a backend within `timeout`; the error is the cause, for the backend's fault
/// message ("TLS handshake failed: ...").
pub async fn connect(conn: Conn, connector: &Connector, timeout: Duration) -> Result<Stream, String> {
    let client = rustls::ClientConnection::new(connector.config.clone(), connector.server_name.clone())
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let stream = TlsStream::new(conn, client.into());
    let (cause, why) = match uring::timeout(timeout, stream.handshake()).await {
        Some(Ok(())) => {
            stats::handshake_done(Side::Backend);
            return Ok(Stream::Tls(Rc::new(Tls { stream, side: Side::Backend })));
        }
        Some(Err(e)) => (e.cause(), e.to_string()),
        None => (Failure::Timeout, format!("no complete handshake within {} ms", timeout.as_millis())),
    };
    stats::handshake_failed(Side::Backend, cause);
    stream.transport().shutdown();
    Err(format!("TLS handshake failed: {why}"))
}
