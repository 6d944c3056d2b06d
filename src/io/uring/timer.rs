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

/// Runs `fut` for at most `duration`: `None` when time ran out (and `fut` was dropped).
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(duration).await;
        None
    })
    .await
}
