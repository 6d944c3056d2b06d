//! TLS figures of one worker: handshakes, failures by cause, connections open. Kept per thread (each worker is one
//! thread, so nothing is shared between cores) and read into the worker's snapshot.

use crate::tls::{Failure, TlsSide, TlsStats};
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

thread_local! {
    static STATS: RefCell<TlsStats> = RefCell::new(TlsStats::default());
    static LOG: LogLimit = LogLimit::default();
}

fn with(side: Side, f: impl FnOnce(&mut TlsSide)) {
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        f(match side {
            Side::Client => &mut s.clients,
            Side::Backend => &mut s.backends,
        })
    });
}

pub fn handshake_done(side: Side) {
    with(side, |s| {
        s.handshakes += 1;
        s.connections += 1;
    });
}

pub fn handshake_failed(side: Side, cause: Failure) {
    with(side, |s| s.failures[cause.index()] += 1);
}

pub fn connection_closed(side: Side) {
    with(side, |s| s.connections = s.connections.saturating_sub(1));
}

/// This thread's figures.
pub fn snapshot() -> TlsStats {
    STATS.with(|s| *s.borrow())
}

/// Lines about failed client handshakes per second and worker, beyond which they are counted, not logged: a port
/// scanner or a misconfigured fleet must not flood the log.
const LOG_PER_SECOND: u32 = 10;

#[derive(Default)]
struct LogLimit {
    window: Cell<Option<Instant>>,
    logged: Cell<u32>,
    suppressed: Cell<u64>,
}

/// Logs a failed client handshake at warn level, at most [`LOG_PER_SECOND`] a second on this worker; the first
/// line after a quiet spell says how many were left out.
pub fn log_client_failure(line: impl FnOnce() -> String) {
    LOG.with(|l| {
        let now = Instant::now();
        if l.window.get().is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1)) {
            l.window.set(Some(now));
            l.logged.set(0);
        }
        if l.logged.get() >= LOG_PER_SECOND {
            l.suppressed.set(l.suppressed.get() + 1);
            return;
        }
        l.logged.set(l.logged.get() + 1);
        let left_out = l.suppressed.replace(0);
        if left_out > 0 {
            log::warn!("{} ({left_out} more TLS handshake failures not logged)", line());
        } else {
            log::warn!("{}", line());
        }
    });
}
