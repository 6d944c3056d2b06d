//! The control executor: the one place that decides ejections, probes ejected servers, reloads the config and
//! shuts down, broadcasting each decision to every worker so that all cores agree on every ring.
//!
//! Workers only report what they observe (a backend connection failed or recovered); control counts consecutive
//! failures per server across all cores, and is the only one to take a server out of a ring or put it back.
//! Broadcasts are sent one at a time (see [`Control::broadcast`]), so every worker sees the same sequence.

use super::messages::{FromWorker, ServerKey, ToWorker};
use super::stats::WorkerSnapshot;
use super::uring::Doorbell;
use crate::config::{Config, ProxyConfig};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::sync::Semaphore;
use rand::Rng;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often control looks at the signal flags and due probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the config file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long to let an editor finish writing the file after a change is seen, before reading it.
const WATCH_SETTLE: Duration = Duration::from_millis(200);
/// How long a reload waits for every worker to confirm it applied the new config.
const RELOAD_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reload in a successor waits for the takeover to be confirmed (its predecessor answers within 30 s).
const TAKEOVER_RELOAD_WAIT: Duration = Duration::from_secs(35);
/// Probes of a server that stays down back off up to this interval.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// Probes never wait for less than this, even with a tiny `timeout_ms`.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(100);

/// Flags set by signal handlers, polled by control (never touched on the request path).
#[derive(Default, Clone)]
pub struct SignalFlags {
    pub terminate: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
    pub dump: Arc<AtomicBool>,
    /// SIGUSR2: start the binary at this executable's path to take over (io::takeover).
    pub upgrade: Arc<AtomicBool>,
    /// Set by the upgrade socket's thread once a successor serves the listening sockets: drain and exit.
    pub handed_over: Arc<AtomicBool>,
}

impl SignalFlags {
    pub fn register() -> std::io::Result<SignalFlags> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        let f = SignalFlags::default();
        for sig in [SIGTERM, SIGINT] {
            // Registered first, so it sees the flag as the previous signal left it: a second SIGTERM/SIGINT exits at
            // once (status 1), the first only sets the flag below and asks for a graceful shutdown.
            signal_hook::flag::register_conditional_shutdown(sig, 1, f.terminate.clone())?;
            signal_hook::flag::register(sig, f.terminate.clone())?;
        }
        signal_hook::flag::register(SIGHUP, f.reload.clone())?;
        signal_hook::flag::register(SIGUSR1, f.dump.clone())?;
        signal_hook::flag::register(SIGUSR2, f.upgrade.clone())?;
        Ok(f)
    }
}

/// What control knows about one server, across all cores.
#[derive(Default)]
struct ServerHealth {
    /// Failures reported by any core since the last success reported by any core.
    failures: u32,
    ejected: bool,
    /// When the next probe of an ejected server is due.
    probe_at: Option<Instant>,
    /// The wait before the next probe after a failed one (grows x1.5 up to [`MAX_PROBE_INTERVAL`]).
    probe_backoff: Duration,
    probing: bool,
    last_error: String,
    /// Unix seconds, for stats.
    ejected_at: u64,
    /// Times ejected, for stats (twemproxy's `server_ejects`).
    ejections: u64,
}

/// What control knows of one `redis_cluster` pool.
#[derive(Default)]
struct ClusterState {
    map: Option<Arc<crate::cluster::SlotMap>>,
    /// Maps that differed from the one before (the version workers route by).
    version: u64,
    last_read: Option<Instant>,
    reading: bool,
    /// A worker asked for a read since the last one started.
    requested: bool,
    reads: u64,
    read_failures: u64,
    last_error: String,
}

/// Replies of the workers to one reload broadcast.
#[derive(Default)]
struct ReloadAcks {
    /// The workers that confirmed, by id.
    workers: Vec<usize>,
    problems: Vec<String>,
}

/// Why a reload did not fully take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The file is invalid (or control is stopping): nothing changed.
    Rejected(String),
    /// Every worker applied the config, and some reported a problem (a listener that could not bind).
    Partial(String),
    /// Control broadcast the config, and these workers did not confirm they applied it within the ack timeout:
    /// what they route with is unknown.
    Unconfirmed(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Rejected(m) | ReloadError::Partial(m) | ReloadError::Unconfirmed(m) => f.write_str(m),
        }
    }
}

/// The workers of `0..count` missing from `confirmed`, or `None` when all confirmed.
fn unconfirmed(count: usize, confirmed: &[usize]) -> Option<String> {
    let missing: Vec<String> = (0..count).filter(|w| !confirmed.contains(w)).map(|w| w.to_string()).collect();
    if missing.is_empty() {
        return None;
    }
    let who = if missing.len() == 1 { "worker" } else { "workers" };
    Some(format!(
        "{who} {} of {count} did not confirm the new config within {} s; the reload may be only partly applied",
        missing.join(", "),
        RELOAD_ACK_TIMEOUT.as_secs()
    ))
}

pub struct Control {
    /// The config in force (as broadcast last).
    pub config: RefCell<Arc<Config>>,
    path: PathBuf,
    /// `[proxy]` as last read from the file, to tell which restart-only settings a reload changes.
    file_proxy: RefCell<ProxyConfig>,
    workers: Vec<(ConnectedSender<ToWorker>, Arc<Doorbell>)>,
    health: RefCell<HashMap<ServerKey, ServerHealth>>,
    pub reloads: Cell<u64>,
    pub reload_failures: Cell<u64>,
    pub started: Instant,
    snapshots: RefCell<HashMap<u64, Vec<WorkerSnapshot>>>,
    next_snapshot: Cell<u64>,
    stopped: Cell<usize>,
    /// One permit: held while a broadcast is being sent, so two broadcasts never interleave on the channels.
    broadcasting: Semaphore,
    reload_generation: Cell<u64>,
    reload_acks: RefCell<HashMap<u64, ReloadAcks>>,
    clusters: RefCell<HashMap<String, ClusterState>>,
    /// Stops the admin endpoint's and stats port's accept loops (after a hand-over: the successor serves them).
    pub endpoints_stop: super::admin::EndpointStop,
}

impl Control {
    /// Reloads applied since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.get()
    }

    /// Reloads rejected (invalid file) or only partly applied (a listener could not bind) since start.
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.get()
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Sends `msg` to every worker, after any broadcast already under way.
    async fn broadcast(&self, msg: ToWorker) {
        let Ok(_turn) = self.broadcasting.acquire_permit(1).await else { return };
        self.send_all(msg).await;
    }

    async fn send_all(&self, msg: ToWorker) {
        for (w, doorbell) in &self.workers {
            let _ = w.send(msg.clone()).await;
            // The worker may be asleep in its own ring, where glommio's channel cannot wake it.
            doorbell.ring();
        }
    }

    /// Validates and applies the config file; an invalid file changes nothing. Returns once every worker applied it.
    ///
    /// Refused (with a log line) in a process that hands its listening sockets over to a successor, or has: they
    /// are the successor's too, and a reload that closed or replaced a listener would close it for the successor.
    /// In a successor, waits until its predecessor has confirmed the takeover.
    pub async fn reload(&self, why: &str) -> Result<(), ReloadError> {
        let mut waited: Option<Instant> = None;
        let _applying = loop {
            match super::takeover::begin_reload() {
                Ok(guard) => break guard,
                Err(super::takeover::ReloadBlocked::HandingOver) => {
                    let msg = "this process has handed its listening sockets over to a new ferrule (binary upgrade) \
                               and is draining; reload the new process";
                    log::warn!("reload ({why}) refused: {msg}");
                    return Err(ReloadError::Rejected(msg.into()));
                }
                Err(super::takeover::ReloadBlocked::TakingOver) => {
                    let since = *waited.get_or_insert_with(|| {
                        log::info!("reload ({why}) waits until the takeover from the previous process is confirmed");
                        Instant::now()
                    });
                    if since.elapsed() > TAKEOVER_RELOAD_WAIT {
                        let msg = "the takeover from the previous process is not confirmed; retry";
                        log::warn!("reload ({why}) refused: {msg}");
                        return Err(ReloadError::Rejected(msg.into()));
                    }
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        let generation = {
            // Read under the broadcast turn: of two reloads at once, the one that reads the file last applies last.
            let Ok(_turn) = self.broadcasting.acquire_permit(1).await else {
                return Err(ReloadError::Rejected("shutting down".into()));
            };
            let new = match self.read_config(why) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    self.reload_failures.set(self.reload_failures.get() + 1);
                    log::error!(
                        "reload ({why}) rejected, the running config stays: {e} ({} failed reloads so far)",
                        self.reload_failures()
                    );
                    return Err(ReloadError::Rejected(e));
                }
            };
            let ejected = self.keep_health_of(&new);
            *self.config.borrow_mut() = new.clone();
            let generation = self.reload_generation.get() + 1;
            self.reload_generation.set(generation);
            self.reload_acks.borrow_mut().insert(generation, ReloadAcks::default());
            self.send_all(ToWorker::Reload { generation, config: new, ejected }).await;
            generation
        };
        let acks = self.wait_for_acks(generation).await;
        if let Some(msg) = unconfirmed(self.workers.len(), &acks.workers) {
            self.reload_failures.set(self.reload_failures.get() + 1);
            let mut msg = msg;
            if !acks.problems.is_empty() {
                msg = format!("{msg}; and: {}", acks.problems.join("; "));
            }
            log::error!("reload ({why}): {msg}");
            return Err(ReloadError::Unconfirmed(msg));
        }
        if !acks.problems.is_empty() {
            self.reload_failures.set(self.reload_failures.get() + 1);
            let msg = format!("config applied, but: {}", acks.problems.join("; "));
            log::error!("reload ({why}): {msg}");
            return Err(ReloadError::Partial(msg));
        }
        self.reloads.set(self.reloads.get() + 1);
        // A cluster pool rebuilt by the reload starts without a map: give it the one in force again.
        let maps: Vec<(String, u64, Arc<crate::cluster::SlotMap>)> = self
            .clusters
            .borrow()
            .iter()
            .filter_map(|(pool, st)| st.map.clone().map(|m| (pool.clone(), st.version, m)))
            .collect();
        for (pool, version, map) in maps {
            self.broadcast(ToWorker::ClusterMap { pool, version, map }).await;
        }
        let cfg = self.config();
        log::info!(
            "reload ({why}): config applied ({} listeners, {} pools, {} servers ejected; reload #{})",
            cfg.listeners.len(),
            cfg.pools.len(),
            self.ejected().len(),
            self.reloads()
        );
        Ok(())
    }

    /// Reads and validates the config file. Settings that only a restart can change keep their running values (so
    /// GET /config shows what is in force); a warning names those the file changed.
    fn read_config(&self, why: &str) -> Result<Config, String> {
        let mut new = Config::load(&self.path).map_err(|e| e.to_string())?;
        for w in new.warnings() {
            log::warn!("reload ({why}): {w}");
        }
        let changed = restart_only_changes(&self.file_proxy.borrow(), &new.proxy);
        if !changed.is_empty() {
            log::warn!("reload ({why}): proxy.{} take effect only after a restart", changed.join(", proxy."));
        }
        *self.file_proxy.borrow_mut() = new.proxy.clone();
        let running = self.config();
        new.proxy.workers = running.proxy.workers;
        new.proxy.cpus = running.proxy.cpus.clone();
        new.proxy.admin = running.proxy.admin;
        new.proxy.stats_port = running.proxy.stats_port;
        new.proxy.io_memory_kib = running.proxy.io_memory_kib;
        new.proxy.upgrade_socket = running.proxy.upgrade_socket.clone();
        Ok(new)
    }

    /// Waits (bounded) until every worker confirmed reload `generation`; returns what they reported.
    async fn wait_for_acks(&self, generation: u64) -> ReloadAcks {
        let deadline = Instant::now() + RELOAD_ACK_TIMEOUT;
        loop {
            let done =
                self.reload_acks.borrow().get(&generation).is_some_and(|a| a.workers.len() >= self.workers.len());
            if done || Instant::now() >= deadline {
                // A late confirmation finds no entry and is dropped.
                return self.reload_acks.borrow_mut().remove(&generation).unwrap_or_default();
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Forgets the health of servers that left `new` (and ejections in pools that no longer eject), and returns the
    /// servers that stay ejected.
    fn keep_health_of(&self, new: &Config) -> Vec<ServerKey> {
        let mut health = self.health.borrow_mut();
        health.retain(|(pool, server), h| {
            let Some(pc) = new.pool(pool) else { return false };
            if !pc.servers.iter().any(|s| &s.spec == server) {
                return false;
            }
            if h.ejected && !pc.auto_eject_hosts {
                log::info!("pool {pool}: auto_eject_hosts is off now; server {server} returns to the ring");
                *h = ServerHealth::default();
            }
            true
        });
        health.iter().filter(|(_, h)| h.ejected).map(|(k, _)| k.clone()).collect()
    }

    /// Counts a worker's observation; ejects at `server_failure_limit` consecutive failures (any core's success resets
    /// the count). Never waits: the broadcast runs as its own task so the worker channels keep draining.
    fn on_health(self: &Rc<Self>, worker: usize, pool: String, server: String, failed: Option<String>) {
        if let Some(reason) = &failed {
            log::debug!("worker {worker}: pool {pool}: server {server} failed: {reason}");
        }
        let cfg = self.config();
        let Some(pc) = cfg.pool(&pool) else { return };
        if !pc.servers.iter().any(|s| s.spec == server) {
            // A report about a server that a reload removed meanwhile.
            return;
        }
        let eject = {
            let mut health = self.health.borrow_mut();
            let h = health.entry((pool.clone(), server.clone())).or_default();
            match failed {
                None => {
                    h.failures = 0;
                    false
                }
                Some(reason) => {
                    h.failures = h.failures.saturating_add(1);
                    h.last_error = reason;
                    if pc.auto_eject_hosts && !h.ejected && h.failures >= pc.server_failure_limit {
                        h.ejected = true;
                        h.ejected_at = unix_now();
                        h.ejections += 1;
                        h.probe_backoff = Duration::from_millis(pc.server_retry_timeout_ms);
                        h.probe_at = Some(Instant::now() + h.probe_backoff);
                        log::warn!(
                            "pool {pool}: ejecting server {server} after {} consecutive failures (last: {}); probing it in {} ms",
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
            let this = self.clone();
            glommio::spawn_local(async move { this.broadcast(ToWorker::Eject { pool, server }).await }).detach();
        }
    }

    /// Probes ejected servers whose retry time has come; a server returns only when its probe answers.
    fn start_due_probes(self: &Rc<Self>) {
        let now = Instant::now();
        let cfg = self.config();
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
            let timeout = Duration::from_millis(pc.timeout_ms).max(MIN_PROBE_TIMEOUT);
            let auth = pc.redis_auth.clone();
            let tls = pc.tls.as_ref().map(|t| (t.client.config.clone(), t.server_name(sc)));
            let this = self.clone();
            glommio::spawn_local(async move {
                let result = super::probe::probe(addr, protocol, auth.as_deref(), tls, timeout).await;
                this.probe_done(pool, server, result).await;
            })
            .detach();
        }
    }

    async fn probe_done(&self, pool: String, server: String, result: Result<(), String>) {
        let restore = {
            let mut health = self.health.borrow_mut();
            // Gone: a reload removed the server (or stopped ejecting) while the probe ran.
            let Some(h) = health.get_mut(&(pool.clone(), server.clone())) else { return };
            h.probing = false;
            if !h.ejected {
                return;
            }
            match result {
                Ok(()) => {
                    h.ejected = false;
                    h.failures = 0;
                    h.probe_at = None;
                    log::info!("pool {pool}: server {server} answered its probe; restoring it to the ring");
                    true
                }
                Err(e) => {
                    // Back off x1.5 with up to 25% jitter, capped, so a dead server is not hammered and proxies
                    // that ejected it together do not probe it in lockstep.
                    let next = h.probe_backoff.mul_f64(1.5).min(MAX_PROBE_INTERVAL);
                    let jitter_ms = rand::thread_rng().gen_range(0..=next.as_millis() as u64 / 4);
                    let wait = next + Duration::from_millis(jitter_ms);
                    h.probe_backoff = next;
                    h.probe_at = Some(Instant::now() + wait);
                    log::info!("pool {pool}: server {server} still down ({e}); next probe in {} ms", wait.as_millis());
                    h.last_error = e;
                    false
                }
            }
        };
        if restore {
            self.broadcast(ToWorker::Restore { pool, server }).await;
        }
    }

    fn on_reloaded(&self, worker: usize, generation: u64, problems: Vec<String>) {
        if let Some(acks) = self.reload_acks.borrow_mut().get_mut(&generation) {
            if !acks.workers.contains(&worker) {
                acks.workers.push(worker);
            }
            acks.problems.extend(problems.into_iter().map(|p| format!("worker {worker}: {p}")));
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

    /// Every server control has a health record of (ejected now or ever failed), for stats.
    pub fn health_stats(&self) -> Vec<crate::stats::ServerHealth> {
        self.health
            .borrow()
            .iter()
            .map(|((pool, spec), h)| crate::stats::ServerHealth {
                pool: pool.clone(),
                spec: spec.clone(),
                ejected: h.ejected,
                ejected_at_s: h.ejected_at,
                ejections: h.ejections,
            })
            .collect()
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

    /// Reads the topology of each cluster pool whose time has come: every `cluster_refresh_ms`, at once when a
    /// worker asked (at most every `cluster_refresh_min_interval_ms`), and, with `wait`, all of them now (at start). A read runs
    /// as its own task unless `wait`; one pool is never read twice at once.
    async fn read_topologies_due(self: &Rc<Self>, wait: bool) {
        let cfg = self.config();
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut clusters = self.clusters.borrow_mut();
            clusters.retain(|name, _| cfg.pool(name).is_some_and(|p| p.cluster.is_some()));
            for pool in cfg.pools.iter().filter(|p| p.cluster.is_some()) {
                let st = clusters.entry(pool.name.clone()).or_default();
                let every = Duration::from_millis(pool.cluster.map_or(5000, |c| c.refresh_ms));
                // Reads asked for (by redirects or failed nodes) are at least this far apart: a storm of MOVED
                // replies from every core causes one read, and a failover is seen within about this long of the
                // cluster announcing it.
                let min_gap = Duration::from_millis(pool.cluster.map_or(200, |c| c.refresh_min_interval_ms));
                let since = st.last_read.map(|t| now.duration_since(t));
                let is_due =
                    wait || since.is_none_or(|s| s >= every) || (st.requested && since.is_none_or(|s| s >= min_gap));
                if is_due && !st.reading {
                    st.reading = true;
                    st.requested = false;
                    st.last_read = Some(now);
                    let known = |addr, hostname: &str| super::topology::Candidate {
                        addr,
                        hostname: Some(hostname.to_owned()).filter(|h| !h.is_empty()),
                    };
                    let mut candidates: Vec<super::topology::Candidate> = st
                        .map
                        .as_ref()
                        .map(|m| m.nodes.iter().map(|n| known(n.addr, &n.hostname)).collect())
                        .unwrap_or_default();
                    // Start at a different node each time, so that one node with a stale view is not always asked.
                    if !candidates.is_empty() {
                        let shift = (st.reads % candidates.len() as u64) as usize;
                        candidates.rotate_left(shift);
                    }
                    for s in &pool.servers {
                        if !candidates.iter().any(|c| c.addr == s.addr) {
                            candidates.push(known(s.addr, &s.host));
                        }
                    }
                    due.push((
                        pool.name.clone(),
                        candidates,
                        pool.redis_auth.clone(),
                        pool.tls.clone(),
                        pool.connect_timeout_ms,
                    ));
                }
            }
        }
        let mut tasks = Vec::new();
        for (pool, candidates, auth, tls, connect_ms) in due {
            let this = self.clone();
            let timeout = Duration::from_millis(connect_ms).max(MIN_PROBE_TIMEOUT);
            let task = glommio::spawn_local(async move {
                let result = super::topology::fetch(&candidates, auth.as_deref(), tls.as_ref(), timeout).await;
                this.topology_read(pool, result).await;
            });
            if wait {
                tasks.push(task);
            } else {
                task.detach();
            }
        }
        for t in tasks {
            t.await;
        }
    }

    async fn topology_read(&self, pool: String, result: Result<(crate::cluster::SlotMap, SocketAddr), String>) {
        let mut unreachable = None;
        let changed = {
            let mut clusters = self.clusters.borrow_mut();
            let Some(st) = clusters.get_mut(&pool) else { return };
            st.reading = false;
            st.reads += 1;
            match result {
                Err(e) => {
                    st.read_failures += 1;
                    if st.last_error != e {
                        log::error!("pool {pool}: cannot read the cluster topology: {e}");
                    }
                    if st.map.is_none() {
                        // Until a map is known every request fails: with this, it says why.
                        unreachable = Some(e.clone());
                    }
                    st.last_error = e;
                    None
                }
                Ok((map, from)) => {
                    st.last_error.clear();
                    if st.map.as_deref() == Some(&map) {
                        None
                    } else {
                        st.version += 1;
                        log::info!(
                            "pool {pool}: cluster topology version {} (from {from}): {}",
                            st.version,
                            map.summary()
                        );
                        if let Some(old) = &st.map {
                            for line in describe_changes(old, &map) {
                                log::info!("pool {pool}: {line}");
                            }
                        }
                        let map = Arc::new(map);
                        st.map = Some(map.clone());
                        Some((st.version, map))
                    }
                }
            }
        };
        if let Some((version, map)) = changed {
            self.broadcast(ToWorker::ClusterMap { pool, version, map }).await;
        } else if let Some(why) = unreachable {
            self.broadcast(ToWorker::ClusterUnreachable { pool, why }).await;
        }
    }

    /// Control's figures of every cluster pool, for stats.
    pub fn cluster_status(&self) -> Vec<crate::stats::ClusterTotals> {
        self.clusters
            .borrow()
            .iter()
            .map(|(pool, st)| crate::stats::ClusterTotals {
                pool: pool.clone(),
                counters: Default::default(),
                version: st.version,
                refreshes: st.reads,
                refresh_failures: st.read_failures,
                shards: st.map.as_ref().map_or(0, |m| m.shards.len() as u64),
                nodes: st.map.as_ref().map_or(0, |m| m.nodes.len() as u64),
                slots_served: st.map.as_ref().map_or(0, |m| m.covered() as u64),
            })
            .collect()
    }

    /// Stops the workers: after a hand-over (`handover`) without closing the listening sockets, which the successor
    /// serves now.
    async fn shutdown(&self, handover: bool, flags: &SignalFlags) {
        let grace = self.config().proxy.shutdown_timeout_ms;
        if handover {
            log::info!("handed over: no new connections here, waiting up to {grace} ms for in-flight requests");
        } else {
            log::info!("shutting down: no new connections, waiting up to {grace} ms for in-flight requests");
        }
        self.broadcast(ToWorker::Shutdown { grace_ms: grace, handover }).await;
        // Workers enforce the grace period themselves; the extra second covers their last writes.
        let deadline = Instant::now() + Duration::from_millis(grace) + Duration::from_secs(1);
        while self.stopped.get() < self.workers.len() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            if flags.reload.swap(false, Ordering::Relaxed) {
                log::warn!(
                    "SIGHUP ignored: this process is {}",
                    if handover { "draining after a hand-over (reload the new process)" } else { "shutting down" }
                );
            }
        }
        if self.stopped.get() < self.workers.len() {
            log::warn!("{} workers did not stop in time", self.workers.len() - self.stopped.get());
        }
    }
}

/// What changed between two slot maps, for the log: primaries that changed (a failover) and slots that moved (a
/// reshard), in a few lines.
fn describe_changes(old: &crate::cluster::SlotMap, new: &crate::cluster::SlotMap) -> Vec<String> {
    let mut moved: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
    let mut unserved = 0;
    for slot in 0..crate::cluster::SLOTS as u16 {
        let owner = |m: &crate::cluster::SlotMap| m.shard_of(slot).map(|s| m.nodes[s.primary].addr);
        match (owner(old), owner(new)) {
            (Some(a), Some(b)) if a != b => *moved.entry((a, b)).or_default() += 1,
            (Some(_), None) => unserved += 1,
            _ => {}
        }
    }
    let mut lines: Vec<String> =
        moved.into_iter().map(|((a, b), n)| format!("{n} slots moved from primary {a} to {b}")).collect();
    lines.sort();
    if unserved > 0 {
        lines.push(format!("{unserved} slots are no longer served by any node"));
    }
    lines
}

/// `[proxy]` settings that a reload cannot apply, which differ between `old` and `new`.
fn restart_only_changes(old: &ProxyConfig, new: &ProxyConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.workers != new.workers {
        changed.push("workers");
    }
    if old.cpus != new.cpus {
        changed.push("cpus");
    }
    if old.admin != new.admin {
        changed.push("admin");
    }
    if old.stats_port != new.stats_port {
        changed.push("stats_port");
    }
    if old.io_memory_kib != new.io_memory_kib {
        changed.push("io_memory_kib");
    }
    if old.busy_poll_us != new.busy_poll_us {
        changed.push("busy_poll_us");
    }
    if old.upgrade_socket != new.upgrade_socket {
        changed.push("upgrade_socket");
    }
    changed
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Identifies a version of the file: editors that write a new file and rename it over the old one change the inode.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The admin endpoint's and the stats port's sockets, bound on the main thread before control starts.
pub struct Endpoints {
    pub admin: Option<std::net::TcpListener>,
    pub stats_port: Option<std::net::TcpListener>,
}

/// Runs control until shutdown.
pub async fn run(
    cfg: Arc<Config>,
    path: PathBuf,
    to_workers: Vec<(SharedSender<ToWorker>, Arc<Doorbell>)>,
    from_workers: Vec<SharedReceiver<FromWorker>>,
    flags: SignalFlags,
    watch_config: bool,
    endpoints: Endpoints,
) {
    let mut senders = Vec::new();
    for (s, doorbell) in to_workers {
        senders.push((super::messages::connect_end(s.connect()).await, doorbell));
    }
    // The file's own [proxy] (before command-line overrides), to compare reloads with.
    let file_proxy = Config::load(&path).map(|c| c.proxy).unwrap_or_else(|_| cfg.proxy.clone());
    let control = Rc::new(Control {
        config: RefCell::new(cfg.clone()),
        path: path.clone(),
        file_proxy: RefCell::new(file_proxy),
        workers: senders,
        health: RefCell::new(HashMap::new()),
        reloads: Cell::new(0),
        reload_failures: Cell::new(0),
        started: Instant::now(),
        snapshots: RefCell::new(HashMap::new()),
        next_snapshot: Cell::new(0),
        stopped: Cell::new(0),
        broadcasting: Semaphore::new(1),
        reload_generation: Cell::new(0),
        reload_acks: RefCell::new(HashMap::new()),
        clusters: RefCell::new(HashMap::new()),
        endpoints_stop: Default::default(),
    });
    for r in from_workers {
        let c = control.clone();
        glommio::spawn_local(async move {
            let r = super::messages::connect_end(r.connect()).await;
            while let Some(msg) = r.recv().await {
                match msg {
                    FromWorker::Health { worker, pool, server, failed } => c.on_health(worker, pool, server, failed),
                    FromWorker::Reloaded { worker, generation, problems } => {
                        c.on_reloaded(worker, generation, problems)
                    }
                    FromWorker::Snapshot { worker, id, stats } => match c.snapshots.borrow_mut().get_mut(&id) {
                        Some(v) => v.push(*stats),
                        None => log::debug!("worker {worker}: stats snapshot {id} came too late"),
                    },
                    FromWorker::ClusterRefresh { pool } => {
                        if let Some(st) = c.clusters.borrow_mut().get_mut(&pool) {
                            st.requested = true;
                        }
                    }
                    FromWorker::Stopped { worker } => {
                        log::debug!("worker {worker} stopped");
                        c.stopped.set(c.stopped.get() + 1);
                    }
                }
            }
        })
        .detach();
    }
    let mut endpoint_fds = Vec::new();
    if let Some(listener) = endpoints.admin {
        endpoint_fds.push(super::admin::start(control.clone(), listener));
    }
    if let Some(listener) = endpoints.stats_port {
        endpoint_fds.push(super::admin::start_stats_port(control.clone(), listener));
    }
    super::metrics::start_histogram_task(control.clone(), flags.dump.clone());
    let mut stamp = file_stamp(&path);
    let mut last_watch = Instant::now();
    // The first topology of every cluster pool, before anything else: until it is known, their requests fail.
    control.read_topologies_due(true).await;
    let handover = loop {
        glommio::timer::sleep(POLL_INTERVAL).await;
        if flags.terminate.load(Ordering::Relaxed) {
            break false;
        }
        if flags.handed_over.load(Ordering::Relaxed) {
            break true;
        }
        if flags.upgrade.swap(false, Ordering::Relaxed) {
            super::takeover::spawn_successor(control.config().proxy.upgrade_socket.as_deref());
        }
        if flags.reload.swap(false, Ordering::Relaxed) {
            stamp = file_stamp(&path);
            let _ = control.reload("SIGHUP").await;
        }
        if watch_config && last_watch.elapsed() >= WATCH_INTERVAL {
            last_watch = Instant::now();
            let now = file_stamp(&path);
            // A missing file is an editor between unlink and rename: wait for the new one.
            if now.is_some() && now != stamp {
                glommio::timer::sleep(WATCH_SETTLE).await;
                stamp = file_stamp(&path);
                let _ = control.reload("config file changed").await;
            }
        }
        control.start_due_probes();
        control.read_topologies_due(false).await;
    };
    if handover {
        // Only the successor answers the admin endpoint and stats port from now on: a reload or a stats request
        // must not reach a process that drains. (A connection the kernel completes while the accept is being
        // cancelled is the only one that can be lost; the accept would otherwise outlive the process.)
        control.endpoints_stop.stop();
    }
    control.shutdown(handover, &flags).await;
    if handover {
        // The successor serves these sockets: taking them out of LISTEN would close them for it too.
        return;
    }
    // The executor's io_uring, torn down only after the process has exited, would keep the sockets listening a while.
    for fd in endpoint_fds {
        super::admin::stop_listening(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_changes_names_the_keys() {
        let old = ProxyConfig::default();
        let mut new = old.clone();
        assert!(restart_only_changes(&old, &new).is_empty());
        new.workers = crate::config::Workers::Count(3);
        new.io_memory_kib += 1;
        new.busy_poll_us = 50;
        new.shutdown_timeout_ms += 1; // applied by a reload
        assert_eq!(restart_only_changes(&old, &new), vec!["workers", "io_memory_kib", "busy_poll_us"]);
    }

    #[test]
    fn unconfirmed_names_the_missing_workers() {
        assert_eq!(unconfirmed(3, &[2, 0, 1]), None);
        assert_eq!(unconfirmed(0, &[]), None);
        assert_eq!(
            unconfirmed(3, &[0, 2]).unwrap(),
            "worker 1 of 3 did not confirm the new config within 5 s; the reload may be only partly applied"
        );
        assert!(unconfirmed(4, &[2]).unwrap().starts_with("workers 0, 1, 3 of 4 did not confirm"));
    }
}
