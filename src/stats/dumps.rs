//! Which histogram files a dump writes and what goes in them: one per listener x command, pool and server, named so
//! that a directory listing reads as an inventory (`listener.cache.get`, `pool.main`, `server.main.10_0_0_1_6379`).
//!
//! Interval logs need what was recorded during each interval, while workers only keep running totals: the
//! [`IntervalTracker`] remembers the previous totals and subtracts them.

use std::collections::{HashMap, HashSet};

use super::merge::ProxyStats;
use super::prometheus::command_label;
use crate::histogram::Histogram;

/// One distribution to write.
#[derive(Clone, Debug)]
pub struct DumpEntry {
    /// File name without extension; also the interval log tag (no spaces or commas).
    pub stem: String,
    /// What it measures, for the file's header comment.
    pub description: String,
    pub histogram: Histogram,
}

/// A name part made safe for a file name and a log tag: anything but ASCII letters, digits, `-` and `_` becomes `_`.
pub fn sanitize(part: &str) -> String {
    let cleaned: String =
        part.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

/// Every non-empty distribution of `stats`, with unique stems (a clash after sanitizing gets a `~2` suffix).
pub fn dump_entries(stats: &ProxyStats) -> Vec<DumpEntry> {
    let mut entries = Vec::new();
    for l in &stats.listeners {
        for c in l.commands.iter().filter(|c| !c.latency.is_empty()) {
            let cmd = command_label(c.name);
            entries.push(DumpEntry {
                stem: format!("listener.{}.{}", sanitize(&l.name), sanitize(&cmd)),
                description: format!("request latency of {cmd} on listener {} (parse to reply, microseconds)", l.name),
                histogram: c.latency.clone(),
            });
        }
    }
    for p in stats.pools.iter().filter(|p| !p.latency.is_empty()) {
        entries.push(DumpEntry {
            stem: format!("pool.{}", sanitize(&p.name)),
            description: format!("backend latency of pool {} (queued to reply, microseconds)", p.name),
            histogram: p.latency.clone(),
        });
        for s in p.servers.iter().filter(|s| !s.latency.is_empty()) {
            entries.push(DumpEntry {
                stem: format!("server.{}.{}", sanitize(&p.name), sanitize(&s.name)),
                description: format!("backend latency of server {} in pool {} (microseconds)", s.name, p.name),
                histogram: s.latency.clone(),
            });
        }
    }
    let mut seen = HashSet::new();
    for e in &mut entries {
        let base = e.stem.clone();
        let mut n = 2;
        while !seen.insert(e.stem.clone()) {
            e.stem = format!("{base}~{n}");
            n += 1;
        }
    }
    entries
}

/// Turns successive running totals into per-interval histograms.
#[derive(Default)]
pub struct IntervalTracker {
    previous: HashMap<String, Histogram>,
}

impl IntervalTracker {
    /// What was recorded in each distribution since the previous call. A distribution whose total shrank (its
    /// server's connections were rebuilt by a reload, say) starts over: its whole total is the interval.
    pub fn intervals(&mut self, totals: &[DumpEntry]) -> Vec<DumpEntry> {
        let mut out = Vec::with_capacity(totals.len());
        for e in totals {
            let delta = match self.previous.get(&e.stem) {
                Some(prev) => difference(&e.histogram, prev),
                None => e.histogram.clone(),
            };
            self.previous.insert(e.stem.clone(), e.histogram.clone());
            out.push(DumpEntry { stem: e.stem.clone(), description: e.description.clone(), histogram: delta });
        }
        out
    }
}

/// `current - previous`, or `current` when `previous` is not a part of it.
fn difference(current: &Histogram, previous: &Histogram) -> Histogram {
    if previous.len() > current.len() {
        return current.clone();
    }
    let mut inner = current.inner().clone();
    match inner.subtract(previous.inner()) {
        Ok(()) => Histogram::from_inner(inner),
        Err(_) => current.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::merge::{CommandTotals, ListenerTotals, PoolTotals, ServerTotals};

    fn hist(values: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        h
    }

    fn stats(get: &[u64]) -> ProxyStats {
        ProxyStats {
            listeners: vec![ListenerTotals {
                name: "ca che".into(),
                commands: vec![CommandTotals { name: "GET", latency: hist(get), ..Default::default() }],
                ..Default::default()
            }],
            pools: vec![PoolTotals {
                name: "main".into(),
                latency: hist(get),
                servers: vec![ServerTotals { name: "10.0.0.1:6379".into(), latency: hist(get), ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn names_every_distribution() {
        let stems: Vec<String> = dump_entries(&stats(&[5])).into_iter().map(|e| e.stem).collect();
        assert_eq!(stems, vec!["listener.ca_che.get", "pool.main", "server.main.10_0_0_1_6379"]);
    }

    #[test]
    fn intervals_hold_only_new_values() {
        let mut tracker = IntervalTracker::default();
        let first = tracker.intervals(&dump_entries(&stats(&[5, 6])));
        assert_eq!(first[0].histogram.len(), 2);
        let second = tracker.intervals(&dump_entries(&stats(&[5, 6, 700])));
        assert_eq!(second[0].histogram.len(), 1);
        assert_eq!(second[0].histogram.max(), 700);
        // Totals that shrank (rebuilt after a reload) start over.
        let third = tracker.intervals(&dump_entries(&stats(&[9])));
        assert_eq!(third[0].histogram.len(), 1);
    }

    #[test]
    fn clashing_names_get_suffixes() {
        let mut s = stats(&[1]);
        let mut other = s.listeners[0].clone();
        other.name = "ca_che".into();
        s.listeners.push(other);
        let stems: Vec<String> = dump_entries(&s).into_iter().map(|e| e.stem).collect();
        assert!(stems.contains(&"listener.ca_che.get~2".to_owned()), "{stems:?}");
    }
}
