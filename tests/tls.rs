//! TLS on both sides with real peers: redis-server --tls-port and memcached -Z behind ferrule, redis-cli --tls,
//! python's ssl module and rustls clients in front; certificates made for each test (`common::certs`: a private CA,
//! server and client certificates, an expired one, another CA nobody trusts).

mod common;

use common::certs::{Ca, Pair};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// One test's certificates.
struct Pki {
    dir: TempDir,
    ca: String,
    server: Pair,
    client: Pair,
    expired_client: Pair,
    /// Signed by a CA that nothing trusts.
    stranger: Pair,
    ca_obj: Ca,
}

fn pki() -> Pki {
    let dir = tempdir("tls");
    let ca = Ca::new("ferrule test CA");
    let other = Ca::new("untrusted CA");
    Pki {
        ca: ca.write(&dir, "ca"),
        server: ca.leaf(&dir, "server", false),
        client: ca.leaf(&dir, "client", false),
        expired_client: ca.leaf(&dir, "expired", true),
        stranger: other.leaf(&dir, "stranger", false),
        ca_obj: ca,
        dir,
    }
}

/// A redis-server that speaks only TLS (`--port 0 --tls-port`); clients need a certificate when `auth_clients`.
fn redis_tls(pki: &Pki, auth_clients: bool, extra: &[&str]) -> Proc {
    let port = free_port().to_string();
    let mut args = vec!["--port", "0", "--tls-port", &port];
    args.extend([
        "--tls-cert-file",
        &pki.server.cert,
        "--tls-key-file",
        &pki.server.key,
        "--tls-ca-cert-file",
        &pki.ca,
    ]);
    args.extend(["--tls-auth-clients", if auth_clients { "yes" } else { "no" }]);
    args.extend(extra);
    redis_server_with(port.parse().unwrap(), &args, "redis-tls")
}

fn memcached_tls(pki: &Pki) -> Proc {
    let keys = format!("ssl_chain_cert={},ssl_key={}", pki.server.cert, pki.server.key);
    memcached_with(free_port(), &["-Z", "-o", &keys], "memcached-tls")
}

fn tls_listener_keys(pki: &Pki) -> String {
    format!("tls_cert = {:?}\ntls_key = {:?}\n", pki.server.cert, pki.server.key)
}

/// A blocking rustls client trusting `ca`, presenting `identity` if given.
fn tls_client(
    port: u16,
    ca: &str,
    identity: Option<&Pair>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(p) => {
            let chain = CertificateDer::pem_file_iter(&p.cert).unwrap().map(|c| c.unwrap()).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&p.key).unwrap()).unwrap()
        }
    };
    let conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    // Drive the handshake now, so that a refusal shows here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// Sends one redis command and reads one reply line (replies here are short).
fn redis_roundtrip(s: &mut impl ReadWrite, cmd: &[&str]) -> std::io::Result<String> {
    let mut req = format!("*{}\r\n", cmd.len());
    for a in cmd {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    s.flush()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let complete = match text.as_bytes().first() {
            Some(b'$') if !text.starts_with("$-1") => text.matches("\r\n").count() >= 2,
            _ => text.ends_with("\r\n"),
        };
        if complete {
            return Ok(text);
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Whether a TLS client is refused: the handshake or the first exchange fails.
fn refused(port: u16, ca: &str, identity: Option<&Pair>) -> bool {
    match tls_client(port, ca, identity) {
        Err(_) => true,
        Ok(mut s) => redis_roundtrip(&mut s, &["PING"]).is_err(),
    }
}

fn redis_cli(port: u16, pki: &Pki, args: &[&str]) -> String {
    let bin = require_binary("redis-cli", "redis-tools");
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls", "--cacert", &pki.ca])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn metric(f: &Ferrule, name: &str) -> f64 {
    let (_, body) = f.admin("GET", "/metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[test]
fn redis_clients_over_tls_and_a_plaintext_client_refused() {
    let pki = pki();
    let backend = redis_server();
    let port = free_port();
    let body = listener_toml("cache", port, "redis", "main", &tls_listener_keys(&pki))
        + &redis_pool_toml("main", &[format!("127.0.0.1:{}:1", backend.port)], "");
    let f = Ferrule::start(&body, port);

    assert_eq!(redis_cli(port, &pki, &["SET", "tls:k", "v1"]), "OK");
    assert_eq!(redis_cli(port, &pki, &["GET", "tls:k"]), "v1");

    // Python's ssl module on a raw socket, verifying the server against the test CA.
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={ca:?})
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\npy:k1\r\n$2\r\nhi\r\n*2\r\n$3\r\nGET\r\n$5\r\npy:k1\r\n")
        got = b""
        while not got.endswith(b"$2\r\nhi\r\n"):
            chunk = s.recv(4096)
            if not chunk: break
            got += chunk
        print(got.decode().replace("\r\n", "|"), s.version())
"#,
        ca = pki.ca
    );
    let out = Command::new("python3").arg("-c").arg(&script).output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("+OK|$2|hi|"), "python: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("TLSv1.3"), "{text}");

    // A plaintext client is closed without an answer, with a log line saying why; TLS clients carry on.
    let mut plain = Client::connect(port);
    plain.send(b"*1\r\n$4\r\nPING\r\n");
    assert!(plain.closed_by_peer(), "a plaintext client must be closed");
    assert!(f.wait_log("does not speak TLS", 1, Duration::from_secs(5)), "{}", f.log());
    let mut s = tls_client(port, &pki.ca, None).unwrap();
    assert_eq!(redis_roundtrip(&mut s, &["GET", "tls:k"]).unwrap(), "$2\r\nv1\r\n");

    // A large value crosses many TLS records both ways.
    let big = "x".repeat(300_000);
    assert_eq!(redis_roundtrip(&mut s, &["SET", "tls:big", &big]).unwrap(), "+OK\r\n");
    let mut c = tls_client(port, &pki.ca, None).unwrap();
    c.write_all(b"*2\r\n$3\r\nGET\r\n$7\r\ntls:big\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while got.len() < big.len() + 11 {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"$300000\r\nxxx") && got.ends_with(b"x\r\n"));

    assert!(metric(&f, "ferrule_tls_handshakes_total{side=\"client\"}") >= 4.0, "{}", f.admin("GET", "/metrics").1);
    assert_eq!(metric(&f, "ferrule_tls_handshake_failures_total{side=\"client\",cause=\"not_tls\"}"), 1.0);
    let (_, stats) = f.admin("GET", "/stats");
    assert!(stats.contains("\"tls\""), "{stats}");
}

#[test]
fn mutual_tls_accepts_trusted_clients_and_refuses_the_others() {
    let pki = pki();
    let backend = redis_server();
    let (required, optional) = (free_port(), free_port());
    let keys = tls_listener_keys(&pki) + &format!("tls_client_ca = {:?}\n", pki.ca);
    let body = listener_toml("strict", required, "redis", "main", &keys)
        + &listener_toml("lenient", optional, "redis", "main", &format!("{keys}tls_client_auth = \"optional\"\n"))
        + &redis_pool_toml("main", &[format!("127.0.0.1:{}:1", backend.port)], "");
    let f = Ferrule::start(&body, required);

    let mut ok = tls_client(required, &pki.ca, Some(&pki.client)).unwrap();
    assert_eq!(redis_roundtrip(&mut ok, &["PING"]).unwrap(), "+PONG\r\n");
    assert!(refused(required, &pki.ca, None), "no certificate must be refused");
    assert!(f.wait_log("presented no certificate", 1, Duration::from_secs(5)), "{}", f.log());
    assert!(refused(required, &pki.ca, Some(&pki.expired_client)), "an expired certificate must be refused");
    assert!(f.wait_log("certificate has expired", 1, Duration::from_secs(5)), "{}", f.log());
    assert!(refused(required, &pki.ca, Some(&pki.stranger)), "an untrusted certificate must be refused");
    assert!(f.wait_log("not issued by a trusted CA", 1, Duration::from_secs(5)), "{}", f.log());
    // The connection accepted first was not disturbed by the refusals.
    assert_eq!(redis_roundtrip(&mut ok, &["PING"]).unwrap(), "+PONG\r\n");

    let mut anonymous = tls_client(optional, &pki.ca, None).unwrap();
    assert_eq!(redis_roundtrip(&mut anonymous, &["PING"]).unwrap(), "+PONG\r\n");
    assert!(refused(optional, &pki.ca, Some(&pki.expired_client)), "optional still checks a presented certificate");

    assert_eq!(metric(&f, "ferrule_tls_handshake_failures_total{side=\"client\",cause=\"cert_missing\"}"), 1.0);
    assert_eq!(metric(&f, "ferrule_tls_handshake_failures_total{side=\"client\",cause=\"cert_expired\"}"), 2.0);
    assert_eq!(metric(&f, "ferrule_tls_handshake_failures_total{side=\"client\",cause=\"cert_untrusted\"}"), 1.0);
}

#[test]
fn tls_on_both_sides_with_auth_select_prelude_and_a_client_certificate() {
    let pki = pki();
    let backend = redis_tls(&pki, true, &["--requirepass", "s3cret"]);
    let port = free_port();
    let pool_extra = format!(
        "tls = true\ntls_ca = {:?}\ntls_cert = {:?}\ntls_key = {:?}\nredis_auth = \"s3cret\"\nredis_db = 2\n",
        pki.ca, pki.client.cert, pki.client.key
    );
    let body = listener_toml("cache", port, "redis", "main", &tls_listener_keys(&pki))
        + &redis_pool_toml("main", &[format!("127.0.0.1:{}:1", backend.port)], &pool_extra);
    let f = Ferrule::start(&body, port);
    let mut s = tls_client(port, &pki.ca, None).unwrap();
    assert_eq!(redis_roundtrip(&mut s, &["SET", "both:k", "v"]).unwrap(), "+OK\r\n");
    assert_eq!(redis_roundtrip(&mut s, &["GET", "both:k"]).unwrap(), "$1\r\nv\r\n");
    // The key went to db 2 of the TLS server: ask it directly.
    let bin = require_binary("redis-cli", "redis-tools");
    let out = Command::new(bin)
        .args(["-p", &backend.port.to_string(), "--tls", "--cacert", &pki.ca, "--cert", &pki.client.cert])
        .args(["--key", &pki.client.key, "-a", "s3cret", "--no-auth-warning", "-n", "2", "GET", "both:k"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
    assert!(metric(&f, "ferrule_tls_handshakes_total{side=\"backend\"}") >= 1.0);
    assert!(metric(&f, "ferrule_tls_connections{side=\"backend\"}") >= 1.0);
}

/// TLS 1.2 on both sides: a Python client that offers nothing newer, and a redis-server that speaks only TLS 1.2.
#[test]
fn tls_1_2_on_both_sides() {
    let pki = pki();
    let backend = redis_tls(&pki, false, &["--tls-protocols", "TLSv1.2"]);
    let port = free_port();
    let body = listener_toml("cache", port, "redis", "main", &tls_listener_keys(&pki))
        + &redis_pool_toml(
            "main",
            &[format!("127.0.0.1:{}:1", backend.port)],
            &format!("tls = true\ntls_ca = {:?}\n", pki.ca),
        );
    let _f = Ferrule::start(&body, port);
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={ca:?})
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nt12k\r\n$2\r\nhi\r\n*2\r\n$3\r\nGET\r\n$4\r\nt12k\r\n")
        got = b""
        while not got.endswith(b"$2\r\nhi\r\n"):
            chunk = s.recv(4096)
            if not chunk: break
            got += chunk
        print(got.decode().replace("\r\n", "|"), s.version())
"#,
        ca = pki.ca
    );
    let out = Command::new("python3").arg("-c").arg(&script).output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), "+OK|$2|hi| TLSv1.2", "python: {}", String::from_utf8_lossy(&out.stderr));
    // The value went through the TLS 1.2 backend: read it there directly.
    let out = Command::new(require_binary("redis-cli", "redis-tools"))
        .args(["-p", &backend.port.to_string(), "--tls", "--cacert", &pki.ca, "GET", "t12k"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi");
}

#[test]
fn a_backend_handshake_failure_is_a_backend_fault_and_probes_use_tls() {
    let pki = pki();
    // The server wants a client certificate and the pool has none: every handshake fails.
    let backend = redis_tls(&pki, true, &[]);
    let port = free_port();
    let pool = |extra: &str| {
        redis_pool_toml(
            "main",
            &[format!("127.0.0.1:{}:1", backend.port)],
            &format!("tls = true\ntls_ca = {:?}\nauto_eject_hosts = true\nserver_failure_limit = 2\nserver_retry_timeout_ms = 200\n{extra}", pki.ca),
        )
    };
    let body = listener_toml("cache", port, "redis", "main", "") + &pool("");
    let f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    let reply = c.redis_str(&["GET", "k"]);
    // TLS 1.3: the server refuses our (missing) certificate with an alert after our side of the handshake is done.
    assert!(reply.starts_with("-ERR") && reply.contains("TLS handshake failed"), "{reply}");
    assert!(reply.contains("CertificateRequired"), "{reply}");
    assert!(reply.contains(&format!("main/127.0.0.1:{}", backend.port)), "the error names the server: {reply}");
    assert!(
        eventually(Duration::from_secs(5), || {
            let _ = c.redis_str(&["GET", "k"]);
            f.log().contains("ejecting")
        }),
        "{}",
        f.log()
    );
    assert!(metric(&f, "ferrule_tls_handshake_failures_total{side=\"backend\"") >= 1.0);

    // Give the pool its client certificate: the reload reconnects, the probe (over TLS) restores the server.
    f.write_config(
        &(listener_toml("cache", port, "redis", "main", "")
            + &pool(&format!("tls_cert = {:?}\ntls_key = {:?}\n", pki.client.cert, pki.client.key))),
    );
    assert_eq!(f.admin("POST", "/reload").0, 200);
    assert!(eventually(Duration::from_secs(10), || c.redis_str(&["SET", "k", "v"]) == "+OK\r\n"), "{}", f.log());
    assert!(f.log().contains("answered its probe"), "{}", f.log());
}

/// Sessions wait for a quiet client holding no buffer; over TLS, plaintext rustls already decrypted must end that
/// wait, or requests that arrived are never answered. The first write leaves half a request in the session's
/// 16 KiB input buffer; the second, one TLS record, completes it, fills the buffer exactly with whole requests
/// and has 10 more: those stay decrypted inside rustls while the socket has nothing more to read.
#[test]
fn requests_rustls_already_decrypted_are_answered() {
    let pki = pki();
    let backend = redis_server();
    let port = free_port();
    let body = listener_toml("cache", port, "redis", "main", &tls_listener_keys(&pki))
        + &redis_pool_toml("main", &[format!("127.0.0.1:{}:1", backend.port)], "");
    let _f = Ferrule::start(&body, port);
    let mut s = tls_client(port, &pki.ca, None).unwrap();
    assert_eq!(redis_roundtrip(&mut s, &["SET", "tls:pipe:key", "v"]).unwrap(), "+OK\r\n");
    let request = b"*2\r\n$3\r\nGET\r\n$12\r\ntls:pipe:key\r\n";
    assert_eq!(request.len(), 32);
    let reply = b"$1\r\nv\r\n";
    let read_replies = |s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>, count: usize| {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.len() < reply.len() * count {
            let n = s.read(&mut buf).unwrap_or_else(|e| panic!("{} of {count} replies: {e}", got.len() / reply.len()));
            assert!(n > 0, "closed after {} of {count} replies", got.len() / reply.len());
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, reply.repeat(count));
    };
    let stream = request.repeat(100 + 1 + 411 + 10);
    // 100 requests and half of one: 3216 bytes, leaving 13168 of the buffer.
    let first = 100 * 32 + 16;
    s.write_all(&stream[..first]).unwrap();
    s.flush().unwrap();
    read_replies(&mut s, 100);
    std::thread::sleep(Duration::from_millis(100));
    // The other half, 411 requests (13168 bytes: the buffer is full, all of it whole requests) and 10 more.
    s.write_all(&stream[first..]).unwrap();
    s.flush().unwrap();
    read_replies(&mut s, 1 + 411 + 10);
}

#[test]
fn memcache_over_tls_on_both_sides() {
    let out = Command::new(require_binary("memcached", "memcached")).arg("-h").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("enable-ssl"), "this memcached has no TLS (-Z)");
    let pki = pki();
    let backend = memcached_tls(&pki);
    let port = free_port();
    let body = listener_toml("mc", port, "memcache", "main", &tls_listener_keys(&pki))
        + &format!("[pools.main]\nservers = [\"127.0.0.1:{}:1\"]\ntls = true\ntls_ca = {:?}\n", backend.port, pki.ca);
    let _f = Ferrule::start(&body, port);
    let mut s = tls_client(port, &pki.ca, None).unwrap();
    s.write_all(b"set tls:mc 0 0 5\r\nhello\r\nget tls:mc\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&got), "STORED\r\nVALUE tls:mc 0 5\r\nhello\r\nEND\r\n");
}

#[test]
fn a_reload_serves_a_new_certificate_and_refuses_an_unreadable_one() {
    let pki = pki();
    let backend = redis_server();
    let port = free_port();
    let body = listener_toml("cache", port, "redis", "main", &tls_listener_keys(&pki))
        + &redis_pool_toml("main", &[format!("127.0.0.1:{}:1", backend.port)], "");
    let f = Ferrule::start(&body, port);
    let mut before = tls_client(port, &pki.ca, None).unwrap();
    assert_eq!(redis_roundtrip(&mut before, &["PING"]).unwrap(), "+PONG\r\n");

    // Rotate: a certificate from a new CA, written over the same paths.
    let new_dir = tempdir("tls-rotated");
    let new_ca = Ca::new("rotated CA");
    let new_ca_path = new_ca.write(&new_dir, "ca");
    let rotated = new_ca.leaf(&new_dir, "server", false);
    std::fs::copy(&rotated.cert, &pki.server.cert).unwrap();
    std::fs::copy(&rotated.key, &pki.server.key).unwrap();
    assert_eq!(f.admin("POST", "/reload").0, 200, "{}", f.log());
    let mut after = tls_client(port, &new_ca_path, None).expect("the new certificate is served");
    assert_eq!(redis_roundtrip(&mut after, &["PING"]).unwrap(), "+PONG\r\n");
    assert!(refused(port, &pki.ca, None), "the old certificate is no longer served");
    // A connection made before the rotation goes on.
    assert_eq!(redis_roundtrip(&mut before, &["PING"]).unwrap(), "+PONG\r\n");

    // An unreadable certificate rejects the reload; the running one stays.
    std::fs::write(&pki.server.cert, "not a certificate").unwrap();
    let (code, reply) = f.admin("POST", "/reload");
    assert_ne!(code, 200);
    assert!(reply.contains("tls_cert") && reply.contains("no PEM certificate"), "{reply}");
    let mut still = tls_client(port, &new_ca_path, None).expect("the running certificate stays");
    assert_eq!(redis_roundtrip(&mut still, &["PING"]).unwrap(), "+PONG\r\n");
    let _ = &pki.ca_obj;
    let _ = &pki.dir;
}
