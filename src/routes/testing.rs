//! Scripted fake destinations for the combining routes' tests, in the manner of mcrouter's RouteHandleTest: a
//! test lists the replies in the order the children deliver them; a child left out is paused (never replies).

use super::all::{Answer, Combine};
use crate::config::AllMode;

/// One child's reply: which child, its severity, whether it is a failover error.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub child: usize,
    pub severity: u8,
    pub failure: bool,
}

impl Arrival {
    pub fn new(child: usize, severity: u8) -> Arrival {
        Arrival { child, severity, failure: false }
    }

    pub fn failed(child: usize, severity: u8) -> Arrival {
        Arrival { child, severity, failure: true }
    }
}

/// Feeds `arrivals` in order to a combiner over `children`; the answer and how many replies had arrived when it
/// was given (0: before any), or `None` when it never answers.
pub fn run(mode: AllMode, children: usize, arrivals: &[Arrival]) -> Option<(Answer, usize)> {
    let mut c = Combine::new(mode, children);
    if let Some(a) = c.start() {
        return Some((a, 0));
    }
    for (i, a) in arrivals.iter().enumerate() {
        if let Some(answer) = c.arrive(a.child, a.severity, a.failure) {
            return Some((answer, i + 1));
        }
    }
    None
}
