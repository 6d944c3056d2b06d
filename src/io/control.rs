//! The control executor: the one place that decides ejections, probes ejected servers, reloads the config and
//! shuts down, broadcasting each decision to every worker so that all cores agree on every ring.

use super::messages::{FromWorker, ToWorker};
use super::stats::WorkerSnapshot;
use crate::config::{Config, Protocol};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Flags set by signal handlers, polled by control (never touched on the request path).
#[derive(Default, Clone)]
pub struct SignalFlags {
    pub terminate: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
    pub dump: Arc<AtomicBool>,
}

impl SignalFlags {
    pub fn register() -> std::io::Result<SignalFlags> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        let f = SignalFlags::default();
        for sig in [SIGTERM, SIGINT] {
            // A second SIGTERM/SIGINT exits at once; the first asks for a graceful shutdown.
            signal_hook::flag::register_conditional_shutdown(sig, 1, f.terminate.clone())?;
            signal_hook::flag::register(sig, f.terminate.clone())?;
        }
        signal_hook::flag::register(SIGHUP, f.reload.clone())?;
        signal_hook::flag::register(SIGUSR1, f.dump.clone())?;
        Ok(f)
    }
}

#[derive(Default)]
struct ServerHealth {
    failures: u32,
    ejected: bool,
    probe_at: Option<Instant>,
    probe_backoff: Duration,
    probing: bool,
    last_error: String,
    ejected_at: u64,
}

pub struct Control {
    pub config: RefCell<Arc<Config>>,
    path: PathBuf,
    workers: Vec<ConnectedSender<ToWorker>>,
    health: RefCell<HashMap<(String, String), ServerHealth>>,
    pub reloads: Cell<u64>,
    pub reload_failures: Cell<u64>,
    pub started: Instant,
    snapshots: RefCell<HashMap<u64, Vec<WorkerSnapshot>>>,
    next_snapshot: Cell<u64>,
    stopped: Cell<usize>,
}

impl Control {
    async fn broadcast(&self, msg: ToWorker) {
        for w in &self.workers {
            let _ = w.send(msg.clone()).await;
        }
    }

    /// Validates and applies the config file; an invalid file changes nothing.
    pub async fn reload(&self, why: &str) -> Result<(), String> {
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                self.reload_failures.set(self.reload_failures.get() + 1);
                log::error!("reload ({why}) rejected, the running config stays: {e}");
                return Err(e.to_string());
            }
        };
        let old = self.config.borrow().clone();
        if format!("{:?}", old.proxy.workers) != format!("{:?}", new.proxy.workers) || old.proxy.cpus != new.proxy.cpus
        {
            log::warn!("reload ({why}): proxy.workers/proxy.cpus changes take effect only after a restart");
        }
        let new = Arc::new(new);
        *self.config.borrow_mut() = new.clone();
        // Forget health of servers that left; keep ejections of those that stay.
        let still: Vec<(String, String)> = {
            let mut health = self.health.borrow_mut();
            health.retain(|(pool, server), _| {
                new.pool(pool).is_some_and(|p| p.servers.iter().any(|s| &s.spec == server))
            });
            health.iter().filter(|(_, h)| h.ejected).map(|(k, _)| k.clone()).collect()
        };
        self.broadcast(ToWorker::Reload(new.clone())).await;
        for (pool, server) in still {
            self.broadcast(ToWorker::Eject { pool, server }).await;
        }
        self.reloads.set(self.reloads.get() + 1);
        log::info!("reload ({why}): config applied ({} listeners, {} pools)", new.listeners.len(), new.pools.len());
        Ok(())
    }

    async fn on_health(self: &Rc<Self>, pool: String, server: String, failed: Option<String>) {
        let cfg = self.config.borrow().clone();
        let Some(pc) = cfg.pool(&pool) else { return };
        let eject = {
            let mut health = self.health.borrow_mut();
            let h = health.entry((pool.clone(), server.clone())).or_default();
            match failed {
                None => {
                    h.failures = 0;
                    false
                }
                Some(reason) => {
                    h.failures += 1;
                    h.last_error = reason;
                    if pc.auto_eject_hosts && !h.ejected && h.failures >= pc.server_failure_limit {
                        h.ejected = true;
                        h.ejected_at = unix_now();
                        h.probe_backoff = Duration::from_millis(pc.server_retry_timeout_ms);
                        h.probe_at = Some(Instant::now() + h.probe_backoff);
                        log::warn!(
                            "pool {pool}: ejecting server {server} after {} consecutive failures (last: {}); probing again in {} ms",
                            h.failures,
                            h.last_error,
                            pc.server_retry_timeout_ms
                        );
                        true
                    } else {
                        false
                    }
                }
            }
        };
        if eject {
            self.broadcast(ToWorker::Eject { pool, server }).await;
        }
    }

    /// Probes ejected servers whose retry time has come; a server returns only when its probe answers.
    fn start_due_probes(self: &Rc<Self>) {
        let now = Instant::now();
        let cfg = self.config.borrow().clone();
        let mut due = Vec::new();
        for ((pool, server), h) in self.health.borrow_mut().iter_mut() {
            if h.ejected && !h.probing && h.probe_at.is_some_and(|t| t <= now) {
                h.probing = true;
                due.push((pool.clone(), server.clone()));
            }
        }
        for (pool, server) in due {
            let Some(pc) = cfg.pool(&pool) else { continue };
            let Some(sc) = pc.servers.iter().find(|s| s.spec == server) else { continue };
            let addr = sc.addr;
            let protocol = pc.protocol;
            let timeout = Duration::from_millis(pc.timeout_ms.max(100));
            let auth = pc.redis_auth.clone();
            let this = self.clone();
            glommio::spawn_local(async move {
                let result = super::probe::probe(addr, protocol, auth.as_deref(), timeout).await;
                this.probe_done(pool, server, result).await;
            })
            .detach();
        }
    }

    async fn probe_done(&self, pool: String, server: String, result: Result<(), String>) {
        let restore = {
            let mut health = self.health.borrow_mut();
            let Some(h) = health.get_mut(&(pool.clone(), server.clone())) else { return };
            h.probing = false;
            match result {
                Ok(()) => {
                    h.ejected = false;
                    h.failures = 0;
                    h.probe_at = None;
                    log::info!("pool {pool}: server {server} answered its probe; restoring it to the ring");
                    true
                }
                Err(e) => {
                    // Back off x1.5 with jitter, capped at a minute, so a dead server is not hammered.
                    let next = h.probe_backoff.mul_f64(1.5).min(Duration::from_secs(60));
                    let jitter = Duration::from_millis((unix_now_nanos() % 250) as u64);
                    h.probe_backoff = next;
                    h.probe_at = Some(Instant::now() + next + jitter);
                    h.last_error = e.clone();
                    log::info!("pool {pool}: server {server} still down ({e}); next probe in {} ms", next.as_millis());
                    false
                }
            }
        };
        if restore {
            self.broadcast(ToWorker::Restore { pool, server }).await;
        }
    }

    /// Collects a stats snapshot from every worker.
    pub async fn snapshot(&self) -> Vec<WorkerSnapshot> {
        let id = self.next_snapshot.get();
        self.next_snapshot.set(id + 1);
        self.snapshots.borrow_mut().insert(id, Vec::new());
        self.broadcast(ToWorker::Snapshot { id }).await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.snapshots.borrow().get(&id).is_some_and(|v| v.len() >= self.workers.len()) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        self.snapshots.borrow_mut().remove(&id).unwrap_or_default()
    }

    /// Ejected servers as (pool, server, ejected_at unix seconds), for stats.
    pub fn ejected(&self) -> Vec<(String, String, u64)> {
        self.health
            .borrow()
            .iter()
            .filter(|(_, h)| h.ejected)
            .map(|((p, s), h)| (p.clone(), s.clone(), h.ejected_at))
            .collect()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn unix_now_nanos() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn file_stamp(path: &PathBuf) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Runs control until shutdown.
pub async fn run(
    cfg: Arc<Config>,
    path: PathBuf,
    to_workers: Vec<SharedSender<ToWorker>>,
    from_workers: Vec<SharedReceiver<FromWorker>>,
    flags: SignalFlags,
    watch_config: bool,
) {
    let mut senders = Vec::new();
    for s in to_workers {
        senders.push(s.connect().await);
    }
    let n_workers = senders.len();
    let control = Rc::new(Control {
        config: RefCell::new(cfg.clone()),
        path: path.clone(),
        workers: senders,
        health: RefCell::new(HashMap::new()),
        reloads: Cell::new(0),
        reload_failures: Cell::new(0),
        started: Instant::now(),
        snapshots: RefCell::new(HashMap::new()),
        next_snapshot: Cell::new(0),
        stopped: Cell::new(0),
    });
    for r in from_workers {
        let c = control.clone();
        glommio::spawn_local(async move {
            let r = r.connect().await;
            while let Some(msg) = r.recv().await {
                match msg {
                    FromWorker::Health { pool, server, failed, .. } => c.on_health(pool, server, failed).await,
                    FromWorker::Snapshot { id, stats, .. } => {
                        if let Some(v) = c.snapshots.borrow_mut().get_mut(&id) {
                            v.push(*stats);
                        }
                    }
                    FromWorker::Stopped { .. } => c.stopped.set(c.stopped.get() + 1),
                }
            }
        })
        .detach();
    }
    if let Some(addr) = cfg.proxy.admin {
        super::admin::start(control.clone(), addr);
    }
    let mut stamp = file_stamp(&path);
    let mut last_watch = Instant::now();
    loop {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        if flags.terminate.load(Ordering::Relaxed) {
            break;
        }
        if flags.reload.swap(false, Ordering::Relaxed) {
            let _ = control.reload("SIGHUP").await;
            stamp = file_stamp(&path);
        }
        if watch_config && last_watch.elapsed() >= Duration::from_secs(1) {
            last_watch = Instant::now();
            let now = file_stamp(&path);
            if now.is_some() && now != stamp {
                // Let an editor finish writing (or renaming) before reading.
                glommio::timer::sleep(Duration::from_millis(200)).await;
                stamp = file_stamp(&path);
                let _ = control.reload("config file changed").await;
            }
        }
        control.start_due_probes();
    }
    let grace = control.config.borrow().proxy.shutdown_timeout_ms;
    log::info!("shutting down: no new connections, waiting up to {grace} ms for in-flight requests");
    control.broadcast(ToWorker::Shutdown { grace_ms: grace }).await;
    let deadline = Instant::now() + Duration::from_millis(grace + 1000);
    while control.stopped.get() < n_workers && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    let _ = Protocol::Redis;
}
