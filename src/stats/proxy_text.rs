//! What redis `INFO` and memcache `stats` answer on the proxy port: the proxy's own figures (over every worker), in
//! the layout clients and scripts already parse, instead of one backend's.

use std::fmt::Write as _;

use super::snapshot::ClientCounters;

/// One command's counts on one protocol's listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandCount {
    pub name: &'static str,
    pub calls: u64,
    pub failed: u64,
    /// Sum of the recorded latencies in microseconds.
    pub usec: u64,
    /// Calls with a recorded latency (forwarded to a backend): the divisor of `usec_per_call`.
    pub timed: u64,
}

/// Counters of every listener of one protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtocolSummary {
    pub clients: ClientCounters,
    /// Sorted by name.
    pub commands: Vec<CommandCount>,
}

impl ProtocolSummary {
    /// Adds `other`, matching commands by name.
    pub fn add(&mut self, other: &ProtocolSummary) {
        self.clients.add(&other.clients);
        for c in &other.commands {
            match self.commands.binary_search_by(|x| x.name.cmp(c.name)) {
                Ok(i) => {
                    let mine = &mut self.commands[i];
                    mine.calls += c.calls;
                    mine.failed += c.failed;
                    mine.usec += c.usec;
                    mine.timed += c.timed;
                }
                Err(i) => self.commands.insert(i, c.clone()),
            }
        }
    }

    fn calls_of(&self, names: &[&str]) -> u64 {
        self.commands.iter().filter(|c| names.contains(&c.name)).map(|c| c.calls).sum()
    }
}

/// Counters of one worker (or of all), split by protocol so each port reports its own traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub redis: ProtocolSummary,
    pub memcache: ProtocolSummary,
}

impl Summary {
    pub fn add(&mut self, other: &Summary) {
        self.redis.add(&other.redis);
        self.memcache.add(&other.memcache);
    }
}

/// Process figures both texts carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFigures {
    pub pid: u32,
    pub uptime_s: u64,
    /// Seconds since the Unix epoch.
    pub unix_time: u64,
    pub workers: usize,
    /// The worker serving the asking connection.
    pub worker: usize,
    pub version: String,
}

/// The redis `INFO [section]` text (the bulk string's contents). Sections: server, clients, stats, commandstats;
/// no argument or `default` gives the first three, `all`/`everything` all four; an unknown section gives nothing,
/// as redis does.
pub fn redis_info(s: &ProtocolSummary, section: Option<&[u8]>, p: &ProcessFigures) -> String {
    let wanted = section.map(|b| String::from_utf8_lossy(b).to_ascii_lowercase()).unwrap_or_else(|| "default".into());
    let want = |name: &str| match wanted.as_str() {
        "all" | "everything" => true,
        "default" => name != "commandstats",
        other => other == name,
    };
    let mut out = String::new();
    let section_start = |out: &mut String, title: &str| {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let _ = write!(out, "# {title}\r\n");
    };
    if want("server") {
        section_start(&mut out, "Server");
        let _ = write!(
            out,
            "ferrule_version:{}\r\nredis_mode:proxy\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\n\
             ferrule_workers:{}\r\nworker:{}\r\n",
            p.version,
            p.pid,
            p.uptime_s,
            p.uptime_s / 86_400,
            p.workers,
            p.worker
        );
    }
    if want("clients") {
        section_start(&mut out, "Clients");
        let _ = write!(out, "connected_clients:{}\r\n", s.clients.current());
    }
    if want("stats") {
        section_start(&mut out, "Stats");
        let failed: u64 = s.commands.iter().map(|c| c.failed).sum();
        let _ = write!(
            out,
            "total_connections_received:{}\r\ntotal_commands_processed:{}\r\nunknown_commands:{}\r\n\
             protocol_errors:{}\r\nforward_errors:{}\r\nfragments:{}\r\n",
            s.clients.accepted,
            s.clients.requests,
            s.clients.unknown_commands,
            s.clients.protocol_errors,
            failed + s.clients.unroutable,
            s.clients.fragments
        );
    }
    if want("commandstats") {
        section_start(&mut out, "Commandstats");
        for c in &s.commands {
            let per_call = if c.timed == 0 { 0.0 } else { c.usec as f64 / c.timed as f64 };
            let _ = write!(
                out,
                "cmdstat_{}:calls={},usec={},usec_per_call={:.2},rejected_calls=0,failed_calls={}\r\n",
                c.name.to_ascii_lowercase(),
                c.calls,
                c.usec,
                per_call,
                c.failed
            );
        }
    }
    out
}

/// The memcache `stats` reply, `END` line included. `cmd_get` counts retrieval requests (memcached counts keys).
pub fn memcache_stats(s: &ProtocolSummary, p: &ProcessFigures) -> String {
    let mut out = String::new();
    let mut stat = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "STAT {name} {value}\r\n");
    };
    stat("pid", &p.pid);
    stat("uptime", &p.uptime_s);
    stat("time", &p.unix_time);
    let compat = crate::protocol::memcache::MEMCACHED_COMPAT_VERSION;
    stat("version", &format!("{compat}-ferrule-{}", p.version));
    stat("threads", &p.workers);
    stat("curr_connections", &s.clients.current());
    stat("total_connections", &s.clients.accepted);
    stat("cmd_get", &s.calls_of(&["get", "gets", "gat", "gats"]));
    stat("cmd_set", &s.calls_of(&["set", "add", "replace", "append", "prepend", "cas"]));
    stat("cmd_touch", &s.calls_of(&["touch", "gat", "gats"]));
    stat("cmd_total", &s.clients.requests);
    for c in &s.commands {
        stat(&format!("cmd_{}_calls", c.name), &c.calls);
    }
    let failed: u64 = s.commands.iter().map(|c| c.failed).sum();
    stat("forward_errors", &(failed + s.clients.unroutable));
    stat("protocol_errors", &s.clients.protocol_errors);
    stat("fragments", &s.clients.fragments);
    out.push_str("END\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> ProtocolSummary {
        let mut s = ProtocolSummary {
            clients: ClientCounters { accepted: 3, closed: 1, requests: 10, ..Default::default() },
            commands: vec![CommandCount { name: "GET", calls: 4, failed: 1, usec: 400, timed: 4 }],
        };
        s.add(&ProtocolSummary {
            clients: ClientCounters { accepted: 1, requests: 2, ..Default::default() },
            commands: vec![
                CommandCount { name: "GET", calls: 1, usec: 100, timed: 1, ..Default::default() },
                CommandCount { name: "DEL", calls: 2, ..Default::default() },
            ],
        });
        s
    }

    #[test]
    fn info_sections_and_commandstats() {
        let p = ProcessFigures { pid: 7, uptime_s: 90_000, workers: 2, version: "0.1.0".into(), ..Default::default() };
        let text = redis_info(&summary(), None, &p);
        assert!(text.starts_with("# Server\r\n"));
        assert!(text.contains("connected_clients:3\r\n"));
        assert!(text.contains("total_commands_processed:12\r\n"));
        assert!(text.contains("uptime_in_days:1\r\n"));
        assert!(text.contains("worker:0\r\n"));
        assert!(!text.contains("cmdstat_"));
        let all = redis_info(&summary(), Some(b"ALL"), &p);
        assert!(all.contains("cmdstat_get:calls=5,usec=500,usec_per_call=100.00,rejected_calls=0,failed_calls=1\r\n"));
        assert!(all.find("cmdstat_del").unwrap() < all.find("cmdstat_get").unwrap());
        assert_eq!(redis_info(&summary(), Some(b"keyspace"), &p), "");
    }

    #[test]
    fn memcache_stats_lines() {
        let mut s = ProtocolSummary::default();
        s.add(&ProtocolSummary {
            clients: ClientCounters { accepted: 2, requests: 5, ..Default::default() },
            commands: vec![
                CommandCount { name: "get", calls: 3, ..Default::default() },
                CommandCount { name: "set", calls: 2, ..Default::default() },
            ],
        });
        let text = memcache_stats(&s, &ProcessFigures { version: "0.1.0".into(), ..Default::default() });
        assert!(text.contains("STAT curr_connections 2\r\n"));
        assert!(text.contains("STAT cmd_get 3\r\n"));
        assert!(text.contains("STAT cmd_set 2\r\n"));
        assert!(text.contains("STAT version 1.6.0-ferrule-0.1.0\r\n"));
        assert!(text.ends_with("END\r\n"));
    }
}
