//! The resolved parameters of one run, and what a worker thread shares among its connections.

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::timer::sleep;

use crate::cli::{ProtocolName, RunArgs};
use crate::schedule::Arrival;
use crate::stats::StatsSet;
use crate::workload::{KeyChooser, KeyDistribution, OpKind, Ratio, ValueMaker};

/// Longest run accepted (a year): far beyond any benchmark, and safe to add to an `Instant`.
pub const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A TCP address, resolved once before the run.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl Target {
    /// A path (containing '/') is a unix socket; anything else is resolved as HOST:PORT.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains('/') {
            return Ok(Target::Unix(PathBuf::from(text)));
        }
        text.to_socket_addrs()
            .map_err(|err| format!("target {text:?}: {err}"))?
            .next()
            .map(Target::Tcp)
            .ok_or_else(|| format!("target {text:?} resolves to no address"))
    }
}

/// Everything a run needs, fixed before it starts.
#[derive(Debug)]
pub struct RunPlan {
    /// Wire protocol.
    pub protocol: ProtocolName,
    /// Where to connect.
    pub target: Target,
    /// Worker threads.
    pub threads: usize,
    /// Connections per thread.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Open loop rate over all connections; `None` for closed loop.
    pub rate: Option<f64>,
    /// Open-loop arrival process.
    pub arrival: Arrival,
    /// Keyspace size.
    pub keys: u64,
    /// Key popularity.
    pub distribution: KeyDistribution,
    /// Key name prefix.
    pub key_prefix: Vec<u8>,
    /// Value contents and sizes.
    pub values: Arc<ValueMaker>,
    /// Writes to reads.
    pub ratio: Ratio,
    /// Keys per read.
    pub mget: usize,
    /// How long to send; `None` with a request budget.
    pub duration: Option<Duration>,
    /// Total requests to send.
    pub requests: Option<u64>,
    /// Connect and reply timeout.
    pub timeout: Duration,
    /// Check values read back.
    pub verify: bool,
    /// Base seed.
    pub seed: u64,
    /// CPU per worker thread (`None`: not pinned).
    pub cpus: Vec<Option<usize>>,
}

impl RunPlan {
    /// The measured run described by the command line.
    pub fn from_args(args: &RunArgs, seed: u64) -> Result<Self, String> {
        args.validate()?;
        let (Some(protocol), Some(target)) = (args.protocol, args.target.as_deref()) else {
            return Err("--protocol and --target are required".into());
        };
        let duration = match (args.duration, args.requests) {
            (Some(secs), _) => Some(Duration::from_secs_f64(secs.min(MAX_DURATION_SECS))),
            (None, Some(_)) => None,
            // A search runs many steps: shorter ones by default.
            (None, None) if args.search.is_some() => Some(Duration::from_secs(5)),
            (None, None) => Some(Duration::from_secs(10)),
        };
        let plan = Self {
            protocol,
            target: Target::parse(target)?,
            threads: args.threads,
            connections: args.connections,
            pipeline: args.pipeline,
            rate: args.rate,
            arrival: args.arrival,
            keys: args.keys,
            distribution: args.key_distribution(),
            key_prefix: args.key_prefix.as_bytes().to_vec(),
            values: Arc::new(ValueMaker::new(args.value_size.clone())),
            ratio: args.ratio,
            mget: args.mget,
            duration,
            requests: args.requests,
            timeout: args.timeout(),
            verify: args.verify,
            seed,
            cpus: choose_cpus(args.threads, args.cpus.as_deref()),
        };
        // Surface a bad zipf exponent here rather than in every connection.
        KeyChooser::new(plan.distribution, plan.keys, 0, 0, 1)?;
        Ok(plan)
    }

    /// The prefill pass: every key written once, closed loop, pipelined.
    pub fn prefill(&self) -> Self {
        Self {
            rate: None,
            distribution: KeyDistribution::Sequential,
            ratio: Ratio { sets: 1, gets: 0 },
            duration: None,
            requests: Some(self.keys),
            pipeline: self.pipeline.max(16),
            verify: false,
            values: self.values.clone(),
            target: self.target.clone(),
            key_prefix: self.key_prefix.clone(),
            cpus: self.cpus.clone(),
            ..*self
        }
    }

    /// The same run at another open-loop rate (for `--search`).
    pub fn at_rate(&self, rate: Option<f64>) -> Self {
        Self {
            rate,
            values: self.values.clone(),
            target: self.target.clone(),
            key_prefix: self.key_prefix.clone(),
            cpus: self.cpus.clone(),
            ..*self
        }
    }

    /// The read operation of this workload.
    pub fn read_kind(&self) -> OpKind {
        if self.mget > 1 {
            OpKind::Mget
        } else {
            OpKind::Get
        }
    }

    /// Operations this workload sends.
    pub fn ops(&self) -> Vec<OpKind> {
        let mut ops = Vec::new();
        if self.ratio.gets > 0 {
            ops.push(self.read_kind());
        }
        if self.ratio.sets > 0 {
            ops.push(OpKind::Set);
        }
        ops
    }

    /// Connections over all threads.
    pub fn total_connections(&self) -> usize {
        self.threads * self.connections
    }
}

/// Pins thread i to the i-th CPU of `--cpus`, else to the i-th CPU this process may run on,
/// as long as there are enough of them; otherwise leaves threads unpinned.
fn choose_cpus(threads: usize, requested: Option<&[usize]>) -> Vec<Option<usize>> {
    if let Some(cpus) = requested {
        return cpus.iter().take(threads).map(|&cpu| Some(cpu)).collect();
    }
    let allowed: Vec<usize> =
        core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|core| core.id).collect();
    if allowed.len() >= threads {
        allowed.into_iter().take(threads).map(Some).collect()
    } else {
        vec![None; threads]
    }
}

/// Lets every connection of a run connect first and then start sending at the same instant, so
/// connection setup is not measured as latency.
#[derive(Debug)]
pub struct StartGate {
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the run starts; `u64::MAX` until opened.
    start_nanos: AtomicU64,
    ready: AtomicUsize,
}

impl Default for StartGate {
    fn default() -> Self {
        Self { epoch: Instant::now(), start_nanos: AtomicU64::new(u64::MAX), ready: AtomicUsize::new(0) }
    }
}

impl StartGate {
    /// A connection made its first attempt (successful or not).
    pub fn mark_ready(&self) {
        self.ready.fetch_add(1, Ordering::Release);
    }

    /// Connections that made their first attempt.
    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::Acquire)
    }

    /// Starts the run at `at`.
    pub fn open(&self, at: Instant) {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1);
        self.start_nanos.store(nanos, Ordering::Release);
    }

    /// The run's start, once opened.
    pub fn start(&self) -> Option<Instant> {
        match self.start_nanos.load(Ordering::Acquire) {
            u64::MAX => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        }
    }
}

/// What the connections of one worker thread share (single-threaded, hence `RefCell`).
pub struct WorkerShared {
    /// The run.
    pub plan: Arc<RunPlan>,
    /// The run's common start.
    pub gate: Arc<StartGate>,
    /// Raised by Ctrl-C (or the end of a search): stop sending, finish what is in flight.
    pub stop: Arc<AtomicBool>,
    /// This thread's figures since its last report.
    pub stats: RefCell<StatsSet>,
}

impl WorkerShared {
    /// True once the run was told to stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits for the gate to open and returns the start; `None` if the run was stopped first.
    pub async fn wait_for_start(&self) -> Option<Instant> {
        loop {
            if let Some(start) = self.gate.start() {
                let now = Instant::now();
                if start > now {
                    sleep(start - now).await;
                }
                return Some(start);
            }
            if self.stopping() {
                return None;
            }
            sleep(Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("127.0.0.1:6379"), Ok(Target::Tcp("127.0.0.1:6379".parse().unwrap())));
        assert_eq!(Target::parse("/tmp/redis.sock"), Ok(Target::Unix("/tmp/redis.sock".into())));
        assert!(Target::parse("nonsense").is_err());
    }

    #[test]
    fn gate_opens_once() {
        let gate = StartGate::default();
        assert_eq!(gate.start(), None);
        gate.mark_ready();
        assert_eq!(gate.ready(), 1);
        let at = Instant::now() + Duration::from_millis(3);
        gate.open(at);
        let start = gate.start().unwrap();
        assert!(start.max(at) - start.min(at) < Duration::from_micros(1));
    }

    #[test]
    fn cpu_choice() {
        assert_eq!(choose_cpus(2, Some(&[3, 1, 0])), vec![Some(3), Some(1)]);
        assert_eq!(choose_cpus(10_000, None), vec![None; 10_000]);
    }
}
