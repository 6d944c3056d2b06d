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
mod takeover;
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
    /// Take the listening sockets over from the ferrule serving `proxy.upgrade_socket` (a binary upgrade).
    pub takeover: bool,
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
    takeover::remember_exe();
    // A binary upgrade: the running ferrule's sockets, received before anything is bound (see io::takeover).
    let mut inherited = match (&cfg.proxy.upgrade_socket, opts.takeover) {
        (Some(path), true) => Some(takeover::receive(path)?),
        (None, true) => {
            return Err("--takeover needs proxy.upgrade_socket: the running ferrule's upgrade socket".into())
        }
        (_, false) => None,
    };
    if inherited.is_some() {
        takeover::hold_accepts();
    }
    let mut take = |kind, addr: String| inherited.as_mut().and_then(|i| i.take(kind, &addr));
    // The upgrade socket first: a ferrule already serving it is an error here, before any listener is shared
    // with it by SO_REUSEPORT.
    let upgrade_socket = match &cfg.proxy.upgrade_socket {
        Some(path) => match take(crate::handover::Kind::Upgrade, path.display().to_string()) {
            Some(fd) => Some((fd, path.clone())),
            None => Some((takeover::bind(path)?, path.clone())),
        },
        None => None,
    };
    // Bound before anything starts: a port in use is a start-up error, not a proxy running without /health.
    let mut endpoint = |kind, what: &str, addr: Option<std::net::SocketAddr>| -> Result<_, String> {
        let Some(addr) = addr else { return Ok(None) };
        let listener = match take(kind, addr.to_string()) {
            Some(fd) => std::net::TcpListener::from(fd),
            None => admin::bind(what, addr)?,
        };
        takeover::register(kind, 0, addr.to_string(), std::os::unix::io::AsFd::as_fd(&listener))
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(Some(listener))
    };
    let admin = endpoint(crate::handover::Kind::Admin, "admin endpoint (proxy.admin)", cfg.proxy.admin)?;
    let stats_port = endpoint(crate::handover::Kind::Stats, "stats port (proxy.stats_port)", cfg.proxy.stats_port)?;
    let mut worker_sockets = inherited.as_mut().map(|i| i.split_listeners(cpus.len())).unwrap_or_default();
    worker_sockets.resize_with(cpus.len(), takeover::WorkerSockets::new);
    let flags = control::SignalFlags::register().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let handed_over = flags.handed_over.clone();
    let cfg_upgrade_socket = cfg.proxy.upgrade_socket.clone();
    let cfg = Arc::new(cfg);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut to_workers = Vec::new();
    let mut from_workers = Vec::new();
    let mut handles = Vec::new();
    for ((i, &cpu), sockets) in cpus.iter().enumerate().zip(worker_sockets) {
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
            .spawn(move || worker::run(i, workers, cfg, w_rx, w_tx, doorbell, ready, sockets))
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
    takeover::release_accepts();
    if let Some(inherited) = inherited {
        // The previous process keeps serving until this confirmation. Without it (it died in the middle of the
        // exchange, say), this process serves the sockets all the same.
        match inherited.confirm_ready() {
            Ok(()) => log::info!("takeover: the previous process stops accepting and drains"),
            Err(e) => log::warn!("takeover: {e}"),
        }
        takeover::finish_taking_over();
    }
    if let Some((fd, path)) = upgrade_socket {
        takeover::serve(fd, path, handed_over.clone());
    }
    log::info!("ferrule {} ready: {} workers", env!("CARGO_PKG_VERSION"), cpus.len());
    takeover::notify_ready();
    let _ = ctl.join();
    for h in handles {
        let _ = h.join();
    }
    if let (Some(path), false) = (&cfg_upgrade_socket, handed_over.load(std::sync::atomic::Ordering::Relaxed)) {
        // A plain shutdown: nobody serves the upgrade socket any more. After a hand-over the successor does.
        let _ = std::fs::remove_file(path);
    }
    log::info!("stopped");
    Ok(())
}
