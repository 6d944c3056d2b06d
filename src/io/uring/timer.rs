//! Timers of the data path, fired by the driver after each pass; the earliest one bounds how long it sleeps.
//!
//! Workers use these instead of glommio's timers because the driver may be asleep in its own ring, where glommio's
//! timers cannot wake it. Timers are per connection or per core (deadline ticks, back-off, lingering), never per
//! request.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Timers {
    /// Deadlines with their timer ids; an id missing from `wakers` was cancelled (dropped) and is skipped.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: HashMap<u64, Waker>,
    next_id: u64,
}

impl Timers {
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Wakes every timer due by `now`; returns whether any was.
    pub fn fire(&mut self, now: Instant) -> bool {
        let mut fired = false;
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some(w) = self.wakers.remove(&id) {
                w.wake();
                fired = true;
            }
        }
        fired
    }
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep { deadline: Instant::now() + duration, id: None }
}

pub struct Sleep {
    deadline: Instant,
    id: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(id) = self.id.take() {
                super::current().timers.borrow_mut().wakers.remove(&id);
            }
            return Poll::Ready(());
        }
        let reactor = super::current();
        reactor.note_activity();
        let mut timers = reactor.timers.borrow_mut();
        match self.id {
            Some(id) => {
                timers.wakers.insert(id, cx.waker().clone());
            }
            None => {
                let id = timers.next_id;
                timers.next_id += 1;
                timers.heap.push(Reverse((self.deadline, id)));
                timers.wakers.insert(id, cx.waker().clone());
                self.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (Some(id), Some(reactor)) = (self.id, super::try_current()) {
            reactor.timers.borrow_mut().wakers.remove(&id);
        }
    }
}

/// Runs `fut` for at most `duration`: `None` when time ran out (and `fut` is dropped with the [`Timeout`]).
pub fn timeout<F: Future>(duration: Duration, fut: F) -> Timeout<F> {
    Timeout { fut, sleep: sleep(duration) }
}

/// A future and its deadline, side by side. A plain struct rather than an `async` block around `or`: the async
/// version stored `fut` twice (the argument and the moved copy inside the block), and a session's idle wait is a
/// timeout around a read that every idle client holds for as long as it is connected.
pub struct Timeout<F> {
    fut: F,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is pinned structurally: it is never moved out of `self` (no method hands it out, and
        // `Timeout` has no `Drop` that could move it); `sleep` is `Unpin` and is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        if let Poll::Ready(out) = fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
