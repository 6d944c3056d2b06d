//! Getting the figures out: control's side (collect and merge snapshots, histogram interval logs and `.hgrm`
//! dumps) and the workers' side (the counters-only summaries that redis INFO and memcache `stats` answer with).
//!
//! Collection never touches the request path: control asks each worker for a snapshot over its channel; the
//! worker copies its counters between two requests. The only shared state is [`PUBLISHED`], a mutex each worker
//! writes its summary into once a second and that INFO/`stats` read; neither is a per-request operation.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::control::Control;
use super::pool::PoolRt;
use super::stats::{server_snapshot, WorkerStats};
use super::worker::Worker;
use crate::histogram::{write_hgrm, IntervalLogWriter, MICROS_PER_MILLI};
use crate::stats::{
    dump_entries, merge, DumpEntry, IntervalTracker, ProcessFigures, ProcessInfo, ProxyStats, ServerSnapshot, Summary,
};

/// How often workers publish their summary for INFO / `stats`.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the histogram task looks at the dump flag and the clock.
const DUMP_POLL: Duration = Duration::from_millis(100);

/// Each worker's last published summary, by worker number.
static PUBLISHED: Mutex<Vec<Option<Summary>>> = Mutex::new(Vec::new());

fn publish(worker: usize, summary: Summary) {
    let mut published = PUBLISHED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if published.len() <= worker {
        published.resize(worker + 1, None);
    }
    published[worker] = Some(summary);
}

/// Publishes this worker's summary every second until the task is dropped (with the worker).
pub async fn publish_summaries(worker: Rc<Worker>) {
    loop {
        let summary = worker.stats.borrow().summary();
        publish(worker.id, summary);
        super::uring::sleep(PUBLISH_INTERVAL).await;
    }
}

/// Every worker's summary, with this worker's live one in place of what it last published; and the worker count.
fn proxy_summary(worker: usize, stats: &WorkerStats) -> (Summary, usize) {
    let mut total = stats.summary();
    let mut workers = 1;
    let published = PUBLISHED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (i, s) in published.iter().enumerate() {
        if let (true, Some(s)) = (i != worker, s) {
            total.add(s);
            workers += 1;
        }
    }
    (total, workers)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn process_figures(worker: usize, uptime: Duration, workers: usize) -> ProcessFigures {
    ProcessFigures {
        pid: std::process::id(),
        uptime_s: uptime.as_secs(),
        unix_time: unix_now(),
        workers,
        worker,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// The redis INFO text for a client of `worker`: every redis listener of the proxy, up to a second old for the
/// other workers.
pub fn redis_info(worker: usize, stats: &WorkerStats, uptime: Duration, section: Option<&[u8]>) -> String {
    let (summary, workers) = proxy_summary(worker, stats);
    crate::stats::redis_info(&summary.redis, section, &process_figures(worker, uptime, workers))
}

/// The memcache `stats` reply for a client of `worker`: every memcache listener of the proxy.
pub fn memcache_stats(worker: usize, stats: &WorkerStats, uptime: Duration) -> String {
    let (summary, workers) = proxy_summary(worker, stats);
    crate::stats::memcache_stats(&summary.memcache, &process_figures(worker, uptime, workers))
}

/// Every server of every pool of a worker, each summed over its connections.
pub fn server_snapshots(pools: &[PoolRt]) -> Vec<ServerSnapshot> {
    let mut out = Vec::new();
    for p in pools {
        for (i, s) in p.servers.iter().enumerate() {
            let name = p
                .cfg
                .servers
                .get(i)
                .map(|c| c.name.clone().unwrap_or_else(|| format!("{}:{}", c.host, c.port)))
                .unwrap_or_else(|| s.spec.clone());
            let mut snap = server_snapshot(&p.name, name, &s.spec, s.conns.iter().map(|b| b.stats_snapshot()));
            s.dedicated.borrow().add_figures(&mut snap);
            out.push(snap);
        }
        // A cluster pool's servers are the nodes it has connections to, named host:port.
        if let Some(c) = &p.cluster {
            let sets = c.dedicated_sets();
            for (addr, conns) in c.connections() {
                let name = addr.to_string();
                let mut snap = server_snapshot(&p.name, name.clone(), &name, conns.iter().map(|b| b.stats_snapshot()));
                if let Some((_, set)) = sets.iter().find(|(a, _)| *a == addr) {
                    set.borrow().add_figures(&mut snap);
                }
                out.push(snap);
            }
        }
    }
    out
}

/// Asks every worker for its figures and merges them, with control's ejection records joined in.
pub async fn collect(control: &Control) -> ProxyStats {
    let snapshots = control.snapshot().await;
    let mut stats = merge(&snapshots);
    stats.apply_health(&control.health_stats());
    for c in control.cluster_status() {
        stats.apply_cluster(c);
    }
    stats
}

/// Process figures for the twemproxy JSON and Prometheus.
pub fn process_info(control: &Control) -> ProcessInfo {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    ProcessInfo {
        source: host.trim().to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_s: control.started.elapsed().as_secs(),
        timestamp_s: unix_now(),
        reloads: control.reloads(),
        reload_failures: control.reload_failures(),
    }
}

/// Writes one file through a temporary name, so a reader never sees half of it.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let result = File::create(&tmp).and_then(|f| {
        let mut w = BufWriter::new(f);
        write(&mut w)?;
        w.flush()
    });
    result.and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes every distribution's cumulative percentiles as `<dir>/<stem>.hgrm` (milliseconds, HdrHistogram's
/// format). Returns the files written.
pub fn write_hgrm_files(dir: &Path, entries: &[DumpEntry]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for e in entries {
        let path = dir.join(format!("{}.hgrm", e.stem));
        write_atomically(&path, |w| write_hgrm(&e.histogram, MICROS_PER_MILLI, w))?;
        written.push(path);
    }
    Ok(written)
}

/// Collects and writes the `.hgrm` dump (SIGUSR1, `POST /histograms/dump`).
pub async fn dump_now(control: &Control) -> Result<Vec<PathBuf>, String> {
    let Some(dir) = control.config.borrow().proxy.histogram_dir.clone() else {
        return Err("proxy.histogram_dir is not set".into());
    };
    let stats = collect(control).await;
    let written = write_hgrm_files(&dir, &dump_entries(&stats))?;
    log::info!("histograms: wrote {} .hgrm files to {}", written.len(), dir.display());
    Ok(written)
}

/// The interval logs of one histogram directory: one `.hlog` per distribution, opened when it first has data.
struct IntervalLogs {
    dir: PathBuf,
    /// Interval offsets count from here (each log's StartTime/BaseTime).
    start: SystemTime,
    started: Instant,
    /// Unbuffered: an interval is a few small writes every `histogram_interval_s`, and a reader (or a crash) then
    /// always sees whole intervals.
    writers: HashMap<String, IntervalLogWriter<File>>,
    tracker: IntervalTracker,
    last: Instant,
}

impl IntervalLogs {
    fn new(dir: PathBuf) -> IntervalLogs {
        let now = Instant::now();
        IntervalLogs {
            dir,
            start: SystemTime::now(),
            started: now,
            writers: HashMap::new(),
            tracker: IntervalTracker::default(),
            last: now,
        }
    }

    /// Opens `<dir>/<stem>.hlog`, keeping a previous run's log as `<stem>.hlog.prev`.
    fn open(&self, e: &DumpEntry) -> Result<IntervalLogWriter<File>, String> {
        std::fs::create_dir_all(&self.dir).map_err(|err| format!("{}: {err}", self.dir.display()))?;
        let path = self.dir.join(format!("{}.hlog", e.stem));
        if path.exists() {
            let _ = std::fs::rename(&path, self.dir.join(format!("{}.hlog.prev", e.stem)));
        }
        let file = File::create(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        let comment = format!("ferrule {}: {}", env!("CARGO_PKG_VERSION"), e.description);
        IntervalLogWriter::new(file, self.start, &comment).map_err(|err| format!("{}: {err}", path.display()))
    }

    /// Appends the interval since the last call to every log.
    fn append(&mut self, stats: &ProxyStats) {
        let now = Instant::now();
        let offset = self.last.saturating_duration_since(self.started);
        let length = now.saturating_duration_since(self.last);
        self.last = now;
        for e in self.tracker.intervals(&dump_entries(stats)) {
            if !self.writers.contains_key(&e.stem) {
                match self.open(&e) {
                    Ok(w) => {
                        self.writers.insert(e.stem.clone(), w);
                    }
                    Err(err) => {
                        log::warn!("histogram log: {err}");
                        continue;
                    }
                }
            }
            if let Some(w) = self.writers.get_mut(&e.stem) {
                if let Err(err) = w.write_interval(&e.histogram, offset, length, Some(&e.stem)) {
                    log::warn!("histogram log {}: {err}", e.stem);
                }
            }
        }
    }
}

/// Runs the histogram task on control: every `proxy.histogram_interval_s` an interval to every log, and a `.hgrm`
/// dump whenever `dump` is raised (SIGUSR1). Follows reloads of `histogram_dir` and the interval.
pub fn start_histogram_task(control: Rc<Control>, dump: Arc<AtomicBool>) {
    glommio::spawn_local(async move {
        let mut logs: Option<IntervalLogs> = None;
        loop {
            glommio::timer::sleep(DUMP_POLL).await;
            if dump.swap(false, Ordering::Relaxed) {
                if let Err(e) = dump_now(&control).await {
                    log::warn!("SIGUSR1: no histogram dump: {e}");
                }
            }
            let (dir, interval) = {
                let cfg = control.config.borrow();
                (cfg.proxy.histogram_dir.clone(), Duration::from_secs(cfg.proxy.histogram_interval_s.max(1)))
            };
            let Some(dir) = dir else {
                logs = None;
                continue;
            };
            if logs.as_ref().is_none_or(|l| l.dir != dir) {
                logs = Some(IntervalLogs::new(dir));
            }
            let Some(l) = logs.as_mut() else { continue };
            if l.last.elapsed() >= interval {
                let stats = collect(&control).await;
                l.append(&stats);
            }
        }
    })
    .detach();
}
