//! The `GET /histograms` JSON: a handful of percentiles per latency distribution, in microseconds.

use serde_json::{json, Map, Value};

use super::merge::ProxyStats;
use super::prometheus::command_label;
use crate::histogram::Histogram;

/// count, mean, p50, p90, p99, p99.9, p99.99 and max of one histogram, in microseconds.
pub fn percentiles(h: &Histogram) -> Value {
    json!({
        "count": h.len(),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p99.9": h.value_at_quantile(0.999),
        "p99.99": h.value_at_quantile(0.9999),
        "max": h.max(),
    })
}

/// Every non-empty distribution: `listeners.<listener>.<command>`, `pools.<pool>`, `servers.<pool>.<server>`.
pub fn render_histograms(stats: &ProxyStats) -> String {
    let mut listeners = Map::new();
    for l in &stats.listeners {
        let mut commands = Map::new();
        for c in l.commands.iter().filter(|c| !c.latency.is_empty()) {
            commands.insert(command_label(c.name), percentiles(&c.latency));
        }
        listeners.insert(l.name.clone(), Value::Object(commands));
    }
    let mut pools = Map::new();
    let mut servers = Map::new();
    for p in &stats.pools {
        pools.insert(p.name.clone(), percentiles(&p.latency));
        let mut of_pool = Map::new();
        for s in &p.servers {
            of_pool.insert(s.name.clone(), percentiles(&s.latency));
        }
        servers.insert(p.name.clone(), Value::Object(of_pool));
    }
    let doc = json!({
        "unit": "microseconds",
        "listeners": listeners,
        "pools": pools,
        "servers": servers,
    });
    let mut text = doc.to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::merge::{CommandTotals, ListenerTotals};

    #[test]
    fn reports_percentiles_in_microseconds() {
        let mut h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let stats = ProxyStats {
            listeners: vec![ListenerTotals {
                name: "cache".into(),
                commands: vec![
                    CommandTotals { name: "GET", requests: 1000, latency: h, ..Default::default() },
                    CommandTotals { name: "PING", requests: 3, ..Default::default() },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&render_histograms(&stats)).unwrap();
        let get = &v["listeners"]["cache"]["get"];
        assert_eq!(get["count"], 1000);
        assert_eq!(get["p50"], 500);
        assert_eq!(get["p99.9"], 999);
        assert_eq!(get["max"], 1000);
        assert!(v["listeners"]["cache"].get("ping").is_none(), "empty distributions are left out");
    }
}
