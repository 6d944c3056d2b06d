//! Proxy statistics without the I/O: the snapshot a worker sends, merging snapshots, and every format the figures
//! leave the process in (Prometheus text, twemproxy's JSON, percentile JSON, histogram dump files, redis INFO and
//! memcache `stats`, the `ferrule hist` table).
//!
//! The live counters are in `io::stats` (owned by each worker, never shared); control asks for [`WorkerSnapshot`]s
//! over the channels, [`merge`]s them and renders what was asked. See docs/observability.md for every figure.

mod dumps;
pub mod hist_cli;
mod merge;
mod percentiles;
mod prometheus;
mod proxy_text;
mod routes;
mod snapshot;
mod twemproxy;

pub use dumps::{dump_entries, sanitize, DumpEntry, IntervalTracker};
pub use merge::{
    merge, ClusterTotals, CommandTotals, ListenerTotals, PoolTotals, ProxyStats, ServerHealth, ServerTotals,
    WorkerTotals,
};
pub use percentiles::{percentiles, render_histograms};
pub use prometheus::{render_prometheus, CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE, LATENCY_BUCKETS_US};
pub use proxy_text::{memcache_stats, redis_info, CommandCount, ProcessFigures, ProtocolSummary, Summary};
pub use routes::{merge_routes, RouteCounts};
pub use snapshot::{
    ClientCounters, ClusterCounters, CommandSnapshot, ListenerSnapshot, ServerCounters, ServerGauges, ServerSnapshot,
    WorkerSnapshot,
};
pub use twemproxy::{render_twemproxy, ProcessInfo};
