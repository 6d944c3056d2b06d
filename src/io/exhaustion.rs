//! Running out of descriptors (or kernel memory for sockets) is the proxy's own condition, not a client's or a
//! server's: accept loops pause instead of spinning, backend connects fail the request without blaming the server,
//! and the warnings come once per interval instead of once per attempt.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

/// How often a warning about a condition that persists is repeated.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The process (EMFILE) or the system (ENFILE) has no descriptor left, or the kernel has no memory for one more
/// socket: retrying at once cannot succeed.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// The errno's name, for messages operators grep for.
pub fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) => "EMFILE",
        Some(libc::ENFILE) => "ENFILE",
        Some(libc::ENOBUFS) => "ENOBUFS",
        Some(libc::ENOMEM) => "ENOMEM",
        _ => "error",
    }
}

/// What a backend connect that failed for want of a descriptor tells the request (and the log).
pub fn connect_failure(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) => "cannot connect: ferrule is out of file descriptors (EMFILE)".into(),
        Some(libc::ENFILE) => "cannot connect: the system is out of file descriptors (ENFILE)".into(),
        _ => format!("cannot connect: ferrule is out of socket memory ({})", errno_name(e)),
    }
}

/// Lets a message through once per interval and counts the ones it held back.
pub struct Throttle {
    interval: Duration,
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl Throttle {
    pub const fn new(interval: Duration) -> Throttle {
        Throttle { interval, last: Cell::new(None), suppressed: Cell::new(0) }
    }

    /// `Some(n)` when the message is to be logged now, `n` being how many were held back since the last one.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        match self.last.get() {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.suppressed.set(self.suppressed.get() + 1);
                None
            }
            _ => {
                self.last.set(Some(now));
                Some(self.suppressed.replace(0))
            }
        }
    }
}

/// " (N more in the last 10 s)", or nothing.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it in the last {} s)", WARN_INTERVAL.as_secs())
    }
}

/// The pause of an accept loop that cannot get a descriptor: 10 ms doubling to 100 ms, back to 10 ms after an
/// accept succeeds. Short enough that a freed descriptor is used soon, long enough that a full table costs nothing.
pub struct AcceptBackoff {
    next: Duration,
}

const MIN_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
const MAX_ACCEPT_PAUSE: Duration = Duration::from_millis(100);

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { next: MIN_ACCEPT_PAUSE }
    }
}

impl AcceptBackoff {
    /// The pause after another failure.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_ACCEPT_PAUSE);
        pause
    }

    pub fn succeeded(&mut self) {
        self.next = MIN_ACCEPT_PAUSE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        for i in 1..=40 {
            assert_eq!(t.allow(t0 + Duration::from_millis(25 * i)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(40));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.allow(t0 + Duration::from_secs(25)), Some(1));
        assert_eq!(suppressed_note(0), "");
        assert_eq!(suppressed_note(40), " (40 more like it in the last 10 s)");
    }

    #[test]
    fn accept_backoff_doubles_to_its_cap_and_resets() {
        let mut b = AcceptBackoff::default();
        let pauses: Vec<u64> = (0..6).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(pauses, vec![10, 20, 40, 80, 100, 100]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
    }

    #[test]
    fn descriptor_errors_are_named() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(is_out_of_descriptors(&emfile));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(libc::ECONNREFUSED)));
        assert_eq!(connect_failure(&emfile), "cannot connect: ferrule is out of file descriptors (EMFILE)");
        assert!(connect_failure(&io::Error::from_raw_os_error(libc::ENFILE)).contains("(ENFILE)"));
    }
}
