//! Messages between the control executor and the workers (one channel per worker in each direction).
//!
//! Control sends every decision to every worker through the same FIFO channels and never sends two broadcasts at
//! once, so all workers see the same sequence of reloads, ejections and restores.

use crate::config::Config;
use std::sync::Arc;

/// A server of a pool, named as in the config: (pool name, server spec string).
pub type ServerKey = (String, String);

#[derive(Clone)]
pub enum ToWorker {
    /// Swap in a new, already validated config. `ejected` lists the servers control keeps out of the rings, so the
    /// new rings are built without them from the start (no moment where an ejected server is routed to).
    /// The worker answers with [`FromWorker::Reloaded`] carrying the same `generation`.
    Reload { generation: u64, config: Arc<Config>, ejected: Vec<ServerKey> },
    /// Take a server out of a pool's ring (every core does it on the same broadcast).
    Eject { pool: String, server: String },
    /// Put an ejected server back after a successful probe.
    Restore { pool: String, server: String },
    /// A `redis_cluster` pool's slot map, newly read by control (`version` counts the maps control saw change).
    /// Every worker routes by the same map from the moment it takes this message.
    ClusterMap { pool: String, version: u64, map: Arc<crate::cluster::SlotMap> },
    /// A `redis_cluster` pool without a map yet whose topology read failed: why (each node's failure, e.g. a TLS
    /// handshake refused), for the error its requests get meanwhile.
    ClusterUnreachable { pool: String, why: String },
    /// Send a stats snapshot back.
    Snapshot { id: u64 },
    /// Stop accepting, finish in-flight requests until the deadline, then stop. `handover`: a successor serves the
    /// listening sockets now (a binary upgrade), so they are left open for it instead of being closed.
    Shutdown { grace_ms: u64, handover: bool },
}

pub enum FromWorker {
    /// A backend connection failed or recovered (server is the spec string, as in the config).
    Health {
        worker: usize,
        pool: String,
        server: String,
        failed: Option<String>,
    },
    /// A reload was applied; `problems` lists what could not be done (a listener that failed to bind).
    Reloaded {
        worker: usize,
        generation: u64,
        problems: Vec<String>,
    },
    Snapshot {
        worker: usize,
        id: u64,
        stats: Box<super::stats::WorkerSnapshot>,
    },
    Stopped {
        worker: usize,
    },
    /// A `redis_cluster` pool's map looks stale (a redirect, a failed node): read the topology again soon. Control
    /// rate-limits these, so a storm of redirects causes one refresh.
    ClusterRefresh {
        pool: String,
    },
}

/// Awaits `connect`, the connection of one end of a glommio shared channel, on an executor that may have nothing
/// else to do.
///
/// glommio 0.9 does not wake an executor whose end waits for the other end to connect: the waiting end only sees
/// the peer when its executor's loop runs again (`Connector` re-checks on every loop). An executor with no timer
/// and no I/O parks in its ring without a timeout, so when a worker got to its end before control (CPU load makes
/// that order likely) it slept for good and ferrule failed to start ("a worker did not start within 10 s"). A
/// timer running meanwhile bounds every park, and each wake re-checks the channel. Startup only: not the request
/// path.
pub async fn connect_end<F: std::future::Future>(connect: F) -> F::Output {
    let ticker = glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        }
    });
    let connected = connect.await;
    // Dropping a glommio task cancels it.
    drop(ticker);
    connected
}
