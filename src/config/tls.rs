//! The `tls_*` keys of listeners and pools. The files they name are read and parsed here, while the config is
//! built, so a missing, unreadable or malformed certificate or key rejects the config (and a reload keeps the
//! running one) with an error naming the key and its line. The result holds the ready rustls config; comparing
//! two configs compares the files' contents, so a reload after a certificate was replaced is a change.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fields::{Field, Section};
use super::{ConfigError, ServerConfig};
use crate::tls::{self, ClientVerification, Rejected, ServerVerification};

pub(super) const LISTENER_TLS_KEYS: &[&str] =
    &["tls_cert", "tls_key", "tls_client_ca", "tls_client_auth", "tls_handshake_timeout_ms"];
pub(super) const POOL_TLS_KEYS: &[&str] =
    &["tls", "tls_ca", "tls_server_name", "tls_cert", "tls_key", "tls_insecure_skip_verify"];

/// Default bound on a client's TLS handshake: a client that connects and never finishes it holds a connection.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5000;

/// Whether a listener with `tls_client_ca` insists on a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    /// Clients without a certificate are served; a certificate that is presented must be valid.
    Optional,
}

impl ClientAuth {
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::Required => "required",
            ClientAuth::Optional => "optional",
        }
    }
}

/// A listener's TLS: clients must handshake before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// Meaningful only with `client_ca`.
    pub client_auth: ClientAuth,
    pub handshake_timeout_ms: u64,
    pub server: Built<rustls::ServerConfig>,
}

/// A pool's TLS to its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTls {
    /// `None`: the system's CAs.
    pub ca: Option<PathBuf>,
    /// `None`: each server's host.
    pub server_name: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub client: Built<rustls::ClientConfig>,
}

impl PoolTls {
    /// The name `server`'s certificate is checked against.
    pub fn server_name(&self, server: &ServerConfig) -> rustls::pki_types::ServerName<'static> {
        let name = self.server_name.as_deref().unwrap_or(&server.host);
        // Checked when the config was built, so this cannot fail; an IP literal is the fallback of last resort.
        tls::server_name(name).unwrap_or_else(|_| rustls::pki_types::ServerName::IpAddress(server.addr.ip().into()))
    }

    /// The name a `redis_cluster` node's certificate is checked against (and sent as SNI). A node known by a host
    /// name (its `cluster-announce-hostname`, a redirect or a seed naming a host) is checked against that name:
    /// it is what the node's certificate is issued for, and `tls_server_name` cannot be right for every node of a
    /// cluster that names its nodes. A node known by its IP only is checked against `tls_server_name` when set
    /// (one certificate for the whole cluster), else against its IP (the certificate's IP SANs).
    pub fn node_name(&self, hostname: Option<&str>, ip: std::net::IpAddr) -> rustls::pki_types::ServerName<'static> {
        use rustls::pki_types::ServerName;
        let by_host = hostname
            .filter(|h| !h.is_empty() && h.parse::<std::net::IpAddr>().is_err())
            .and_then(|h| tls::server_name(h).ok());
        by_host
            .or_else(|| self.server_name.as_deref().and_then(|n| tls::server_name(n).ok()))
            .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
    }
}

/// A rustls config built from files, equal to another when the files' contents were equal.
#[derive(Clone)]
pub struct Built<T> {
    pub config: Arc<T>,
    digest: u64,
}

impl<T> PartialEq for Built<T> {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl<T> Eq for Built<T> {}

impl<T> fmt::Debug for Built<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Built({:016x})", self.digest)
    }
}

/// Files read for one TLS config, and a digest of everything in them.
#[derive(Default)]
struct Files {
    digest: Vec<u8>,
}

impl Files {
    /// Reads the file `field` names.
    fn read(&mut self, field: &Field<'_>) -> Result<(PathBuf, Vec<u8>), ConfigError> {
        let path = PathBuf::from(field.non_empty_string()?);
        let bytes = std::fs::read(&path).map_err(|e| field.error(format!("cannot read {}: {e}", path.display())))?;
        self.digest.extend_from_slice(field.key().as_bytes());
        self.digest.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.digest.extend_from_slice(&bytes);
        Ok((path, bytes))
    }

    fn digest(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.digest)
    }
}

fn in_file(field: &Field<'_>, path: &Path, why: String) -> ConfigError {
    field.error(format!("{} {why}", path.display()))
}

/// Both or neither of `tls_cert` and `tls_key`.
fn cert_and_key<'a>(s: &Section<'a>) -> Result<Option<(Field<'a>, Field<'a>)>, ConfigError> {
    match (s.get("tls_cert"), s.get("tls_key")) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (Some(cert), None) => Err(cert.error("tls_cert needs tls_key (the certificate's private key)")),
        (None, Some(key)) => Err(key.error("tls_key needs tls_cert (the certificate it belongs to)")),
        (None, None) => Ok(None),
    }
}

/// A listener's `tls_*` keys; `None` when it has none.
pub(super) fn listener(s: &Section<'_>) -> Result<Option<ListenerTls>, ConfigError> {
    let Some((cert_field, key_field)) = cert_and_key(s)? else {
        if let Some(f) = ["tls_client_ca", "tls_client_auth", "tls_handshake_timeout_ms"].iter().find_map(|k| s.get(k))
        {
            return Err(f.error("needs tls_cert and tls_key (the listener's certificate and key)"));
        }
        return Ok(None);
    };
    let mut files = Files::default();
    let (cert, cert_pem) = files.read(&cert_field)?;
    let chain = tls::certificates(&cert_pem).map_err(|why| in_file(&cert_field, &cert, why))?;
    let (key, key_pem) = files.read(&key_field)?;
    let private_key = tls::private_key(&key_pem).map_err(|why| in_file(&key_field, &key, why))?;
    let client_auth = s.parse_or("tls_client_auth", ClientAuth::Required, |f| match f.string()? {
        "required" => Ok(ClientAuth::Required),
        "optional" => Ok(ClientAuth::Optional),
        other => Err(f.error(format!("unknown tls_client_auth {other:?}; expected required or optional"))),
    })?;
    let ca_field = s.get("tls_client_ca");
    let (client_ca, clients) = match &ca_field {
        None => {
            if let Some(f) = s.get("tls_client_auth") {
                return Err(f.error("needs tls_client_ca (the CA that client certificates are checked against)"));
            }
            (None, ClientVerification::Off)
        }
        Some(f) => {
            let (path, pem) = files.read(f)?;
            let roots = tls::roots(&pem).map_err(|why| in_file(f, &path, why))?;
            let clients = match client_auth {
                ClientAuth::Required => ClientVerification::Required(roots),
                ClientAuth::Optional => ClientVerification::Optional(roots),
            };
            (Some(path), clients)
        }
    };
    let server = tls::server_config(chain, private_key, clients).map_err(|rejected| match rejected {
        Rejected::Certificate(why) => in_file(&cert_field, &cert, why),
        Rejected::Key(why) => in_file(&key_field, &key, why),
        Rejected::ClientCa(why) => match &ca_field {
            Some(f) => f.error(why),
            None => cert_field.error(why),
        },
    })?;
    let handshake_timeout_ms =
        s.parse_or("tls_handshake_timeout_ms", DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS, |f| f.integer_in(1u64, 600_000))?;
    Ok(Some(ListenerTls {
        cert,
        key,
        client_ca,
        client_auth,
        handshake_timeout_ms,
        server: Built { config: Arc::new(server), digest: files.digest() },
    }))
}

/// A pool's `tls_*` keys; `None` unless `tls = true`.
pub(super) fn pool(s: &Section<'_>, servers: &[ServerConfig]) -> Result<Option<PoolTls>, ConfigError> {
    let enabled = s.parse_or("tls", false, Field::boolean)?;
    if !enabled {
        if let Some(f) = POOL_TLS_KEYS[1..].iter().find_map(|k| s.get(k)) {
            return Err(f.error("applies only with tls = true"));
        }
        return Ok(None);
    }
    let mut files = Files::default();
    let insecure = s.parse_or("tls_insecure_skip_verify", false, Field::boolean)?;
    let ca_field = s.get("tls_ca");
    let (ca, verification) =
        match (&ca_field, insecure) {
            (Some(f), true) => return Err(f.error(
                "tls_insecure_skip_verify = true checks no certificate, so tls_ca would be ignored; remove one of them",
            )),
            (Some(f), false) => {
                let (path, pem) = files.read(f)?;
                (Some(path.clone()), ServerVerification::Roots(tls::roots(&pem).map_err(|why| in_file(f, &path, why))?))
            }
            (None, true) => (None, ServerVerification::Insecure),
            (None, false) => {
                let roots = tls::system_roots()
                    .map_err(|why| s.get("tls").map_or_else(|| s.error(why.clone()), |f| f.error(why.clone())))?;
                (None, ServerVerification::Roots(roots))
            }
        };
    let server_name = match s.get("tls_server_name") {
        Some(f) => {
            let name = f.non_empty_string()?;
            tls::server_name(name).map_err(|why| f.error(why))?;
            Some(name.to_owned())
        }
        None => {
            // Each server is checked against its own host: it must be usable as a name.
            if let Some((server, why)) =
                servers.iter().find_map(|sc| tls::server_name(&sc.host).err().map(|why| (sc, why)))
            {
                let f = s.get("servers").unwrap_or_else(|| s.get("tls").expect("tls is set"));
                return Err(f.error(format!(
                    "server {:?}: its host {why}, so it cannot be checked against a certificate; set tls_server_name",
                    server.spec
                )));
            }
            None
        }
    };
    let (cert, key, identity) = match cert_and_key(s)? {
        None => (None, None, None),
        Some((cert_field, key_field)) => {
            let (cert, cert_pem) = files.read(&cert_field)?;
            let chain = tls::certificates(&cert_pem).map_err(|why| in_file(&cert_field, &cert, why))?;
            let (key, key_pem) = files.read(&key_field)?;
            let private_key = tls::private_key(&key_pem).map_err(|why| in_file(&key_field, &key, why))?;
            let identity = (chain, private_key, cert_field, key_field);
            (Some(cert), Some(key), Some(identity))
        }
    };
    let (identity, fields) = match identity {
        Some((chain, k, cf, kf)) => (Some((chain, k)), Some((cf, kf))),
        None => (None, None),
    };
    let client = tls::client_config(verification, identity).map_err(|rejected| {
        let (why, which) = match rejected {
            Rejected::Key(why) => (why, 1),
            Rejected::Certificate(why) | Rejected::ClientCa(why) => (why, 0),
        };
        match (&fields, &cert, &key) {
            (Some((cf, _)), Some(path), _) if which == 0 => in_file(cf, path, why),
            (Some((_, kf)), _, Some(path)) => in_file(kf, path, why),
            _ => s.get("tls").map_or_else(|| s.error(why.clone()), |f| f.error(why.clone())),
        }
    })?;
    let mut digest = files.digest().to_le_bytes().to_vec();
    digest.push(insecure as u8);
    Ok(Some(PoolTls {
        ca,
        server_name,
        cert,
        key,
        insecure_skip_verify: insecure,
        client: Built { config: Arc::new(client), digest: xxhash_rust::xxh3::xxh3_64(&digest) },
    }))
}
