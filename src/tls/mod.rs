//! TLS material and vocabulary, free of I/O: rustls configs built from PEM bytes (the config layer reads the
//! files, the I/O layer drives the connections) and the names of the ways a handshake fails.
//!
//! rustls with its `ring` provider: a memory-safe, well-kept library that builds with a C compiler alone (aws-lc-rs
//! would need cmake and clang), and whose connections are state machines over byte buffers, which is what a
//! completion-based ring needs: ciphertext comes in through the connection's receive path and goes out through its
//! send path, and rustls never touches a socket.

mod counters;
mod verify;

pub use counters::{TlsSide, TlsStats};

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// TLS 1.3 and 1.2, as the issue asks (1.0 and 1.1 are not offered by rustls at all).
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Sessions each worker's listener remembers for resumption (per worker: nothing is shared between cores).
const SERVER_SESSIONS: usize = 1024;
/// Sessions each worker's backend side remembers, per server name.
const CLIENT_SESSIONS: usize = 256;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file, in order (a chain: the leaf first).
pub fn certificates(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not valid PEM: {}", pem_error(&e)))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)".into());
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn private_key(pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem_bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => "holds no PEM private key (no -----BEGIN ... PRIVATE KEY----- block)".into(),
        e => format!("is not a valid PEM private key: {}", pem_error(&e)),
    })
}

fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("a block is not closed by {}", String::from_utf8_lossy(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => format!("bad block start {:?}", String::from_utf8_lossy(line)),
        pem::Error::Base64Decode(why) => format!("bad base64: {why}"),
        e => format!("{e:?}"),
    }
}

/// A store of trusted CA certificates from a PEM bundle.
pub fn roots(pem_bytes: &[u8]) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates(pem_bytes)? {
        store.add(cert).map_err(|e| format!("holds a CA certificate that cannot be used: {e}"))?;
    }
    Ok(store)
}

/// The operating system's trusted CAs (through rustls-native-certs: the same store openssl and curl use, so a
/// private CA an operator installed there is trusted too).
pub fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
        return Err(format!("no system CA certificates found{why}; name a CA bundle with tls_ca"));
    }
    Ok(store)
}

/// Whether a listener asks clients for a certificate.
pub enum ClientVerification {
    Off,
    /// A client without a certificate is served; one with a certificate must present a valid one.
    Optional(RootCertStore),
    Required(RootCertStore),
}

/// What [`server_config`] or [`client_config`] could not use: the certificate or the key.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    Certificate(String),
    Key(String),
    ClientCa(String),
}

/// A listener's rustls config.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    clients: ClientVerification,
) -> Result<ServerConfig, Rejected> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| Rejected::Certificate(e.to_string()))?;
    let optional = matches!(clients, ClientVerification::Optional(_));
    let builder = match clients {
        ClientVerification::Off => builder.with_no_client_auth(),
        ClientVerification::Optional(roots) | ClientVerification::Required(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if optional { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| Rejected::ClientCa(e.to_string()))?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => Rejected::Key("does not match the certificate in tls_cert".into()),
        e => Rejected::Key(format!("cannot be used with the certificate: {e}")),
    })?;
    // Large replies go out as soon as they are written; the session bounds what it queues.
    config.send_half_rtt_data = false;
    Ok(config)
}

/// How a pool checks its servers' certificates.
pub enum ServerVerification {
    Roots(RootCertStore),
    /// `tls_insecure_skip_verify`: any certificate for any name (signatures are still checked, so the handshake is
    /// well formed; the peer's identity is not).
    Insecure,
}

/// A pool's rustls config; `identity` is the client certificate chain and key, when the servers ask for one.
pub fn client_config(
    servers: ServerVerification,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, Rejected> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| Rejected::Certificate(e.to_string()))?;
    let builder = match servers {
        ServerVerification::Roots(roots) => builder.with_root_certificates(roots),
        ServerVerification::Insecure => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verify::AnyServer(provider())))
        }
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => Rejected::Key("does not match the certificate in tls_cert".into()),
            e => Rejected::Key(format!("cannot be used with the certificate: {e}")),
        }),
    }
}

/// A worker's own copy of a listener config: the session cache is per worker, so resuming a session never takes a
/// lock another core holds.
pub fn for_worker_server(shared: &ServerConfig) -> Arc<ServerConfig> {
    let mut own = shared.clone();
    own.session_storage = ServerSessionMemoryCache::new(SERVER_SESSIONS);
    Arc::new(own)
}

/// A worker's own copy of a pool config (per-worker resumption cache).
pub fn for_worker_client(shared: &ClientConfig) -> Arc<ClientConfig> {
    let mut own = shared.clone();
    own.resumption = Resumption::in_memory_sessions(CLIENT_SESSIONS);
    Arc::new(own)
}

/// The name a backend's certificate is checked against: `tls_server_name`, else the host of the server string (an
/// IP address is checked against the certificate's IP SANs).
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|_| format!("{name:?} is not a DNS name or an IP address"))
}

/// Why a handshake failed, as counted in the stats (`tls_handshake_failures{cause=...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The peer spoke something that is not TLS (a plaintext client on a TLS listener).
    NotTls,
    Timeout,
    /// The peer closed or reset the connection before the handshake completed.
    Closed,
    CertExpired,
    /// Not issued by a trusted CA (or for another name or purpose).
    CertUntrusted,
    /// A client certificate is required and none was presented.
    CertMissing,
    /// The peer sent an alert (e.g. it rejected our certificate).
    PeerAlert,
    /// Anything else wrong with the handshake (no common version or cipher suite, bad messages).
    Protocol,
}

impl Failure {
    pub const ALL: [Failure; 8] = [
        Failure::NotTls,
        Failure::Timeout,
        Failure::Closed,
        Failure::CertExpired,
        Failure::CertUntrusted,
        Failure::CertMissing,
        Failure::PeerAlert,
        Failure::Protocol,
    ];

    /// The `cause` label in /metrics and the key in /stats.
    pub fn name(self) -> &'static str {
        match self {
            Failure::NotTls => "not_tls",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::CertExpired => "cert_expired",
            Failure::CertUntrusted => "cert_untrusted",
            Failure::CertMissing => "cert_missing",
            Failure::PeerAlert => "peer_alert",
            Failure::Protocol => "protocol",
        }
    }

    pub fn index(self) -> usize {
        Failure::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }

    /// The cause of a rustls error during a handshake.
    pub fn of(e: &rustls::Error) -> Failure {
        use rustls::{CertificateError as C, Error as E, InvalidMessage as M};
        match e {
            E::InvalidMessage(M::InvalidContentType) => Failure::NotTls,
            E::InvalidCertificate(
                C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
            ) => Failure::CertExpired,
            E::InvalidCertificate(_) => Failure::CertUntrusted,
            E::NoCertificatesPresented => Failure::CertMissing,
            E::AlertReceived(_) => Failure::PeerAlert,
            _ => Failure::Protocol,
        }
    }
}

/// A handshake failure and its cause, for logs and error replies: "TLS handshake failed: <why>".
pub fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E, InvalidMessage as M};
    match e {
        E::InvalidMessage(M::InvalidContentType) => "the peer does not speak TLS (plaintext?)".into(),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "the peer's certificate has expired".into(),
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the peer's certificate is not valid yet".into()
        }
        E::InvalidCertificate(C::UnknownIssuer) => "the peer's certificate is not issued by a trusted CA".into(),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the peer's certificate is not valid for the expected name".into()
        }
        E::NoCertificatesPresented => "the client presented no certificate (one is required)".into(),
        E::AlertReceived(alert) => format!("the peer refused the handshake (alert: {alert:?})"),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod testcerts;
