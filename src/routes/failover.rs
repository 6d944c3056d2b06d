//! `failover` and `miss_failover`: mcrouter's FailoverRoute and MissFailoverRoute.
//!
//! `failover`: the request goes to the first child; while the reply is a failure of a class in `failover_errors`
//! (default: all of connect_error, timeout, unavailable, server_error; see [`crate::config::FailureClass`]) and
//! fewer than `max_tries` children (default: all) were tried, it goes to the next child in order. A miss is not a
//! failure, nor is a client error. The client gets the first reply that is not a failure, or the last failure.
//!
//! `miss_failover`: reads and deletes go on to the next child while the reply is not a hit (a miss or a failure),
//! up to `max_tries`; the first hit answers, else the last reply. Other operations go to the first child only.
//!
//! [`Failover::next`] is the whole rule: given the attempt that just replied and how, answer or try the next.

use super::OpClass;
use crate::config::FailureClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This attempt's reply answers the client.
    Answer,
    /// Send the request to this child next.
    Try(usize),
}

#[derive(Debug, Clone)]
pub struct Failover {
    children: usize,
    max_tries: usize,
    /// `None` for miss_failover.
    classes: Option<Vec<FailureClass>>,
}

impl Failover {
    pub fn new(children: usize, max_tries: usize, classes: &[FailureClass]) -> Failover {
        Failover { children, max_tries: max_tries.min(children), classes: Some(classes.to_vec()) }
    }

    pub fn miss(children: usize, max_tries: usize) -> Failover {
        Failover { children, max_tries: max_tries.min(children), classes: None }
    }

    /// Whether a request of this class may go past the first child at all.
    pub fn applies_to(&self, class: OpClass) -> bool {
        self.classes.is_some() || matches!(class, OpClass::Get | OpClass::Delete)
    }

    /// Attempt `attempt` (0-based, child `attempt`) replied; `failure` is its failure class if any, `hit` whether
    /// it was a hit.
    pub fn next(&self, class: OpClass, attempt: usize, failure: Option<FailureClass>, hit: bool) -> Step {
        let more = attempt + 1 < self.max_tries;
        let go_on = match &self.classes {
            Some(classes) => failure.is_some_and(|f| classes.contains(&f)),
            None => matches!(class, OpClass::Get | OpClass::Delete) && !hit,
        };
        if go_on && more {
            Step::Try(attempt + 1)
        } else {
            Step::Answer
        }
    }

    pub fn children(&self) -> usize {
        self.children
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FailureClass::*;

    #[test]
    fn failover_moves_on_failures_not_on_misses() {
        let f = Failover::new(3, 3, &FailureClass::ALL);
        assert_eq!(f.next(OpClass::Get, 0, Some(Timeout), false), Step::Try(1));
        assert_eq!(f.next(OpClass::Get, 1, Some(ConnectError), false), Step::Try(2));
        assert_eq!(f.next(OpClass::Get, 2, Some(Unavailable), false), Step::Answer, "the last failure answers");
        assert_eq!(f.next(OpClass::Get, 0, None, false), Step::Answer, "a miss answers");
        assert_eq!(f.next(OpClass::Update, 0, Some(ServerError), false), Step::Try(1), "writes fail over too");
    }

    #[test]
    fn max_tries_and_failure_classes_bound_it() {
        let f = Failover::new(3, 2, &FailureClass::ALL);
        assert_eq!(f.next(OpClass::Get, 1, Some(Timeout), false), Step::Answer);
        let only_connect = Failover::new(3, 3, &[ConnectError]);
        assert_eq!(only_connect.next(OpClass::Get, 0, Some(Timeout), false), Step::Answer);
        assert_eq!(only_connect.next(OpClass::Get, 0, Some(ConnectError), false), Step::Try(1));
    }

    #[test]
    fn miss_failover_reads_go_on_until_a_hit() {
        let f = Failover::miss(3, 3);
        assert_eq!(f.next(OpClass::Get, 0, None, false), Step::Try(1));
        assert_eq!(f.next(OpClass::Get, 1, Some(Timeout), false), Step::Try(2), "a failure is not a hit");
        assert_eq!(f.next(OpClass::Get, 1, None, true), Step::Answer);
        assert_eq!(f.next(OpClass::Get, 2, None, false), Step::Answer, "the last reply");
        assert!(!f.applies_to(OpClass::Update));
        assert_eq!(f.next(OpClass::Update, 0, None, false), Step::Answer, "writes go to the first child only");
    }
}
