//! The stats JSON of twemproxy (nutcracker), field for field, so that dashboards and monitoring agents written for
//! it (Datadog's twemproxy check, nutcracker-web, collectd plugins) read ferrule unchanged.
//!
//! Layout: `service, source, version, uptime, timestamp, total_connections, curr_connections`, then one object per
//! pool (`client_eof, client_err, client_connections, server_ejects, forward_error, fragments`) holding one object
//! per server (`server_eof ... out_queue_bytes`), keyed by the server's name or `host:port`, as nutcracker does.
//! Written by hand rather than through a map so the keys come out in nutcracker's order.

use std::fmt::Write as _;

use super::merge::{PoolTotals, ProxyStats, ServerTotals};

/// Process-level figures that do not come from the workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The host name (twemproxy's `source`).
    pub source: String,
    pub version: String,
    pub uptime_s: u64,
    /// Seconds since the Unix epoch.
    pub timestamp_s: u64,
    /// Config reloads applied and rejected.
    pub reloads: u64,
    pub reload_failures: u64,
}

/// A JSON string literal (quotes included).
pub(crate) fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn push_field(out: &mut String, key: &str, value: u64, first: bool) {
    if !first {
        out.push_str(", ");
    }
    let _ = write!(out, "\"{key}\":{value}");
}

fn push_server(out: &mut String, s: &ServerTotals) {
    let _ = write!(out, "{}: {{", json_string(&s.name));
    let ejected_at_us = if s.ejected { s.ejected_at_s.saturating_mul(1_000_000) } else { 0 };
    let fields: [(&str, u64); 19] = [
        ("server_eof", s.counters.eof),
        ("server_err", s.counters.errors),
        ("server_timedout", s.counters.timeouts),
        ("server_connections", s.gauges.connections),
        ("server_ejected_at", ejected_at_us),
        ("requests", s.counters.requests),
        ("request_bytes", s.counters.request_bytes),
        ("responses", s.counters.responses),
        ("response_bytes", s.counters.response_bytes),
        ("in_queue", s.gauges.in_queue),
        ("in_queue_bytes", s.gauges.in_queue_bytes),
        ("out_queue", s.gauges.out_queue),
        ("out_queue_bytes", s.gauges.out_queue_bytes),
        // ferrule's own, after twemproxy's: dedicated and subscriber connections.
        ("dedicated_in_use", s.gauges.dedicated_in_use),
        ("dedicated_idle", s.gauges.dedicated_idle),
        ("subscriber_connections", s.gauges.subscribers),
        ("dedicated_opened", s.counters.dedicated_opened),
        ("subscribers_opened", s.counters.subscribers_opened),
        ("dedicated_refused", s.counters.dedicated_refused),
    ];
    for (i, (k, v)) in fields.iter().enumerate() {
        push_field(out, k, *v, i == 0);
    }
    out.push('}');
}

fn push_pool(out: &mut String, p: &PoolTotals, cluster: Option<&super::merge::ClusterTotals>) {
    let _ = write!(out, "{}: {{", json_string(&p.name));
    let fields: [(&str, u64); 6] = [
        ("client_eof", p.clients.eof),
        ("client_err", p.clients.errors),
        ("client_connections", p.clients.current()),
        ("server_ejects", p.ejections()),
        ("forward_error", p.forward_errors()),
        ("fragments", p.clients.fragments),
    ];
    for (i, (k, v)) in fields.iter().enumerate() {
        push_field(out, k, *v, i == 0);
    }
    // A cluster pool's own figures are numbers beside the servers' objects, so tools that read every object of a
    // pool as a server see only the nodes.
    if let Some(c) = cluster {
        let fields: [(&str, u64); 14] = [
            ("cluster_topology_version", c.version),
            ("cluster_refreshes", c.refreshes),
            ("cluster_refresh_failures", c.refresh_failures),
            ("cluster_refresh_requests", c.counters.refresh_requests),
            ("cluster_moved", c.counters.moved),
            ("cluster_ask", c.counters.ask),
            ("cluster_tryagain", c.counters.tryagain),
            ("cluster_redirect_failures", c.counters.redirect_failures),
            ("cluster_unserved", c.counters.unserved),
            ("cluster_slots_served", c.slots_served),
            ("cluster_nodes", c.nodes),
            ("cluster_subscribers", c.counters.subscribers),
            ("cluster_subscribers_opened", c.counters.subscribers_opened),
            ("cluster_slot_unsubscribes", c.counters.slot_unsubscribes),
        ];
        for (k, v) in fields {
            push_field(out, k, v, false);
        }
    }
    for s in &p.servers {
        out.push_str(", ");
        push_server(out, s);
    }
    out.push('}');
}

/// Renders the stats as twemproxy's JSON object (one line, no trailing newline, as nutcracker writes it).
pub fn render_twemproxy(stats: &ProxyStats, info: &ProcessInfo) -> String {
    let clients = stats.clients();
    let mut out = String::with_capacity(512 + 512 * stats.pools.iter().map(|p| p.servers.len() + 1).sum::<usize>());
    let _ = write!(
        out,
        "{{\"service\":\"ferrule\", \"source\":{}, \"version\":{}, \"uptime\":{}, \"timestamp\":{}, \
         \"total_connections\":{}, \"curr_connections\":{}",
        json_string(&info.source),
        json_string(&info.version),
        info.uptime_s,
        info.timestamp_s,
        clients.accepted,
        clients.current()
    );
    for p in &stats.pools {
        out.push_str(", ");
        push_pool(&mut out, p, stats.cluster(&p.name));
    }
    // Only once TLS is in use: tools that read every object of this document as a pool see nothing new otherwise.
    if stats.tls != crate::tls::TlsStats::default() {
        push_tls(&mut out, &stats.tls);
    }
    // Likewise only when routes are executed.
    if !stats.routes.is_empty() {
        push_routes(&mut out, &stats.routes);
    }
    out.push('}');
    out
}

/// `"routes": {"NAME": {"type": ..., "requests": ..., ...}}`.
fn push_routes(out: &mut String, routes: &[super::RouteCounts]) {
    out.push_str(", \"routes\":{");
    for (i, r) in routes.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            out,
            "{sep}{}:{{\"type\":\"{}\", \"requests\":{}, \"failovers\":{}, \"background_sent\":{}, \
             \"background_dropped\":{}, \"background_failed\":{}, \"fills\":{}}}",
            json_string(&r.name),
            r.kind,
            r.requests,
            r.failovers,
            r.copies_sent,
            r.copies_dropped,
            r.copies_failed,
            r.fills
        );
    }
    out.push('}');
}

/// `"tls": {"client": {...}, "backend": {...}}`, each with handshakes, connections and failures by cause.
fn push_tls(out: &mut String, tls: &crate::tls::TlsStats) {
    out.push_str(", \"tls\":{");
    for (i, (side, s)) in [("client", &tls.clients), ("backend", &tls.backends)].into_iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            out,
            "{sep}\"{side}\":{{\"handshakes\":{}, \"connections\":{}, \"handshake_failures\":{{",
            s.handshakes, s.connections
        );
        for (j, f) in crate::tls::Failure::ALL.into_iter().enumerate() {
            let sep = if j == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}\"{}\":{}", f.name(), s.failures[f.index()]);
        }
        out.push_str("}}");
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::merge::ServerTotals;
    use crate::stats::snapshot::{ClientCounters, ServerCounters};

    #[test]
    fn layout_matches_nutcracker() {
        let stats = ProxyStats {
            pools: vec![PoolTotals {
                name: "alpha".into(),
                clients: ClientCounters { accepted: 4, closed: 1, eof: 1, fragments: 7, ..Default::default() },
                servers: vec![ServerTotals {
                    name: "127.0.0.1:6379".into(),
                    counters: ServerCounters { requests: 9, request_bytes: 90, ..Default::default() },
                    ejected: true,
                    ejected_at_s: 2,
                    ejections: 1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let info = ProcessInfo { source: "host\"x".into(), version: "0.1.0".into(), uptime_s: 5, ..Default::default() };
        let text = render_twemproxy(&stats, &info);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["service"], "ferrule");
        assert_eq!(v["source"], "host\"x");
        assert_eq!(v["uptime"], 5);
        let pool = &v["alpha"];
        for key in ["client_eof", "client_err", "client_connections", "server_ejects", "forward_error", "fragments"] {
            assert!(pool[key].is_u64(), "{key} missing in {text}");
        }
        assert_eq!(pool["client_connections"], 3);
        assert_eq!(pool["fragments"], 7);
        assert_eq!(pool["server_ejects"], 1);
        let server = &pool["127.0.0.1:6379"];
        // nutcracker's 13, then ferrule's dedicated and subscriber connection figures.
        assert_eq!(server.as_object().unwrap().len(), 19);
        assert!(text.find("\"out_queue_bytes\"").unwrap() < text.find("\"dedicated_in_use\"").unwrap());
        assert_eq!(server["requests"], 9);
        assert_eq!(server["server_ejected_at"], 2_000_000);
        // Keys in nutcracker's order.
        assert!(text.find("\"curr_connections\"").unwrap() < text.find("\"alpha\"").unwrap());
        assert!(text.find("\"server_eof\"").unwrap() < text.find("\"out_queue_bytes\"").unwrap());
    }
}
