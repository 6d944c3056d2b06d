//! A TCP connection on the control executor (admin HTTP, health probes), where glommio's own sockets are fine: this
//! traffic is rare. The data path uses [`super::uring::Conn`] instead.
//!
//! The stream sits in an `Rc<RefCell<..>>` borrowed only inside `poll_*`, never across an await point, so clones of
//! the handle can read and write from different tasks without locks.

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;

/// A cloneable handle to one connection.
#[derive(Clone)]
pub struct Conn(Rc<RefCell<TcpStream>>);

impl Conn {
    pub fn tcp(s: TcpStream) -> Conn {
        let _ = s.set_nodelay(true);
        Conn(Rc::new(RefCell::new(s)))
    }

    /// Reads what is available (at least one byte, or 0 at end of stream).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    pub fn poll_read(&self, cx: &mut std::task::Context<'_>, buf: &mut [u8]) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }

    /// Writes the whole buffer.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "connection closed while writing"));
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Shuts both directions down so that the other task's pending read or write fails promptly.
    pub fn shutdown(&self) {
        // SAFETY: the descriptor is owned by the stream we hold a reference to; shutdown does not close it.
        unsafe {
            libc::shutdown(self.0.borrow().as_raw_fd(), libc::SHUT_RDWR);
        }
    }
}
