//! Counters and histograms, per operation kind.
//!
//! Each worker thread records into its own [`StatsSet`] (no sharing on the request path) and
//! once a second hands the interval's figures to the main thread, which adds them up.

use ferrule::histogram::Histogram;
use serde::Serialize;

use crate::workload::OpKind;

/// Why requests failed. Each counts requests, except `connect`, which counts failed attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Connection attempts refused or failed (not per request).
    pub connect: u64,
    /// Requests lost when the connection was reset or closed under them.
    pub reset: u64,
    /// Requests with no reply within `--timeout` (the connection is then re-established).
    pub timeout: u64,
    /// Error replies from the server (`-ERR ...`, `SERVER_ERROR ...`).
    pub error_reply: u64,
    /// Replies that parse but are not what the command returns, or do not parse at all.
    pub bad_reply: u64,
    /// Values read back that differ from what was written (`--verify`).
    pub verify: u64,
    /// Open loop: requests whose send time passed while the connection was down.
    pub unsent: u64,
}

impl ErrorCounts {
    /// Failed requests (every kind except connection attempts).
    pub fn requests(&self) -> u64 {
        self.reset + self.timeout + self.error_reply + self.bad_reply + self.verify + self.unsent
    }

    fn merge(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.error_reply += other.error_reply;
        self.bad_reply += other.bad_reply;
        self.verify += other.verify;
        self.unsent += other.unsent;
    }
}

/// Figures of one operation kind.
#[derive(Clone, Debug, Default)]
pub struct OpStats {
    /// Requests that got a reply (including error replies).
    pub completed: u64,
    /// Keys found (reads only; a multi-key read counts each key).
    pub hits: u64,
    /// Keys not found (reads only).
    pub misses: u64,
    /// Failed requests, by cause.
    pub errors: ErrorCounts,
    /// Request bytes written.
    pub bytes_sent: u64,
    /// Reply bytes read.
    pub bytes_received: u64,
    /// Latency from the intended send time, in microseconds (equal to `service` in closed loop).
    pub latency: Histogram,
    /// Latency from the actual send, in microseconds.
    pub service: Histogram,
}

impl OpStats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) {
        self.completed += other.completed;
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors.merge(&other.errors);
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.latency.merge(&other.latency);
        self.service.merge(&other.service);
    }
}

/// Figures of every operation kind, plus what belongs to no operation.
#[derive(Clone, Debug, Default)]
pub struct StatsSet {
    /// Indexed by [`OpKind::index`].
    pub ops: [OpStats; 3],
    /// Failed connection attempts.
    pub connect_errors: u64,
    /// Open loop: requests due before the run ended but never sent because the window stayed
    /// full (the server could not keep up with the offered rate).
    pub backlog: u64,
}

impl StatsSet {
    /// The figures of one kind.
    pub fn op(&self, kind: OpKind) -> &OpStats {
        &self.ops[kind.index()]
    }

    /// The figures of one kind, to record into.
    pub fn op_mut(&mut self, kind: OpKind) -> &mut OpStats {
        &mut self.ops[kind.index()]
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &StatsSet) {
        for (mine, theirs) in self.ops.iter_mut().zip(other.ops.iter()) {
            mine.merge(theirs);
        }
        self.connect_errors += other.connect_errors;
        self.backlog += other.backlog;
    }

    /// All kinds added together.
    pub fn total(&self) -> OpStats {
        let mut total = OpStats::default();
        for op in &self.ops {
            total.merge(op);
        }
        total.errors.connect = self.connect_errors;
        total
    }

    /// Returns the figures so far and starts over, keeping nothing (for per-second intervals).
    pub fn take(&mut self) -> StatsSet {
        std::mem::take(self)
    }
}

/// What a worker thread sends the main thread.
#[derive(Debug)]
pub struct IntervalReport {
    /// The interval's figures.
    pub stats: StatsSet,
    /// True for the worker's last report: it has stopped.
    pub finished: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_everything() {
        let mut a = StatsSet::default();
        let mut b = StatsSet::default();
        a.op_mut(OpKind::Get).completed = 3;
        a.op_mut(OpKind::Get).hits = 2;
        a.op_mut(OpKind::Get).latency.record(100);
        b.op_mut(OpKind::Get).completed = 4;
        b.op_mut(OpKind::Get).errors.timeout = 1;
        b.op_mut(OpKind::Set).completed = 5;
        b.op_mut(OpKind::Set).service.record(7);
        b.connect_errors = 2;
        a.merge(&b);
        assert_eq!(a.op(OpKind::Get).completed, 7);
        assert_eq!(a.op(OpKind::Get).errors.requests(), 1);
        assert_eq!(a.op(OpKind::Get).latency.len(), 1);
        let total = a.total();
        assert_eq!(total.completed, 12);
        assert_eq!(total.hits, 2);
        assert_eq!(total.errors.connect, 2);
        assert_eq!(total.service.len(), 1);
        assert_eq!(a.op(OpKind::Mget).completed, 0);
        let taken = a.take();
        assert_eq!(taken.op(OpKind::Set).completed, 5);
        assert_eq!(a.op(OpKind::Set).completed, 0);
    }
}
