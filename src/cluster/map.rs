//! The slot map: which shard serves each of the 16384 hash slots, and which nodes (a primary and its replicas)
//! make up each shard.
//!
//! A [`Topology`] is what a node said (CLUSTER SHARDS or CLUSTER SLOTS, parsed by `cluster::topology`), with host
//! names as announced; a [`SlotMap`] is that topology with every node resolved to an address, built once by control
//! and shared read-only by every worker. Nodes that are marked failed are left out of a shard's replicas (a read
//! sent there would fail); a primary is kept even when marked failed, since its slots are still its own until a
//! replica is promoted: requests for them fail fast at its connection instead of going anywhere else.

use super::slot::SLOTS;
use std::net::SocketAddr;

/// Which nodes of a shard serve reads (`read_from` in the config). Writes always go to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// Every request goes to the shard's primary.
    #[default]
    Primary,
    /// Reads go to a replica of the shard when it has a healthy one, else to the primary.
    PreferReplica,
    /// Reads go to a replica only; a shard without a healthy replica fails reads.
    Replica,
    /// Reads go to any node of the shard, primary included.
    Any,
}

impl ReadFrom {
    pub const ALL: [ReadFrom; 4] = [ReadFrom::Primary, ReadFrom::PreferReplica, ReadFrom::Replica, ReadFrom::Any];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            ReadFrom::Primary => "primary",
            ReadFrom::PreferReplica => "prefer_replica",
            ReadFrom::Replica => "replica",
            ReadFrom::Any => "any",
        }
    }

    pub fn from_name(name: &str) -> Option<ReadFrom> {
        ReadFrom::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// One node as a topology reply described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopoNode {
    pub id: String,
    /// As announced (an IP literal or a host name); empty when the node did not know its own address, which means
    /// "the host of the node that answered".
    pub host: String,
    /// The host name the node announces (`cluster-announce-hostname`, or its host when that is a name); empty when
    /// it is known by address only. A TLS pool checks the node's certificate against it.
    pub hostname: String,
    pub port: u16,
    pub primary: bool,
    /// Not marked failed (`health` is not `fail`; CLUSTER SLOTS lists no failed nodes).
    pub healthy: bool,
}

/// One shard as a topology reply described it: its slot ranges (inclusive) and its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopoShard {
    pub ranges: Vec<(u16, u16)>,
    pub nodes: Vec<TopoNode>,
}

/// A parsed topology reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    pub shards: Vec<TopoShard>,
}

/// A node of the slot map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// As announced (after an empty host was replaced by the answering node's), for matching redirects that name
    /// a host name.
    pub host: String,
    /// As announced (see [`TopoNode::hostname`]): the name its certificate is checked against, if any.
    pub hostname: String,
    pub port: u16,
    pub addr: SocketAddr,
}

/// A shard of the slot map: indices into [`SlotMap::nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub primary: usize,
    /// Healthy replicas only.
    pub replicas: Vec<usize>,
}

/// Marks a slot no shard serves.
const NO_SHARD: u16 = u16::MAX;

/// Slot -> shard -> nodes, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    pub nodes: Vec<Node>,
    pub shards: Vec<Shard>,
    /// Per slot, the index of its shard, or [`NO_SHARD`].
    slots: Vec<u16>,
}

/// Why a request for a slot has no node to go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoNode {
    /// No shard serves the slot.
    Uncovered,
    /// `read_from = "replica"` and the shard has no healthy replica.
    NoReplica,
}

impl SlotMap {
    /// An empty map: no slot served (before the first topology is known).
    pub fn empty() -> SlotMap {
        SlotMap { nodes: Vec::new(), shards: Vec::new(), slots: vec![NO_SHARD; SLOTS] }
    }

    /// Resolves `topo` into a map. `origin` is the host of the node that answered (it replaces empty hosts);
    /// `resolve` turns (host, port) into an address, or says why it cannot. Shards without a primary, or whose
    /// primary cannot be resolved, are an error: a map that silently lost slots would route them nowhere.
    pub fn build(
        topo: &Topology,
        origin: &str,
        resolve: &mut dyn FnMut(&str, u16) -> Result<SocketAddr, String>,
    ) -> Result<SlotMap, String> {
        let mut map = SlotMap::empty();
        for shard in topo.shards.iter().filter(|s| !s.ranges.is_empty()) {
            // Of several nodes claiming to be the primary (a failover under way), a healthy one is the primary.
            let primary =
                shard.nodes.iter().filter(|n| n.primary).max_by_key(|n| n.healthy).ok_or_else(|| {
                    format!("a shard serving slots {} has no primary", describe_ranges(&shard.ranges))
                })?;
            let primary = map.add_node(primary, origin, resolve)?;
            let mut replicas = Vec::new();
            let primary_id = map.nodes[primary].id.clone();
            for n in shard.nodes.iter().filter(|n| n.healthy && n.id != primary_id) {
                // A replica that cannot be resolved is left out rather than failing the whole map.
                if let Ok(index) = map.add_node(n, origin, resolve) {
                    if index != primary && !replicas.contains(&index) {
                        replicas.push(index);
                    }
                }
            }
            let index = map.shards.len();
            if index >= NO_SHARD as usize {
                return Err("too many shards".into());
            }
            map.shards.push(Shard { primary, replicas });
            for &(start, end) in &shard.ranges {
                if start > end || end as usize >= SLOTS {
                    return Err(format!("slot range {start}-{end} is out of 0-16383"));
                }
                for slot in start..=end {
                    map.slots[slot as usize] = index as u16;
                }
            }
        }
        Ok(map)
    }

    fn add_node(
        &mut self,
        n: &TopoNode,
        origin: &str,
        resolve: &mut dyn FnMut(&str, u16) -> Result<SocketAddr, String>,
    ) -> Result<usize, String> {
        let host = if n.host.is_empty() { origin } else { n.host.as_str() };
        let addr = resolve(host, n.port).map_err(|e| format!("node {host}:{}: {e}", n.port))?;
        if let Some(i) = self.nodes.iter().position(|m| m.addr == addr) {
            return Ok(i);
        }
        self.nodes.push(Node {
            id: n.id.clone(),
            host: host.to_owned(),
            hostname: n.hostname.clone(),
            port: n.port,
            addr,
        });
        Ok(self.nodes.len() - 1)
    }

    /// The shard serving `slot`, if any.
    #[inline]
    pub fn shard_of(&self, slot: u16) -> Option<&Shard> {
        match self.slots.get(slot as usize) {
            Some(&s) if s != NO_SHARD => self.shards.get(s as usize),
            _ => None,
        }
    }

    /// The node a request for `slot` goes to: the primary for writes and with `read_from = primary`, else by the
    /// policy. `pick` spreads reads over replicas (the client's id, so one client keeps reading from one node).
    #[inline]
    pub fn node_for(&self, slot: u16, read: bool, policy: ReadFrom, pick: u64) -> Result<usize, NoNode> {
        let shard = self.shard_of(slot).ok_or(NoNode::Uncovered)?;
        if !read || policy == ReadFrom::Primary {
            return Ok(shard.primary);
        }
        let n = shard.replicas.len() as u64;
        match policy {
            ReadFrom::Primary => Ok(shard.primary),
            ReadFrom::PreferReplica if n == 0 => Ok(shard.primary),
            ReadFrom::Replica if n == 0 => Err(NoNode::NoReplica),
            ReadFrom::PreferReplica | ReadFrom::Replica => Ok(shard.replicas[(pick % n) as usize]),
            ReadFrom::Any => match (pick % (n + 1)) as usize {
                0 => Ok(shard.primary),
                i => Ok(shard.replicas[i - 1]),
            },
        }
    }

    /// Slots some shard serves.
    pub fn covered(&self) -> usize {
        self.slots.iter().filter(|&&s| s != NO_SHARD).count()
    }

    /// The address of a node of this map named `host:port` as a redirect or topology names it (host name or IP).
    pub fn node_named(&self, host: &[u8], port: u16) -> Option<SocketAddr> {
        self.nodes.iter().find(|n| n.port == port && n.host.as_bytes() == host).map(|n| n.addr)
    }

    /// One line for logs: shards, nodes, slots covered.
    pub fn summary(&self) -> String {
        let replicas: usize = self.shards.iter().map(|s| s.replicas.len()).sum();
        format!(
            "{} shards, {} nodes ({} replicas), {} of {} slots served",
            self.shards.len(),
            self.nodes.len(),
            replicas,
            self.covered(),
            SLOTS
        )
    }
}

/// "0-5460,6000" for messages.
fn describe_ranges(ranges: &[(u16, u16)]) -> String {
    let parts: Vec<String> =
        ranges.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, port: u16, primary: bool, healthy: bool) -> TopoNode {
        TopoNode { id: id.into(), host: "127.0.0.1".into(), hostname: String::new(), port, primary, healthy }
    }

    fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
        format!("{host}:{port}").parse().map_err(|_| "unresolvable".to_string())
    }

    fn three_shards() -> Topology {
        Topology {
            shards: vec![
                TopoShard {
                    ranges: vec![(0, 5460)],
                    nodes: vec![node("a", 7000, true, true), node("d", 7003, false, true)],
                },
                TopoShard {
                    ranges: vec![(5461, 10922)],
                    nodes: vec![node("b", 7001, true, true), node("e", 7004, false, false)],
                },
                TopoShard { ranges: vec![(10923, 16383)], nodes: vec![node("c", 7002, true, true)] },
            ],
        }
    }

    #[test]
    fn slots_route_to_their_shard() {
        let map = SlotMap::build(&three_shards(), "127.0.0.1", &mut resolve).unwrap();
        assert_eq!(map.covered(), SLOTS);
        let port = |slot, read, policy, pick| map.node_for(slot, read, policy, pick).map(|n| map.nodes[n].port);
        assert_eq!(port(0, false, ReadFrom::Primary, 0), Ok(7000));
        assert_eq!(port(5460, true, ReadFrom::Primary, 0), Ok(7000));
        assert_eq!(port(5461, false, ReadFrom::Replica, 0), Ok(7001));
        assert_eq!(port(16383, true, ReadFrom::Primary, 0), Ok(7002));
        // Reads by policy; writes always to the primary.
        assert_eq!(port(1, true, ReadFrom::PreferReplica, 0), Ok(7003));
        assert_eq!(port(1, true, ReadFrom::Replica, 7), Ok(7003));
        assert_eq!(port(1, true, ReadFrom::Any, 0), Ok(7000));
        assert_eq!(port(1, true, ReadFrom::Any, 1), Ok(7003));
        assert_eq!(port(1, false, ReadFrom::Replica, 1), Ok(7000));
        // The failed replica is left out.
        assert_eq!(port(6000, true, ReadFrom::PreferReplica, 0), Ok(7001));
        assert_eq!(port(6000, true, ReadFrom::Replica, 0), Err(NoNode::NoReplica));
        assert_eq!(map.summary(), "3 shards, 4 nodes (1 replicas), 16384 of 16384 slots served");
    }

    #[test]
    fn uncovered_slots_and_empty_hosts() {
        let mut topo = three_shards();
        topo.shards.remove(2);
        topo.shards[0].nodes[0].host = String::new();
        let map = SlotMap::build(&topo, "127.0.0.2", &mut resolve).unwrap();
        assert_eq!(map.node_for(16000, false, ReadFrom::Primary, 0), Err(NoNode::Uncovered));
        assert_eq!(map.nodes[map.shard_of(0).unwrap().primary].addr, "127.0.0.2:7000".parse().unwrap());
        assert_eq!(map.node_named(b"127.0.0.2", 7000), Some("127.0.0.2:7000".parse().unwrap()));
        assert_eq!(map.node_named(b"127.0.0.1", 7000), None);
        assert_eq!(SlotMap::empty().covered(), 0);
    }

    #[test]
    fn a_shard_without_primary_or_bad_ranges_is_refused() {
        let mut topo = three_shards();
        topo.shards[2].nodes[0].primary = false;
        assert!(SlotMap::build(&topo, "", &mut resolve).unwrap_err().contains("10923-16383 has no primary"));
        let mut topo = three_shards();
        topo.shards[2].ranges = vec![(10923, 16384)];
        assert!(SlotMap::build(&topo, "", &mut resolve).is_err());
        let mut topo = three_shards();
        topo.shards[2].nodes[0].host = "no-such-host".into();
        assert!(SlotMap::build(&topo, "", &mut resolve).unwrap_err().contains("no-such-host:7002"));
    }

    #[test]
    fn a_healthy_primary_wins_over_a_failed_one() {
        let mut topo = three_shards();
        // After a failover the old primary may still be listed as a failed primary beside the promoted replica.
        topo.shards[0].nodes = vec![node("a", 7000, true, false), node("d", 7003, true, true)];
        let map = SlotMap::build(&topo, "", &mut resolve).unwrap();
        assert_eq!(map.nodes[map.shard_of(0).unwrap().primary].port, 7003);
        assert!(map.shard_of(0).unwrap().replicas.is_empty());
    }

    #[test]
    fn read_from_names() {
        for r in ReadFrom::ALL {
            assert_eq!(ReadFrom::from_name(r.name()), Some(r));
        }
        assert_eq!(ReadFrom::from_name("master"), None);
    }
}
