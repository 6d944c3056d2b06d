//! The Prometheus text exposition format (version 0.0.4) of the merged stats.
//!
//! Naming follows Prometheus conventions: everything starts with `ferrule_`, counters end in `_total`, sizes are in
//! bytes and durations in seconds, latencies are histograms (`_bucket{le=...}`, `_sum`, `_count`). Bucket counts are
//! derived from the HdrHistograms at scrape time, so the bucket layout costs nothing on the request path.

use std::fmt::{Display, Write as _};

use super::merge::ProxyStats;
use super::twemproxy::ProcessInfo;
use crate::histogram::Histogram;

/// Upper bounds of the latency buckets, in microseconds: 50 us (a loopback round trip) to 10 s (past any sane
/// timeout), in 1-2.5-5 steps.
pub const LATENCY_BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// The content type a scraper expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A command name as a label: lowercase, as redis spells it in INFO commandstats.
pub(crate) fn command_label(name: &str) -> String {
    name.to_ascii_lowercase()
}

struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
        }
        self.out.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
    }

    /// One histogram series: cumulative buckets, `+Inf`, `_sum` (seconds) and `_count`.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], hist: &Histogram, sum_us: u64) {
        let mut per_bucket = [0u64; LATENCY_BUCKETS_US.len()];
        let inner = hist.inner();
        for v in inner.iter_recorded() {
            // A bucket of the HdrHistogram holds values from its lowest equivalent value up; count it in the
            // Prometheus bucket that value falls in (the error is the histogram's own 0.1%).
            let low = inner.lowest_equivalent(v.value_iterated_to());
            if let Some(i) = LATENCY_BUCKETS_US.iter().position(|&le| low <= le) {
                per_bucket[i] += v.count_at_value();
            }
        }
        let mut cumulative = 0;
        let bucket_name = format!("{name}_bucket");
        for (le, count) in LATENCY_BUCKETS_US.iter().zip(per_bucket) {
            cumulative += count;
            let le = seconds(*le);
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket_name, &with_le, cumulative);
        }
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket_name, &with_le, hist.len());
        self.sample(&format!("{name}_sum"), labels, seconds(sum_us));
        self.sample(&format!("{name}_count"), labels, hist.len());
    }
}

/// Microseconds as a decimal number of seconds, exactly (no float rounding noise such as 0.00025000000000000006).
fn seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let frac = us % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Renders every metric. `worker` labels appear only on the per-worker connection and request figures.
pub fn render_prometheus(stats: &ProxyStats, info: &ProcessInfo) -> String {
    let mut e = Exposition { out: String::with_capacity(16 * 1024) };
    e.family("ferrule_build_info", "gauge", "Always 1; the version is a label.");
    e.sample("ferrule_build_info", &[("version", &info.version)], 1);
    e.family("ferrule_uptime_seconds", "gauge", "Seconds since the proxy started.");
    e.sample("ferrule_uptime_seconds", &[], info.uptime_s);
    e.family("ferrule_workers", "gauge", "Worker cores serving traffic.");
    e.sample("ferrule_workers", &[], stats.workers.len());
    e.family("ferrule_stats_enabled", "gauge", "1 when per-request stats (proxy.stats) are on.");
    e.sample("ferrule_stats_enabled", &[], u8::from(stats.workers.iter().all(|w| w.stats_enabled)));
    e.family("ferrule_config_reloads_total", "counter", "Config reloads applied.");
    e.sample("ferrule_config_reloads_total", &[], info.reloads);
    e.family("ferrule_config_reload_failures_total", "counter", "Config reloads rejected (the old config stayed).");
    e.sample("ferrule_config_reload_failures_total", &[], info.reload_failures);

    render_clients(&mut e, stats);
    render_commands(&mut e, stats);
    render_servers(&mut e, stats);
    render_clusters(&mut e, stats);
    render_tls(&mut e, &stats.tls);
    render_routes(&mut e, &stats.routes);
    e.out
}

/// `redis_cluster` pools: redirects followed, topology reads, the map in force.
fn render_clusters(e: &mut Exposition, stats: &ProxyStats) {
    if stats.clusters.is_empty() {
        return;
    }
    e.family(
        "ferrule_cluster_redirects_total",
        "counter",
        "MOVED and ASK replies ferrule followed, and TRYAGAIN replies it retried, for clients.",
    );
    for c in &stats.clusters {
        e.sample("ferrule_cluster_redirects_total", &[("pool", &c.pool), ("kind", "moved")], c.counters.moved);
        e.sample("ferrule_cluster_redirects_total", &[("pool", &c.pool), ("kind", "ask")], c.counters.ask);
        e.sample("ferrule_cluster_redirects_total", &[("pool", &c.pool), ("kind", "tryagain")], c.counters.tryagain);
    }
    type Field = fn(&super::merge::ClusterTotals) -> u64;
    let counters: [(&str, &str, Field); 7] = [
        (
            "ferrule_cluster_redirect_failures_total",
            "Requests failed after too many redirects or a redirect to a host not in the slot map.",
            |c| c.counters.redirect_failures,
        ),
        ("ferrule_cluster_unserved_total", "Requests for a slot no node serves (answered -CLUSTERDOWN).", |c| {
            c.counters.unserved
        }),
        (
            "ferrule_cluster_refresh_requests_total",
            "Topology refreshes workers asked for after redirects or failures.",
            |c| c.counters.refresh_requests,
        ),
        ("ferrule_cluster_refreshes_total", "Topology reads by control (CLUSTER SHARDS or CLUSTER SLOTS).", |c| {
            c.refreshes
        }),
        ("ferrule_cluster_refresh_failures_total", "Topology reads that no node answered.", |c| c.refresh_failures),
        (
            "ferrule_cluster_subscribers_opened_total",
            "Subscriber (pub/sub) connections opened to cluster nodes.",
            |c| c.counters.subscribers_opened,
        ),
        (
            "ferrule_cluster_slot_unsubscribes_total",
            "Shard channel subscriptions ended by their node losing the slot (sunsubscribe passed to the client).",
            |c| c.counters.slot_unsubscribes,
        ),
    ];
    let gauges: [(&str, &str, Field); 5] = [
        ("ferrule_cluster_topology_version", "Slot maps control has seen change since start (1: the first).", |c| {
            c.version
        }),
        ("ferrule_cluster_slots_served", "Slots of the map in force that some node serves (16384 when whole).", |c| {
            c.slots_served
        }),
        ("ferrule_cluster_shards", "Shards (primaries serving slots) in the map in force.", |c| c.shards),
        ("ferrule_cluster_nodes", "Nodes (primaries and healthy replicas) in the map in force.", |c| c.nodes),
        ("ferrule_cluster_subscribers", "Subscriber (pub/sub) connections open to cluster nodes.", |c| {
            c.counters.subscribers
        }),
    ];
    for (name, help, field) in counters {
        e.family(name, "counter", help);
        for c in &stats.clusters {
            e.sample(name, &[("pool", &c.pool)], field(c));
        }
    }
    for (name, help, field) in gauges {
        e.family(name, "gauge", help);
        for c in &stats.clusters {
            e.sample(name, &[("pool", &c.pool)], field(c));
        }
    }
}

/// The routes executed by `io::fan`, labelled by route name and type (nothing when there are none).
fn render_routes(e: &mut Exposition, routes: &[super::RouteCounts]) {
    if routes.is_empty() {
        return;
    }
    type Field = fn(&super::RouteCounts) -> u64;
    let families: [(&str, &str, Field); 6] = [
        (
            "ferrule_route_requests_total",
            "Requests a multi-destination, warmup, l1l2 or migrate route executed.",
            |r| r.requests,
        ),
        ("ferrule_route_failovers_total", "Requests sent on to a next child by failover / miss_failover.", |r| {
            r.failovers
        }),
        (
            "ferrule_route_background_sent_total",
            "Background copies sent (all_async, shadow, warmup/l1l2 fills).",
            |r| r.copies_sent,
        ),
        ("ferrule_route_background_dropped_total", "Background copies dropped over a bound.", |r| r.copies_dropped),
        ("ferrule_route_background_failed_total", "Background copies whose reply was a failure.", |r| r.copies_failed),
        ("ferrule_route_fills_total", "warmup / l1l2 copies stored into the first child.", |r| r.fills),
    ];
    for (name, help, field) in families {
        e.family(name, "counter", help);
        for r in routes {
            e.sample(name, &[("route", &r.name), ("type", r.kind)], field(r));
        }
    }
}

/// TLS figures by side: `client` (listeners) and `backend` (pools).
fn render_tls(e: &mut Exposition, tls: &crate::tls::TlsStats) {
    let sides = [("client", &tls.clients), ("backend", &tls.backends)];
    e.family("ferrule_tls_handshakes_total", "counter", "TLS handshakes completed.");
    for (side, s) in sides {
        e.sample("ferrule_tls_handshakes_total", &[("side", side)], s.handshakes);
    }
    e.family("ferrule_tls_handshake_failures_total", "counter", "TLS handshakes that failed, by cause.");
    for (side, s) in sides {
        for f in crate::tls::Failure::ALL {
            e.sample(
                "ferrule_tls_handshake_failures_total",
                &[("side", side), ("cause", f.name())],
                s.failures[f.index()],
            );
        }
    }
    e.family("ferrule_tls_connections", "gauge", "TLS connections open now.");
    for (side, s) in sides {
        e.sample("ferrule_tls_connections", &[("side", side)], s.connections);
    }
}

fn render_clients(e: &mut Exposition, stats: &ProxyStats) {
    type Field = fn(&super::snapshot::ClientCounters) -> u64;
    let counters: [(&str, &str, Field); 13] = [
        ("ferrule_client_connections_accepted_total", "Client connections accepted.", |c| c.accepted),
        ("ferrule_client_connections_closed_total", "Client connections closed.", |c| c.closed),
        ("ferrule_client_eof_total", "Client connections closed by the client.", |c| c.eof),
        ("ferrule_client_errors_total", "Client connections that failed with a read or write error.", |c| c.errors),
        (
            "ferrule_client_protocol_errors_total",
            "Client connections closed because the client sent unparseable input.",
            |c| c.protocol_errors,
        ),
        ("ferrule_unknown_commands_total", "Requests naming a command the proxy does not know.", |c| {
            c.unknown_commands
        }),
        ("ferrule_fragments_total", "Sub-requests made by splitting multi-key requests across servers.", |c| {
            c.fragments
        }),
        ("ferrule_unroutable_requests_total", "Requests refused because no server of the pool was available.", |c| {
            c.unroutable
        }),
        (
            "ferrule_client_backpressure_total",
            "Times a client was not read because of client_max_inflight or client_max_unsent_bytes.",
            |c| c.backpressured,
        ),
        (
            "ferrule_client_buffer_limit_closes_total",
            "Client connections closed for holding more than client_max_buffered_bytes of replies.",
            |c| c.buffer_limit_closes,
        ),
        (
            "ferrule_client_buffers_full_closes_total",
            "Client connections closed because the worker's clients held more than client_buffers_max_bytes.",
            |c| c.buffers_full_closes,
        ),
        (
            "ferrule_client_limit_refusals_total",
            "Clients refused because client_connections or proxy.max_client_connections was reached.",
            |c| c.limit_refusals,
        ),
        (
            "ferrule_client_idle_timeouts_total",
            "Client connections closed after client_idle_timeout_ms without a request.",
            |c| c.idle_timeouts,
        ),
    ];
    e.family("ferrule_client_connections", "gauge", "Client connections open now.");
    for l in &stats.listeners {
        e.sample("ferrule_client_connections", &[("listener", &l.name)], l.clients.current());
    }
    for (name, help, field) in counters {
        e.family(name, "counter", help);
        for l in &stats.listeners {
            e.sample(name, &[("listener", &l.name)], field(&l.clients));
        }
    }
    e.family("ferrule_worker_client_connections", "gauge", "Client connections open now, per worker core.");
    for w in &stats.workers {
        e.sample("ferrule_worker_client_connections", &[("worker", &w.worker.to_string())], w.clients.current());
    }
    e.family("ferrule_worker_requests_total", "counter", "Requests parsed, per worker core.");
    for w in &stats.workers {
        e.sample("ferrule_worker_requests_total", &[("worker", &w.worker.to_string())], w.clients.requests);
    }
}

fn render_commands(e: &mut Exposition, stats: &ProxyStats) {
    e.family("ferrule_requests_total", "counter", "Requests parsed, by listener and command.");
    for l in &stats.listeners {
        for c in &l.commands {
            let cmd = command_label(c.name);
            e.sample("ferrule_requests_total", &[("listener", &l.name), ("command", &cmd)], c.requests);
        }
    }
    e.family(
        "ferrule_request_failures_total",
        "counter",
        "Requests answered with an error made by the proxy because the backend failed (down, timed out, reset).",
    );
    for l in &stats.listeners {
        for c in &l.commands {
            let cmd = command_label(c.name);
            e.sample("ferrule_request_failures_total", &[("listener", &l.name), ("command", &cmd)], c.failed);
        }
    }
    e.family(
        "ferrule_request_duration_seconds",
        "histogram",
        "Time from parsing a request to its reply being complete, for requests sent to a backend.",
    );
    for l in &stats.listeners {
        for c in l.commands.iter().filter(|c| !c.latency.is_empty()) {
            let cmd = command_label(c.name);
            e.histogram(
                "ferrule_request_duration_seconds",
                &[("listener", &l.name), ("command", &cmd)],
                &c.latency,
                c.latency_sum_us,
            );
        }
    }
}

fn render_servers(e: &mut Exposition, stats: &ProxyStats) {
    type Field = fn(&super::merge::ServerTotals) -> u64;
    let counters: [(&str, &str, Field); 14] = [
        ("ferrule_server_ejections_total", "Times the server was ejected from its pool's ring.", |s| s.ejections),
        ("ferrule_server_requests_total", "Requests queued to the server.", |s| s.counters.requests),
        ("ferrule_server_request_bytes_total", "Bytes of requests queued to the server.", |s| s.counters.request_bytes),
        ("ferrule_server_responses_total", "Replies received from the server.", |s| s.counters.responses),
        ("ferrule_server_response_bytes_total", "Bytes of replies received from the server.", |s| {
            s.counters.response_bytes
        }),
        ("ferrule_server_eof_total", "Connections the server closed.", |s| s.counters.eof),
        ("ferrule_server_errors_total", "Connections that failed (refused, reset, malformed reply).", |s| {
            s.counters.errors
        }),
        ("ferrule_server_timeouts_total", "Connections closed because a request timed out.", |s| s.counters.timeouts),
        (
            "ferrule_server_protocol_faults_total",
            "Connections closed because the server sent a malformed, unsolicited or impossible reply.",
            |s| s.counters.protocol_faults,
        ),
        ("ferrule_server_connects_total", "Connections established.", |s| s.counters.connects),
        ("ferrule_server_failed_requests_total", "Requests failed because this server failed.", |s| {
            s.counters.failed_requests
        }),
        (
            "ferrule_server_dedicated_opened_total",
            "Dedicated connections (transactions, blocking commands) opened.",
            |s| s.counters.dedicated_opened,
        ),
        ("ferrule_server_subscriber_connections_opened_total", "Subscriber connections (pub/sub) opened.", |s| {
            s.counters.subscribers_opened
        }),
        (
            "ferrule_server_dedicated_refused_total",
            "Transactions, blocking commands and subscriptions refused: max_dedicated_connections in use.",
            |s| s.counters.dedicated_refused,
        ),
    ];
    let gauges: [(&str, &str, Field); 8] = [
        ("ferrule_server_connections", "Open connections to the server.", |s| s.gauges.connections),
        ("ferrule_server_in_flight_requests", "Requests queued or awaiting their reply.", |s| s.gauges.in_flight()),
        ("ferrule_server_queued_bytes", "Request bytes queued and not yet written.", |s| s.gauges.in_queue_bytes),
        ("ferrule_server_dedicated_in_use", "Dedicated connections held by a client now.", |s| {
            s.gauges.dedicated_in_use
        }),
        ("ferrule_server_dedicated_idle", "Dedicated connections open and idle.", |s| s.gauges.dedicated_idle),
        ("ferrule_server_subscriber_connections", "Subscriber connections open now.", |s| s.gauges.subscribers),
        ("ferrule_server_ejected", "1 while the server is ejected from its pool's ring.", |s| u64::from(s.ejected)),
        ("ferrule_server_ejected_at_seconds", "When the server was last ejected (Unix time), 0 if never.", |s| {
            s.ejected_at_s
        }),
    ];
    for (name, help, field) in counters {
        e.family(name, "counter", help);
        for p in &stats.pools {
            for s in &p.servers {
                e.sample(name, &[("pool", &p.name), ("server", &s.name)], field(s));
            }
        }
    }
    for (name, help, field) in gauges {
        e.family(name, "gauge", help);
        for p in &stats.pools {
            for s in &p.servers {
                e.sample(name, &[("pool", &p.name), ("server", &s.name)], field(s));
            }
        }
    }
    e.family(
        "ferrule_server_duration_seconds",
        "histogram",
        "Time from queueing a request on a server connection to its reply.",
    );
    for p in &stats.pools {
        for s in p.servers.iter().filter(|s| !s.latency.is_empty()) {
            e.histogram(
                "ferrule_server_duration_seconds",
                &[("pool", &p.name), ("server", &s.name)],
                &s.latency,
                s.counters.latency_sum_us,
            );
        }
    }
    e.family("ferrule_pool_duration_seconds", "histogram", "Backend latency over every server of the pool.");
    for p in stats.pools.iter().filter(|p| !p.latency.is_empty()) {
        let sum: u64 = p.servers.iter().map(|s| s.counters.latency_sum_us).sum();
        e.histogram("ferrule_pool_duration_seconds", &[("pool", &p.name)], &p.latency, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::merge::{CommandTotals, ListenerTotals};

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(50), "0.00005");
        assert_eq!(seconds(250), "0.00025");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(seconds(0), "0");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let mut h = Histogram::new();
        for v in [40, 90, 100, 3_000, 20_000_000] {
            h.record(v);
        }
        let stats = ProxyStats {
            listeners: vec![ListenerTotals {
                name: "c\"x".into(),
                protocol: "redis",
                commands: vec![CommandTotals { name: "GET", requests: 5, latency: h, latency_sum_us: 7, failed: 0 }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render_prometheus(&stats, &ProcessInfo::default());
        let bucket = |le: &str| {
            let prefix =
                format!("ferrule_request_duration_seconds_bucket{{listener=\"c\\\"x\",command=\"get\",le=\"{le}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{prefix} in {text}"));
            line[prefix.len()..].parse::<u64>().unwrap()
        };
        assert_eq!(bucket("0.00005"), 1);
        assert_eq!(bucket("0.0001"), 3);
        assert_eq!(bucket("0.005"), 4);
        assert_eq!(bucket("10"), 4);
        assert_eq!(bucket("+Inf"), 5);
        assert!(text.contains("ferrule_request_duration_seconds_sum{listener=\"c\\\"x\",command=\"get\"} 0.000007\n"));
        assert!(text.contains("ferrule_requests_total{listener=\"c\\\"x\",command=\"get\"} 5\n"));
    }
}
