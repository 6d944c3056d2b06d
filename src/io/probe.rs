//! Health probes for ejected servers: PING for redis, `version` for memcache, bounded by a timeout.

use super::stream::Conn;
use super::tls::TlsStream;
use crate::config::Protocol;
use crate::protocol::redis;
use std::net::SocketAddr;
use std::time::Duration;

/// Connects, asks the server whether it is alive and waits for a sane answer.
pub async fn probe(
    addr: SocketAddr,
    protocol: Protocol,
    redis_auth: Option<&str>,
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        let conn = connect(addr, tls, timeout).await?;
        let mut req = Vec::new();
        let expect_replies = match protocol {
            Protocol::Redis => {
                if let Some(pw) = redis_auth {
                    redis::write_command(&mut req, &[b"AUTH", pw.as_bytes()]);
                }
                redis::write_command(&mut req, &[b"PING"]);
                1 + usize::from(redis_auth.is_some())
            }
            Protocol::Memcache => {
                req.extend_from_slice(b"version\r\n");
                1
            }
        };
        conn.write_all(req).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = vec![0u8; 4096];
        let mut have = 0;
        loop {
            let n = conn.read(&mut buf[have..]).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed the connection".to_string());
            }
            have += n;
            let text = &buf[..have];
            let ok = match protocol {
                Protocol::Redis => {
                    text.ends_with(b"\r\n")
                        && text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() >= expect_replies
                }
                Protocol::Memcache => text.ends_with(b"\r\n"),
            };
            if ok {
                conn.shutdown();
                return match protocol {
                    Protocol::Redis if text.windows(5).any(|w| w == b"+PONG") => Ok(()),
                    Protocol::Memcache if text.starts_with(b"VERSION") => Ok(()),
                    _ => Err(format!("unexpected answer: {}", String::from_utf8_lossy(text).trim_end())),
                };
            }
            if have == buf.len() {
                return Err("answer too long".to_string());
            }
        }
    };
    match glommio::timer::timeout(timeout, async { Ok(attempt.await) }).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Connects to `addr` from control, through TLS when `tls` is given (completing the handshake, unbounded in time:
/// the caller bounds the whole exchange).
pub(super) async fn connect(
    addr: SocketAddr,
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    timeout: Duration,
) -> Result<Probed, String> {
    let stream = glommio::net::TcpStream::connect_timeout(addr, timeout).await.map_err(|e| describe_connect(&e))?;
    Ok(match tls {
        None => Probed::Plain(Conn::tcp(stream)),
        Some((config, name)) => {
            let client = rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
            let tls = TlsStream::new(Conn::tcp(stream), client.into());
            tls.handshake().await.map_err(|e| format!("TLS handshake failed: {e}"))?;
            Probed::Tls(Box::new(tls))
        }
    })
}

/// A connection of control's (a probe's, or a cluster topology read's): plain, or TLS for a pool with `tls = true`
/// (it checks what the data path will use).
pub(super) enum Probed {
    Plain(Conn),
    Tls(Box<TlsStream<Conn>>),
}

impl Probed {
    pub(super) async fn write_all(&self, req: Vec<u8>) -> std::io::Result<()> {
        match self {
            Probed::Plain(c) => c.write_all(&req).await,
            Probed::Tls(t) => t.send_all(req).await.0,
        }
    }

    pub(super) async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Probed::Plain(c) => c.read(buf).await,
            Probed::Tls(t) => t.read(buf).await,
        }
    }

    pub(super) fn shutdown(&self) {
        match self {
            Probed::Plain(c) => c.shutdown(),
            Probed::Tls(t) => t.transport().shutdown(),
        }
    }
}

fn describe_connect(e: &glommio::GlommioError<()>) -> String {
    match e {
        glommio::GlommioError::IoError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "Connection refused".into()
        }
        glommio::GlommioError::IoError(io) if io.kind() == std::io::ErrorKind::TimedOut => "connect timed out".into(),
        glommio::GlommioError::TimedOut(_) => "connect timed out".into(),
        other => format!("connect failed: {other}"),
    }
}
