//! Merging the workers' snapshots into proxy-wide figures: counters are summed, histograms added.

use std::collections::HashMap;

use super::snapshot::{ClientCounters, ServerCounters, ServerGauges, WorkerSnapshot};
use crate::histogram::Histogram;

/// One command on one listener, over every worker.
#[derive(Clone, Debug, Default)]
pub struct CommandTotals {
    pub name: &'static str,
    pub requests: u64,
    pub failed: u64,
    pub latency_sum_us: u64,
    /// Empty when nothing was recorded.
    pub latency: Histogram,
}

/// One listener over every worker.
#[derive(Clone, Debug, Default)]
pub struct ListenerTotals {
    pub name: String,
    pub protocol: &'static str,
    pub pool: String,
    pub clients: ClientCounters,
    /// Sorted by name.
    pub commands: Vec<CommandTotals>,
}

/// Control's view of a server's health, joined to the workers' figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHealth {
    pub pool: String,
    /// The server's spec, as in the config.
    pub spec: String,
    /// Out of the ring now.
    pub ejected: bool,
    /// When it was last ejected, seconds since the Unix epoch (0 when never).
    pub ejected_at_s: u64,
    /// Times it was ejected since it entered the config.
    pub ejections: u64,
}

/// One server over every worker.
#[derive(Clone, Debug, Default)]
pub struct ServerTotals {
    pub name: String,
    pub spec: String,
    pub counters: ServerCounters,
    pub gauges: ServerGauges,
    pub latency: Histogram,
    pub ejected: bool,
    pub ejected_at_s: u64,
    pub ejections: u64,
}

/// One pool over every worker: its servers, and the client figures of the listeners routed to it.
#[derive(Clone, Debug, Default)]
pub struct PoolTotals {
    pub name: String,
    /// In config order.
    pub servers: Vec<ServerTotals>,
    /// Summed over the listeners that route to this pool.
    pub clients: ClientCounters,
    /// Every server's backend latency together.
    pub latency: Histogram,
}

impl PoolTotals {
    /// Times a server of this pool was ejected (twemproxy's `server_ejects`).
    pub fn ejections(&self) -> u64 {
        self.servers.iter().map(|s| s.ejections).sum()
    }

    /// Requests answered with an error because they could not be forwarded (twemproxy's `forward_error`): no
    /// server available, or the server failed before answering.
    pub fn forward_errors(&self) -> u64 {
        self.clients.unroutable + self.servers.iter().map(|s| s.counters.failed_requests).sum::<u64>()
    }
}

/// One `redis_cluster` pool: the workers' counters summed, and control's view of the topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterTotals {
    pub pool: String,
    pub counters: super::snapshot::ClusterCounters,
    /// Control's topology version (the maps it saw change), and its reads of the topology.
    pub version: u64,
    pub refreshes: u64,
    pub refresh_failures: u64,
    pub shards: u64,
    pub nodes: u64,
    pub slots_served: u64,
}

/// A worker's share, for labelling by worker where the balance between cores matters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerTotals {
    pub worker: usize,
    pub clients: ClientCounters,
    pub stats_enabled: bool,
}

/// Proxy-wide figures, merged from every worker's snapshot.
#[derive(Clone, Debug, Default)]
pub struct ProxyStats {
    /// Sorted by worker number.
    pub workers: Vec<WorkerTotals>,
    /// Sorted by name.
    pub listeners: Vec<ListenerTotals>,
    /// In config order.
    pub pools: Vec<PoolTotals>,
    pub tls: crate::tls::TlsStats,
    /// The `redis_cluster` pools, sorted by name.
    pub clusters: Vec<ClusterTotals>,
    /// Sorted by name.
    pub routes: Vec<super::RouteCounts>,
}

impl ProxyStats {
    /// Client counters over every listener.
    pub fn clients(&self) -> ClientCounters {
        let mut total = ClientCounters::default();
        for l in &self.listeners {
            total.add(&l.clients);
        }
        total
    }

    /// Joins control's figures of a cluster pool.
    pub fn apply_cluster(&mut self, status: ClusterTotals) {
        match self.clusters.iter_mut().find(|c| c.pool == status.pool) {
            Some(c) => *c = ClusterTotals { counters: c.counters.clone(), ..status },
            None => {
                self.clusters.push(status);
                self.clusters.sort_by(|a, b| a.pool.cmp(&b.pool));
            }
        }
    }

    /// The cluster figures of pool `name`, when it is a `redis_cluster` pool.
    pub fn cluster(&self, name: &str) -> Option<&ClusterTotals> {
        self.clusters.iter().find(|c| c.pool == name)
    }

    /// Joins control's health records (ejections) to the servers they name.
    pub fn apply_health(&mut self, health: &[ServerHealth]) {
        for h in health {
            let server = self
                .pools
                .iter_mut()
                .filter(|p| p.name == h.pool)
                .flat_map(|p| p.servers.iter_mut())
                .find(|s| s.spec == h.spec);
            if let Some(s) = server {
                s.ejected = h.ejected;
                s.ejected_at_s = h.ejected_at_s;
                s.ejections = h.ejections;
            }
        }
    }
}

fn merge_histogram(into: &mut Histogram, from: Option<&Histogram>) {
    if let Some(h) = from {
        into.merge(h);
    }
}

/// Sums every worker's snapshot. Listeners and commands are matched by name, servers by (pool, spec).
pub fn merge(snapshots: &[WorkerSnapshot]) -> ProxyStats {
    let mut stats = ProxyStats::default();
    let mut listener_index: HashMap<String, usize> = HashMap::new();
    let mut pool_index: HashMap<String, usize> = HashMap::new();
    let mut server_index: HashMap<(String, String), (usize, usize)> = HashMap::new();
    let mut ordered: Vec<&WorkerSnapshot> = snapshots.iter().collect();
    ordered.sort_by_key(|s| s.worker);
    for snap in ordered {
        stats.tls.add(&snap.tls);
        super::merge_routes(&mut stats.routes, &snap.routes);
        let mut worker = WorkerTotals { worker: snap.worker, stats_enabled: snap.stats_enabled, ..Default::default() };
        for l in &snap.listeners {
            worker.clients.add(&l.clients);
            let i = *listener_index.entry(l.name.clone()).or_insert_with(|| {
                stats.listeners.push(ListenerTotals {
                    name: l.name.clone(),
                    protocol: l.protocol,
                    ..Default::default()
                });
                stats.listeners.len() - 1
            });
            let totals = &mut stats.listeners[i];
            if totals.pool.is_empty() {
                totals.pool = l.pool.clone();
            }
            totals.clients.add(&l.clients);
            for c in &l.commands {
                let cmd = match totals.commands.iter_mut().position(|t| t.name == c.name) {
                    Some(j) => &mut totals.commands[j],
                    None => {
                        totals.commands.push(CommandTotals { name: c.name, ..Default::default() });
                        let last = totals.commands.len() - 1;
                        &mut totals.commands[last]
                    }
                };
                cmd.requests += c.requests;
                cmd.failed += c.failed;
                cmd.latency_sum_us += c.latency_sum_us;
                merge_histogram(&mut cmd.latency, c.latency.as_ref());
            }
        }
        stats.workers.push(worker);
        for (pool, counters) in &snap.clusters {
            match stats.clusters.iter_mut().find(|c| &c.pool == pool) {
                Some(c) => c.counters.add(counters),
                None => stats.clusters.push(ClusterTotals {
                    pool: pool.clone(),
                    counters: counters.clone(),
                    ..Default::default()
                }),
            }
        }
        for s in &snap.servers {
            let (p, j) = *server_index.entry((s.pool.clone(), s.spec.clone())).or_insert_with(|| {
                let p = *pool_index.entry(s.pool.clone()).or_insert_with(|| {
                    stats.pools.push(PoolTotals { name: s.pool.clone(), ..Default::default() });
                    stats.pools.len() - 1
                });
                let pool = &mut stats.pools[p];
                pool.servers.push(ServerTotals { name: s.name.clone(), spec: s.spec.clone(), ..Default::default() });
                (p, pool.servers.len() - 1)
            });
            let pool = &mut stats.pools[p];
            merge_histogram(&mut pool.latency, s.latency.as_ref());
            let server = &mut pool.servers[j];
            server.counters.add(&s.counters);
            server.gauges.add(&s.gauges);
            merge_histogram(&mut server.latency, s.latency.as_ref());
        }
    }
    stats.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    stats.clusters.sort_by(|a, b| a.pool.cmp(&b.pool));
    stats.routes.sort_by(|a, b| a.name.cmp(&b.name));
    for l in &mut stats.listeners {
        l.commands.sort_by(|a, b| a.name.cmp(b.name));
        if let Some(&p) = pool_index.get(&l.pool) {
            stats.pools[p].clients.add(&l.clients);
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::snapshot::{CommandSnapshot, ListenerSnapshot, ServerSnapshot};

    fn histogram(values: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        h
    }

    fn worker(id: usize, accepted: u64, latencies: &[u64]) -> WorkerSnapshot {
        WorkerSnapshot {
            worker: id,
            stats_enabled: true,
            tls: Default::default(),
            clusters: Vec::new(),
            routes: Vec::new(),
            listeners: vec![ListenerSnapshot {
                name: "cache".into(),
                protocol: "redis",
                pool: "main".into(),
                clients: ClientCounters { accepted, closed: 1, requests: 10, unroutable: 1, ..Default::default() },
                commands: vec![CommandSnapshot {
                    name: "GET",
                    requests: latencies.len() as u64,
                    failed: 0,
                    latency_sum_us: latencies.iter().sum(),
                    latency: Some(histogram(latencies)),
                }],
            }],
            servers: vec![
                ServerSnapshot {
                    pool: "main".into(),
                    name: "a".into(),
                    spec: "127.0.0.1:1:1 a".into(),
                    counters: ServerCounters { requests: 5, failed_requests: 2, ..Default::default() },
                    gauges: ServerGauges { connections: 1, ..Default::default() },
                    latency: Some(histogram(latencies)),
                },
                ServerSnapshot {
                    pool: "main".into(),
                    name: "b".into(),
                    spec: "127.0.0.1:2:1 b".into(),
                    counters: ServerCounters { requests: 1, ..Default::default() },
                    gauges: ServerGauges::default(),
                    latency: None,
                },
            ],
        }
    }

    #[test]
    fn sums_counters_and_adds_histograms_across_workers() {
        let stats = merge(&[worker(1, 3, &[100, 200]), worker(0, 2, &[300])]);
        assert_eq!(stats.workers.iter().map(|w| w.worker).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(stats.listeners.len(), 1);
        let l = &stats.listeners[0];
        assert_eq!(l.clients.accepted, 5);
        assert_eq!(l.clients.current(), 3);
        assert_eq!(l.commands[0].requests, 3);
        assert_eq!(l.commands[0].latency.len(), 3);
        assert_eq!(l.commands[0].latency_sum_us, 600);
        let pool = &stats.pools[0];
        assert_eq!(pool.servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(pool.servers[0].counters.requests, 10);
        assert_eq!(pool.servers[0].gauges.connections, 2);
        assert_eq!(pool.latency.len(), 3);
        assert_eq!(pool.clients.accepted, 5);
        assert_eq!(pool.forward_errors(), 2 + 4);
    }

    #[test]
    fn health_is_joined_by_pool_and_spec() {
        let mut stats = merge(&[worker(0, 1, &[])]);
        stats.apply_health(&[ServerHealth {
            pool: "main".into(),
            spec: "127.0.0.1:2:1 b".into(),
            ejected: true,
            ejected_at_s: 1_700_000_000,
            ejections: 3,
        }]);
        let servers = &stats.pools[0].servers;
        assert!(!servers[0].ejected);
        assert!(servers[1].ejected);
        assert_eq!(stats.pools[0].ejections(), 3);
    }
}
