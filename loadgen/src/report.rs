//! The final report: a memtier_benchmark-style table, the `--json` document, and the `.hgrm`
//! files.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use ferrule::histogram::{write_hgrm, PercentileSummary, MICROS_PER_MILLI};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::RunArgs;
use crate::plan::{RunPlan, Target};
use crate::run::RunOutcome;
use crate::stats::{ErrorCounts, OpStats};
use crate::workload::OpKind;

/// The figures of one operation kind (or of all together) as rates.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    /// Replies received.
    pub count: u64,
    /// Replies per second.
    pub ops_per_sec: f64,
    /// Keys found per second.
    pub hits_per_sec: f64,
    /// Keys not found per second.
    pub misses_per_sec: f64,
    /// Keys found.
    pub hits: u64,
    /// Keys not found.
    pub misses: u64,
    /// Failed requests (plus failed connection attempts, in the totals).
    pub errors: u64,
    /// Failures by cause.
    pub errors_by_kind: ErrorCounts,
    /// Request and reply bytes per second, in KiB.
    pub kb_per_sec: f64,
    /// Latency from the intended send time (coordinated-omission corrected), milliseconds.
    pub latency_ms: PercentileSummary,
    /// Latency from the actual send (service time), milliseconds.
    pub service_time_ms: PercentileSummary,
}

impl OpReport {
    /// Rates of `stats` over `secs` seconds.
    pub fn new(stats: &OpStats, secs: f64) -> Self {
        let per_sec = |n: u64| n as f64 / secs;
        Self {
            count: stats.completed,
            ops_per_sec: per_sec(stats.completed),
            hits_per_sec: per_sec(stats.hits),
            misses_per_sec: per_sec(stats.misses),
            hits: stats.hits,
            misses: stats.misses,
            errors: stats.errors.requests() + stats.errors.connect,
            errors_by_kind: stats.errors,
            kb_per_sec: (stats.bytes_sent + stats.bytes_received) as f64 / 1024.0 / secs,
            latency_ms: stats.latency.summary(),
            service_time_ms: stats.service.summary(),
        }
    }
}

/// Per-operation and total reports of a run.
pub struct Summary {
    /// (operation, report) for each operation the workload sends.
    pub ops: Vec<(OpKind, OpReport)>,
    /// All operations together.
    pub total: OpReport,
}

impl Summary {
    /// Summarises `outcome` for the operations `plan` sends.
    pub fn new(plan: &RunPlan, outcome: &RunOutcome) -> Self {
        let secs = outcome.elapsed.as_secs_f64();
        let ops = plan.ops().into_iter().map(|op| (op, OpReport::new(outcome.stats.op(op), secs))).collect();
        Self { ops, total: OpReport::new(&outcome.stats.total(), secs) }
    }
}

/// Prints the run's header and the per-operation table.
pub fn print_table(out: &mut impl Write, plan: &RunPlan, outcome: &RunOutcome) -> io::Result<()> {
    let summary = Summary::new(plan, outcome);
    let mode = match plan.rate {
        None => "closed loop".to_string(),
        Some(rate) => format!(
            "open loop at {rate:.0} requests/s ({}), achieved {:.0}/s",
            arrival_name(plan),
            summary.total.ops_per_sec
        ),
    };
    writeln!(
        out,
        "{} {} | {} threads x {} connections, pipeline {} | {} | {:.2} s{}",
        protocol_name(plan),
        target_text(&plan.target),
        plan.threads,
        plan.connections,
        plan.pipeline,
        mode,
        outcome.elapsed.as_secs_f64(),
        if outcome.interrupted { " (interrupted)" } else { "" }
    )?;
    let rule = "-".repeat(148);
    writeln!(out, "{rule}")?;
    writeln!(
        out,
        "{:<8}{:>14}{:>13}{:>13}{:>14}{:>13}{:>13}{:>15}{:>13}{:>13}{:>11}",
        "Type",
        "Ops/sec",
        "Hits/sec",
        "Misses/sec",
        "Avg. Latency",
        "p50 Latency",
        "p99 Latency",
        "p99.9 Latency",
        "Max Latency",
        "KB/sec",
        "Errors"
    )?;
    writeln!(out, "{rule}")?;
    for (op, report) in &summary.ops {
        write_row(out, &title_case(op.name()), report, op.is_read())?;
    }
    write_row(out, "Totals", &summary.total, true)?;
    writeln!(out, "{rule}")?;
    writeln!(
        out,
        "Latencies in milliseconds{}.",
        if plan.rate.is_some() {
            ", from each request's intended send time (coordinated omission corrected)"
        } else {
            ""
        }
    )?;
    if plan.rate.is_some() {
        for (op, report) in &summary.ops {
            let s = &report.service_time_ms;
            writeln!(
                out,
                "Service time of {} (from the actual send): avg {:.3}  p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                op.name(),
                s.mean,
                s.p50,
                s.p99,
                s.p99_9,
                s.max
            )?;
        }
        if outcome.stats.backlog > 0 {
            writeln!(
                out,
                "Backlog: {} requests were due before the end but never sent (the target fell behind the offered rate).",
                outcome.stats.backlog
            )?;
        }
    }
    let errors = summary.total.errors_by_kind;
    if summary.total.errors > 0 {
        writeln!(
            out,
            "Errors: connect {}  reset {}  timeout {}  error replies {}  bad replies {}  verify {}  unsent {}",
            errors.connect,
            errors.reset,
            errors.timeout,
            errors.error_reply,
            errors.bad_reply,
            errors.verify,
            errors.unsent
        )?;
    }
    Ok(())
}

fn write_row(out: &mut impl Write, name: &str, report: &OpReport, has_hits: bool) -> io::Result<()> {
    let hits_misses = if has_hits {
        (format!("{:.2}", report.hits_per_sec), format!("{:.2}", report.misses_per_sec))
    } else {
        ("---".to_string(), "---".to_string())
    };
    let l = &report.latency_ms;
    writeln!(
        out,
        "{:<8}{:>14.2}{:>13}{:>13}{:>14.5}{:>13.5}{:>13.5}{:>15.5}{:>13.5}{:>13.2}{:>11}",
        name,
        report.ops_per_sec,
        hits_misses.0,
        hits_misses.1,
        l.mean,
        l.p50,
        l.p99,
        l.p99_9,
        l.max,
        report.kb_per_sec,
        report.errors
    )
}

fn title_case(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + "s",
        None => String::new(),
    }
}

fn protocol_name(plan: &RunPlan) -> &'static str {
    match plan.protocol {
        crate::cli::ProtocolName::Redis => "redis",
        crate::cli::ProtocolName::Memcache => "memcache",
        crate::cli::ProtocolName::MemcacheMeta => "memcache-meta",
    }
}

fn arrival_name(plan: &RunPlan) -> &'static str {
    match plan.arrival {
        crate::schedule::Arrival::Constant => "constant",
        crate::schedule::Arrival::Poisson => "poisson",
    }
}

fn target_text(target: &Target) -> String {
    match target {
        Target::Tcp(addr) => addr.to_string(),
        Target::Unix(path) => path.display().to_string(),
    }
}

/// The `--json` document: the run's parameters, per-operation and total figures.
pub fn json_report(args: &RunArgs, plan: &RunPlan, outcome: &RunOutcome, search: Option<Value>) -> Value {
    let summary = Summary::new(plan, outcome);
    let ops: serde_json::Map<String, Value> =
        summary.ops.iter().map(|(op, report)| (op.name().to_string(), json!(report))).collect();
    let mut document = json!({
        "tool": "ferrule-loadgen",
        "version": env!("CARGO_PKG_VERSION"),
        "parameters": {
            "protocol": plan.protocol,
            "target": target_text(&plan.target),
            "threads": plan.threads,
            "connections_per_thread": plan.connections,
            "pipeline": plan.pipeline,
            "mode": if plan.rate.is_some() { "open" } else { "closed" },
            "rate": plan.rate,
            "arrival": plan.arrival,
            "keys": plan.keys,
            "distribution": args.distribution,
            "zipf_exponent": args.zipf_exponent,
            "key_prefix": args.key_prefix,
            "value_size": args.value_size.to_string(),
            "ratio": format!("{}:{}", plan.ratio.sets, plan.ratio.gets),
            "mget": plan.mget,
            "prefill": args.prefill,
            "duration_secs": plan.duration.map(|d| d.as_secs_f64()),
            "requests": plan.requests,
            "timeout_ms": plan.timeout.as_millis() as u64,
            "verify": plan.verify,
            "seed": plan.seed,
        },
        "elapsed_secs": outcome.elapsed.as_secs_f64(),
        "interrupted": outcome.interrupted,
        "offered_rate": plan.rate,
        "achieved_rate": summary.total.ops_per_sec,
        "backlog": outcome.stats.backlog,
        "connect_errors": outcome.stats.connect_errors,
        "ops": ops,
        "totals": summary.total,
    });
    if let (Some(search), Some(map)) = (search, document.as_object_mut()) {
        map.insert("search".into(), search);
    }
    document
}

/// Writes `PREFIX.OP.hgrm` (latency from the intended send) and `PREFIX.OP.service.hgrm` for
/// every operation of the run; returns the paths written.
pub fn write_hgrm_files(prefix: &str, plan: &RunPlan, outcome: &RunOutcome) -> io::Result<Vec<String>> {
    let mut written = Vec::new();
    for op in plan.ops() {
        let stats = outcome.stats.op(op);
        for (suffix, histogram) in [("hgrm", &stats.latency), ("service.hgrm", &stats.service)] {
            let path = format!("{prefix}.{}.{suffix}", op.name());
            let file = File::create(&path).map_err(|err| io::Error::new(err.kind(), format!("{path}: {err}")))?;
            let mut out = BufWriter::new(file);
            write_hgrm(histogram, MICROS_PER_MILLI, &mut out)?;
            out.flush()?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StatsSet;
    use std::time::Duration;

    #[test]
    fn rates_and_table() {
        let plan = RunPlan::from_args(
            &crate::cli::tests_support::args(&["--protocol", "redis", "--target", "127.0.0.1:1"]),
            1,
        )
        .unwrap();
        let mut stats = StatsSet::default();
        let get = stats.op_mut(OpKind::Get);
        get.completed = 2000;
        get.hits = 1500;
        get.misses = 500;
        get.bytes_sent = 1024 * 10;
        get.latency.record(1500);
        get.errors.timeout = 3;
        stats.connect_errors = 1;
        let outcome = RunOutcome { stats, elapsed: Duration::from_secs(2), interrupted: false };
        let summary = Summary::new(&plan, &outcome);
        let (_, get) = &summary.ops[0];
        assert_eq!(get.ops_per_sec, 1000.0);
        assert_eq!(get.hits_per_sec, 750.0);
        assert_eq!(get.errors, 3);
        assert_eq!(get.kb_per_sec, 5.0);
        assert_eq!(summary.total.errors, 4);
        let mut table = Vec::new();
        print_table(&mut table, &plan, &outcome).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("Gets"), "{table}");
        assert!(table.contains("Sets"), "{table}");
        assert!(table.contains("Totals"), "{table}");
        assert!(table.contains("timeout 3"), "{table}");
        let args = crate::cli::tests_support::args(&["--protocol", "redis", "--target", "127.0.0.1:1"]);
        let document = json_report(&args, &plan, &outcome, None);
        assert_eq!(document["ops"]["get"]["ops_per_sec"], 1000.0);
        assert_eq!(document["totals"]["errors"], 4);
        assert_eq!(document["ops"]["get"]["latency_ms"]["p99"], 1.5);
        assert_eq!(document["parameters"]["mode"], "closed");
    }
}
