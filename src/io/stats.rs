//! Per-worker counters: plain integers owned by one core, merged by control on demand.

#[derive(Default, Clone, Debug)]
pub struct WorkerStats {
    pub clients_accepted: u64,
    pub clients_current: u64,
    pub requests: u64,
    pub protocol_errors: u64,
    pub unknown_commands: u64,
}

impl WorkerStats {
    pub fn client_opened(&mut self) {
        self.clients_accepted += 1;
        self.clients_current += 1;
    }

    pub fn client_closed(&mut self) {
        self.clients_current = self.clients_current.saturating_sub(1);
    }
}

#[derive(Default, Clone, Debug)]
pub struct WorkerSnapshot {
    pub stats: WorkerStats,
}
