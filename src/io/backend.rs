//! One connection to one backend server, shared by every client of this core.
//!
//! Clients append encoded requests to `outq` and a [`Pending`] entry each; the writer half of the connection sends
//! everything queued in one write; the reader half frames replies and hands each to the oldest pending entry (servers
//! answer in order, so FIFO matching is exact). A fault (refused, reset, EOF, timeout, garbage) fails every pending
//! request at once with an error naming the server and the cause, and the connection is re-established on demand
//! after a back-off. Nothing here is shared with another core.

use super::replies::ClientRef;
use super::stats::{client_key, BackendStats, BatchClock, Fault, Meter};
use super::tls::{self, Stream};
use super::uring;
use crate::config::{Batching, Protocol};
use crate::protocol::{memcache, redis};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How to find the end of the reply to a request, and which replies can answer it.
#[derive(Clone, Copy, Debug)]
pub enum Framer {
    /// Any RESP reply frames; only one of the shape's types can answer the request.
    Redis(redis::ReplyShape),
    /// The memcached framer knows which reply lines each command can get, and refuses the others.
    Memcache(memcache::Command),
    /// A quiet (`q`) meta request, sent without its `q`: framed like [`Framer::Memcache`], and the reply memcached
    /// would have hidden is dropped on delivery ([`memcache::meta::hides`]), so the client sees what a quiet
    /// request to memcached shows while every request still gets a reply to be matched by.
    MemcacheQuiet(memcache::Command),
}

impl Framer {
    /// Starts framing the reply to a request of this kind.
    fn start(self) -> ReplyFraming {
        match self {
            Framer::Redis(_) => ReplyFraming::Redis(redis::ReplyParser::new()),
            Framer::Memcache(cmd) | Framer::MemcacheQuiet(cmd) => {
                ReplyFraming::Memcache(memcache::ReplyFramer::new(cmd))
            }
        }
    }

    /// What of the framed `reply` its client gets.
    fn shown(self, reply: &[u8]) -> &[u8] {
        match self {
            Framer::MemcacheQuiet(cmd) if memcache::meta::hides(cmd, reply) => &[],
            _ => reply,
        }
    }

    /// Why a framed reply cannot be this request's, as a fault reason ("sent ..."): the connection is out of step.
    fn framing_fault(self, error: &str) -> String {
        match self {
            Framer::Redis(_) => format!("sent a malformed reply: {error}"),
            // The memcached framer refuses a well-formed line that the command cannot get (STORED to a get) as
            // well as a malformed one: either way the reply cannot answer this command.
            Framer::Memcache(cmd) | Framer::MemcacheQuiet(cmd) => {
                format!("sent a reply that cannot answer {}: {error}", cmd.name())
            }
        }
    }
}

/// Why the complete reply `reply` cannot answer the request `p` at the head of the queue, if it cannot: the shape of
/// a redis reply, `+OK` for the connection prelude, and for a fragment of a split request what the fragment asked for.
/// `resp3`: the connection negotiated RESP3 (HELLO 3 in its prelude), so RESP3 types stand for their RESP2 ones.
fn reply_fault(p: &Pending, reply: &[u8], resp3: bool) -> Option<String> {
    if let Framer::Redis(shape) = p.framer {
        if let Err(mismatch) = shape.check(reply, resp3) {
            return Some(format!("sent a reply that {mismatch}"));
        }
    }
    match &p.waiter {
        Waiter::Prelude { hello3: false } if !redis::is_error_reply(reply) && reply != b"+OK\r\n" => Some(format!(
            "sent a reply that cannot answer AUTH/SELECT (expected +OK, got {})",
            redis::ReplyType::of(reply)
        )),
        Waiter::Client { client, seq, frag: Some(frag), .. } => {
            let fits = client.borrow_mut().fragment_fits(*seq, *frag as usize, reply);
            fits.err().map(|what| format!("sent a reply that cannot answer {what}"))
        }
        Waiter::Cluster(r) => {
            let frag = r.frag?;
            let fits = r.client.borrow_mut().fragment_fits(r.seq, frag as usize, reply);
            fits.err().map(|what| format!("sent a reply that cannot answer {what}"))
        }
        _ => None,
    }
}

/// A reply being framed: resumable, so a huge reply arriving over many reads is walked once, not again from its
/// start on every read.
enum ReplyFraming {
    Redis(redis::ReplyParser),
    Memcache(memcache::ReplyFramer),
}

impl ReplyFraming {
    /// Frames the reply at the start of `buf`, which holds all of it received so far.
    fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        match self {
            ReplyFraming::Redis(parser) => parser.parse(buf).map_err(|e| e.0),
            ReplyFraming::Memcache(framer) => framer.parse(buf),
        }
    }

    /// How many bytes of the reply must have arrived before parsing again can make progress.
    fn needed(&self) -> usize {
        match self {
            ReplyFraming::Redis(parser) => parser.needed(),
            ReplyFraming::Memcache(framer) => framer.needed(),
        }
    }
}

/// The read buffer's size, and what it shrinks back to after a bigger reply.
const READ_BUF_LEN: usize = 64 * 1024;

/// Who receives a reply.
pub enum Waiter {
    /// A client request (`frag` is `None` for a whole request, or the fragment number of a split one).
    /// `meter` records the request's latency on delivery (present when per-request stats are on).
    Client { client: ClientRef, seq: u64, frag: Option<u32>, meter: Option<Meter> },
    /// A reply to the connection prelude (AUTH, SELECT, HELLO 3): checked, not forwarded. `hello3`: it answers
    /// `HELLO 3`, so it must show the switch to RESP3 (a map), not merely be no error.
    Prelude { hello3: bool },
    /// A request the proxy sent for its own reasons on a dedicated connection (the MULTI of a transaction whose
    /// client was already answered, the DISCARD ending an aborted one): its reply is checked and dropped.
    Ignored,
    /// Child `child` of a request fanned out by a multi-destination route (`io::fan`): the reply goes to the route's
    /// rule, which answers the client or sends the request on.
    Fan { attempt: Rc<super::fan::Attempt>, child: u32 },
    /// A request to a `redis_cluster` pool: its reply goes through `io::cluster::arrive`, which follows redirects
    /// (sending the request again from its own copy) before the client's slot is completed.
    Cluster(Box<super::cluster::Redirectable>),
}

impl Waiter {
    /// When the request was parsed, if its latency is recorded.
    fn meter_started(&self) -> Option<Instant> {
        match self {
            Waiter::Client { meter: Some(m), .. } => Some(m.started()),
            Waiter::Cluster(r) => r.meter_started(),
            _ => None,
        }
    }
}

struct Pending {
    waiter: Waiter,
    framer: Framer,
    deadline: Instant,
    /// Size of the request, for the out-queue byte gauge.
    bytes: u32,
}

/// Connection settings taken from the pool's config.
#[derive(Clone)]
pub struct BackendOptions {
    pub protocol: Protocol,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_queued_bytes: usize,
    pub batching: Batching,
    /// Adaptive batching: the longest the oldest held request waits before its batch is written anyway.
    pub max_hold: Duration,
    /// Requests sent first on every new connection (AUTH, SELECT, HELLO 3) and how many replies they produce.
    pub prelude: Vec<u8>,
    pub prelude_replies: usize,
    /// The prelude's last request is `HELLO 3`: the connection serves RESP3 clients only.
    pub prelude_ends_with_hello3: bool,
    /// `tcpkeepalive`: SO_KEEPALIVE on each new connection.
    pub keepalive: bool,
    /// A dedicated connection (`io::dedicated`): one TCP connection for this backend's whole life. It never
    /// reconnects (a transaction or a WATCH must not silently continue on a fresh connection that knows nothing of
    /// it): once its connection fails or closes, the backend is dead, fails what is queued on it at once, and its
    /// task ends. It reports no health either: the shared connections to the same server do.
    pub one_shot: bool,
    /// TLS to this server (the pool's `tls = true`).
    pub tls: Option<tls::Connector>,
}

/// Observations a backend reports upward (to the worker, which forwards them to control).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Failed(String),
    Recovered,
}

#[derive(Default)]
struct State {
    outq: Vec<u8>,
    pending: VecDeque<Pending>,
    /// Requests in `pending` that were already written to the current connection.
    conn: Option<Stream>,
    generation: u64,
    connecting: bool,
    /// Fail fast until then: the last connect failed and we are backing off.
    down_until: Option<Instant>,
    last_error: String,
    consecutive_failures: u32,
    was_healthy: bool,
    task_waker: Option<Waker>,
    /// Requests written to the current connection whose replies are not all back yet: adaptive batching holds new
    /// requests while this is not 0.
    unanswered: usize,
    /// When the oldest request in `outq` was queued.
    outq_since: Option<Instant>,
    drain_waiters: Vec<Waker>,
    health_events: Vec<Health>,
    retired: bool,
    /// A one-shot backend whose connection is gone: it fails every request at once.
    dead: bool,
    stats: BackendStats,
    /// Progress, for timeouts: the connection's count of bytes received and sent at the last deadline check,
    /// which connection that was, and when the count last moved.
    progress_bytes: u64,
    progress_generation: u64,
    progress_at: Option<Instant>,
}

pub struct Backend {
    pub addr: SocketAddr,
    /// "pool/host:port" (or the server's name) for logs and error replies.
    pub label: String,
    opts: BackendOptions,
    st: RefCell<State>,
    rng: std::cell::Cell<u64>,
}

/// What the connection task does next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Write,
    Retire,
    /// Look at the state again (a hold started or its time ran out).
    Recheck,
}

/// Adaptive batching writes a held batch once it is this large, replies in flight or not: by then the batch is big
/// enough that holding it longer saves the server nothing, and the bytes would only wait.
const HOLD_LIMIT_BYTES: usize = 64 * 1024;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Backend {
    pub fn new(addr: SocketAddr, label: String, opts: BackendOptions) -> Rc<Backend> {
        let seed = (addr.port() as u64) << 32 ^ (Instant::now().elapsed().as_nanos() as u64) ^ 0x9e37_79b9_7f4a_7c15;
        Rc::new(Backend { addr, label, opts, st: RefCell::new(State::default()), rng: std::cell::Cell::new(seed | 1) })
    }

    /// Bytes queued and not yet written: the client reader stops reading while this is over the bound.
    pub fn over_queue_bound(&self) -> bool {
        self.st.borrow().outq.len() > self.opts.max_queued_bytes
    }

    pub fn inflight(&self) -> usize {
        self.st.borrow().pending.len()
    }

    /// This connection's counters, queue gauges and latency histogram, for a stats snapshot.
    pub fn stats_snapshot(
        &self,
    ) -> (crate::stats::ServerCounters, crate::stats::ServerGauges, Option<crate::histogram::Histogram>) {
        let st = self.st.borrow();
        st.stats.snapshot(st.outq.len(), st.pending.len(), st.conn.is_some())
    }

    pub fn is_connected(&self) -> bool {
        self.st.borrow().conn.is_some()
    }

    /// A one-shot backend whose connection failed or was closed: it can serve nothing more.
    pub fn is_dead(&self) -> bool {
        self.st.borrow().dead
    }

    /// Ends a one-shot backend now: its connection is shut down (the server forgets its transaction, its WATCHes,
    /// and any command it blocks in), whatever is in flight on it fails with `reason`, and its task ends.
    pub fn close(&self, reason: &str) {
        let generation = {
            let mut st = self.st.borrow_mut();
            st.dead = true;
            st.retired = true;
            st.generation
        };
        self.fail_connection(generation, reason);
    }

    /// Queues one request. `encode` appends its bytes. Fails the waiter at once while the server is backing off.
    #[inline]
    pub fn enqueue(&self, encode: impl FnOnce(&mut Vec<u8>), waiter: Option<Waiter>, framer: Framer, now: Instant) {
        self.enqueue_until(encode, waiter, framer, now, now + self.opts.timeout)
    }

    /// Queues one request that may take longer than `timeout_ms`: a blocking command waits for its own block time
    /// plus `timeout_ms`, or without a bound (`None`, a block time of 0).
    pub fn enqueue_with_timeout(
        &self,
        encode: impl FnOnce(&mut Vec<u8>),
        waiter: Option<Waiter>,
        framer: Framer,
        now: Instant,
        timeout: Option<Duration>,
    ) {
        self.enqueue_until(encode, waiter, framer, now, deadline_after(now, timeout, self.opts.timeout))
    }

    /// The timeout in force for an ordinary request on this connection (`timeout_ms`).
    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    fn enqueue_until(
        &self,
        encode: impl FnOnce(&mut Vec<u8>),
        waiter: Option<Waiter>,
        framer: Framer,
        now: Instant,
        deadline: Instant,
    ) {
        self.enqueue_with(|_, out| encode(out), waiter, framer, now, deadline)
    }

    /// Queues a cluster request, whose bytes it carries with it (to send them again after a redirect).
    pub fn enqueue_redirectable(&self, r: Box<super::cluster::Redirectable>, framer: Framer, now: Instant) {
        self.enqueue_redirectable_until(r, framer, now, now + self.opts.timeout)
    }

    /// [`Backend::enqueue_redirectable`] for a blocking command: its deadline is its own (see
    /// [`Backend::enqueue_with_timeout`]).
    pub fn enqueue_redirectable_with_timeout(
        &self,
        r: Box<super::cluster::Redirectable>,
        framer: Framer,
        now: Instant,
        timeout: Option<Duration>,
    ) {
        self.enqueue_redirectable_until(r, framer, now, deadline_after(now, timeout, self.opts.timeout))
    }

    fn enqueue_redirectable_until(
        &self,
        r: Box<super::cluster::Redirectable>,
        framer: Framer,
        now: Instant,
        deadline: Instant,
    ) {
        let encode = |w: Option<&Waiter>, out: &mut Vec<u8>| {
            if let Some(Waiter::Cluster(r)) = w {
                out.extend_from_slice(&r.bytes);
            }
        };
        self.enqueue_with(encode, Some(Waiter::Cluster(r)), framer, now, deadline)
    }

    /// [`Backend::enqueue_until`] with an encoder that may read the waiter (which carries a cluster request's
    /// bytes).
    fn enqueue_with(
        &self,
        encode: impl FnOnce(Option<&Waiter>, &mut Vec<u8>),
        waiter: Option<Waiter>,
        framer: Framer,
        now: Instant,
        deadline: Instant,
    ) {
        let mut st = self.st.borrow_mut();
        if st.dead {
            let reason = format!("connection closed: {}", st.last_error);
            drop(st);
            if let Some(w) = waiter {
                self.deliver_error(w, &reason);
            }
            return;
        }
        if let Some(until) = st.down_until {
            if now < until && st.conn.is_none() && !st.connecting {
                let reason = format!("server unavailable: {}", st.last_error);
                drop(st);
                if let Some(w) = waiter {
                    self.st.borrow_mut().stats.failed_fast();
                    self.deliver_error(w, &reason);
                }
                return;
            }
        }
        let before = st.outq.len();
        if before == 0 {
            st.outq_since = Some(now);
        }
        encode(waiter.as_ref(), &mut st.outq);
        let bytes = st.outq.len() - before;
        st.stats.queued(bytes, waiter.is_some());
        if let Some(waiter) = waiter {
            let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
            st.pending.push_back(Pending { waiter, framer, deadline, bytes });
        }
        // The task waits only with nothing to write or with a held batch. Wake it when there is something to write
        // (a held batch that just grew past the hold limit included), and when a batch starts being held, so that
        // it arms the timer that bounds the hold.
        if before == 0 || !self.holds(&st, || now) {
            if let Some(w) = st.task_waker.take() {
                w.wake();
            }
        }
    }

    /// Waits until the queue is under its bound again.
    pub async fn drained(&self) {
        poll_fn(|cx| {
            let mut st = self.st.borrow_mut();
            if st.outq.len() <= self.opts.max_queued_bytes || st.conn.is_none() {
                Poll::Ready(())
            } else {
                st.drain_waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Takes the health observations gathered since the last call.
    pub fn take_health_events(&self) -> Vec<Health> {
        std::mem::take(&mut self.st.borrow_mut().health_events)
    }

    /// Forgets the reconnect back-off (the server was restored after control's probe found it answering), so the
    /// next request connects at once instead of failing fast until the back-off expires.
    pub fn reset_backoff(&self) {
        self.st.borrow_mut().down_until = None;
    }

    /// Stops using this backend (removed by a reload): finishes what is queued, then closes.
    pub fn retire(&self) {
        let mut st = self.st.borrow_mut();
        st.retired = true;
        if let Some(w) = st.task_waker.take() {
            w.wake();
        }
    }

    /// Fails the oldest request when it is past its deadline and nothing moved on the connection for `timeout`;
    /// twemproxy does the same by closing the connection, because the replies behind a lost one can no longer be
    /// matched. Replies come in request order, so every byte that arrives belongs to the oldest request's reply (or
    /// completes it), and until a request is written its reply cannot start: a server taking in a huge request, or
    /// streaming huge replies ahead of a request (to a client that fetches many big values, whether it reads them or
    /// not), is working, not stuck, and is not failed for it. Progress is sampled here, at the worker's tick, so
    /// the request path reads no clock for it.
    pub fn check_deadline(&self, now: Instant) {
        let expired = {
            let mut st = self.st.borrow_mut();
            let moved = st.conn.as_ref().map_or(0, |c| c.conn().bytes_moved());
            if st.progress_generation != st.generation {
                // A new connection: what the last one received is no progress of this one.
                st.progress_generation = st.generation;
                st.progress_at = None;
            } else if moved != st.progress_bytes {
                st.progress_at = Some(now);
            }
            st.progress_bytes = moved;
            let stalled = st.progress_at.is_none_or(|at| at + self.opts.timeout <= now);
            stalled && st.pending.front().is_some_and(|p| p.deadline <= now)
        };
        if expired {
            let gen = self.st.borrow().generation;
            let ms = self.opts.timeout.as_millis();
            self.fail_connection(gen, &format!("timed out after {ms} ms"));
        }
    }

    /// Whether adaptive batching would keep what is queued back, leaving time aside: requests are in flight and the
    /// batch is small.
    fn wants_hold(&self, st: &State) -> bool {
        self.opts.batching == Batching::Adaptive && st.unanswered > 0 && st.outq.len() < HOLD_LIMIT_BYTES
    }

    /// Whether adaptive batching keeps what is queued back at `now`: it wants to, and the oldest queued request has
    /// waited less than `max_hold`. The bound matters when the server is far away: without it a request that
    /// arrives just after a batch left would wait a whole network round trip before it is even sent. `now` is only
    /// called when the answer depends on it, so eager batching and idle connections never read the clock here.
    fn holds(&self, st: &State, now: impl FnOnce() -> Instant) -> bool {
        self.wants_hold(st) && st.outq_since.is_some_and(|since| now() < since + self.opts.max_hold)
    }

    fn error_reply(&self, reason: &str) -> Vec<u8> {
        match self.opts.protocol {
            Protocol::Redis => format!("-ERR ferrule: backend {} {}\r\n", self.label, reason).into_bytes(),
            Protocol::Memcache => format!("SERVER_ERROR backend {} {}\r\n", self.label, reason).into_bytes(),
        }
    }

    fn deliver_error(&self, waiter: Waiter, reason: &str) {
        let reply = self.error_reply(reason);
        deliver_failed(waiter, &reply);
    }

    /// Tears the current connection down and fails everything queued or in flight on it.
    fn fail_connection(&self, generation: u64, reason: &str) {
        let (pending, conn) = {
            let mut st = self.st.borrow_mut();
            if st.generation != generation {
                return;
            }
            st.generation += 1;
            clear_shrunk(&mut st.outq);
            st.outq_since = None;
            st.unanswered = 0;
            let failed = st
                .pending
                .iter()
                .filter(|p| matches!(p.waiter, Waiter::Client { .. } | Waiter::Fan { .. } | Waiter::Cluster(_)))
                .count();
            st.stats.fault(Fault::from_reason(reason), failed);
            st.last_error = reason.to_string();
            if self.opts.one_shot {
                st.dead = true;
                st.retired = true;
            }
            st.consecutive_failures += 1;
            if self.opts.one_shot {
                // Nothing reconnects, and the shared connections report the server's health.
            } else if st.consecutive_failures > 1 {
                // Failed again without answering anything since the last failure (a server that accepts and then
                // resets, or stalls): back off before reconnecting instead of reconnecting for every request.
                st.down_until = Some(Instant::now() + backoff_for(st.consecutive_failures, &self.rng));
            }
            if !self.opts.one_shot {
                st.health_events.push(Health::Failed(reason.to_string()));
            }
            for w in st.drain_waiters.drain(..) {
                w.wake();
            }
            if let Some(w) = st.task_waker.take() {
                w.wake();
            }
            (std::mem::take(&mut st.pending), st.conn.take())
        };
        if let Some(c) = conn {
            c.shutdown();
        }
        if !pending.is_empty() {
            log::debug!("backend {}: failing {} requests: {}", self.label, pending.len(), reason);
        }
        let reply = self.error_reply(reason);
        for p in pending {
            deliver_failed(p.waiter, &reply);
        }
    }

    fn backoff(&self) -> Duration {
        backoff_for(self.st.borrow().consecutive_failures, &self.rng)
    }

    /// The connection task: connects on demand, writes batches, and spawns the reader for each connection.
    pub async fn run(self: Rc<Self>, preconnect: bool) {
        let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut want_connect = preconnect;
        loop {
            // A held batch is written when its replies are in (the reader wakes us) or when its oldest request has
            // waited `max_hold` (this timer), whichever comes first.
            let hold_deadline = {
                let st = self.st.borrow();
                match st.outq_since {
                    Some(since) if !st.outq.is_empty() && self.wants_hold(&st) => Some(since + self.opts.max_hold),
                    _ => None,
                }
            };
            // Wait for work: bytes to write, or a wish to connect.
            let wait = poll_fn(|cx| {
                let mut st = self.st.borrow_mut();
                let has_conn = st.conn.is_some();
                if want_connect && !has_conn {
                    return Poll::Ready(Next::Write);
                }
                if !st.outq.is_empty() {
                    if !self.holds(&st, Instant::now) {
                        return Poll::Ready(Next::Write);
                    }
                    if hold_deadline.is_none() {
                        // A batch started being held while we waited without a timer: go round and arm one.
                        return Poll::Ready(Next::Recheck);
                    }
                }
                if st.retired && st.pending.is_empty() {
                    return Poll::Ready(Next::Retire);
                }
                st.task_waker = Some(cx.waker().clone());
                Poll::Pending
            });
            let next = match hold_deadline {
                Some(deadline) => {
                    let expire = async move {
                        uring::sleep(deadline.saturating_duration_since(Instant::now())).await;
                        Next::Recheck
                    };
                    futures_lite::future::or(wait, expire).await
                }
                None => wait.await,
            };
            if next == Next::Recheck {
                continue;
            }
            if next == Next::Retire {
                let conn = self.st.borrow_mut().conn.take();
                if let Some(c) = conn {
                    c.shutdown();
                }
                return;
            }
            let current = self.st.borrow().conn.clone();
            let conn = match current {
                Some(c) => c,
                None => match self.connect().await {
                    Some(c) => {
                        want_connect = false;
                        c
                    }
                    None => {
                        want_connect = preconnect;
                        // No back-off after a connect that found no descriptor: a preconnecting pool still waits
                        // a little before trying again instead of spinning.
                        let pause = self.st.borrow().down_until.map(|u| u.saturating_duration_since(Instant::now()));
                        if want_connect {
                            uring::sleep(pause.unwrap_or(MIN_BACKOFF)).await;
                        }
                        continue;
                    }
                },
            };
            let generation = {
                let mut st = self.st.borrow_mut();
                std::mem::swap(&mut st.outq, &mut wbuf);
                st.outq_since = None;
                // Everything pending is now written: what was queued is in `wbuf`.
                st.unanswered = st.pending.len();
                st.stats.written();
                for w in st.drain_waiters.drain(..) {
                    w.wake();
                }
                st.generation
            };
            let (result, back) = conn.send_all(std::mem::take(&mut wbuf)).await;
            wbuf = back;
            if let Err(e) = result {
                self.fail_connection(generation, &format!("write failed: {e}"));
            }
            // A big request grew the batch buffer (it is swapped with `outq`, so both would keep its size for good).
            clear_shrunk(&mut wbuf);
        }
    }

    async fn connect(self: &Rc<Self>) -> Option<Stream> {
        self.st.borrow_mut().connecting = true;
        // A failed TLS handshake is a connect failure like a refusal: same back-off, same health report.
        let result = match uring::connect(self.addr, self.opts.connect_timeout).await {
            Err(e) if super::exhaustion::is_out_of_descriptors(&e) => {
                Err(ConnectFailure::OutOfDescriptors(super::exhaustion::connect_failure(&e)))
            }
            Err(e) => Err(ConnectFailure::Server(describe_connect_error(&e))),
            Ok(conn) => {
                if self.opts.keepalive {
                    conn.set_keepalive();
                }
                match &self.opts.tls {
                    None => Ok(Stream::Plain(conn)),
                    Some(connector) => {
                        tls::connect(conn, connector, self.opts.connect_timeout).await.map_err(ConnectFailure::Server)
                    }
                }
            }
        };
        let mut st = self.st.borrow_mut();
        st.connecting = false;
        match result {
            Ok(conn) => {
                st.generation += 1;
                st.conn = Some(conn.clone());
                st.down_until = None;
                st.stats.connected();
                if !self.opts.prelude.is_empty() {
                    // The prelude goes before everything queued while connecting.
                    let mut out = self.opts.prelude.clone();
                    out.extend_from_slice(&st.outq);
                    st.outq = out;
                    // Only the oldest pending request's deadline is checked, so the prelude, which goes first, takes
                    // the earliest deadline of those queued while connecting: a server that accepts and never answers
                    // AUTH must not hold them past their own timeout.
                    let fresh = Instant::now() + self.opts.timeout;
                    let deadline = st.pending.front().map_or(fresh, |p| p.deadline.min(fresh));
                    for i in 0..self.opts.prelude_replies {
                        // Pushed to the front, so the first one pushed waits for the prelude's last reply.
                        let hello3 = i == 0 && self.opts.prelude_ends_with_hello3;
                        st.pending.push_front(Pending {
                            waiter: Waiter::Prelude { hello3 },
                            // HELLO 3 answers a map, checked on arrival; AUTH and SELECT answer +OK.
                            framer: Framer::Redis(if hello3 {
                                redis::ReplyShape::any()
                            } else {
                                redis::ReplyShape::prelude()
                            }),
                            deadline,
                            bytes: 0,
                        });
                    }
                }
                let generation = st.generation;
                drop(st);
                log::info!("backend {}: connected", self.label);
                glommio::spawn_local(self.clone().read_loop(conn.clone(), generation)).detach();
                Some(conn)
            }
            Err(ConnectFailure::OutOfDescriptors(reason)) => {
                // The proxy's own shortage, not the server's fault: fail what waits, but count no server failure
                // (no health event, no back-off, no fault counter), so a healthy server is never ejected for it.
                st.stats.counters.failed_requests += st
                    .pending
                    .iter()
                    .filter(|p| matches!(p.waiter, Waiter::Client { .. } | Waiter::Fan { .. } | Waiter::Cluster(_)))
                    .count() as u64;
                st.outq.clear();
                st.outq_since = None;
                st.generation += 1;
                if self.opts.one_shot {
                    st.dead = true;
                    st.retired = true;
                    st.last_error = reason.clone();
                }
                let pending = std::mem::take(&mut st.pending);
                drop(st);
                CONNECT_WARN.with(|t| {
                    if let Some(held_back) = t.allow(Instant::now()) {
                        let note = super::exhaustion::suppressed_note(held_back);
                        log::warn!("backend {}: {reason}; failing its requests{note}", self.label);
                    }
                });
                let reply = self.error_reply(&reason);
                for p in pending {
                    deliver_failed(p.waiter, &reply);
                }
                None
            }
            Err(ConnectFailure::Server(reason)) => {
                let failed = st
                    .pending
                    .iter()
                    .filter(|p| matches!(p.waiter, Waiter::Client { .. } | Waiter::Fan { .. } | Waiter::Cluster(_)))
                    .count();
                st.stats.fault(Fault::Error, failed);
                st.last_error = reason.clone();
                st.consecutive_failures += 1;
                if self.opts.one_shot {
                    st.dead = true;
                    st.retired = true;
                } else {
                    st.health_events.push(Health::Failed(reason.clone()));
                }
                drop(st);
                let pause = self.backoff();
                let (pending, first) = {
                    let mut st = self.st.borrow_mut();
                    st.down_until = Some(Instant::now() + pause);
                    clear_shrunk(&mut st.outq);
                    st.outq_since = None;
                    st.generation += 1;
                    let first = st.consecutive_failures == 1 || st.was_healthy;
                    st.was_healthy = false;
                    (std::mem::take(&mut st.pending), first)
                };
                if first {
                    log::warn!("backend {}: connect failed: {}", self.label, reason);
                }
                let reply = self.error_reply(&reason);
                for p in pending {
                    deliver_failed(p.waiter, &reply);
                }
                None
            }
        }
    }

    async fn read_loop(self: Rc<Self>, conn: Stream, generation: u64) {
        let mut buf = vec![0u8; READ_BUF_LEN];
        let (mut start, mut end) = (0usize, 0usize);
        // The reply at `buf[start..]` being framed, for the oldest pending request.
        let mut framing: Option<ReplyFraming> = None;
        loop {
            if end == buf.len() {
                if start > 0 {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                } else {
                    // One reply larger than the buffer: grow (bounded by what the server sends).
                    buf.resize(buf.len() * 2, 0);
                }
            }
            let n = match conn.read(&mut buf[end..]).await {
                Ok(0) => {
                    self.fail_connection(generation, "closed the connection");
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    self.fail_connection(generation, &format!("read failed: {e}"));
                    return;
                }
            };
            end += n;
            let mut clock = BatchClock::default();
            loop {
                let (framer, ok_gen) = {
                    let st = self.st.borrow();
                    // Only a request already handed to the socket can be answered: a reply while none is (nothing
                    // pending, or only requests still queued) is one nobody asked for.
                    let sent = st.pending.front().filter(|_| st.unanswered > 0);
                    (sent.map(|p| p.framer), st.generation == generation)
                };
                if !ok_gen {
                    return;
                }
                let Some(framer) = framer else {
                    if start < end {
                        log::warn!("backend {}: sent data nobody asked for; closing the connection", self.label);
                        self.fail_connection(generation, "sent data nobody asked for");
                        return;
                    }
                    break;
                };
                let reply_framing = framing.get_or_insert_with(|| framer.start());
                if end - start < reply_framing.needed() {
                    break;
                }
                match reply_framing.parse(&buf[start..end]) {
                    Ok(Some(len)) => {
                        framing = None;
                        let reply = &buf[start..start + len];
                        let (p, latency) = {
                            let mut st = self.st.borrow_mut();
                            // A reply that cannot answer the oldest request means the connection is out of step:
                            // every later reply would reach the wrong request. Close it, failing all on it.
                            if let Some(fault) = st
                                .pending
                                .front()
                                .and_then(|p| reply_fault(p, reply, self.opts.prelude_ends_with_hello3))
                            {
                                drop(st);
                                log::warn!("backend {}: {}; closing the connection", self.label, fault);
                                self.fail_connection(generation, &fault);
                                return;
                            }
                            let p = st.pending.pop_front();
                            st.unanswered = st.unanswered.saturating_sub(1);
                            let latency = clock.since(p.as_ref().and_then(|p| p.waiter.meter_started()));
                            st.stats.replied(len, p.as_ref().map_or(0, |p| p.bytes), latency);
                            // A retired connection closes once its last reply is in: wake its task to do it.
                            if st.retired && st.pending.is_empty() {
                                if let Some(w) = st.task_waker.take() {
                                    w.wake();
                                }
                            }
                            (p, latency)
                        };
                        start += len;
                        let shown = p.as_ref().map_or(reply, |p| p.framer.shown(reply));
                        match p.map(|p| p.waiter) {
                            Some(Waiter::Prelude { hello3 }) => {
                                let bad =
                                    redis::is_error_reply(reply) || (hello3 && !redis::is_resp3_hello_reply(reply));
                                if bad {
                                    let msg = String::from_utf8_lossy(reply).trim_end().to_string();
                                    log::error!("backend {}: connection setup rejected: {}", self.label, msg);
                                    let what = if hello3 { "HELLO 3" } else { "AUTH/SELECT" };
                                    self.fail_connection(generation, &format!("rejected {what}: {msg}"));
                                    return;
                                }
                            }
                            // A push answers no request (RESP3 connections only; nothing ferrule forwards asks
                            // for one): the replies after it could no longer be matched to their requests.
                            Some(w) if self.opts.prelude_ends_with_hello3 && redis::is_push_reply(reply) => {
                                let reason = "sent an unsolicited RESP3 push";
                                self.deliver_error(w, reason);
                                self.fail_connection(generation, reason);
                                return;
                            }
                            Some(w) => deliver(w, shown, latency, false),
                            None => {}
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let fault = framer.framing_fault(&e);
                        log::warn!("backend {}: {}; closing the connection", self.label, fault);
                        self.fail_connection(generation, &fault);
                        return;
                    }
                }
            }
            if start == end {
                start = 0;
                end = 0;
                if buf.len() > READ_BUF_LEN {
                    // A big reply grew the buffer: give the memory back rather than hold it for the connection's life.
                    buf.truncate(READ_BUF_LEN);
                    buf.shrink_to_fit();
                }
            }
            let mut st = self.st.borrow_mut();
            if !st.outq.is_empty() && !self.wants_hold(&st) {
                // The batch in flight is answered: the requests held behind it go out now.
                if let Some(w) = st.task_waker.take() {
                    w.wake();
                }
            }
            if st.consecutive_failures > 0 || !st.was_healthy {
                if st.consecutive_failures > 0 {
                    log::info!("backend {}: recovered", self.label);
                    st.health_events.push(Health::Recovered);
                }
                st.consecutive_failures = 0;
                st.was_healthy = true;
            }
        }
    }
}

/// The wait before reconnecting after `failures` consecutive failures: 50 ms doubling up to 5 s, with jitter in
/// [base/2, base) so that many cores and proxies do not reconnect in lockstep.
fn backoff_for(failures: u32, rng: &std::cell::Cell<u64>) -> Duration {
    let failures = failures.min(10);
    let base = MIN_BACKOFF.saturating_mul(1 << failures.saturating_sub(1)).min(MAX_BACKOFF);
    let mut x = rng.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng.set(x);
    let half = base.as_micros() as u64 / 2;
    Duration::from_micros(half + x % half.max(1))
}

/// Write buffers larger than this after one big request are freed rather than kept.
const WRITE_BUF_KEEP: usize = 256 * 1024;

/// Empties a write buffer, giving its memory back when a big request grew it.
fn clear_shrunk(buf: &mut Vec<u8>) {
    if buf.capacity() > WRITE_BUF_KEEP {
        *buf = Vec::with_capacity(16 * 1024);
    } else {
        buf.clear();
    }
}

/// The deadline of a request with its own `timeout` (`None`: none), `fallback` if that cannot be represented.
fn deadline_after(now: Instant, timeout: Option<Duration>, fallback: Duration) -> Instant {
    // About a century stands for "forever": an Instant cannot be unbounded.
    let forever = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(timeout.unwrap_or(forever)).unwrap_or(now + fallback)
}

/// Hands a reply made by the proxy for a failure to its request.
fn deliver_failed(waiter: Waiter, reply: &[u8]) {
    let latency = BatchClock::default().since(waiter.meter_started());
    deliver(waiter, reply, latency, true);
}

/// Hands a reply to its request; `latency` (since the request was parsed) is recorded when the request is metered.
fn deliver(waiter: Waiter, reply: &[u8], latency: Option<Duration>, failed: bool) {
    if let Waiter::Fan { attempt, child } = waiter {
        super::fan::arrive(&attempt, child, reply, failed);
        return;
    }
    if let Waiter::Cluster(r) = waiter {
        super::cluster::arrive(r, reply, latency, failed);
        return;
    }
    deliver_to(waiter, reply, latency, failed)
}

/// Completes a client's slot (or its fragment) with `reply`: what [`deliver`] does for a `Waiter::Client`.
pub(super) fn deliver_to(waiter: Waiter, reply: &[u8], latency: Option<Duration>, failed: bool) {
    if let Waiter::Client { client, seq, frag, meter } = waiter {
        if let (Some(m), Some(l)) = (&meter, latency) {
            m.finish(client_key(&client), seq, l, failed);
        }
        let mut q = client.borrow_mut();
        match frag {
            None => q.complete(seq, reply),
            Some(f) => q.complete_fragment(seq, f as usize, reply),
        }
    }
}

thread_local! {
    /// One warning per interval per core about connects that found no descriptor, whichever server they were for.
    static CONNECT_WARN: super::exhaustion::Throttle =
        const { super::exhaustion::Throttle::new(super::exhaustion::WARN_INTERVAL) };
}

/// In the system's words where it has them ("Connection refused", as strerror, twemproxy and alert rules say it).
/// Why a connect (TCP, then the TLS handshake) failed. The proxy's own descriptor shortage is kept apart: it is no
/// fault of the server, so it must never count towards ejecting it.
enum ConnectFailure {
    OutOfDescriptors(String),
    Server(String),
}

fn describe_connect_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        std::io::ErrorKind::TimedOut => "connect timed out".into(),
        _ => format!("connect failed: {e}"),
    }
}
