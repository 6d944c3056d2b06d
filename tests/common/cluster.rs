//! A real Redis Cluster on loopback for tests: redis-server processes with `cluster-enabled`, joined by
//! `redis-cli --cluster create`, stopped when dropped. Plaintext, or TLS only ([`RedisCluster::start_tls`]: every
//! node on a TLS port alone, its cluster bus and replication over TLS too).

use super::{free_port, listener_toml, require_binary, tempdir, wait_for_child_port, Client, Ferrule, Proc, TempDir};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisCluster {
    /// In the order given to `redis-cli --cluster create`: the primaries first, then the replicas.
    pub nodes: Vec<Option<Proc>>,
    pub ports: Vec<u16>,
    pub dir: TempDir,
    /// Primaries and replicas a healthy cluster has (a failover keeps the counts once the old primary is gone).
    pub want_primaries: usize,
    pub want_replicas: usize,
    /// TLS only: the certificates the nodes serve and redis-cli trusts.
    pub tls: Option<ClusterTls>,
}

/// A TLS cluster's certificate, key and CA (PEM paths).
#[derive(Clone)]
pub struct ClusterTls {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

impl ClusterTls {
    fn cli_args(tls: Option<&ClusterTls>) -> Vec<String> {
        match tls {
            None => Vec::new(),
            Some(t) => vec!["--tls".into(), "--cacert".into(), t.ca.clone()],
        }
    }
}

/// A port whose cluster bus port (+10000) is free as well.
fn cluster_port() -> u16 {
    // A node also listens on its bus port, port + 10000: both must be free. `free_port` hands out ports below the
    // ephemeral range and never the same one twice in a test binary.
    for _ in 0..200 {
        let port = super::free_port();
        if port < 55000 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// A cluster node's reply to `args`, through redis-cli (raw output, trimmed).
pub fn cli(port: u16, args: &[&str]) -> String {
    cli_with(None, port, args)
}

fn cli_with(tls: Option<&ClusterTls>, port: u16, args: &[&str]) -> String {
    let out = Command::new(require_binary("redis-cli", "redis-tools"))
        .args(ClusterTls::cli_args(tls))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl RedisCluster {
    /// Starts `primaries` primaries with `replicas` replicas each and waits until every node reports
    /// `cluster_state:ok` and all agree on the slots. `cluster-node-timeout` is 5 s (a loaded test machine must not
    /// cause failovers); see [`RedisCluster::start_with_timeout`].
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        Self::start_with_timeout(primaries, replicas, 5000)
    }

    /// [`RedisCluster::start`] with `cluster-node-timeout` `node_timeout_ms` (small to fail over fast).
    pub fn start_with_timeout(primaries: usize, replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        Self::start_with(primaries, replicas, node_timeout_ms, None)
    }

    /// [`RedisCluster::start`] speaking TLS only: `--port 0 --tls-port P --tls-cluster yes --tls-replication yes`,
    /// clients not asked for a certificate.
    pub fn start_tls(primaries: usize, replicas: usize, tls: ClusterTls) -> RedisCluster {
        Self::start_with(primaries, replicas, 5000, Some(tls))
    }

    fn start_with(primaries: usize, replicas: usize, node_timeout_ms: u64, tls: Option<ClusterTls>) -> RedisCluster {
        let bin = require_binary("redis-server", "redis-server");
        let dir = tempdir("cluster");
        let n = primaries * (1 + replicas);
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < n {
            let p = cluster_port();
            if !ports.contains(&p) && !ports.iter().any(|q| *q + 10000 == p || p + 10000 == *q) {
                ports.push(p);
            }
        }
        let mut nodes = Vec::new();
        for &port in &ports {
            let listen: Vec<String> = match &tls {
                None => vec!["--port".into(), port.to_string()],
                Some(t) => [
                    ["--port", "0", "--tls-port", &port.to_string(), "--tls-cluster", "yes"].as_slice(),
                    &["--tls-replication", "yes", "--tls-auth-clients", "no"],
                    &["--tls-cert-file", &t.cert, "--tls-key-file", &t.key, "--tls-ca-cert-file", &t.ca],
                ]
                .concat()
                .into_iter()
                .map(String::from)
                .collect(),
            };
            let mut child = Command::new(&bin)
                .args(&listen)
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", &node_timeout_ms.to_string()])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                // Slots of a failed primary are refused, the others keep being served.
                .args(["--cluster-require-full-coverage", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            wait_for_child_port(&mut child, port, "redis-server (cluster node)");
            nodes.push(Some(Proc { child, port, name: format!("redis-cluster:{port}"), dir: None }));
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new(require_binary("redis-cli", "redis-tools"))
            .args(ClusterTls::cli_args(tls.as_ref()))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster =
            RedisCluster { nodes, ports, dir, want_primaries: primaries, want_replicas: primaries * replicas, tls };
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    /// Node `port`'s reply to `args`, through redis-cli (over TLS for a TLS cluster).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli_with(self.tls.as_ref(), port, args)
    }

    /// Waits until every running node says `cluster_state:ok`, knows every running node and agrees on the owner
    /// of every slot.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let running: Vec<u16> = self.running();
        loop {
            let ok = running.iter().all(|&p| self.cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
                && running.iter().all(|&p| self.roles_seen_by(p) == (self.want_primaries, self.want_replicas))
                && running.iter().all(|&p| {
                    let info = self.cli(p, &["INFO", "replication"]);
                    info.contains("role:master") || info.contains("master_link_status:up")
                });
            let views: Vec<String> = running.iter().map(|&p| self.slot_owners_seen_by(p)).collect();
            let agree = views.windows(2).all(|w| w[0] == w[1]);
            if ok && agree {
                return;
            }
            assert!(Instant::now() < deadline, "cluster did not become healthy: {views:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// (primaries, replicas) that node `port` knows and does not consider failed.
    fn roles_seen_by(&self, port: u16) -> (usize, usize) {
        let (mut m, mut r) = (0, 0);
        for line in self.cli(port, &["CLUSTER", "NODES"]).lines() {
            let flags = line.split(' ').nth(2).unwrap_or("");
            if flags.contains("fail") || flags.contains("handshake") || flags.contains("noaddr") {
                continue;
            }
            if flags.contains("master") {
                m += 1;
            } else if flags.contains("slave") {
                r += 1;
            }
        }
        (m, r)
    }

    pub fn running(&self) -> Vec<u16> {
        self.nodes.iter().flatten().map(|p| p.port).collect()
    }

    /// "port:slots" of the primaries, as node `port` sees them (CLUSTER SLOTS), sorted: for comparing views.
    fn slot_owners_seen_by(&self, port: u16) -> String {
        let text = self.cli(port, &["CLUSTER", "SLOTS"]);
        let lines: Vec<&str> = text.lines().collect();
        let mut ranges: Vec<(i64, i64, String)> = Vec::new();
        // redis-cli prints each entry as: start, end, ip, port, id[, metadata..], then replicas' ip, port, id...
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(a), Ok(b)) = (lines[i].parse::<i64>(), lines[i + 1].parse::<i64>()) {
                if lines[i + 2].contains('.') {
                    ranges.push((a, b, lines[i + 3].to_string()));
                    i += 4;
                    continue;
                }
            }
            i += 1;
        }
        ranges.sort();
        format!("{ranges:?}")
    }

    /// The primary that owns `slot` as node `ask` sees it (CLUSTER SHARDS parsed the simple way: CLUSTER NODES).
    pub fn owner_of(&self, slot: u16) -> u16 {
        for line in self.cli(self.running()[0], &["CLUSTER", "NODES"]).lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port: u16 = f[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            for r in &f[8..] {
                if r.starts_with('[') {
                    continue;
                }
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                let (a, b): (u16, u16) = (a.parse().unwrap_or(1), b.parse().unwrap_or(0));
                if (a..=b).contains(&slot) {
                    return port;
                }
            }
        }
        panic!("no primary owns slot {slot}")
    }

    /// The node id of the node on `port`.
    pub fn id_of(&self, port: u16) -> String {
        self.cli(port, &["CLUSTER", "MYID"])
    }

    /// The ports of the primaries (as the first running node sees them, failed ones excluded).
    pub fn primaries(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for line in self.cli(self.running()[0], &["CLUSTER", "NODES"]).lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() >= 3 && f[2].contains("master") && !f[2].contains("fail") {
                out.push(f[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).unwrap_or(0));
            }
        }
        out.sort();
        out
    }

    /// Kills the node on `port` (SIGKILL, as a crash).
    pub fn kill(&mut self, port: u16) {
        for slot in self.nodes.iter_mut() {
            if slot.as_ref().is_some_and(|p| p.port == port) {
                *slot = None;
            }
        }
    }

    /// Moves `slot` from the primary on `from` to the primary on `to` by hand, as the cluster spec describes:
    /// IMPORTING on the target, MIGRATING on the source, MIGRATE each of `keys` (all of the slot's keys, or only
    /// some to leave the migration half done), and with `finish`, SETSLOT NODE on every primary.
    pub fn move_slot(&self, slot: u16, from: u16, to: u16, keys: &[&str], finish: bool) {
        let (from_id, to_id) = (self.id_of(from), self.id_of(to));
        let s = slot.to_string();
        assert_eq!(self.cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]), "OK");
        assert_eq!(self.cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]), "OK");
        for k in keys {
            assert_eq!(self.cli(from, &["MIGRATE", "127.0.0.1", &to.to_string(), k, "0", "5000"]), "OK", "MIGRATE {k}");
        }
        if finish {
            let mut order = vec![to, from];
            order.extend(self.primaries().into_iter().filter(|p| *p != to && *p != from));
            for p in order {
                assert_eq!(self.cli(p, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]), "OK", "SETSLOT NODE on {p}");
            }
        }
    }

    /// Ends a migration of `slot` by giving it to `to` on every primary (keys left on the source are lost to it, as
    /// with any migration that did not move them).
    pub fn move_slot_finish(&self, slot: u16, to: u16) {
        let to_id = self.id_of(to);
        let mut order = vec![to];
        order.extend(self.primaries().into_iter().filter(|p| *p != to));
        for p in order {
            assert_eq!(
                self.cli(p, &["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &to_id]),
                "OK",
                "SETSLOT NODE on {p}"
            );
        }
    }

    /// `servers = [...]` seeds for a ferrule pool: every node.
    pub fn seeds_toml(&self) -> String {
        let list: Vec<String> = self.ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        format!("[{}]", list.join(", "))
    }
}

/// ferrule (2 workers) with one redis listener for a `redis_cluster` pool `c` seeded by `cluster` (`timeout_ms =
/// 2000`, a refresh every second unless `extra` sets `cluster_refresh_ms`, then `extra`'s keys), returned once it
/// routes: the first map is read before the workers route anything, and a GET answering (nil or a value) shows it
/// is in.
pub fn ferrule_for(cluster: &RedisCluster, extra: &str) -> (Ferrule, u16) {
    let port = free_port();
    let refresh = if extra.contains("cluster_refresh_ms") { "" } else { "cluster_refresh_ms = 1000\n" };
    let body = format!(
        "{}[pools.c]\nkind = \"redis_cluster\"\nservers = {}\n{refresh}timeout_ms = 2000\n{extra}\n",
        listener_toml("l", port, "redis", "c", ""),
        cluster.seeds_toml()
    );
    let f = Ferrule::start_with(&body, port, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = Client::connect(port);
    while !c.redis(&["GET", "warmup"]).starts_with(b"$") {
        assert!(Instant::now() < deadline, "ferrule never routed to the cluster; log:\n{}", f.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    (f, port)
}

/// Sends `cmds` pipelined on `c` and returns their replies, in order.
pub fn pipeline<C: AsRef<[S]>, S: AsRef<str>>(c: &mut Client, cmds: &[C]) -> Vec<String> {
    let mut out = Vec::new();
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.as_ref().iter().map(|a| a.as_ref().as_bytes()).collect();
        ferrule::protocol::redis::write_command(&mut out, &args);
    }
    c.send(&out);
    cmds.iter().map(|_| String::from_utf8_lossy(&c.redis_reply()).into_owned()).collect()
}
