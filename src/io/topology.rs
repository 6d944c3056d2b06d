//! Reading a cluster's topology, on the control executor: connect to a known node (the nodes of the map in force,
//! then the configured seeds), send `CLUSTER SHARDS` (falling back to `CLUSTER SLOTS` when the server does not
//! know it, as before redis 7), and build the slot map. Host names in the reply are resolved here, on control,
//! never on a worker. A pool with `tls = true` reads it over TLS, with the node's certificate checked as the data
//! connections check it ([`crate::config::PoolTls::node_name`]); CLUSTER SLOTS then reports the TLS ports.

use crate::cluster::resp::{decode, Value};
use crate::cluster::topology::{parse_shards, parse_slots};
use crate::cluster::SlotMap;
use crate::config::PoolTls;
use crate::protocol::redis;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The largest topology reply accepted (a 1000-node cluster's CLUSTER SHARDS is about 400 KiB).
const MAX_REPLY: usize = 16 << 20;

/// A node to ask, and the host name it is known by (a seed's configured host, a node's announced name), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub hostname: Option<String>,
}

/// Asks the nodes at `candidates` in turn until one describes the cluster; returns the map and who answered, or
/// every node's failure.
pub async fn fetch(
    candidates: &[Candidate],
    auth: Option<&str>,
    tls: Option<&PoolTls>,
    timeout: Duration,
) -> Result<(SlotMap, SocketAddr), String> {
    let mut errors = Vec::new();
    for c in candidates {
        let attempt = glommio::timer::timeout(timeout, async { Ok(read_map(c, auth, tls, timeout).await) }).await;
        match attempt.unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis()))) {
            Ok(map) => return Ok((map, c.addr)),
            Err(e) => errors.push(format!("{}: {e}", c.addr)),
        }
    }
    Err(if errors.is_empty() { "no node to ask".into() } else { errors.join("; ") })
}

async fn read_map(
    c: &Candidate,
    auth: Option<&str>,
    tls: Option<&PoolTls>,
    timeout: Duration,
) -> Result<SlotMap, String> {
    let addr = c.addr;
    let tls_to = tls.map(|t| (t.client.config.clone(), t.node_name(c.hostname.as_deref(), addr.ip())));
    let stream = super::probe::connect(addr, tls_to, timeout).await?;
    let mut conn = Conn { stream, buf: Vec::new() };
    let result = conn.describe(auth, tls.is_some()).await;
    conn.stream.shutdown();
    let topo = result?;
    let origin = addr.ip().to_string();
    SlotMap::build(&topo, &origin, &mut resolve)
}

/// An IP literal, or a host name resolved by the system (on control only).
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "resolves to no address".to_string())
}

struct Conn {
    stream: super::probe::Probed,
    buf: Vec<u8>,
}

impl Conn {
    /// AUTH if configured, then the cluster's description of itself.
    async fn describe(&mut self, auth: Option<&str>, tls: bool) -> Result<crate::cluster::map::Topology, String> {
        if let Some(pw) = auth {
            if let Value::Error(e) = self.call(&[b"AUTH", pw.as_bytes()]).await? {
                return Err(format!("AUTH refused: {e}"));
            }
        }
        let reply = self.call(&[b"CLUSTER", b"SHARDS"]).await?;
        match &reply {
            // Before redis 7 (or a proxy in between that lacks it): the older description.
            Value::Error(e) if !e.starts_with("NOAUTH") && !e.contains("cluster support disabled") => {
                parse_slots(&self.call(&[b"CLUSTER", b"SLOTS"]).await?)
            }
            other => parse_shards(other, tls),
        }
    }

    async fn call(&mut self, args: &[&[u8]]) -> Result<Value, String> {
        let mut req = Vec::new();
        redis::write_command(&mut req, args);
        self.stream.write_all(req).await.map_err(|e| format!("write failed: {e}"))?;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((value, len)) = decode(&self.buf)? {
                self.buf.drain(..len);
                return Ok(value);
            }
            if self.buf.len() > MAX_REPLY {
                return Err("topology reply too large".into());
            }
            let n = self.stream.read(&mut chunk).await.map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err("closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
