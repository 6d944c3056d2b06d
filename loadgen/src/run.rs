//! The main thread's side of a run: start the workers, open the start gate once every
//! connection has tried to connect, add up the per-second reports, print progress, write the
//! interval logs, and join the workers.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferrule::histogram::IntervalLogWriter;

use crate::plan::{RunPlan, StartGate};
use crate::stats::{OpStats, StatsSet};
use crate::worker;
use crate::workload::OpKind;

/// Progress lines are printed this long after each second, so every worker's report for that
/// second has arrived.
const REPORT_GRACE: Duration = Duration::from_millis(150);

/// The figures of a finished run.
#[derive(Debug)]
pub struct RunOutcome {
    /// Everything recorded.
    pub stats: StatsSet,
    /// The measured time: from the start to the end of sending.
    pub elapsed: Duration,
    /// True when Ctrl-C (or SIGTERM) cut the run short.
    pub interrupted: bool,
}

/// One interval log per operation (`PREFIX.OP.hlog`).
///
/// The files are created before the run (so a bad path fails early); their headers are written
/// when the run's clock starts, so that interval timestamps count from the first request rather
/// than from before the connections were set up.
pub struct IntervalLogs {
    comment: String,
    created: Vec<(OpKind, BufWriter<File>)>,
    started: Vec<(OpKind, IntervalLogWriter<BufWriter<File>>)>,
}

impl IntervalLogs {
    /// Creates `PREFIX.OP.hlog` for each of `ops`.
    pub fn create(prefix: &str, ops: &[OpKind], comment: &str) -> io::Result<Self> {
        let mut created = Vec::new();
        for &op in ops {
            let path = format!("{prefix}.{}.hlog", op.name());
            let file = File::create(&path).map_err(|err| io::Error::new(err.kind(), format!("{path}: {err}")))?;
            created.push((op, BufWriter::new(file)));
        }
        Ok(Self { comment: comment.to_string(), created, started: Vec::new() })
    }

    /// Writes the headers: interval offsets count from `start`.
    fn begin(&mut self, start: SystemTime) -> io::Result<()> {
        for (op, file) in self.created.drain(..) {
            let comment =
                format!("{}\nlatency of {} from the intended send time, in microseconds", self.comment, op.name());
            self.started.push((op, IntervalLogWriter::new(file, start, &comment)?));
        }
        Ok(())
    }

    fn write(&mut self, interval: &StatsSet, offset: Duration, length: Duration) -> Result<(), String> {
        for (op, writer) in &mut self.started {
            let latency = &interval.op(*op).latency;
            writer.write_interval(latency, offset, length, Some(op.name())).map_err(|err| err.to_string())?;
        }
        Ok(())
    }

    /// Flushes every log.
    pub fn finish(self) -> io::Result<()> {
        for (_, mut file) in self.created {
            file.flush()?;
        }
        for (_, writer) in self.started {
            writer.into_inner()?.flush()?;
        }
        Ok(())
    }
}

/// Runs `plan` to completion (or until `stop` is raised) and returns its figures.
///
/// `label` prefixes the progress lines; `None` prints none.
pub fn execute(
    plan: Arc<RunPlan>,
    stop: &Arc<AtomicBool>,
    label: Option<&str>,
    mut logs: Option<&mut IntervalLogs>,
) -> Result<RunOutcome, String> {
    let gate = Arc::new(StartGate::default());
    let (sender, reports) = mpsc::channel();
    let mut handles = Vec::with_capacity(plan.threads);
    for index in 0..plan.threads {
        match worker::spawn(index, plan.clone(), gate.clone(), stop.clone(), sender.clone()) {
            Ok(handle) => handles.push(handle),
            Err(err) => {
                stop.store(true, Ordering::Relaxed);
                return Err(err);
            }
        }
    }
    drop(sender);

    // Let every connection try once before the clock starts, but never wait on a dead target
    // longer than the connect timeout.
    let connect_deadline = Instant::now() + plan.timeout + Duration::from_millis(500);
    while gate.ready() < plan.total_connections() && Instant::now() < connect_deadline {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now() + Duration::from_millis(2);
    if let Some(logs) = logs.as_deref_mut() {
        let wall_clock_start = SystemTime::now() + Duration::from_millis(2);
        logs.begin(wall_clock_start).map_err(|err| format!("interval log: {err}"))?;
    }
    gate.open(start);

    let mut totals = StatsSet::default();
    let mut interval = StatsSet::default();
    let mut second: u32 = 1;
    let mut finished = 0;
    let mut stopped_at: Option<Instant> = None;
    let mut last_activity = start;
    while finished < plan.threads {
        let tick = start + Duration::from_secs(u64::from(second)) + REPORT_GRACE;
        let wait = tick.saturating_duration_since(Instant::now());
        match reports.recv_timeout(wait.min(Duration::from_millis(100))) {
            Ok(report) => {
                totals.merge(&report.stats);
                interval.merge(&report.stats);
                if report.finished {
                    finished += 1;
                    last_activity = Instant::now();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if stopped_at.is_none() && stop.load(Ordering::Relaxed) {
            stopped_at = Some(Instant::now());
            if label.is_some() {
                eprintln!("interrupted: waiting for the replies in flight (up to the timeout)");
            }
        }
        if Instant::now() >= tick {
            let offset = Duration::from_secs(u64::from(second - 1));
            if let Some(label) = label {
                eprintln!("{}", progress_line(label, second, &interval, Duration::from_secs(1)));
            }
            if let Some(logs) = logs.as_deref_mut() {
                logs.write(&interval, offset, Duration::from_secs(1))?;
            }
            interval = StatsSet::default();
            second += 1;
        }
    }
    // The last, partial interval.
    let end = Instant::now();
    let offset = Duration::from_secs(u64::from(second - 1));
    if let Some(logs) = logs {
        let length = end.saturating_duration_since(start + offset);
        logs.write(&interval, offset, length)?;
    }
    for handle in handles {
        handle.join().map_err(|err| format!("a worker thread failed: {err}"))?;
    }
    let interrupted = stopped_at.is_some();
    let elapsed = match (stopped_at, plan.duration) {
        (Some(stopped), Some(duration)) => stopped.saturating_duration_since(start).min(duration),
        (Some(stopped), None) => stopped.saturating_duration_since(start),
        (None, Some(duration)) => duration,
        (None, None) => last_activity.saturating_duration_since(start),
    };
    Ok(RunOutcome { stats: totals, elapsed: elapsed.max(Duration::from_millis(1)), interrupted })
}

/// `[  3s] 123456 ops/s  hits 110000/s  misses 2000/s  errors 0  p50 0.123 ms  p99 0.456 ms`
fn progress_line(label: &str, second: u32, interval: &StatsSet, length: Duration) -> String {
    let total: OpStats = interval.total();
    let secs = length.as_secs_f64();
    let latency = total.latency.summary();
    format!(
        "{label}[{second:>4}s] {:>9.0} ops/s  hits {:>9.0}/s  misses {:>8.0}/s  errors {:>5}  p50 {:.3} ms  p99 {:.3} ms",
        total.completed as f64 / secs,
        total.hits as f64 / secs,
        total.misses as f64 / secs,
        total.errors.requests() + total.errors.connect,
        latency.p50,
        latency.p99,
    )
}
