//! Addresses ferrule binds: listeners, the admin endpoint, the stats port.
//!
//! Bind addresses must be IP literals (or `localhost`): resolving a name to pick an interface is
//! a guess, and a config must mean the same thing on every start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::ListenAddr;

/// The longest unix socket path the kernel accepts (`sun_path` is 108 bytes with its NUL).
const MAX_UNIX_PATH_BYTES: usize = 107;

/// Parses a listener address: `ip:port`, `[ipv6]:port`, `localhost:port`, `/path` or `unix:/path`.
pub(super) fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    let path = text.strip_prefix("unix:").unwrap_or(text);
    if path.starts_with('/') {
        if path.len() > MAX_UNIX_PATH_BYTES {
            return Err(format!("unix socket path is {} bytes; the limit is {MAX_UNIX_PATH_BYTES}", path.len()));
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    if text.starts_with("unix:") {
        return Err(format!("unix socket path {path:?} must be absolute"));
    }
    parse_bind_addr(text).map(ListenAddr::Tcp)
}

/// Parses `ip:port`, `[ipv6]:port` or `localhost:port` with a non-zero port.
pub(super) fn parse_bind_addr(text: &str) -> Result<SocketAddr, String> {
    let addr = match text.strip_prefix("localhost:") {
        Some(port) => port
            .parse::<u16>()
            .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            .map_err(|_| format!("{port:?} is not a port number")),
        None => text
            .parse::<SocketAddr>()
            .map_err(|_| format!("{text:?} is not an address; write ip:port, [ipv6]:port or localhost:port")),
    }?;
    if addr.port() == 0 {
        return Err("port 0 is not allowed: every worker would bind a different random port".to_owned());
    }
    Ok(addr)
}

/// Whether binding both addresses would collide: the same unix path, or the same TCP port with
/// the same IP or a wildcard IP on either side (with SO_REUSEPORT, the kernel would accept both
/// binds and spread connections between them).
pub(super) fn conflicts(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Unix(a), ListenAddr::Unix(b)) => a == b,
        (ListenAddr::Tcp(a), ListenAddr::Tcp(b)) => {
            a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        _ => false,
    }
}
