//! The data path's own io_uring, beneath glommio, on the same core.
//!
//! glommio 0.9 schedules our tasks well, but its reactor costs too much per loop for a proxy whose requests are a few
//! dozen bytes: six to eight `io_uring_enter` calls and a `membarrier` per loop, a one-shot poll re-armed for every
//! read, and completions delivered by inter-processor interrupts (docs/benchmarks.md has the profile). This reactor
//! keeps glommio as the executor (tasks, pinning, channels to control) and does the sockets itself:
//!
//! - one ring per worker with `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG`: completions are processed only when we
//!   ask, in one batch, never by interrupt;
//! - a multishot receive per connection, armed once, filling buffers from a shared provided-buffer ring
//!   ([`bufring`]): reading costs no system call at all;
//! - sends from every task of this core queued during one pass and submitted by one `io_uring_enter`, which is also
//!   the call that collects completions, and the only one a busy pass makes (none when there is nothing to submit);
//! - multishot accept, connect, timers and a doorbell eventfd that control rings after sending a message, so an idle
//!   worker can sleep in its own ring and still hear control promptly.
//!
//! [`drive`] runs the loop as a glommio task. Between two passes it yields: every task woken by the pass runs (the
//! task queue is FIFO), then the driver again. It only blocks in the kernel after two quiet passes in a row, by which
//! time every task woken in between has run. Because the driver is always runnable, glommio's own loop (its timers
//! and I/O) only runs when glommio preempts the queue, about every 100 ms; so workers use this module's timers, and
//! receive control's messages by polling the channel when the doorbell rings ([`on_doorbell`]).

mod bufring;
mod conn;
mod doorbell;
mod listener;
mod timer;

pub use conn::{connect, Conn};
pub use doorbell::Doorbell;
pub use listener::{AcceptStop, Listener};
pub use timer::{sleep, timeout};

use bufring::BufRing;
use conn::ConnIo;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use listener::ListenerIo;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::unix::io::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Submission queue entries; completions get four times as many (multishot operations post many each).
const RING_ENTRIES: u32 = 2048;
/// Receive buffers shared by all connections of a core, and their size. Each is returned as soon as its bytes are
/// copied out, so only what arrived during one pass is ever held.
const RECV_BUFFERS: u16 = 512;
const RECV_BUFFER_LEN: usize = 16 * 1024;
/// Longest sleep in the kernel: a safety net (timers and the doorbell wake the driver earlier when needed).
const MAX_WAIT: Duration = Duration::from_millis(50);

thread_local! {
    static CURRENT: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

/// The reactor of this thread. Only worker threads have one; using the data-path types elsewhere is a bug.
pub(crate) fn current() -> Rc<Reactor> {
    CURRENT.with(|c| c.borrow().clone()).expect("io::uring used on a thread without a reactor (not a worker)")
}

/// Like [`current`], for destructors that may run after the reactor is gone (thread exit).
pub(crate) fn try_current() -> Option<Rc<Reactor>> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Creates this thread's reactor and its driver task; `doorbell` is an eventfd other threads write to wake it, and
/// `busy_poll` how long the driver keeps polling after its last work before it sleeps.
pub fn install(doorbell: Option<RawFd>, busy_poll: Duration) -> io::Result<glommio::Task<()>> {
    let reactor = Rc::new(Reactor::new()?);
    if let Some(fd) = doorbell {
        reactor.arm_doorbell(fd, Box::new(0));
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(reactor.clone()));
    Ok(glommio::spawn_local(drive(reactor, busy_poll)))
}

/// Has the current task woken when the doorbell next rings (it then polls its channel from control again).
pub fn on_doorbell(waker: &Waker) {
    let reactor = current();
    reactor.note_activity();
    let mut slot = reactor.doorbell_waker.borrow_mut();
    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
        *slot = Some(waker.clone());
    }
}

/// What a slot of the operation table holds: what the kernel still uses, and who waits for the outcome.
enum Op {
    Free,
    /// A connection's multishot receive.
    Recv(Rc<ConnIo>),
    /// A listener's multishot accept.
    Accept(Rc<ListenerIo>),
    /// A one-shot operation a future waits for.
    Await(Awaited),
    /// A read of the doorbell eventfd, re-armed after every wake.
    Doorbell(RawFd, Box<u64>),
    /// A cancellation: nobody needs its result.
    Ignore,
}

/// A one-shot operation's state, and the memory the kernel reads until it completes.
struct Awaited {
    result: Option<i32>,
    waker: Option<Waker>,
    /// The future was dropped: free the slot on completion.
    detached: bool,
    buf: Vec<u8>,
    _conn: Option<Rc<ConnIo>>,
    _addr: Option<Box<socket2::SockAddr>>,
}

impl Awaited {
    fn holding(buf: Vec<u8>, conn: Option<Rc<ConnIo>>, addr: Option<Box<socket2::SockAddr>>) -> Awaited {
        Awaited { result: None, waker: None, detached: false, buf, _conn: conn, _addr: addr }
    }
}

pub(crate) struct Reactor {
    // Field order is drop order: the ring goes before the buffer memory it was told about.
    ring: RefCell<IoUring>,
    bufs: BufRing,
    slots: RefCell<Vec<Op>>,
    free: RefCell<Vec<usize>>,
    /// Entries that did not fit in the submission queue; pushed before the next enter.
    overflow: RefCell<VecDeque<squeue::Entry>>,
    timers: RefCell<timer::Timers>,
    stopped: Cell<bool>,
    /// Bumped whenever a task uses the reactor (see `note_activity`).
    activity: Cell<u64>,
    /// The task to wake when the doorbell rings.
    doorbell_waker: RefCell<Option<Waker>>,
    /// Completions copied out of the queue so handlers may submit while we process them (reused every pass).
    reaped: RefCell<Vec<(u64, i32, u32)>>,
}

impl Reactor {
    fn new() -> io::Result<Reactor> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(RING_ENTRIES * 4)
            .build(RING_ENTRIES)?;
        let bufs = BufRing::new(&ring, RECV_BUFFERS, RECV_BUFFER_LEN)?;
        Ok(Reactor {
            ring: RefCell::new(ring),
            bufs,
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            overflow: RefCell::new(VecDeque::new()),
            timers: RefCell::new(timer::Timers::default()),
            reaped: RefCell::new(Vec::new()),
            doorbell_waker: RefCell::new(None),
            stopped: Cell::new(false),
            activity: Cell::new(0),
        })
    }

    fn alloc(&self, op: Op) -> usize {
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = op;
                i
            }
            None => {
                slots.push(op);
                slots.len() - 1
            }
        }
    }

    /// Frees `slot` and hands back what it held.
    fn take_slot(&self, slot: usize) -> Op {
        let old = std::mem::replace(&mut self.slots.borrow_mut()[slot], Op::Free);
        self.free.borrow_mut().push(slot);
        old
    }

    fn release(&self, slot: usize) {
        // Dropped outside the borrow: dropping a connection's last reference may submit its cancellation.
        drop(self.take_slot(slot));
    }

    fn push(&self, sqe: squeue::Entry) {
        self.note_activity();
        let mut overflow = self.overflow.borrow_mut();
        if !overflow.is_empty() {
            // Behind what is already waiting: a cancellation must never overtake the operation it cancels.
            overflow.push_back(sqe);
            return;
        }
        let mut ring = self.ring.borrow_mut();
        // SAFETY: every entry points at memory its slot owns until the completion (see `Op`).
        if unsafe { ring.submission().push(&sqe) }.is_err() {
            overflow.push_back(sqe);
        }
    }

    /// A task used the reactor (queued an operation, waited for data, a timer or a completion): the driver counts
    /// a pass as quiet only if no task did since the last one, so it does not sleep while a task that was just
    /// woken (by another task, not by the kernel) still has work to hand it.
    pub(crate) fn note_activity(&self) {
        self.activity.set(self.activity.get().wrapping_add(1));
    }

    fn arm_recv(&self, conn: &Rc<ConnIo>) {
        let slot = self.alloc(Op::Recv(conn.clone()));
        conn.recv_slot.set(Some(slot));
        self.push(opcode::RecvMulti::new(types::Fd(conn.fd), bufring::GROUP).build().user_data(slot as u64));
    }

    fn arm_accept(&self, l: &Rc<ListenerIo>) {
        let slot = self.alloc(Op::Accept(l.clone()));
        l.slot.set(Some(slot));
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        self.push(opcode::AcceptMulti::new(types::Fd(l.fd)).flags(flags).build().user_data(slot as u64));
    }

    fn arm_doorbell(&self, fd: RawFd, mut buf: Box<u64>) {
        let ptr = (&mut *buf as *mut u64).cast::<u8>();
        let slot = self.alloc(Op::Doorbell(fd, buf));
        self.push(opcode::Read::new(types::Fd(fd), ptr, 8).build().user_data(slot as u64));
    }

    /// Asks the kernel to end operation `slot` (its completion then arrives with `-ECANCELED`).
    fn cancel(&self, slot: usize) {
        let c = self.alloc(Op::Ignore);
        self.push(opcode::AsyncCancel::new(slot as u64).build().user_data(c as u64));
    }

    /// Queues a one-shot operation built by `build` (given the slot's buffer) and returns its future.
    fn submit_awaited(
        &self,
        awaited: Awaited,
        cancel_on_drop: bool,
        build: impl FnOnce(&Awaited) -> squeue::Entry,
    ) -> OpFuture {
        let sqe = build(&awaited);
        let slot = self.alloc(Op::Await(awaited));
        self.push(sqe.user_data(slot as u64));
        OpFuture { slot, done: false, cancel_on_drop }
    }

    /// One pass: submit what the tasks queued, collect completions (waiting up to `block` for one when given), and
    /// hand them out.
    fn turn(&self, block: Option<Duration>) -> Pass {
        let mut reaped = std::mem::take(&mut *self.reaped.borrow_mut());
        let submitted = {
            let mut ring = self.ring.borrow_mut();
            self.flush_overflow(&mut ring);
            let mut sq = ring.submission();
            sq.sync();
            let to_submit = sq.len();
            // Completions the kernel could not post because the queue was full wait in its overflow list until an
            // enter with GETEVENTS flushes them.
            let taskrun = sq.taskrun() || sq.cq_overflow();
            drop(sq);
            let cq_ready = !ring.completion().is_empty();
            let result = match block {
                Some(wait) if !cq_ready => {
                    let ts = types::Timespec::from(wait);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    ring.submitter().submit_with_args(1, &args)
                }
                _ if to_submit > 0 || taskrun => {
                    // GETEVENTS even with nothing to wait for: with DEFER_TASKRUN it is what runs the kernel's
                    // deferred completion work.
                    // SAFETY: plain io_uring_enter on our own ring, no argument.
                    unsafe { ring.submitter().enter::<libc::sigset_t>(to_submit as u32, 0, 1, None) }
                }
                _ => Ok(0),
            };
            if let Err(e) = result {
                // ETIME: the wait timed out; EINTR: a signal; EBUSY: completions must be reaped first. All are
                // handled by reaping now and trying again next pass.
                if !matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)) {
                    log::error!("io_uring_enter failed: {e}");
                }
            }
            for cqe in ring.completion() {
                reaped.push((cqe.user_data(), cqe.result(), cqe.flags()));
            }
            to_submit > 0
        };
        let completed = !reaped.is_empty();
        for &(user_data, result, flags) in reaped.iter() {
            self.complete(user_data as usize, result, flags);
        }
        reaped.clear();
        *self.reaped.borrow_mut() = reaped;
        let fired = self.timers.borrow_mut().fire(Instant::now());
        Pass { io: submitted || completed, timers: fired }
    }

    fn flush_overflow(&self, ring: &mut IoUring) {
        let mut overflow = self.overflow.borrow_mut();
        while let Some(sqe) = overflow.front() {
            // SAFETY: as in `push`.
            if unsafe { ring.submission().push(sqe) }.is_err() {
                // Full: submit what is there and make room.
                if ring.submit().is_err() {
                    return;
                }
                continue;
            }
            overflow.pop_front();
        }
    }

    fn complete(&self, slot: usize, result: i32, flags: u32) {
        let more = cqueue::more(flags);
        let kind = match self.slots.borrow().get(slot) {
            Some(Op::Recv(c)) => Kind::Recv(c.clone()),
            Some(Op::Accept(l)) => Kind::Accept(l.clone()),
            Some(Op::Await(_)) => Kind::Await,
            Some(Op::Doorbell(..)) => Kind::Doorbell,
            Some(Op::Ignore) => Kind::Ignore,
            Some(Op::Free) | None => return,
        };
        match kind {
            Kind::Recv(conn) => {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    let len = result.max(0) as usize;
                    self.bufs.consume(bid, len, |bytes| conn.received(bytes));
                }
                if !more {
                    conn.recv_slot.set(None);
                    self.release(slot);
                }
                conn.on_recv_result(self, result, more);
            }
            Kind::Accept(l) => {
                if !more {
                    l.slot.set(None);
                    self.release(slot);
                }
                l.on_result(result);
            }
            Kind::Await => {
                let mut slots = self.slots.borrow_mut();
                if let Some(Op::Await(a)) = slots.get_mut(slot) {
                    a.result = Some(result);
                    if a.detached {
                        drop(slots);
                        self.release(slot);
                    } else if let Some(w) = a.waker.take() {
                        drop(slots);
                        w.wake();
                    }
                }
            }
            Kind::Doorbell => {
                let old = self.take_slot(slot);
                if let Some(w) = self.doorbell_waker.borrow_mut().take() {
                    w.wake();
                }
                if let Op::Doorbell(fd, buf) = old {
                    // Listen again unless the descriptor is gone.
                    if result != -libc::EBADF && result != -libc::ECANCELED {
                        self.arm_doorbell(fd, buf);
                    }
                }
            }
            Kind::Ignore => self.release(slot),
        }
    }
}

enum Kind {
    Recv(Rc<ConnIo>),
    Accept(Rc<ListenerIo>),
    Await,
    Doorbell,
    Ignore,
}

/// The future of a one-shot operation: its result (a byte count or `-errno`) and the buffer it used.
pub(crate) struct OpFuture {
    slot: usize,
    done: bool,
    cancel_on_drop: bool,
}

impl Future for OpFuture {
    type Output = (i32, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let reactor = current();
        reactor.note_activity();
        let mut slots = reactor.slots.borrow_mut();
        let Some(Op::Await(a)) = slots.get_mut(self.slot) else {
            return Poll::Ready((-libc::ECANCELED, Vec::new()));
        };
        match a.result {
            Some(result) => {
                let buf = std::mem::take(&mut a.buf);
                drop(slots);
                reactor.release(self.slot);
                self.done = true;
                Poll::Ready((result, buf))
            }
            None => {
                if !a.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    a.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for OpFuture {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(reactor) = try_current() else { return };
        let finished = match reactor.slots.borrow_mut().get_mut(self.slot) {
            Some(Op::Await(a)) => {
                a.detached = true;
                a.waker = None;
                a.result.is_some()
            }
            _ => return,
        };
        if finished {
            reactor.release(self.slot);
        } else if self.cancel_on_drop {
            reactor.cancel(self.slot);
        }
    }
}

/// What one [`Reactor::turn`] did.
struct Pass {
    /// Operations were submitted or completed: traffic, or control's doorbell.
    io: bool,
    /// Timers fired (the worker's periodic tick among them).
    timers: bool,
}

/// Runs the reactor on this core until [`stop`] is called.
///
/// After `busy_poll` without work (and at least two quiet passes) it sleeps in the kernel. Polling longer means
/// fewer sleeps: every packet sent to a sleeping worker costs its sender a cross-CPU wake-up, which on a dedicated
/// core is pure loss; on a core shared with other busy processes the polling takes their time instead, so the
/// default is 0 (docs/benchmarks.md has the measurements). A quiet pass makes no system call.
async fn drive(reactor: Rc<Reactor>, busy_poll: Duration) {
    let mut quiet_passes = 0u32;
    let mut seen_activity = reactor.activity.get();
    // Only read when polling: `Instant::now` per pass is not free.
    let mut last_work = Instant::now();
    while !reactor.stopped.get() {
        let block = if quiet_passes >= 2 && (busy_poll.is_zero() || last_work.elapsed() >= busy_poll) {
            let until_timer =
                reactor.timers.borrow().next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            Some(until_timer.map_or(MAX_WAIT, |d| d.min(MAX_WAIT)))
        } else {
            None
        };
        let pass = reactor.turn(block);
        let activity = reactor.activity.get();
        if !busy_poll.is_zero() && pass.io {
            // Only I/O restarts the polling window: the worker's 5 ms tick fires timers and re-arms one (activity)
            // forever, and an idle worker must still go to sleep.
            last_work = Instant::now();
        }
        if pass.io || pass.timers || activity != seen_activity {
            seen_activity = activity;
            quiet_passes = 0;
        } else {
            quiet_passes = quiet_passes.saturating_add(1);
        }
        // Let every task woken by this pass run (see the module comment).
        futures_lite::future::yield_now().await;
    }
}

/// Ends this thread's driver (when the worker stops), so that glommio's own loop runs again and the executor can
/// finish.
pub fn stop() {
    if let Some(r) = try_current() {
        r.stopped.set(true);
    }
}
