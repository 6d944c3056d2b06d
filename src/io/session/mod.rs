//! Client sessions: one task per client connection, whose future has a reader half (parse, route, queue on
//! backends) and a writer half (replies, in order); see `serve`.

mod memcache;
mod redis;
mod routed;

pub(crate) use redis::{cluster_subscriptions_moved, subscriptions_moved};

use super::backend::Backend;
use super::bufpool;
use super::replies::{ClientLimits, ClientRef, Overflow, ReplyQueue};
use super::stats::ListenerStatsRef;
use super::tls::Stream;
use super::uring;
use super::worker::{ListenerSlot, Worker};
use crate::config::Protocol;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

/// What a session's reader needs: its worker, its listener, its reply queue and connection.
pub struct Session {
    pub worker: Rc<Worker>,
    pub listener: Rc<ListenerSlot>,
    pub conn: Stream,
    pub q: ClientRef,
    pub id: u64,
    pub authed: bool,
    /// Redis: authenticated as a user with `permissions = "read-only"`.
    pub read_only: bool,
    /// Redis: the name, library and user CLIENT SETNAME / SETINFO / AUTH gave; `None` until one is set.
    pub meta: Option<Box<crate::protocol::redis::ClientMeta>>,
    /// The RESP version this redis client chose with `HELLO` (RESP2 until then; memcache sessions ignore it).
    pub proto: crate::protocol::redis::Proto,
    /// This listener's figures on this worker (requests, latencies, connection lifecycle).
    pub meters: ListenerStatsRef,
}

/// After a reader parsed what it had: whether to parse again or stop.
pub enum Next {
    Parse,
    Stop,
}

impl Session {
    /// Queues a reply made by the proxy (errors, PING, ...), in order behind what is in flight.
    pub fn local(&self, reply: &[u8]) {
        self.q.borrow_mut().push_local(reply);
    }

    /// Waits while this client has too many requests in flight or too many reply bytes it has not read
    /// (backpressure: we stop reading it).
    async fn wait_until_unsaturated(&self, limits: ClientLimits) {
        let mut counted = false;
        poll_fn(|cx| {
            let mut q = self.q.borrow_mut();
            if !q.saturated(limits) || q.closed {
                Poll::Ready(())
            } else {
                if !counted {
                    counted = true;
                    self.meters.borrow_mut().clients.backpressured += 1;
                }
                q.set_reader_waker(cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits until every request of this client has its reply (or the client is gone).
    async fn wait_for_replies(&self) {
        poll_fn(|cx| {
            let mut q = self.q.borrow_mut();
            if q.inflight() == 0 || q.closed {
                Poll::Ready(())
            } else {
                // The writer wakes the reader each time it takes replies, the last one included.
                q.set_reader_waker(cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits out backend backpressure, then reads more from the client (unless it is at its in-flight bound, when
    /// the caller's loop waits for replies to drain first). Shared by both protocols' readers.
    ///
    /// Once the listener is closed (shutdown, a hand-over to a new process, a reload that removed it), the session
    /// drains instead ([`Session::fill_draining`]): it goes on reading and answering what its client sends, and
    /// stops only at a boundary where nothing is lost.
    pub async fn refill(&self, inb: &mut InBuf, blocked_on: Option<Rc<Backend>>, limits: ClientLimits) -> Next {
        if let Some(b) = blocked_on {
            b.drained().await;
        }
        if self.q.borrow().saturated(limits) {
            return Next::Parse;
        }
        if self.listener.is_closed() {
            // Boxed: its timers exist only while the process drains, not in every client's future.
            return match Box::pin(self.fill_draining(inb)).await {
                Some(filled) => self.filled(filled),
                None => Next::Stop,
            };
        }
        let filled = match self.listener.idle_timeout_ms.get() {
            0 => inb.fill(&self.conn).await,
            // Boxed (one allocation per wait, on listeners with `client_idle_timeout_ms` only): the timer and the
            // read it bounds would otherwise be part of every client's future.
            ms => match Box::pin(self.fill_unless_idle(inb, std::time::Duration::from_millis(ms))).await {
                Some(filled) => filled,
                None => {
                    self.meters.borrow_mut().clients.idle_timeouts += 1;
                    return Next::Stop;
                }
            },
        };
        self.filled(filled)
    }

    /// What a read's result means for the reader.
    fn filled(&self, filled: std::io::Result<usize>) -> Next {
        if self.q.borrow().overflow.is_some() {
            // Closed for holding too many reply bytes (its socket was shut down): counted as that, not as an end.
            return Next::Stop;
        }
        match filled {
            Ok(0) => {
                self.meters.borrow_mut().clients.eof += 1;
                Next::Stop
            }
            // The worker nudged a waiting read (the listener closed): parse, then read on (draining).
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Next::Parse,
            Err(_) => {
                self.meters.borrow_mut().clients.errors += 1;
                Next::Stop
            }
            Ok(_) => Next::Parse,
        }
    }
}

/// While draining, how long a client must stay quiet (nothing received, every request answered) to be closed:
/// long enough that a client pipelining over its connection is never closed between writing a request and
/// reading its reply (docs/operations.md, "What happens to connected clients").
pub const DRAIN_QUIET: std::time::Duration = std::time::Duration::from_millis(100);
/// The same for a connection that has not sent a byte yet: a client that has just connected (to the old process,
/// as the successor took over) is about to send its first request, and may be slow to on a loaded host.
const DRAIN_QUIET_FIRST: std::time::Duration = std::time::Duration::from_secs(1);

impl Session {
    /// A closed listener's read: what arrives from the client, until a boundary where closing loses nothing. The
    /// session is closed (`None`) when its client has been quiet for [`DRAIN_QUIET`] ([`DRAIN_QUIET_FIRST`] for a
    /// connection that never sent anything): nothing received for that long, counted from the moment the last
    /// request it sent was answered, and no reply waiting to be written (so the close comes after the reply to its
    /// last complete request). Or when the listener's reading deadline (`ListenerSlot::read_until`, within
    /// `shutdown_timeout_ms`) has passed: what was read by then is still answered. End of stream and errors are
    /// returned as by any read.
    async fn fill_draining(&self, inb: &mut InBuf) -> Option<std::io::Result<usize>> {
        let until = self.listener.read_until()?;
        loop {
            let now = std::time::Instant::now();
            if now >= until || self.q.borrow().closed {
                return None;
            }
            let left = until - now;
            if self.q.borrow().inflight() > 0 {
                // Not quiet while a reply is due: read meanwhile, and start the quiet period once it is answered.
                let replies = async {
                    self.wait_for_replies().await;
                    None
                };
                let read = async { Some(inb.fill(&self.conn).await) };
                match uring::timeout(left, futures_lite::future::or(replies, read)).await {
                    Some(Some(Err(e))) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Some(Some(filled)) => return Some(filled),
                    Some(None) | None => continue,
                }
            }
            let quiet = if self.conn.conn().bytes_moved() == 0 { DRAIN_QUIET_FIRST } else { DRAIN_QUIET };
            match uring::timeout(quiet.min(left), inb.fill(&self.conn)).await {
                Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Some(filled) => return Some(filled),
                None => {
                    let q = self.q.borrow();
                    // Bytes that arrived as the timer fired were received: they are read, not dropped.
                    let unread = self.conn.conn().unread() > 0;
                    if q.inflight() == 0 && q.held() == 0 && !unread && left >= quiet {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads more, unless the client stays idle for `idle` (`client_idle_timeout_ms`): sent nothing, with no
    /// request in flight and no reply waiting to be written (a client waiting for a slow reply is not idle).
    /// `None` when it was idle that long. Cancelling a fill loses nothing: bytes are taken only when it completes.
    async fn fill_unless_idle(&self, inb: &mut InBuf, idle: std::time::Duration) -> Option<std::io::Result<usize>> {
        loop {
            if let Some(filled) = uring::timeout(idle, inb.fill(&self.conn)).await {
                return Some(filled);
            }
            let q = self.q.borrow();
            if q.inflight() == 0 && q.held() == 0 {
                return None;
            }
        }
    }
}

/// Serves one accepted client connection until it closes: one task per client, in which the reader (parse,
/// route, queue on backends) and the writer (replies, in order) are two halves of one future polled together. Two
/// tasks cost every idle client a second task allocation and a second copy of what both hold.
pub async fn serve(worker: Rc<Worker>, listener: Rc<ListenerSlot>, conn: Stream) {
    // The queue holds the socket (not the TLS layer) to shut it down if the client is closed for holding too much.
    let q = ReplyQueue::new_ref(worker.buffer_budget(), Some(conn.conn().clone()));
    let id = worker.next_client_id();
    let meters = worker.stats.borrow_mut().listener(&listener.name, listener.protocol);
    meters.borrow_mut().client_opened();
    let mut session = Session {
        worker,
        listener: listener.clone(),
        conn: conn.clone(),
        q: q.clone(),
        id,
        authed: false,
        read_only: false,
        meta: None,
        proto: Default::default(),
        meters: meters.clone(),
    };
    let read = async {
        match listener.protocol {
            Protocol::Redis => redis::read_loop(&mut session).await,
            Protocol::Memcache => memcache::read_loop(&mut session).await,
        }
        q.borrow_mut().close_after_flush = true;
        q.borrow_mut().wake_all();
    };
    futures_lite::future::zip(read, write_loop(&conn, &q, &meters)).await;
    drop(session);
    let write_failed = q.borrow().closed;
    q.borrow_mut().close();
    let overflow = q.borrow().overflow;
    if let Some(o) = overflow {
        let mut m = meters.borrow_mut();
        let (why, held, limit) = match o {
            Overflow::Client { held, limit } => {
                m.clients.buffer_limit_closes += 1;
                ("over proxy.client_max_buffered_bytes", held, limit)
            }
            Overflow::Worker { held, limit } => {
                m.clients.buffers_full_closes += 1;
                ("the worker's clients together over proxy.client_buffers_max_bytes", held, limit)
            }
        };
        log::warn!(
            "listener {}: closed client {id} that does not read its replies: {held} bytes buffered for it, {why} \
             ({limit})",
            listener.name
        );
    } else if !write_failed {
        // Boxed: its state exists only while the connection closes, not in every idle client's future.
        Box::pin(linger(&conn)).await;
    }
    conn.shutdown();
    meters.borrow_mut().client_closed();
}

/// Closes gracefully: FIN after the last reply, then discard what the client still sends (bounded), because
/// closing a socket with unread input makes the kernel send a reset that can destroy replies the client has not
/// read yet (after QUIT or a protocol error, for example).
pub(super) async fn linger(conn: &Stream) {
    // A spare buffer, not an array in this future: the future is part of every session's task, held for the
    // connection's life (a 4 KiB array here cost every idle client 4 KiB).
    // Small when the pool is empty: a burst of clients leaving must not take a 16 KiB buffer each.
    let mut buf = bufpool::take_for(0);
    let drain = async {
        // Inside the bound: a TLS close_notify is a send, and a client that reads nothing could hold it.
        conn.finish_writes().await;
        let mut total = 0usize;
        while total < 1 << 20 {
            buf.clear();
            match conn.read_append(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = uring::timeout(std::time::Duration::from_millis(500), drain).await;
    bufpool::give(buf);
}

/// A write buffer that grew past this for one big batch is freed after it, rather than kept for the connection's
/// life (one 500 MB reply must not stay allocated).
const WRITE_BUF_KEEP: usize = 256 * 1024;

/// Writes replies as they become ready, all that are ready in one write; closes after the last one when asked.
async fn write_loop(conn: &Stream, q: &ClientRef, meters: &ListenerStatsRef) {
    // Swapped with the queue's `out` at each batch; both are given back to the worker's spare buffers whenever
    // the client has nothing in flight, so an idle client holds neither.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let done = poll_fn(|cx| {
            let mut q = q.borrow_mut();
            if !q.out.is_empty() {
                q.take_out(&mut buf);
                Poll::Ready(false)
            } else if q.closed || (q.close_after_flush && q.inflight() == 0) {
                Poll::Ready(true)
            } else {
                if q.inflight() == 0 {
                    bufpool::give(std::mem::take(&mut buf));
                    q.release_out();
                }
                q.set_writer_waker(cx.waker());
                Poll::Pending
            }
        })
        .await;
        if done {
            break;
        }
        let (result, back) = send(conn, std::mem::take(&mut buf)).await;
        buf = back;
        q.borrow_mut().written();
        if result.is_err() {
            let mut q = q.borrow_mut();
            if q.overflow.is_none() {
                meters.borrow_mut().clients.errors += 1;
            }
            q.closed = true;
            q.wake_all();
            conn.shutdown();
            break;
        }
        if buf.capacity() > WRITE_BUF_KEEP {
            buf = Vec::new();
        } else {
            buf.clear();
        }
    }
    bufpool::give(buf);
}

/// [`Stream::send_all`], with the TLS case's state boxed: it would otherwise be part of every plaintext client's
/// future for the connection's life (one allocation per batch written, on TLS connections only).
async fn send(conn: &Stream, buf: Vec<u8>) -> (std::io::Result<()>, Vec<u8>) {
    match conn {
        Stream::Plain(c) => c.send_all(buf).await,
        Stream::Tls(_) => Box::pin(conn.send_all(buf)).await,
    }
}

/// A client's input buffer: bytes are parsed in place and consumed from the front. It holds a buffer only while
/// it has unparsed bytes: one is taken from the worker's spare buffers when bytes arrive and given back when they
/// are all parsed, so an idle client holds none and a busy one allocates nothing.
#[derive(Default)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
}

impl InBuf {
    pub fn new() -> InBuf {
        InBuf::default()
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.start = 0;
            self.buf.clear();
        }
    }

    /// Reads more bytes; `Ok(0)` at end of stream.
    pub async fn fill(&mut self, conn: &Stream) -> std::io::Result<usize> {
        if self.data().is_empty() {
            // Between requests: wait holding no buffer (one that grew for a big request is freed here). For TLS
            // the wait is over at once when rustls holds decrypted bytes not read yet.
            bufpool::give(std::mem::take(&mut self.buf));
            self.start = 0;
            conn.readable().await;
            // Sized for what arrived when the pool is empty (see `bufpool::take_for`); TLS: not known yet.
            let unread = match conn {
                Stream::Plain(c) => c.unread(),
                Stream::Tls(_) => bufpool::BUF_SIZE,
            };
            self.buf = bufpool::take_for(unread);
        } else if self.buf.len() == self.buf.capacity() {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            } else {
                // A request bigger than the buffer: grow it (the parsers bound request sizes).
                self.buf.reserve(self.buf.capacity());
            }
        }
        match conn {
            Stream::Plain(c) => c.read_append(&mut self.buf).await,
            // Boxed, as in `send`: rustls' read state is not carried by every plaintext client's future.
            Stream::Tls(_) => Box::pin(conn.read_append(&mut self.buf)).await,
        }
    }
}

impl Drop for InBuf {
    fn drop(&mut self) {
        bufpool::give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns (a future) without making one.
    fn returned_size<A, B, C, F, G: FnOnce(A, B, C) -> F>(_: &G) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle client holds its session's future for as long as it is connected (docs/architecture.md, "Memory
    /// per connection"): state that only some clients or some moments need (TLS, transactions, closing) is boxed.
    /// Measured 736 bytes in a debug build (2,480 with a second task and its own copies before).
    #[test]
    fn a_sessions_future_stays_small() {
        let size = returned_size(&serve);
        assert!(size <= 1024, "the session's future is {size} bytes");
    }
}
