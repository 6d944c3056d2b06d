//! Parsing the cluster's own description of itself into a [`Topology`]: CLUSTER SHARDS (redis 7+) and CLUSTER
//! SLOTS (older servers), in their RESP2 and RESP3 forms (maps decode as flat key/value arrays, see `resp`).
//!
//! CLUSTER SHARDS: an array of shards, each `slots` (a flat array of inclusive start/end pairs) and `nodes` (each
//! with `id`, `port` and/or `tls-port`, `ip`, `endpoint`, optionally `hostname`, `role` master/replica and `health`
//! online/failed/loading). A node's address is its `endpoint` (what `cluster-preferred-endpoint-type` announces),
//! else its `hostname`, else its `ip`; `?` means unknown and such a node is skipped, and an empty one means "the
//! host of the node that answered". Only `online` nodes count as healthy.
//!
//! Ports: with `tls-cluster yes` redis 7 lists a node's TLS port as `tls-port` and its plaintext port as `port`,
//! leaving out either one that is 0 (a TLS-only node, `--port 0`, has `tls-port` alone); without `tls-cluster` it
//! lists `port` only. A pool with TLS takes `tls-port`, else `port` (a node that serves TLS on its one port, as
//! managed clusters do; if that port is plaintext the handshake fails and says so); a plaintext pool takes `port`,
//! and a node with `tls-port` only is an error that says the pool needs TLS.
//!
//! CLUSTER SLOTS: an array of `[start, end, primary, replica...]`, each node `[host, port, id, metadata]` (redis 7:
//! metadata is a map with the `hostname` or `ip` the host is not); its ports are of the asking connection's kind
//! (the TLS port over TLS, with `tls-cluster yes`), as are those of `-MOVED`/`-ASK`, so they need no choosing.
//! CLUSTER SLOTS lists no failed nodes. Ranges of the same primary are gathered into one shard.

use super::map::{TopoNode, TopoShard, Topology};
use super::resp::Value;

/// Parses a CLUSTER SHARDS reply read by a pool with TLS (`tls`) or without.
pub fn parse_shards(reply: &Value, tls: bool) -> Result<Topology, String> {
    let shards = reply.as_array().ok_or_else(|| not_what("CLUSTER SHARDS", reply))?;
    let mut topo = Topology::default();
    for shard in shards {
        let fields = shard.as_array().ok_or("CLUSTER SHARDS: a shard is not a map")?;
        let mut out = TopoShard::default();
        for (key, value) in pairs(fields)? {
            match key {
                b"slots" => {
                    let bounds = value.as_array().ok_or("CLUSTER SHARDS: `slots` is not an array")?;
                    if !bounds.len().is_multiple_of(2) {
                        return Err("CLUSTER SHARDS: `slots` has an odd number of bounds".into());
                    }
                    for pair in bounds.chunks(2) {
                        out.ranges.push((slot_number(&pair[0])?, slot_number(&pair[1])?));
                    }
                }
                b"nodes" => {
                    let nodes = value.as_array().ok_or("CLUSTER SHARDS: `nodes` is not an array")?;
                    for node in nodes {
                        if let Some(n) = shards_node(node, tls)? {
                            out.nodes.push(n);
                        }
                    }
                }
                _ => {}
            }
        }
        topo.shards.push(out);
    }
    Ok(topo)
}

fn shards_node(node: &Value, tls: bool) -> Result<Option<TopoNode>, String> {
    let fields = node.as_array().ok_or("CLUSTER SHARDS: a node is not a map")?;
    let (mut id, mut port, mut tls_port, mut ip, mut endpoint, mut hostname) = (None, None, None, None, None, None);
    let (mut primary, mut healthy) = (false, true);
    for (key, value) in pairs(fields)? {
        match key {
            b"id" => id = value.as_bytes().map(text),
            b"port" => port = value.as_int().filter(|&p| p != 0),
            b"tls-port" => tls_port = value.as_int().filter(|&p| p != 0),
            b"ip" => ip = value.as_bytes().map(text),
            b"endpoint" => endpoint = value.as_bytes().map(text),
            b"hostname" => hostname = value.as_bytes().map(text),
            b"role" => primary = value.as_bytes() == Some(b"master"),
            b"health" => healthy = value.as_bytes() == Some(b"online"),
            _ => {}
        }
    }
    let id = id.unwrap_or_default();
    let port = match (tls, port, tls_port) {
        (true, _, Some(p)) | (_, Some(p), _) => p,
        (false, None, Some(_)) => {
            return Err(format!(
                "CLUSTER SHARDS: node {id} has a tls-port and no plaintext port (the cluster serves TLS only): set \
                 tls = true on the pool"
            ))
        }
        (_, None, None) => return Err(format!("CLUSTER SHARDS: node {id} has no `port`")),
    };
    let port = u16::try_from(port).map_err(|_| format!("CLUSTER SHARDS: port {port} is out of range"))?;
    let hostname = hostname.filter(|h| !h.is_empty() && h != "?");
    let host = [endpoint, hostname.clone(), ip].into_iter().flatten().find(|h| !h.is_empty()).unwrap_or_default();
    if host == "?" {
        return Ok(None);
    }
    let hostname = hostname.or_else(|| Some(host.clone()).filter(|h| is_host_name(h))).unwrap_or_default();
    Ok(Some(TopoNode { id, host, hostname, port, primary, healthy }))
}

/// Parses a CLUSTER SLOTS reply.
pub fn parse_slots(reply: &Value) -> Result<Topology, String> {
    let entries = reply.as_array().ok_or_else(|| not_what("CLUSTER SLOTS", reply))?;
    let mut topo = Topology::default();
    for entry in entries {
        let items = entry.as_array().ok_or("CLUSTER SLOTS: an entry is not an array")?;
        if items.len() < 3 {
            return Err("CLUSTER SLOTS: an entry has no primary".into());
        }
        let range = (slot_number(&items[0])?, slot_number(&items[1])?);
        let mut nodes = Vec::new();
        for (i, node) in items[2..].iter().enumerate() {
            let parts = node.as_array().ok_or("CLUSTER SLOTS: a node is not an array")?;
            let host = parts.first().and_then(Value::as_bytes).map(text).ok_or("CLUSTER SLOTS: a node has no host")?;
            let port = parts.get(1).and_then(Value::as_int).ok_or("CLUSTER SLOTS: a node has no port")?;
            let port = u16::try_from(port).map_err(|_| format!("CLUSTER SLOTS: port {port} is out of range"))?;
            let id = parts.get(2).and_then(Value::as_bytes).map(text).unwrap_or_default();
            // The name the node announces: its host when that is a name, else the `hostname` of its metadata.
            let hostname = if is_host_name(&host) {
                host.clone()
            } else {
                let meta = parts.get(3).and_then(Value::as_array).map(|m| pairs(m)).transpose()?;
                meta.into_iter()
                    .flatten()
                    .find(|(k, _)| *k == b"hostname")
                    .and_then(|(_, v)| v.as_bytes().map(text))
                    .filter(|h| is_host_name(h))
                    .unwrap_or_default()
            };
            if host == "?" {
                if i == 0 {
                    return Err(format!(
                        "CLUSTER SLOTS: the primary of slots {}-{} has no known address",
                        range.0, range.1
                    ));
                }
                continue;
            }
            nodes.push(TopoNode { id, host, hostname, port, primary: i == 0, healthy: true });
        }
        let same_primary = |s: &TopoShard| {
            let (a, b) = (&s.nodes[0], &nodes[0]);
            if a.id.is_empty() || b.id.is_empty() {
                (&a.host, a.port) == (&b.host, b.port)
            } else {
                a.id == b.id
            }
        };
        match topo.shards.iter_mut().find(|s| same_primary(s)) {
            Some(shard) => shard.ranges.push(range),
            None => topo.shards.push(TopoShard { ranges: vec![range], nodes }),
        }
    }
    Ok(topo)
}

fn pairs(fields: &[Value]) -> Result<impl Iterator<Item = (&[u8], &Value)>, String> {
    if !fields.len().is_multiple_of(2) {
        return Err("a map has an odd number of elements".into());
    }
    Ok(fields.chunks(2).filter_map(|kv| kv[0].as_bytes().map(|k| (k, &kv[1]))))
}

/// A host that names a host rather than giving an address (nor `?`, unknown).
fn is_host_name(h: &str) -> bool {
    !h.is_empty() && h != "?" && h.parse::<std::net::IpAddr>().is_err()
}

fn slot_number(v: &Value) -> Result<u16, String> {
    match v.as_int() {
        Some(n @ 0..=16383) => Ok(n as u16),
        _ => Err(format!("bad slot number {v:?}")),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn not_what(cmd: &str, reply: &Value) -> String {
    match reply {
        Value::Error(e) => format!("{cmd} failed: {e}"),
        other => format!("{cmd}: expected an array, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::resp::decode;
    use super::*;

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// A CLUSTER SHARDS node in RESP2 (flat array) or RESP3 (map) form.
    fn shards_node(resp3: bool, id: &str, port: u16, ip: &str, endpoint: &str, role: &str, health: &str) -> String {
        let fields = [
            bulk("id") + &bulk(id),
            bulk("port") + &format!(":{port}\r\n"),
            bulk("ip") + &bulk(ip),
            bulk("endpoint") + &bulk(endpoint),
            bulk("role") + &bulk(role),
            bulk("replication-offset") + ":12\r\n",
            bulk("health") + &bulk(health),
        ];
        let head = if resp3 { format!("%{}\r\n", fields.len()) } else { format!("*{}\r\n", fields.len() * 2) };
        head + &fields.concat()
    }

    fn shards_reply(resp3: bool) -> String {
        let map = |n: usize| if resp3 { format!("%{n}\r\n") } else { format!("*{}\r\n", n * 2) };
        let shard = |ranges: &[(u16, u16)], nodes: &[String]| {
            let mut s = map(2) + &bulk("slots") + &format!("*{}\r\n", ranges.len() * 2);
            for (a, b) in ranges {
                s += &format!(":{a}\r\n:{b}\r\n");
            }
            s + &bulk("nodes") + &format!("*{}\r\n", nodes.len()) + &nodes.concat()
        };
        "*2\r\n".to_string()
            + &shard(
                &[(0, 100), (200, 8000)],
                &[
                    shards_node(resp3, "a", 7000, "127.0.0.1", "127.0.0.1", "master", "online"),
                    shards_node(resp3, "d", 7003, "127.0.0.1", "redis-d.example", "replica", "failed"),
                ],
            )
            + &shard(&[(8001, 16383)], &[shards_node(resp3, "b", 7001, "", "", "master", "online")])
    }

    #[test]
    fn cluster_shards_in_both_protocols() {
        for resp3 in [false, true] {
            let text = shards_reply(resp3);
            let (value, len) = decode(text.as_bytes()).unwrap().unwrap();
            assert_eq!(len, text.len());
            let topo = parse_shards(&value, false).unwrap();
            assert_eq!(topo.shards.len(), 2);
            assert_eq!(topo.shards[0].ranges, vec![(0, 100), (200, 8000)]);
            assert_eq!(
                topo.shards[0].nodes,
                vec![
                    TopoNode {
                        id: "a".into(),
                        host: "127.0.0.1".into(),
                        hostname: String::new(),
                        port: 7000,
                        primary: true,
                        healthy: true
                    },
                    TopoNode {
                        id: "d".into(),
                        host: "redis-d.example".into(),
                        hostname: "redis-d.example".into(),
                        port: 7003,
                        primary: false,
                        healthy: false
                    },
                ]
            );
            // Empty endpoint and ip: the answering node's host, filled in when the map is built.
            assert_eq!(topo.shards[1].nodes[0].host, "");
        }
    }

    #[test]
    fn cluster_slots_gathers_ranges_per_primary() {
        let node = |h: &str, p: u16, id: &str| format!("*3\r\n{}:{p}\r\n{}", bulk(h), bulk(id));
        let entry =
            |a: u16, b: u16, nodes: &[String]| format!("*{}\r\n:{a}\r\n:{b}\r\n", 2 + nodes.len()) + &nodes.concat();
        let text = "*3\r\n".to_string()
            + &entry(0, 5460, &[node("127.0.0.1", 7000, "a"), node("127.0.0.1", 7003, "d")])
            + &entry(5461, 10922, &[node("", 7001, "b")])
            + &entry(10923, 16383, &[node("127.0.0.1", 7000, "a"), node("?", 7003, "d")]);
        let topo = parse_slots(&decode(text.as_bytes()).unwrap().unwrap().0).unwrap();
        assert_eq!(topo.shards.len(), 2);
        assert_eq!(topo.shards[0].ranges, vec![(0, 5460), (10923, 16383)]);
        assert_eq!(topo.shards[0].nodes.len(), 2);
        assert!(topo.shards[0].nodes[0].primary && !topo.shards[0].nodes[1].primary);
        assert_eq!(topo.shards[1].nodes[0].host, "");
    }

    #[test]
    fn errors_are_reported() {
        let err = parse_shards(&Value::Error("ERR unknown subcommand 'SHARDS'".into()), false).unwrap_err();
        assert_eq!(err, "CLUSTER SHARDS failed: ERR unknown subcommand 'SHARDS'");
        assert!(parse_slots(&decode(b"*1\r\n*2\r\n:0\r\n:5\r\n").unwrap().unwrap().0).is_err());
        assert!(
            parse_slots(&decode(b"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n").unwrap().unwrap().0).is_err()
        );
    }

    /// A node of a `tls-cluster yes` cluster as redis 7.0 lists it in CLUSTER SHARDS: `port` left out when 0.
    fn tls_node(id: &str, port: Option<u16>, tls_port: u16, ip: &str, hostname: Option<&str>) -> String {
        let mut fields = vec![bulk("id") + &bulk(id)];
        if let Some(p) = port {
            fields.push(bulk("port") + &format!(":{p}\r\n"));
        }
        fields.push(bulk("tls-port") + &format!(":{tls_port}\r\n"));
        fields.push(bulk("ip") + &bulk(ip));
        fields.push(bulk("endpoint") + &bulk(ip));
        if let Some(h) = hostname {
            fields.push(bulk("hostname") + &bulk(h));
        }
        fields.push(bulk("role") + &bulk("master"));
        fields.push(bulk("health") + &bulk("online"));
        format!("*{}\r\n", fields.len() * 2) + &fields.concat()
    }

    fn one_shard(node: String) -> Value {
        let text =
            "*1\r\n*4\r\n".to_string() + &bulk("slots") + "*2\r\n:0\r\n:16383\r\n" + &bulk("nodes") + "*1\r\n" + &node;
        decode(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn a_tls_pool_takes_the_tls_port_and_a_plaintext_pool_the_plaintext_one() {
        // Both ports (`--port 7000 --tls-port 7100 --tls-cluster yes`).
        let both = one_shard(tls_node("a", Some(7000), 7100, "10.0.0.1", Some("node-a.example")));
        let node = |topo: Topology| topo.shards[0].nodes[0].clone();
        assert_eq!(node(parse_shards(&both, true).unwrap()).port, 7100);
        assert_eq!(node(parse_shards(&both, false).unwrap()).port, 7000);
        // The endpoint is the IP; the announced host name is what a certificate is checked against.
        let n = node(parse_shards(&both, true).unwrap());
        assert_eq!((n.host.as_str(), n.hostname.as_str()), ("10.0.0.1", "node-a.example"));
        // TLS only (`--port 0`): a plaintext pool is told what to do.
        let tls_only = one_shard(tls_node("b", None, 7101, "10.0.0.2", None));
        assert_eq!(node(parse_shards(&tls_only, true).unwrap()).port, 7101);
        let err = parse_shards(&tls_only, false).unwrap_err();
        assert!(err.contains("node b has a tls-port and no plaintext port") && err.contains("tls = true"), "{err}");
        // No tls-port (no `tls-cluster`, or a node serving TLS on its one port): a TLS pool uses `port`.
        let plain = decode(shards_reply(false).as_bytes()).unwrap().unwrap().0;
        assert_eq!(parse_shards(&plain, true).unwrap().shards[0].nodes[0].port, 7000);
    }

    #[test]
    fn cluster_slots_takes_the_host_name_from_the_host_or_the_metadata() {
        // redis 7: [host, port, id, {hostname | ip}].
        let node = |h: &str, p: u16, meta: (&str, &str)| {
            format!("*4\r\n{}:{p}\r\n{}*2\r\n{}{}", bulk(h), bulk(&format!("id{p}")), bulk(meta.0), bulk(meta.1))
        };
        let text = "*2\r\n".to_string()
            + &format!("*3\r\n:0\r\n:100\r\n{}", node("10.0.0.1", 7100, ("hostname", "node-a.example")))
            + &format!("*3\r\n:101\r\n:16383\r\n{}", node("node-b.example", 7101, ("ip", "10.0.0.2")));
        let topo = parse_slots(&decode(text.as_bytes()).unwrap().unwrap().0).unwrap();
        assert_eq!(topo.shards[0].nodes[0].hostname, "node-a.example");
        assert_eq!(topo.shards[1].nodes[0].hostname, "node-b.example");
        assert_eq!(topo.shards[1].nodes[0].host, "node-b.example");
    }
}
