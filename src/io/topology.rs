//! Reading a cluster's topology, on the control executor: connect to a known node (the nodes of the map in force,
//! then the configured seeds), send `CLUSTER SHARDS` (falling back to `CLUSTER SLOTS` when the server does not
//! know it, as before redis 7), and build the slot map. Host names in the reply are resolved here, on control,
//! never on a worker.

use crate::cluster::resp::{decode, Value};
use crate::cluster::topology::{parse_shards, parse_slots};
use crate::cluster::SlotMap;
use crate::protocol::redis;
use glommio::net::TcpStream;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The largest topology reply accepted (a 1000-node cluster's CLUSTER SHARDS is about 400 KiB).
const MAX_REPLY: usize = 16 << 20;

/// Asks the nodes at `candidates` in turn until one describes the cluster; returns the map and who answered, or
/// every node's failure.
pub async fn fetch(
    candidates: &[SocketAddr],
    auth: Option<&str>,
    timeout: Duration,
) -> Result<(SlotMap, SocketAddr), String> {
    let mut errors = Vec::new();
    for &addr in candidates {
        let attempt = glommio::timer::timeout(timeout, async { Ok(read_map(addr, auth, timeout).await) }).await;
        match attempt.unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis()))) {
            Ok(map) => return Ok((map, addr)),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(if errors.is_empty() { "no node to ask".into() } else { errors.join("; ") })
}

async fn read_map(addr: SocketAddr, auth: Option<&str>, timeout: Duration) -> Result<SlotMap, String> {
    let stream = TcpStream::connect_timeout(addr, timeout).await.map_err(|e| format!("connect failed: {e}"))?;
    let mut conn = Conn { stream, buf: Vec::new() };
    if let Some(pw) = auth {
        if let Value::Error(e) = conn.call(&[b"AUTH", pw.as_bytes()]).await? {
            return Err(format!("AUTH refused: {e}"));
        }
    }
    let reply = conn.call(&[b"CLUSTER", b"SHARDS"]).await?;
    let topo = match &reply {
        // Before redis 7 (or a proxy in between that lacks it): the older description.
        Value::Error(e) if !e.starts_with("NOAUTH") && !e.contains("cluster support disabled") => {
            parse_slots(&conn.call(&[b"CLUSTER", b"SLOTS"]).await?)?
        }
        other => parse_shards(other)?,
    };
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
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn call(&mut self, args: &[&[u8]]) -> Result<Value, String> {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let mut req = Vec::new();
        redis::write_command(&mut req, args);
        self.stream.write_all(&req).await.map_err(|e| format!("write failed: {e}"))?;
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
