//! TLS figures: handshakes, failures by cause, connections open; per worker, then summed for /metrics and /stats.

use super::Failure;

/// One side's figures: clients (listeners) or backends (pools).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsSide {
    pub handshakes: u64,
    pub failures: [u64; Failure::ALL.len()],
    /// TLS connections open now.
    pub connections: u64,
}

impl TlsSide {
    pub fn add(&mut self, other: &TlsSide) {
        self.handshakes += other.handshakes;
        self.connections += other.connections;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
    }

    pub fn failed(&self) -> u64 {
        self.failures.iter().sum()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsStats {
    pub clients: TlsSide,
    pub backends: TlsSide,
}

impl TlsStats {
    pub fn add(&mut self, other: &TlsStats) {
        self.clients.add(&other.clients);
        self.backends.add(&other.backends);
    }
}
