//! `all_sync`, `all_async`, `all_initial`, `all_fastest`, `all_majority`: mcrouter's AllSyncRoute,
//! AllAsyncRoute, AllInitialRoute, AllFastestRoute and AllMajorityRoute. Every child gets the request; they
//! differ in which reply the client gets and when:
//!
//! - `all_sync`: waits for every child and answers with the worst reply ([`super::severity`]); on a tie the
//!   reply that arrived first is kept.
//! - `all_async`: answers at once with the default reply ([`super::null`]); the children get the request in the
//!   background.
//! - `all_initial`: answers with the first child's reply (as soon as it arrives); the others in the background.
//! - `all_fastest`: answers with the first reply that is not a failure (a miss is an answer); when every child
//!   failed, with the last failure.
//! - `all_majority`: answers once one severity has been seen from floor(n/2)+1 children, with the first reply of
//!   that severity; when all are in without a majority, the most common severity wins, ties going to the worse.
//!
//! [`Combine`] is fed replies in arrival order and says when and with what to answer; the executor keeps sending
//! the others' replies to it so it can account for them, but only the first answer reaches the client.

use crate::config::AllMode;

/// Which reply answers the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The reply of this child.
    Child(usize),
    /// The default reply (all_async).
    Default,
}

/// The reply combining state of one fanned-out request.
#[derive(Debug, Clone)]
pub struct Combine {
    mode: AllMode,
    children: usize,
    arrived: usize,
    answered: bool,
    /// all_sync: the worst so far (severity, child).
    worst: Option<(u8, usize)>,
    /// all_fastest: the last failure so far.
    last: Option<usize>,
    /// all_majority: per severity 0..=10, how many and the first child.
    counts: [(usize, usize); 11],
}

impl Combine {
    pub fn new(mode: AllMode, children: usize) -> Combine {
        Combine { mode, children, arrived: 0, answered: false, worst: None, last: None, counts: [(0, 0); 11] }
    }

    /// Before any reply: all_async answers now.
    pub fn start(&mut self) -> Option<Answer> {
        if self.mode == AllMode::Async || self.children == 0 {
            self.answered = true;
            return Some(Answer::Default);
        }
        None
    }

    /// Child `child`'s reply arrived with `severity`; `failure` says whether it is a failover error. Returns the
    /// answer the first time one is decided, `None` otherwise (before, and after it was given).
    pub fn arrive(&mut self, child: usize, severity: u8, failure: bool) -> Option<Answer> {
        self.arrived += 1;
        let all_in = self.arrived >= self.children;
        let answer = match self.mode {
            AllMode::Async => None,
            AllMode::Initial => (child == 0).then_some(Answer::Child(0)),
            AllMode::Sync => {
                if self.worst.is_none_or(|(s, _)| severity > s) {
                    self.worst = Some((severity, child));
                }
                if all_in {
                    self.worst.map(|(_, c)| Answer::Child(c))
                } else {
                    None
                }
            }
            AllMode::Fastest => {
                if !failure {
                    Some(Answer::Child(child))
                } else {
                    self.last = Some(child);
                    if all_in {
                        self.last.map(Answer::Child)
                    } else {
                        None
                    }
                }
            }
            AllMode::Majority => {
                let s = usize::from(severity.min(10));
                if self.counts[s].0 == 0 {
                    self.counts[s].1 = child;
                }
                self.counts[s].0 += 1;
                if self.counts[s].0 > self.children / 2 {
                    Some(Answer::Child(self.counts[s].1))
                } else if all_in {
                    // Most common; on a tie in counts the worse (higher) severity.
                    let (_, (_, first)) =
                        self.counts.iter().enumerate().filter(|(_, c)| c.0 > 0).max_by_key(|(s, c)| (c.0, *s))?;
                    Some(Answer::Child(*first))
                } else {
                    None
                }
            }
        };
        match answer {
            Some(a) if !self.answered => {
                self.answered = true;
                Some(a)
            }
            _ => None,
        }
    }

    /// Every child has replied (the executor may release the request's bytes).
    pub fn finished(&self) -> bool {
        self.arrived >= self.children
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::severity::{HIT, MISS, REMOTE_ERROR, UNREACHABLE};
    use crate::routes::testing::{run, Arrival};

    #[test]
    fn all_sync_waits_for_everyone_and_returns_the_worst() {
        let arrivals = [Arrival::new(1, HIT), Arrival::new(0, MISS), Arrival::new(2, HIT)];
        assert_eq!(run(AllMode::Sync, 3, &arrivals), Some((Answer::Child(0), 3)));
        let tie = [Arrival::new(2, MISS), Arrival::new(0, MISS), Arrival::new(1, HIT)];
        assert_eq!(run(AllMode::Sync, 3, &tie), Some((Answer::Child(2), 3)), "a tie keeps the reply held");
        let failed = [Arrival::new(0, HIT), Arrival::failed(1, UNREACHABLE), Arrival::new(2, MISS)];
        assert_eq!(run(AllMode::Sync, 3, &failed), Some((Answer::Child(1), 3)));
    }

    #[test]
    fn all_sync_with_a_paused_child_does_not_answer() {
        // Child 1 never replies (paused): no answer yet.
        assert_eq!(run(AllMode::Sync, 3, &[Arrival::new(0, HIT), Arrival::new(2, HIT)]), None);
    }

    #[test]
    fn all_async_answers_before_any_reply() {
        assert_eq!(run(AllMode::Async, 2, &[]), Some((Answer::Default, 0)));
    }

    #[test]
    fn all_initial_answers_with_the_first_child_whenever_it_arrives() {
        let arrivals = [Arrival::new(1, HIT), Arrival::new(2, HIT), Arrival::new(0, MISS)];
        assert_eq!(run(AllMode::Initial, 3, &arrivals), Some((Answer::Child(0), 3)));
    }

    #[test]
    fn all_fastest_takes_the_first_non_failure() {
        let arrivals = [Arrival::failed(0, UNREACHABLE), Arrival::new(2, MISS), Arrival::new(1, HIT)];
        assert_eq!(run(AllMode::Fastest, 3, &arrivals), Some((Answer::Child(2), 2)), "a miss is an answer");
        let all_fail = [Arrival::failed(1, UNREACHABLE), Arrival::failed(0, REMOTE_ERROR)];
        assert_eq!(run(AllMode::Fastest, 2, &all_fail), Some((Answer::Child(0), 2)), "the last failure");
        // The first child is paused and the second answers: no waiting for the first.
        assert_eq!(run(AllMode::Fastest, 2, &[Arrival::new(1, HIT)]), Some((Answer::Child(1), 1)));
    }

    #[test]
    fn all_majority_answers_once_half_plus_one_agree() {
        let arrivals = [Arrival::new(0, HIT), Arrival::new(1, MISS), Arrival::new(2, HIT), Arrival::new(3, HIT)];
        assert_eq!(run(AllMode::Majority, 3, &arrivals[..3]), Some((Answer::Child(0), 3)));
        assert_eq!(run(AllMode::Majority, 4, &arrivals), Some((Answer::Child(0), 4)), "3 of 4");
        let split = [Arrival::new(0, HIT), Arrival::new(1, MISS), Arrival::new(2, HIT), Arrival::new(3, MISS)];
        assert_eq!(run(AllMode::Majority, 4, &split), Some((Answer::Child(1), 4)), "a tie goes to the worse");
    }
}
