//! The I/O layer on glommio: executors, listeners, client sessions, backend connections, control and admin.
//! Everything glommio-specific lives here; the layers above it are pure. The data path's sockets go through
//! `uring`, each worker's own io_uring beneath glommio (docs/architecture.md says why).

mod admin;
mod admin_access;
mod backend;
mod bufpool;
mod cluster;
mod control;
mod dedicated;
mod exhaustion;
mod fan;
mod messages;
mod metrics;
mod pool;
mod probe;
mod replies;
mod session;
mod stats;
mod stats_json;
mod stream;
pub mod sys;
mod tls;
mod topology;
mod uring;
mod worker;

use crate::config::{Config, Workers};
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct RunOptions {
    pub config_path: PathBuf,
    /// Reload when the config file changes (besides SIGHUP and POST /reload).
    pub watch_config: bool,
}

/// The CPUs the workers are pinned to: `proxy.cpus`, else the allowed CPUs in order, as many as `proxy.workers`.
pub fn worker_cpus(cfg: &Config) -> Result<Vec<usize>, String> {
    let allowed = sys::allowed_cpus();
    let pool: Vec<usize> = cfg.proxy.cpus.clone().unwrap_or_else(|| allowed.clone());
    let n = match cfg.proxy.workers {
        Workers::Auto => pool.len(),
        Workers::Count(n) => n,
    };
    if n == 0 {
        return Err("proxy.workers must be at least 1".into());
    }
    for c in &pool {
        if !allowed.contains(c) {
            return Err(format!("proxy.cpus names CPU {c}, which this process may not run on (allowed: {allowed:?})"));
        }
    }
    // More workers than CPUs wrap around: useful on small test machines, never faster.
    Ok((0..n).map(|i| pool[i % pool.len()]).collect())
}

/// Starts the workers and control and blocks until shutdown.
pub fn run(cfg: Config, opts: RunOptions) -> Result<(), String> {
    sys::check_io_uring()?;
    let cpus = worker_cpus(&cfg)?;
    let io_memory = cfg.proxy.io_memory_kib * 1024;
    sys::check_memlock(cpus.len() + 1, cfg.proxy.io_memory_kib)?;
    let nofile = sys::raise_nofile();
    log::info!("descriptor limit: {nofile} (soft limit raised to the hard limit)");
    if let Some(warning) = sys::nofile_warning(&cfg, cpus.len(), nofile) {
        log::warn!("{warning}");
    }
    // Bound before anything starts: a port in use is a start-up error, not a proxy running without /health.
    let admin = cfg.proxy.admin.map(|a| admin::bind("admin endpoint (proxy.admin)", a)).transpose()?;
    let stats_port = cfg.proxy.stats_port.map(|a| admin::bind("stats port (proxy.stats_port)", a)).transpose()?;
    let flags = control::SignalFlags::register().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let cfg = Arc::new(cfg);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut to_workers = Vec::new();
    let mut from_workers = Vec::new();
    let mut handles = Vec::new();
    for (i, &cpu) in cpus.iter().enumerate() {
        let (ctl_tx, w_rx) = shared_channel::new_bounded(64);
        let (w_tx, ctl_rx) = shared_channel::new_bounded(4096);
        let doorbell = Arc::new(uring::Doorbell::new().map_err(|e| format!("cannot create an eventfd: {e}"))?);
        to_workers.push((ctl_tx, doorbell.clone()));
        from_workers.push(ctl_rx);
        let cfg = cfg.clone();
        let ready = ready_tx.clone();
        let workers = cpus.len();
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("ferrule-w{i}"))
            .io_memory(io_memory)
            .spawn(move || worker::run(i, workers, cfg, w_rx, w_tx, doorbell, ready))
            .map_err(|e| format!("cannot start worker {i} on CPU {cpu}: {e}"))?;
        log::info!("worker {i} pinned to CPU {cpu}");
        handles.push(h);
    }
    // Control starts first: the channels connect both ends before a worker can finish starting.
    let path = opts.config_path.clone();
    let watch = opts.watch_config;
    let ctl = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ferrule-ctl")
        .io_memory(io_memory)
        .spawn(move || {
            let endpoints = control::Endpoints { admin, stats_port };
            control::run(cfg, path, to_workers, from_workers, flags, watch, endpoints)
        })
        .map_err(|e| format!("cannot start the control executor: {e}"))?;
    for _ in 0..cpus.len() {
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a worker did not start within 10 s".into()),
        }
    }
    log::info!("ferrule {} ready: {} workers", env!("CARGO_PKG_VERSION"), cpus.len());
    let _ = ctl.join();
    for h in handles {
        let _ = h.join();
    }
    log::info!("stopped");
    Ok(())
}
