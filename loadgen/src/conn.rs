//! One connection's life on a worker executor: connect, send on schedule with up to
//! `--pipeline` requests in flight, match replies to requests in FIFO order, record, and on any
//! failure count what was lost, back off and reconnect. Nothing here panics or waits forever:
//! connects have a timeout and the worker's watchdog shuts a socket whose oldest request is
//! older than `--timeout`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpStream, UnixStream};
use glommio::timer::sleep;

use crate::client::{Codec, Verifier};
use crate::plan::{Target, WorkerShared};
use crate::schedule::{Schedule, SendTimes};
use crate::workload::{write_key, KeyChooser, OpKind, OpMix};

/// First wait before reconnecting; doubles per failure up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Longest an idle connection sleeps before looking at the stop flag again.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(50);
/// Initial receive buffer; grows (doubling) when a single reply is larger.
const INITIAL_READ_BUFFER: usize = 64 * 1024;

/// What the worker's watchdog knows about a connection, shared through `Rc` on one thread.
#[derive(Debug)]
pub struct ConnMonitor {
    fd: Cell<RawFd>,
    oldest_sent: Cell<Option<Instant>>,
    timed_out: Cell<bool>,
}

impl Default for ConnMonitor {
    fn default() -> Self {
        Self { fd: Cell::new(-1), oldest_sent: Cell::new(None), timed_out: Cell::new(false) }
    }
}

impl ConnMonitor {
    /// Called by the watchdog: if the oldest request in flight was sent more than `timeout`
    /// ago, shuts the socket down so the connection's pending read or write fails at once.
    pub fn enforce_timeout(&self, now: Instant, timeout: Duration) {
        let Some(oldest) = self.oldest_sent.get() else {
            return;
        };
        if self.timed_out.get() || now.saturating_duration_since(oldest) < timeout {
            return;
        }
        self.timed_out.set(true);
        let fd = self.fd.get();
        if fd >= 0 {
            // SAFETY: `fd` is the open socket of this connection: it is set right after connect
            // and reset to -1 before the stream is dropped, all on this thread. shutdown(2)
            // only changes the socket's state; it does not close or reuse the descriptor.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }
}

/// Either kind of socket the target can be.
enum Stream {
    Tcp(TcpStream),
    /// The stream and its descriptor, which glommio does not expose.
    Unix(UnixStream, RawFd),
}

impl Stream {
    async fn connect(target: &Target, timeout: Duration) -> io::Result<Stream> {
        match target {
            Target::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(*addr, timeout).await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            Target::Unix(path) => {
                // glommio's UnixStream does not expose its descriptor, which the watchdog needs,
                // so connect with std (a local connect completes or fails at once) and hand the
                // descriptor over.
                let std_stream = std::os::unix::net::UnixStream::connect(path)?;
                let fd = std_stream.into_raw_fd();
                // SAFETY: `fd` is a connected unix stream socket that nothing else owns:
                // into_raw_fd gave up std's ownership and glommio's stream takes it over.
                let stream = unsafe { UnixStream::from_raw_fd(fd) };
                Ok(Stream::Unix(stream, fd))
            }
        }
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(stream) => stream.as_raw_fd(),
            Stream::Unix(_, fd) => *fd,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Unix(stream, _) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Unix(stream, _) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Unix(stream, _) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_close(cx),
            Stream::Unix(stream, _) => Pin::new(stream).poll_close(cx),
        }
    }
}

/// Why a connection's in-flight requests were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    Reset,
    Timeout,
    BadReply,
}

/// How driving one established connection ended.
enum Ended {
    /// Nothing more to send and nothing in flight.
    Finished,
    /// The connection failed; its in-flight requests are lost for this reason.
    Failed(Loss),
}

/// A request waiting for its reply.
#[derive(Clone, Copy, Debug)]
struct Pending {
    op: OpKind,
    times: SendTimes,
    /// Keys requested (1 for get/set, N for multi-get).
    keys: u32,
    /// Request size on the wire.
    bytes: u32,
}

/// Which connection of the run this is, for seeding and spreading the schedule.
#[derive(Clone, Copy, Debug)]
pub struct ConnSlot {
    /// 0-based over all threads' connections.
    pub global: u64,
    /// Connections in the run.
    pub total: u64,
}

/// One connection and everything it reuses between requests.
pub struct Connection {
    worker: Rc<WorkerShared>,
    monitor: Rc<ConnMonitor>,
    codec: Codec,
    schedule: Schedule,
    keys: KeyChooser,
    mix: OpMix,
    /// Requests left to send with `--requests`.
    budget: Option<u64>,
    inflight: VecDeque<Pending>,
    /// Key indices of in-flight reads, in order (kept only with `--verify`).
    inflight_keys: VecDeque<u64>,
    out: Vec<u8>,
    input: Vec<u8>,
    filled: usize,
    names: Vec<u8>,
    name_ranges: Vec<Range<usize>>,
    value: Vec<u8>,
    key_scratch: Vec<u64>,
    start: Instant,
    deadline: Option<Instant>,
}

impl Connection {
    /// Prepares connection `slot`; fails only on an invalid workload (checked before a run).
    pub fn new(worker: Rc<WorkerShared>, monitor: Rc<ConnMonitor>, slot: ConnSlot) -> Result<Self, String> {
        let plan = &worker.plan;
        let seed = plan.seed ^ slot.global.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let keys = KeyChooser::new(plan.distribution, plan.keys, seed, slot.global, slot.total)?;
        let schedule = match plan.rate {
            None => Schedule::closed(),
            Some(rate) => Schedule::open(
                rate / slot.total as f64,
                plan.arrival,
                slot.global as f64 / slot.total as f64,
                seed.rotate_left(17),
            ),
        };
        let budget = plan.requests.map(|total| total / slot.total + u64::from(slot.global < total % slot.total));
        Ok(Self {
            codec: Codec::new(plan.protocol),
            schedule,
            keys,
            mix: OpMix::new(plan.ratio, plan.read_kind(), slot.global),
            budget,
            inflight: VecDeque::with_capacity(plan.pipeline),
            inflight_keys: VecDeque::new(),
            out: Vec::with_capacity(4096),
            input: vec![0; INITIAL_READ_BUFFER],
            filled: 0,
            names: Vec::new(),
            name_ranges: Vec::new(),
            value: Vec::new(),
            key_scratch: Vec::new(),
            start: Instant::now(),
            deadline: None,
            worker,
            monitor,
        })
    }

    /// Runs until the run ends: its duration passes, its request budget is spent, or the stop
    /// flag is raised; in-flight requests are then given `--timeout` to complete.
    pub async fn run(mut self) {
        let worker = self.worker.clone();
        let first_attempt = Stream::connect(&worker.plan.target, worker.plan.timeout).await;
        worker.gate.mark_ready();
        let Some(start) = worker.wait_for_start().await else {
            return;
        };
        self.start = start;
        self.deadline = worker.plan.duration.and_then(|duration| start.checked_add(duration));

        let mut attempt = Some(first_attempt);
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let connected = match attempt.take() {
                Some(result) => result,
                None => Stream::connect(&worker.plan.target, worker.plan.timeout).await,
            };
            match connected {
                Ok(mut stream) => {
                    backoff = INITIAL_BACKOFF;
                    self.monitor.fd.set(stream.raw_fd());
                    let ended = self.drive(&mut stream).await;
                    self.monitor.fd.set(-1);
                    drop(stream);
                    match ended {
                        Ended::Finished => break,
                        Ended::Failed(loss) => self.lose_inflight(loss),
                    }
                }
                Err(_) => worker.stats.borrow_mut().connect_errors += 1,
            }
            if !self.may_send(Instant::now()) {
                break;
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            self.skip_missed_sends(Instant::now());
        }
        self.count_backlog();
    }

    fn may_send(&self, now: Instant) -> bool {
        !self.worker.stopping() && self.deadline.is_none_or(|deadline| now < deadline) && self.budget != Some(0)
    }

    /// Sends, reads and records until there is nothing left to do or the connection fails.
    async fn drive(&mut self, stream: &mut Stream) -> Ended {
        loop {
            let now = Instant::now();
            let sending = self.may_send(now);
            if sending {
                self.enqueue_due(now);
            }
            if !self.out.is_empty() {
                self.monitor.oldest_sent.set(self.inflight.front().map(|p| p.times.sent));
                let written = stream.write_all(&self.out).await;
                self.out.clear();
                if let Err(err) = written {
                    return Ended::Failed(self.loss_from(&err));
                }
            }
            if self.inflight.is_empty() {
                if !sending {
                    return Ended::Finished;
                }
                let wait = self.until_next_due(now).unwrap_or(MAX_IDLE_WAIT);
                sleep(wait.min(MAX_IDLE_WAIT)).await;
                continue;
            }
            if self.filled == self.input.len() {
                // A single reply larger than the buffer: make room for the rest of it.
                let larger = self.input.len() * 2;
                self.input.resize(larger, 0);
            }
            let wake_to_send = if sending && self.inflight.len() < self.worker.plan.pipeline {
                self.until_next_due(now).map(|wait| wait.min(MAX_IDLE_WAIT))
            } else {
                None
            };
            let space = &mut self.input[self.filled..];
            let read = match wake_to_send {
                None => stream.read(space).await.map(Some),
                Some(wait) => {
                    futures_lite::future::or(async { stream.read(space).await.map(Some) }, async {
                        sleep(wait).await;
                        Ok(None)
                    })
                    .await
                }
            };
            match read {
                Ok(None) => {}
                Ok(Some(0)) => return Ended::Failed(self.loss_on_close()),
                Ok(Some(n)) => {
                    self.filled += n;
                    if self.complete_replies().is_err() {
                        return Ended::Failed(Loss::BadReply);
                    }
                }
                Err(err) => return Ended::Failed(self.loss_from(&err)),
            }
        }
    }

    /// Time until the next scheduled send (open loop only).
    fn until_next_due(&self, now: Instant) -> Option<Duration> {
        // Beyond what an Instant can hold means never (an absurdly low rate).
        let due = self.start.checked_add(self.schedule.next_due()?)?;
        Some(due.saturating_duration_since(now))
    }

    /// Encodes every request that is due and fits in the window into `self.out`.
    fn enqueue_due(&mut self, now: Instant) {
        let plan = self.worker.plan.clone();
        while self.inflight.len() < plan.pipeline && self.budget != Some(0) {
            let intended = match self.schedule.next_due() {
                None => now,
                Some(offset) => match self.start.checked_add(offset) {
                    Some(due) if due <= now => due,
                    _ => break,
                },
            };
            self.schedule.advance();
            if let Some(budget) = &mut self.budget {
                *budget -= 1;
            }
            let op = self.mix.next_op();
            let before = self.out.len();
            let key_count = match op {
                OpKind::Set => {
                    let key = self.keys.next_key();
                    self.names.clear();
                    write_key(&plan.key_prefix, key, &mut self.names);
                    self.value.clear();
                    plan.values.write_value(key, &mut self.value);
                    self.codec.encode_set(&self.names, &self.value, &mut self.out);
                    1
                }
                OpKind::Get | OpKind::Mget => {
                    let count = if op == OpKind::Mget { plan.mget } else { 1 };
                    self.names.clear();
                    self.name_ranges.clear();
                    for _ in 0..count {
                        let key = self.keys.next_key();
                        let begin = self.names.len();
                        write_key(&plan.key_prefix, key, &mut self.names);
                        self.name_ranges.push(begin..self.names.len());
                        if plan.verify {
                            self.inflight_keys.push_back(key);
                        }
                    }
                    self.codec.encode_read(op, &self.names, &self.name_ranges, &mut self.out);
                    count
                }
            };
            self.inflight.push_back(Pending {
                op,
                times: SendTimes { intended, sent: now },
                keys: u32::try_from(key_count).unwrap_or(u32::MAX),
                bytes: u32::try_from(self.out.len() - before).unwrap_or(u32::MAX),
            });
        }
    }

    /// Matches every complete reply in the input buffer to its request and records it.
    /// `Err` when the bytes cannot be replies to what is in flight: the stream is out of step.
    fn complete_replies(&mut self) -> Result<(), ()> {
        let now = Instant::now();
        let plan = self.worker.plan.clone();
        let verifier = plan.verify.then(|| Verifier { values: &plan.values, key_prefix: &plan.key_prefix });
        let mut stats = self.worker.stats.borrow_mut();
        let mut consumed = 0;
        while consumed < self.filled {
            let Some(&pending) = self.inflight.front() else {
                // Bytes nobody asked for.
                return Err(());
            };
            let buf = &self.input[consumed..self.filled];
            let len = match self.codec.frame(pending.op, buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(_) => return Err(()),
            };
            self.inflight.pop_front();
            self.key_scratch.clear();
            if plan.verify && pending.op.is_read() {
                for _ in 0..pending.keys {
                    self.key_scratch.extend(self.inflight_keys.pop_front());
                }
            }
            let reply = &buf[..len];
            let verdict =
                self.codec.judge(pending.op, reply, pending.keys as usize, &self.key_scratch, verifier.as_ref());
            let op = stats.op_mut(pending.op);
            op.completed += 1;
            op.hits += verdict.hits;
            op.misses += verdict.misses;
            op.bytes_sent += u64::from(pending.bytes);
            op.bytes_received += len as u64;
            op.latency.record_duration(pending.times.corrected_latency(now));
            op.service.record_duration(pending.times.service_time(now));
            if verdict.error_reply {
                op.errors.error_reply += 1;
            } else if verdict.bad_reply {
                op.errors.bad_reply += 1;
            } else if verdict.wrong_values > 0 {
                op.errors.verify += 1;
            }
            consumed += len;
        }
        self.input.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        self.monitor.oldest_sent.set(self.inflight.front().map(|p| p.times.sent));
        Ok(())
    }

    fn loss_on_close(&self) -> Loss {
        if self.monitor.timed_out.get() {
            Loss::Timeout
        } else {
            Loss::Reset
        }
    }

    fn loss_from(&self, err: &io::Error) -> Loss {
        if self.monitor.timed_out.get() || err.kind() == io::ErrorKind::TimedOut {
            Loss::Timeout
        } else {
            Loss::Reset
        }
    }

    /// Counts every in-flight request as failed and forgets the connection's state.
    fn lose_inflight(&mut self, loss: Loss) {
        let mut stats = self.worker.stats.borrow_mut();
        for pending in self.inflight.drain(..) {
            let errors = &mut stats.op_mut(pending.op).errors;
            match loss {
                Loss::Reset => errors.reset += 1,
                Loss::Timeout => errors.timeout += 1,
                Loss::BadReply => errors.bad_reply += 1,
            }
        }
        self.inflight_keys.clear();
        self.filled = 0;
        self.codec.reset();
        self.monitor.oldest_sent.set(None);
        self.monitor.timed_out.set(false);
    }

    /// Open loop, while reconnecting: the requests whose time passed are counted as errors
    /// rather than sent late in a burst.
    fn skip_missed_sends(&mut self, now: Instant) {
        if self.schedule.is_closed() || !self.may_send(now) {
            return;
        }
        let mut skipped = self.schedule.skip_until(now.saturating_duration_since(self.start));
        if let Some(budget) = &mut self.budget {
            skipped = skipped.min(*budget);
            *budget -= skipped;
        }
        let writes = self.mix.skip(skipped);
        let read_kind = self.worker.plan.read_kind();
        let mut stats = self.worker.stats.borrow_mut();
        stats.op_mut(OpKind::Set).errors.unsent += writes;
        stats.op_mut(read_kind).errors.unsent += skipped - writes;
    }

    /// Open loop, at the end of a timed run: requests due before the end that never went out
    /// because the window stayed full (the target fell behind the offered rate).
    fn count_backlog(&mut self) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if self.schedule.is_closed() || self.worker.stopping() {
            return;
        }
        let behind = self.schedule.skip_until(deadline - self.start);
        self.worker.stats.borrow_mut().backlog += behind;
    }
}
