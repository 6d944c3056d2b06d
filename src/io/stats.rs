//! Per-worker live statistics: plain integers and HdrHistograms owned by one core, never shared, no atomics and no
//! locks. Control asks for a [`WorkerSnapshot`] over the channel and merges (see [`crate::stats`]).
//!
//! Where things are counted:
//! - per listener ([`ListenerStats`], one per listener name, kept across reloads): connection lifecycle, requests,
//!   and per command a request count, failures and the request latency (parse -> reply complete);
//! - per backend connection ([`BackendStats`], inside the connection's state that is borrowed anyway): requests,
//!   bytes, replies, faults and the backend latency (queued -> reply). Servers and pools are sums of these.
//!
//! Commands are found by a small integer ([`CommandId`]), not by hashing names. Histograms are allocated the first
//! time a command (or server) records a latency, so a listener costs nothing for commands it never sees.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{Config, Protocol};
use crate::histogram::Histogram;
use crate::protocol::{memcache, redis};
use crate::stats::{
    ClientCounters, CommandCount, CommandSnapshot, ListenerSnapshot, ProtocolSummary, ServerCounters, ServerGauges,
    ServerSnapshot, Summary,
};

pub use crate::stats::WorkerSnapshot;

/// Slots for redis commands: one per entry of the command table (`redis::command_index`).
const REDIS_SLOTS: usize = redis::COMMAND_COUNT;
/// One slot after the table slots collects anything that does not fit (never expected; see [`ListenerStats`]).
const OVERFLOW_NAME: &str = "OTHER";

/// A command's slot in its listener's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandId(u16);

/// Identifies a client connection by the address of its reply queue, which stays put while any of its requests is
/// in flight (the waiters hold it).
pub fn client_key<T>(queue: &Rc<T>) -> usize {
    Rc::as_ptr(queue) as *const () as usize
}

/// Microseconds in a duration, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A latency histogram fed through a one-value run-length buffer. Replies read in one batch for requests parsed in
/// one batch have the same latency (both ends are per-batch clock reads), so pipelined traffic mostly costs a
/// compare and an increment here instead of a histogram update; the run is added when the value changes and
/// whenever a snapshot is taken.
#[derive(Default)]
struct LatencyRecorder {
    /// Allocated on the first flushed run.
    histogram: Option<Box<Histogram>>,
    value: u64,
    run: u64,
}

impl LatencyRecorder {
    #[inline]
    fn record(&mut self, micros: u64) {
        if self.run > 0 && self.value == micros {
            self.run += 1;
            return;
        }
        self.flush();
        self.value = micros;
        self.run = 1;
    }

    fn flush(&mut self) {
        if self.run > 0 {
            self.histogram.get_or_insert_with(Box::default).record_n(self.value, self.run);
            self.run = 0;
        }
    }

    fn is_empty(&self) -> bool {
        self.run == 0 && self.histogram.is_none()
    }

    /// Everything recorded so far, the pending run included; `None` when nothing was.
    fn snapshot(&self) -> Option<Histogram> {
        if self.is_empty() {
            return None;
        }
        let mut h = self.histogram.as_deref().cloned().unwrap_or_default();
        if self.run > 0 {
            h.record_n(self.value, self.run);
        }
        Some(h)
    }

    /// Values recorded so far.
    fn len(&self) -> u64 {
        self.histogram.as_ref().map_or(0, |h| h.len()) + self.run
    }
}

#[derive(Default)]
struct CommandStats {
    name: &'static str,
    requests: u64,
    failed: u64,
    latency_sum_us: u64,
    latency: LatencyRecorder,
}

impl CommandStats {
    fn record(&mut self, latency_us: u64, failed: bool) {
        self.failed += u64::from(failed);
        self.latency_sum_us = self.latency_sum_us.saturating_add(latency_us);
        self.latency.record(latency_us);
    }
}

/// One listener's figures on this worker. Shared by the listener's sessions and, through [`Meter`]s, by the
/// backend connections that complete their requests (all on this core).
pub struct ListenerStats {
    name: String,
    protocol: Protocol,
    /// `proxy.stats`: per-command counts and latencies; connection counters are always kept.
    enabled: bool,
    pub clients: ClientCounters,
    commands: Vec<Option<Box<CommandStats>>>,
    /// Address of one entry of the redis command table, the origin of redis command slots.
    /// Split requests whose fragments are not all back: (client queue address, sequence) -> (fragments left,
    /// whether one failed). Only multi-server requests use it; entries leave when the last fragment arrives.
    splits: HashMap<(usize, u64), (u32, bool), fnv::FnvBuildHasher>,
}

pub type ListenerStatsRef = Rc<RefCell<ListenerStats>>;

impl ListenerStats {
    fn new(name: &str, protocol: Protocol, enabled: bool) -> ListenerStats {
        let slots = match protocol {
            Protocol::Redis => REDIS_SLOTS + 1,
            Protocol::Memcache => memcache::Command::ALL.len() + 1,
        };
        ListenerStats {
            name: name.to_owned(),
            protocol,
            enabled,
            clients: ClientCounters::default(),
            commands: (0..slots).map(|_| None).collect(),
            splits: HashMap::default(),
        }
    }

    pub fn client_opened(&mut self) {
        self.clients.accepted += 1;
    }

    pub fn client_closed(&mut self) {
        self.clients.closed += 1;
    }

    fn overflow_slot(&self) -> usize {
        self.commands.len() - 1
    }

    fn redis_slot(&self, info: &'static redis::CommandInfo) -> usize {
        // command_index is below REDIS_SLOTS for every table entry; anything else lands in the overflow slot.
        redis::command_index(info).min(self.overflow_slot())
    }

    /// Counts one request of the command in `slot`; `None` when per-command stats are off.
    #[inline]
    fn count(&mut self, slot: usize, name: &'static str) -> Option<CommandId> {
        self.clients.requests += 1;
        if !self.enabled {
            return None;
        }
        let slot = if slot < self.commands.len() { slot } else { self.overflow_slot() };
        let overflow = slot == self.overflow_slot();
        let entry = self.commands.get_mut(slot)?.get_or_insert_with(|| {
            Box::new(CommandStats { name: if overflow { OVERFLOW_NAME } else { name }, ..Default::default() })
        });
        entry.requests += 1;
        Some(CommandId(slot as u16))
    }

    /// Counts a redis request; the id is for a [`Meter`].
    #[inline]
    pub fn count_redis(&mut self, info: &'static redis::CommandInfo) -> Option<CommandId> {
        let slot = self.redis_slot(info);
        self.count(slot, info.name)
    }

    /// Counts a memcache request; the id is for a [`Meter`].
    #[inline]
    pub fn count_memcache(&mut self, cmd: memcache::Command) -> Option<CommandId> {
        self.count(cmd as usize, cmd.name())
    }

    /// Counts a request naming a command the proxy does not know.
    pub fn count_unknown(&mut self) {
        self.clients.requests += 1;
        self.clients.unknown_commands += 1;
    }

    /// A request split into `fragments` sub-requests; `key` identifies it until its last fragment is back.
    pub fn begin_split(&mut self, key: (usize, u64), fragments: u32, metered: bool) {
        self.clients.fragments += u64::from(fragments);
        if metered {
            self.splits.insert(key, (fragments, false));
        }
    }

    fn record(&mut self, id: CommandId, latency_us: u64, failed: bool) {
        if let Some(Some(c)) = self.commands.get_mut(usize::from(id.0)) {
            c.record(latency_us, failed);
        }
    }

    fn snapshot(&self, pool: String) -> ListenerSnapshot {
        let commands = self
            .commands
            .iter()
            .flatten()
            .map(|c| CommandSnapshot {
                name: c.name,
                requests: c.requests,
                failed: c.failed,
                latency_sum_us: c.latency_sum_us,
                latency: c.latency.snapshot(),
            })
            .collect();
        ListenerSnapshot {
            name: self.name.clone(),
            protocol: self.protocol.name(),
            pool,
            clients: self.clients.clone(),
            commands,
        }
    }

    fn summary(&self) -> ProtocolSummary {
        let mut commands: Vec<CommandCount> = self
            .commands
            .iter()
            .flatten()
            .map(|c| CommandCount {
                name: c.name,
                calls: c.requests,
                failed: c.failed,
                usec: c.latency_sum_us,
                timed: c.latency.len(),
            })
            .collect();
        commands.sort_by(|a, b| a.name.cmp(b.name));
        ProtocolSummary { clients: self.clients.clone(), commands }
    }
}

/// Carried by a request's reply waiter so that completing it records the latency where it belongs. Cloning the
/// `Rc` is a non-atomic increment; nothing is allocated.
pub struct Meter {
    listener: ListenerStatsRef,
    command: CommandId,
    started: Instant,
    split: bool,
}

impl Meter {
    /// `started` is when the request was parsed; `split` when it is one fragment of a split request (registered
    /// with [`ListenerStats::begin_split`]).
    pub fn new(listener: &ListenerStatsRef, command: CommandId, started: Instant, split: bool) -> Meter {
        Meter { listener: listener.clone(), command, started, split }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The reply (or this fragment's reply) for request `seq` of the client whose queue is at `client` was
    /// delivered after `latency`; `failed` when the proxy made it because the backend failed. A split request is
    /// recorded once, when its last fragment arrives, with that fragment's (the longest) latency.
    pub fn finish(&self, client: usize, seq: u64, latency: Duration, failed: bool) {
        let mut ls = self.listener.borrow_mut();
        let mut failed = failed;
        if self.split {
            let key = (client, seq);
            let Some(entry) = ls.splits.get_mut(&key) else { return };
            entry.0 = entry.0.saturating_sub(1);
            entry.1 |= failed;
            if entry.0 > 0 {
                return;
            }
            failed = entry.1;
            ls.splits.remove(&key);
        }
        ls.record(self.command, micros(latency), failed);
    }
}

/// The time of one batch of completions, read from the clock at most once, and only when something is metered.
#[derive(Default)]
pub struct BatchClock(Option<Instant>);

impl BatchClock {
    pub fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }

    /// Time since `started`, if there is a start (a metered request).
    pub fn since(&mut self, started: Option<Instant>) -> Option<Duration> {
        started.map(|t| self.now().saturating_duration_since(t))
    }
}

/// Why a backend connection was torn down, in twemproxy's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The server closed it (`server_eof`).
    Eof,
    /// A request timed out (`server_timedout`).
    Timeout,
    /// Anything else: refused, reset, rejected AUTH (`server_err`).
    Error,
    /// The server broke the protocol: a malformed reply, data nobody asked for, or a reply that cannot answer the
    /// request at the head of the queue (`server_err` too, and its own counter): the connection was out of step.
    Protocol,
}

impl Fault {
    /// Classifies the reason text the backend connection gives (see `io::backend`: "timed out after N ms",
    /// "closed the connection", "sent ..." for what the server sent wrong, everything else an error).
    pub fn from_reason(reason: &str) -> Fault {
        if reason.starts_with("timed out") {
            Fault::Timeout
        } else if reason == "closed the connection" {
            Fault::Eof
        } else if reason.starts_with("sent ") {
            Fault::Protocol
        } else {
            Fault::Error
        }
    }
}

/// One backend connection's figures, kept inside its state (already borrowed wherever they change).
#[derive(Default)]
pub struct BackendStats {
    pub counters: ServerCounters,
    /// Requests queued and not yet written.
    pub unsent: u64,
    /// Request bytes of the requests awaiting a reply.
    pub pending_bytes: u64,
    latency: LatencyRecorder,
}

impl BackendStats {
    /// A request of `bytes` was queued.
    #[inline]
    pub fn queued(&mut self, bytes: usize, awaits_reply: bool) {
        self.counters.requests += 1;
        self.counters.request_bytes += bytes as u64;
        self.unsent += 1;
        if awaits_reply {
            self.pending_bytes += bytes as u64;
        }
    }

    /// Everything queued was handed to the socket.
    #[inline]
    pub fn written(&mut self) {
        self.unsent = 0;
    }

    /// A reply of `bytes` answered a request of `request_bytes`, after `latency` when it was metered.
    #[inline]
    pub fn replied(&mut self, bytes: usize, request_bytes: u32, latency: Option<Duration>) {
        self.counters.responses += 1;
        self.counters.response_bytes += bytes as u64;
        self.pending_bytes = self.pending_bytes.saturating_sub(u64::from(request_bytes));
        if let Some(l) = latency {
            let us = micros(l);
            self.counters.latency_sum_us = self.counters.latency_sum_us.saturating_add(us);
            self.latency.record(us);
        }
    }

    /// The connection was torn down; `failed` requests were answered with an error.
    pub fn fault(&mut self, fault: Fault, failed: usize) {
        match fault {
            Fault::Eof => self.counters.eof += 1,
            Fault::Timeout => self.counters.timeouts += 1,
            Fault::Error => self.counters.errors += 1,
            Fault::Protocol => {
                self.counters.errors += 1;
                self.counters.protocol_faults += 1;
            }
        }
        self.counters.failed_requests += failed as u64;
        self.unsent = 0;
        self.pending_bytes = 0;
    }

    /// A request was failed at once (the server is backing off after failed connects).
    pub fn failed_fast(&mut self) {
        self.counters.failed_requests += 1;
    }

    pub fn connected(&mut self) {
        self.counters.connects += 1;
    }

    /// Counters, gauges (from the connection's queue state) and latency, for a snapshot.
    pub fn snapshot(
        &self,
        queued_bytes: usize,
        pending: usize,
        connected: bool,
    ) -> (ServerCounters, ServerGauges, Option<Histogram>) {
        let in_queue = self.unsent.min(pending as u64);
        let gauges = ServerGauges {
            connections: u64::from(connected),
            in_queue: self.unsent,
            in_queue_bytes: queued_bytes as u64,
            out_queue: (pending as u64).saturating_sub(in_queue),
            out_queue_bytes: self.pending_bytes.saturating_sub(queued_bytes as u64),
            ..ServerGauges::default()
        };
        (self.counters.clone(), gauges, self.latency.snapshot())
    }
}

/// A worker's statistics: its listeners' figures by name (kept across reloads, so counters only grow).
pub struct WorkerStats {
    enabled: bool,
    listeners: Vec<ListenerStatsRef>,
    /// The counters of routes executed by `io::fan`, by name (kept across reloads, as listeners' are).
    routes: Vec<Rc<RouteCounters>>,
}

/// One route's counters on this worker: plain integers in cells (the worker is one thread), bumped by `io::fan`
/// where it decides, never on the plain pool path.
#[derive(Default)]
pub struct RouteCounters {
    pub name: String,
    pub kind: &'static str,
    pub requests: Cell<u64>,
    pub failovers: Cell<u64>,
    pub copies_sent: Cell<u64>,
    pub copies_dropped: Cell<u64>,
    pub copies_failed: Cell<u64>,
    pub fills: Cell<u64>,
}

impl RouteCounters {
    pub fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }

    fn snapshot(&self) -> crate::stats::RouteCounts {
        crate::stats::RouteCounts {
            name: self.name.clone(),
            kind: self.kind,
            requests: self.requests.get(),
            failovers: self.failovers.get(),
            copies_sent: self.copies_sent.get(),
            copies_dropped: self.copies_dropped.get(),
            copies_failed: self.copies_failed.get(),
            fills: self.fills.get(),
        }
    }
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats { enabled: true, listeners: Vec::new(), routes: Vec::new() }
    }
}

impl WorkerStats {
    /// `enabled` is `proxy.stats`.
    pub fn new(enabled: bool) -> WorkerStats {
        WorkerStats { enabled, listeners: Vec::new(), routes: Vec::new() }
    }

    /// Applies `proxy.stats` (at start and on every reload).
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
        for l in &self.listeners {
            l.borrow_mut().enabled = enabled;
        }
    }

    /// The figures of listener `name`, created on first use (once per connection, not per request).
    pub fn listener(&mut self, name: &str, protocol: Protocol) -> ListenerStatsRef {
        if let Some(l) = self.listeners.iter().find(|l| {
            let l = l.borrow();
            l.name == name && l.protocol == protocol
        }) {
            return l.clone();
        }
        let l = Rc::new(RefCell::new(ListenerStats::new(name, protocol, self.enabled)));
        self.listeners.push(l.clone());
        l
    }

    /// The counters of route `name` of type `kind`, created on first use (when the route's plan is built). A
    /// route whose type changed in a reload starts over.
    pub fn route(&mut self, name: &str, kind: &'static str) -> Rc<RouteCounters> {
        if let Some(r) = self.routes.iter().find(|r| r.name == name && r.kind == kind) {
            return r.clone();
        }
        let r = Rc::new(RouteCounters { name: name.to_owned(), kind, ..Default::default() });
        self.routes.push(r.clone());
        r
    }

    /// Everything this worker knows, for control. `servers` lists (pool name, server name, spec, figures of each
    /// of its connections).
    pub fn snapshot(&self, worker: usize, cfg: &Config, servers: Vec<ServerSnapshot>) -> WorkerSnapshot {
        let listeners = self
            .listeners
            .iter()
            .map(|l| {
                let l = l.borrow();
                let pool = cfg.listeners.iter().find(|c| c.name == l.name).map(|c| c.route.clone()).unwrap_or_default();
                l.snapshot(pool)
            })
            .collect();
        let routes = self.routes.iter().map(|r| r.snapshot()).collect();
        WorkerSnapshot {
            worker,
            stats_enabled: self.enabled,
            listeners,
            servers,
            tls: super::tls::snapshot(),
            clusters: Vec::new(),
            routes,
        }
    }

    /// Counters only (no histograms), split by protocol, for redis INFO and memcache `stats`.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for l in &self.listeners {
            let l = l.borrow();
            match l.protocol {
                Protocol::Redis => s.redis.add(&l.summary()),
                Protocol::Memcache => s.memcache.add(&l.summary()),
            }
        }
        s
    }
}

/// Sums the figures of one server's connections into its snapshot.
pub fn server_snapshot(
    pool: &str,
    name: String,
    spec: &str,
    conns: impl Iterator<Item = (ServerCounters, ServerGauges, Option<Histogram>)>,
) -> ServerSnapshot {
    let mut snap = ServerSnapshot { pool: pool.to_owned(), name, spec: spec.to_owned(), ..Default::default() };
    for (counters, gauges, latency) in conns {
        snap.counters.add(&counters);
        snap.gauges.add(&gauges);
        if let Some(h) = latency {
            match &mut snap.latency {
                Some(total) => total.merge(&h),
                None => snap.latency = Some(h),
            }
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_commands_get_distinct_slots_and_keep_their_names() {
        let mut ws = WorkerStats::default();
        let l = ws.listener("cache", Protocol::Redis);
        let mut ids = Vec::new();
        for name in [&b"GET"[..], b"SET", b"ACL", b"ZUNIONSTORE", b"APPEND", b"MGET"] {
            let info = redis::lookup(name).unwrap();
            ids.push(l.borrow_mut().count_redis(info).unwrap());
        }
        let mut unique = ids.clone();
        unique.sort_by_key(|c| c.0);
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().all(|c| usize::from(c.0) < REDIS_SLOTS), "no command falls in the overflow slot");
        let snap = l.borrow().snapshot(String::new());
        let mut names: Vec<&str> = snap.commands.iter().map(|c| c.name).collect();
        names.sort();
        assert_eq!(names, vec!["ACL", "APPEND", "GET", "MGET", "SET", "ZUNIONSTORE"]);
        assert_eq!(snap.clients.requests, 6);
    }

    #[test]
    fn meters_record_whole_and_split_requests_once() {
        let mut ws = WorkerStats::default();
        let l = ws.listener("mc", Protocol::Memcache);
        let t0 = Instant::now();
        let get = l.borrow_mut().count_memcache(memcache::Command::Get).unwrap();
        Meter::new(&l, get, t0, false).finish(1, 0, Duration::from_micros(300), false);
        let get2 = l.borrow_mut().count_memcache(memcache::Command::Get).unwrap();
        l.borrow_mut().begin_split((1, 1), 3, true);
        for (i, us) in [100u64, 900, 400].iter().enumerate() {
            Meter::new(&l, get2, t0, true).finish(1, 1, Duration::from_micros(*us), i == 1);
        }
        let snap = l.borrow().snapshot("main".into());
        let c = &snap.commands[0];
        assert_eq!((c.name, c.requests, c.failed), ("get", 2, 1));
        let h = c.latency.as_ref().unwrap();
        assert_eq!(h.len(), 2, "the split request counts once");
        assert_eq!(h.max(), 400, "recorded when the last fragment arrived");
        assert_eq!(snap.clients.fragments, 3);
        assert!(l.borrow().splits.is_empty());
    }

    #[test]
    fn disabled_stats_count_requests_only() {
        let mut ws = WorkerStats::default();
        ws.set_enabled(false);
        let l = ws.listener("c", Protocol::Redis);
        assert!(l.borrow_mut().count_redis(redis::lookup(b"GET").unwrap()).is_none());
        let summary = ws.summary();
        assert_eq!(summary.redis.clients.requests, 1);
        assert!(summary.redis.commands.is_empty());
    }

    #[test]
    fn latency_runs_are_counted_exactly() {
        let mut r = LatencyRecorder::default();
        assert!(r.snapshot().is_none());
        for v in [5, 5, 5, 9, 9, 5] {
            r.record(v);
        }
        assert_eq!(r.len(), 6);
        let h = r.snapshot().unwrap();
        assert_eq!((h.len(), h.max()), (6, 9));
        assert_eq!(h.value_at_quantile(0.5), 5);
        // Taking a snapshot does not lose or double the pending run.
        r.record(5);
        assert_eq!(r.snapshot().unwrap().len(), 7);
    }

    #[test]
    fn backend_gauges_follow_the_queue() {
        let mut b = BackendStats::default();
        b.queued(10, true);
        b.queued(20, true);
        let (_, g, _) = b.snapshot(30, 2, true);
        assert_eq!((g.in_queue, g.in_queue_bytes, g.out_queue, g.out_queue_bytes), (2, 30, 0, 0));
        b.written();
        let (_, g, _) = b.snapshot(0, 2, true);
        assert_eq!((g.in_queue, g.out_queue, g.out_queue_bytes), (0, 2, 30));
        b.replied(5, 10, Some(Duration::from_micros(70)));
        let (c, g, h) = b.snapshot(0, 1, true);
        assert_eq!((c.responses, c.response_bytes, g.out_queue_bytes), (1, 5, 20));
        assert_eq!(h.unwrap().len(), 1);
        b.fault(Fault::from_reason("timed out after 5 ms"), 1);
        let (c, g, _) = b.snapshot(0, 0, false);
        assert_eq!((c.timeouts, c.failed_requests, g.out_queue_bytes, g.connections), (1, 1, 0, 0));
        assert_eq!(Fault::from_reason("closed the connection"), Fault::Eof);
        assert_eq!(Fault::from_reason("read failed: reset"), Fault::Error);
        assert_eq!(Fault::from_reason("sent data nobody asked for"), Fault::Protocol);
        assert_eq!(Fault::from_reason("sent a reply that cannot answer GET (integer)"), Fault::Protocol);
        assert_eq!(Fault::from_reason("sent a malformed reply: invalid bulk length"), Fault::Protocol);
        b.fault(Fault::Protocol, 2);
        let (c, _, _) = b.snapshot(0, 0, false);
        assert_eq!((c.errors, c.protocol_faults), (1, 1), "a protocol fault is a server error of its own kind");
    }

    /// What the request path does for stats, per request, with stats on and off: parse-time counting, the meter in
    /// the waiter, the backend's counters and histogram, the listener's histogram. Prints nanoseconds per request;
    /// run with `cargo test --release --lib cost_per_request -- --ignored --nocapture` (docs/benchmarks.md).
    #[test]
    #[ignore]
    fn cost_per_request() {
        const N: u64 = 5_000_000;
        let get = redis::lookup(b"GET").unwrap();
        for enabled in [true, false, true, false] {
            let mut ws = WorkerStats::new(enabled);
            let l = ws.listener("cache", Protocol::Redis);
            let mut backend = BackendStats::default();
            let queue = Rc::new(0u8);
            let start = Instant::now();
            let mut clock = BatchClock::default();
            for i in 0..N {
                // One clock read per batch of 16 replies, as with redis-benchmark -P 16.
                if i % 16 == 0 {
                    clock = BatchClock::default();
                }
                let parsed = start;
                let command = l.borrow_mut().count_redis(std::hint::black_box(get));
                let meter = command.map(|c| Meter::new(&l, c, parsed, false));
                backend.queued(40, true);
                let latency = clock.since(meter.as_ref().map(Meter::started));
                backend.replied(9, 40, latency);
                if let (Some(m), Some(d)) = (&meter, latency) {
                    m.finish(client_key(&queue), i, d, false);
                }
                drop(std::hint::black_box(meter));
            }
            let ns = start.elapsed().as_nanos() as f64 / N as f64;
            println!("stats {}: {ns:.1} ns per request", if enabled { "on " } else { "off" });
        }
    }
}
