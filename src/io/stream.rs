//! A socket shared by a reader task and a writer task on the same executor.
//!
//! glommio streams keep separate poll sources for the receive and send sides, so one task may wait to read while
//! another waits to write. We hold the stream in an `Rc<RefCell<..>>` and borrow it only inside `poll_*`, never across
//! an await point, which makes the split free: no locks, no dup'd descriptors.

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpStream, UnixStream};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;

pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A cloneable handle to one connection.
#[derive(Clone)]
pub struct Conn(Rc<RefCell<Socket>>);

impl Conn {
    pub fn tcp(s: TcpStream) -> Conn {
        let _ = s.set_nodelay(true);
        Conn(Rc::new(RefCell::new(Socket::Tcp(s))))
    }

    pub fn unix(s: UnixStream) -> Conn {
        Conn(Rc::new(RefCell::new(Socket::Unix(s))))
    }

    /// Reads what is available (at least one byte, or 0 at end of stream).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| match &mut *self.0.borrow_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        })
        .await
    }

    /// Writes the whole buffer.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = poll_fn(|cx| match &mut *self.0.borrow_mut() {
                Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
                Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            })
            .await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "connection closed while writing"));
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Shuts the receive side down: a read waiting for the peer returns end of stream (after the bytes already
    /// received), while writing still works. Used to wake idle client sessions whose listener closed.
    /// Sends FIN after what was written; the peer still can send (we drain it before closing).
    pub fn shutdown_write(&self) {
        match &*self.0.borrow() {
            Socket::Tcp(s) => {
                // SAFETY: as in `shutdown`.
                unsafe {
                    libc::shutdown(s.as_raw_fd(), libc::SHUT_WR);
                }
            }
            Socket::Unix(s) => {
                let _ = futures_lite::future::block_on(s.shutdown(std::net::Shutdown::Write));
            }
        }
    }

    pub fn shutdown_read(&self) {
        match &*self.0.borrow() {
            Socket::Tcp(s) => {
                // SAFETY: as in `shutdown`.
                unsafe {
                    libc::shutdown(s.as_raw_fd(), libc::SHUT_RD);
                }
            }
            Socket::Unix(s) => {
                let _ = futures_lite::future::block_on(s.shutdown(std::net::Shutdown::Read));
            }
        }
    }

    /// Shuts both directions down so that the other task's pending read or write fails promptly.
    pub fn shutdown(&self) {
        match &*self.0.borrow() {
            Socket::Tcp(s) => {
                // SAFETY: the descriptor is owned by the socket we hold a reference to; shutdown does not close it.
                unsafe {
                    libc::shutdown(s.as_raw_fd(), libc::SHUT_RDWR);
                }
            }
            Socket::Unix(s) => {
                // glommio emulates shutdown synchronously: this future is ready on its first poll.
                let _ = futures_lite::future::block_on(s.shutdown(std::net::Shutdown::Both));
            }
        }
    }
}
