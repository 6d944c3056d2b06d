//! Messages between the control executor and the workers (one channel per worker in each direction).

use crate::config::Config;
use std::sync::Arc;

#[derive(Clone)]
pub enum ToWorker {
    /// Swap in a new, already validated config.
    Reload(Arc<Config>),
    /// Take a server out of a pool's ring (every core does it on the same broadcast).
    Eject { pool: String, server: String },
    /// Put an ejected server back after a successful probe.
    Restore { pool: String, server: String },
    /// Send a stats snapshot back.
    Snapshot { id: u64 },
    /// Stop accepting, finish in-flight requests until the deadline, then stop.
    Shutdown { grace_ms: u64 },
}

pub enum FromWorker {
    /// A backend connection failed or recovered (server is the spec string, as in the config).
    Health {
        worker: usize,
        pool: String,
        server: String,
        failed: Option<String>,
    },
    Snapshot {
        worker: usize,
        id: u64,
        stats: Box<super::stats::WorkerSnapshot>,
    },
    Stopped {
        worker: usize,
    },
}
