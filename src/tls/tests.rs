use super::testcerts::Ca;
use super::*;

#[test]
fn builds_a_server_config_from_a_matching_chain_and_key() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["localhost"], false);
    let chain = certificates(leaf.cert_pem.as_bytes()).unwrap();
    let key = private_key(leaf.key_pem.as_bytes()).unwrap();
    assert!(server_config(chain, key, ClientVerification::Required(roots(ca.pem.as_bytes()).unwrap())).is_ok());
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let ca = Ca::new("test CA");
    let (a, b) = (ca.leaf(&["localhost"], false), ca.leaf(&["localhost"], false));
    let chain = certificates(a.cert_pem.as_bytes()).unwrap();
    let key = private_key(b.key_pem.as_bytes()).unwrap();
    match server_config(chain, key, ClientVerification::Off) {
        Err(Rejected::Key(why)) => assert!(why.contains("does not match"), "{why}"),
        other => panic!("expected a key mismatch, got {:?}", other.err()),
    }
}

#[test]
fn pem_without_the_expected_blocks_is_named() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["localhost"], false);
    assert!(certificates(b"hello").unwrap_err().contains("no PEM certificate"));
    assert!(certificates(leaf.key_pem.as_bytes()).unwrap_err().contains("no PEM certificate"));
    assert!(private_key(leaf.cert_pem.as_bytes()).unwrap_err().contains("no PEM private key"));
    let cut = &leaf.cert_pem[..leaf.cert_pem.len() - 30];
    assert!(certificates(cut.as_bytes()).unwrap_err().contains("not valid PEM"), "{:?}", certificates(cut.as_bytes()));
}

#[test]
fn client_configs_with_and_without_verification() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["client"], false);
    let identity = (certificates(leaf.cert_pem.as_bytes()).unwrap(), private_key(leaf.key_pem.as_bytes()).unwrap());
    assert!(client_config(ServerVerification::Roots(roots(ca.pem.as_bytes()).unwrap()), Some(identity)).is_ok());
    assert!(client_config(ServerVerification::Insecure, None).is_ok());
}

#[test]
fn server_names_take_dns_names_and_ip_addresses() {
    assert!(matches!(server_name("cache.example.com"), Ok(ServerName::DnsName(_))));
    assert!(matches!(server_name("10.0.0.1"), Ok(ServerName::IpAddress(_))));
    assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
    assert!(server_name("not a name").is_err());
}

#[test]
fn handshake_failures_are_classified() {
    use rustls::{CertificateError as C, Error as E, InvalidMessage as M};
    assert_eq!(Failure::of(&E::InvalidMessage(M::InvalidContentType)), Failure::NotTls);
    assert_eq!(Failure::of(&E::InvalidCertificate(C::Expired)), Failure::CertExpired);
    assert_eq!(Failure::of(&E::InvalidCertificate(C::UnknownIssuer)), Failure::CertUntrusted);
    assert_eq!(Failure::of(&E::NoCertificatesPresented), Failure::CertMissing);
    assert_eq!(Failure::of(&E::AlertReceived(rustls::AlertDescription::BadCertificate)), Failure::PeerAlert);
    assert_eq!(Failure::of(&E::HandshakeNotComplete), Failure::Protocol);
    let names: std::collections::HashSet<_> = Failure::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(names.len(), Failure::ALL.len());
    for f in Failure::ALL {
        assert_eq!(Failure::ALL[f.index()], f);
    }
}

/// The whole exchange in memory: a verified handshake, then data both ways; an expired client certificate is
/// refused with the cause named.
#[test]
fn handshake_in_memory_and_an_expired_client_certificate() {
    let ca = Ca::new("test CA");
    let server_leaf = ca.leaf(&["localhost"], false);
    let run = |client_leaf: &testcerts::Leaf| -> Result<(), rustls::Error> {
        let server = server_config(
            certificates(server_leaf.cert_pem.as_bytes()).unwrap(),
            private_key(server_leaf.key_pem.as_bytes()).unwrap(),
            ClientVerification::Required(roots(ca.pem.as_bytes()).unwrap()),
        )
        .unwrap();
        let client = client_config(
            ServerVerification::Roots(roots(ca.pem.as_bytes()).unwrap()),
            Some((
                certificates(client_leaf.cert_pem.as_bytes()).unwrap(),
                private_key(client_leaf.key_pem.as_bytes()).unwrap(),
            )),
        )
        .unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), server_name("localhost").unwrap()).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            s.read_tls(&mut &wire[..]).unwrap();
            s.process_new_packets()?;
            let mut wire = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut wire).unwrap();
            }
            c.read_tls(&mut &wire[..]).unwrap();
            c.process_new_packets()?;
        }
        assert!(!s.is_handshaking() && !c.is_handshaking());
        Ok(())
    };
    run(&ca.leaf(&["client"], false)).unwrap();
    let err = run(&ca.leaf(&["client"], true)).unwrap_err();
    assert_eq!(Failure::of(&err), Failure::CertExpired, "{err}");
    let other = Ca::new("another CA");
    let err = run(&other.leaf(&["client"], false)).unwrap_err();
    assert_eq!(Failure::of(&err), Failure::CertUntrusted, "{err}");
}
