//! The `tls_*` keys: files read at parse time, errors naming key and line, contents compared on reload.

use super::*;
use crate::tls::testcerts::{Ca, TempDir};

const MINIMAL: &str = r#"
[listeners.cache]
listen = "127.0.0.1:22121"
protocol = "redis"
route = "main"

[pools.main]
servers = ["127.0.0.1:6381:1"]
"#;

/// MINIMAL with `listener` lines after the listener header and `pool` lines after the pool header (line 3 and
/// the line after the pool header).
fn config(listener: &str, pool: &str) -> String {
    MINIMAL.replacen("[listeners.cache]\n", &format!("[listeners.cache]\n{listener}"), 1).replacen(
        "[pools.main]\n",
        &format!("[pools.main]\n{pool}"),
        1,
    )
}

fn rejected(text: &str, key: &str, line: usize, fragment: &str) {
    let err = Config::parse(text).expect_err("config should be rejected");
    let shown = err.to_string();
    assert_eq!(err.key(), Some(key), "{shown}");
    assert_eq!(err.line(), Some(line), "{shown}");
    assert!(shown.contains(fragment), "expected {fragment:?} in: {shown}");
}

struct Files {
    dir: TempDir,
    cert: String,
    key: String,
    ca: String,
}

fn files() -> Files {
    let dir = TempDir::new("config-tls");
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["localhost", "127.0.0.1"], false);
    Files {
        cert: dir.write("server.pem", &leaf.cert_pem),
        key: dir.write("server.key", &leaf.key_pem),
        ca: dir.write("ca.pem", &ca.pem),
        dir,
    }
}

#[test]
fn a_tls_listener_and_pool_parse_and_round_trip() {
    let f = files();
    let text = config(
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\ntls_client_auth = \"optional\"\n",
            f.cert, f.key, f.ca
        ),
        &format!("tls = true\ntls_ca = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n", f.ca, f.cert, f.key),
    );
    let cfg = Config::parse(&text).unwrap();
    let lt = cfg.listeners[0].tls.as_ref().unwrap();
    assert_eq!(lt.client_auth, ClientAuth::Optional);
    assert_eq!(lt.handshake_timeout_ms, DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS);
    let pt = cfg.pools[0].tls.as_ref().unwrap();
    assert!(!pt.insecure_skip_verify);
    assert_eq!(pt.server_name(&cfg.pools[0].servers[0]), rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap());
    let shown = cfg.to_redacted_toml();
    assert!(shown.contains("tls_client_auth = \"optional\""), "{shown}");
    assert_eq!(Config::parse(&shown).unwrap(), cfg, "{shown}");
}

#[test]
fn client_auth_defaults_to_required_and_plain_configs_have_no_tls() {
    let f = files();
    let text = config(&format!("tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\n", f.cert, f.key, f.ca), "");
    let cfg = Config::parse(&text).unwrap();
    assert_eq!(cfg.listeners[0].tls.as_ref().unwrap().client_auth, ClientAuth::Required);
    assert!(cfg.pools[0].tls.is_none());
    let plain = Config::parse(MINIMAL).unwrap();
    assert!(plain.listeners[0].tls.is_none() && plain.pools[0].tls.is_none());
    assert!(!plain.to_redacted_toml().contains("tls_"), "{}", plain.to_redacted_toml());
}

#[test]
fn missing_and_malformed_files_are_named_with_key_and_line() {
    let f = files();
    let missing = f.dir.0.join("nope.pem").display().to_string();
    rejected(
        &config(&format!("tls_cert = {missing:?}\ntls_key = {:?}\n", f.key), ""),
        "listeners.cache.tls_cert",
        3,
        "cannot read",
    );
    rejected(
        &config(&format!("tls_cert = {:?}\ntls_key = {:?}\n", f.key, f.key), ""),
        "listeners.cache.tls_cert",
        3,
        "no PEM certificate",
    );
    rejected(
        &config(&format!("tls_cert = {:?}\ntls_key = {:?}\n", f.cert, f.cert), ""),
        "listeners.cache.tls_key",
        4,
        "no PEM private key",
    );
    let other = Ca::new("other").leaf(&["localhost"], false);
    let other_key = f.dir.write("other.key", &other.key_pem);
    rejected(
        &config(&format!("tls_cert = {:?}\ntls_key = {other_key:?}\n", f.cert), ""),
        "listeners.cache.tls_key",
        4,
        "does not match",
    );
    rejected(&config("", &format!("tls = true\ntls_ca = {missing:?}\n")), "pools.main.tls_ca", 9, "cannot read");
}

#[test]
fn keys_that_need_other_keys() {
    let f = files();
    rejected(&config(&format!("tls_cert = {:?}\n", f.cert), ""), "listeners.cache.tls_cert", 3, "needs tls_key");
    rejected(
        &config(&format!("tls_client_ca = {:?}\n", f.ca), ""),
        "listeners.cache.tls_client_ca",
        3,
        "needs tls_cert",
    );
    rejected(
        &config(&format!("tls_cert = {:?}\ntls_key = {:?}\ntls_client_auth = \"optional\"\n", f.cert, f.key), ""),
        "listeners.cache.tls_client_auth",
        5,
        "needs tls_client_ca",
    );
    rejected(
        &config(
            &format!(
                "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\ntls_client_auth = \"maybe\"\n",
                f.cert, f.key, f.ca
            ),
            "",
        ),
        "listeners.cache.tls_client_auth",
        6,
        "expected required or optional",
    );
    rejected(&config("", &format!("tls_ca = {:?}\n", f.ca)), "pools.main.tls_ca", 8, "only with tls = true");
    rejected(
        &config("", "tls = false\ntls_insecure_skip_verify = true\n"),
        "pools.main.tls_insecure_skip_verify",
        9,
        "only with tls = true",
    );
    rejected(
        &config("", &format!("tls = true\ntls_insecure_skip_verify = true\ntls_ca = {:?}\n", f.ca)),
        "pools.main.tls_ca",
        10,
        "remove one of them",
    );
    rejected(
        &config("", "tls = true\ntls_insecure_skip_verify = true\ntls_server_name = \"a b\"\n"),
        "pools.main.tls_server_name",
        10,
        "not a DNS name",
    );
    rejected(&config("", "tls = \"yes\"\n"), "pools.main.tls", 8, "expected true or false");
}

#[test]
fn a_replaced_certificate_makes_a_different_config() {
    let f = files();
    let text = config(
        &format!("tls_cert = {:?}\ntls_key = {:?}\n", f.cert, f.key),
        "tls = true\ntls_insecure_skip_verify = true\n",
    );
    let before = Config::parse(&text).unwrap();
    assert_eq!(Config::parse(&text).unwrap(), before, "the same files make the same config");
    let leaf = Ca::new("new CA").leaf(&["localhost"], false);
    f.dir.write("server.pem", &leaf.cert_pem);
    f.dir.write("server.key", &leaf.key_pem);
    assert_ne!(Config::parse(&text).unwrap(), before, "new files make a new config");
}

#[test]
fn the_tls_example_config_parses() {
    let dir = TempDir::new("conf-tls");
    let ca = Ca::new("example CA");
    let server = ca.leaf(&["redis.internal"], false);
    let client = ca.leaf(&["ferrule"], false);
    dir.write("server.pem", &server.cert_pem);
    dir.write("server.key", &server.key_pem);
    dir.write("client.pem", &client.cert_pem);
    dir.write("client.key", &client.key_pem);
    dir.write("ca.pem", &ca.pem);
    let text = include_str!("../../conf/tls.toml").replace("/etc/ferrule/tls/", &format!("{}/", dir.0.display()));
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("conf/tls.toml: {e}"));
    assert!(cfg.warnings().is_empty());
    assert_eq!(cfg.listeners.iter().filter(|l| l.tls.is_some()).count(), 2);
    assert_eq!(Config::parse(&cfg.to_redacted_toml()).unwrap(), cfg);
}

#[test]
fn a_cluster_pool_takes_tls_and_names_nodes_by_host_name_then_tls_server_name_then_ip() {
    let f = files();
    let text = format!(
        "[listeners.cache]\nlisten = \"127.0.0.1:22121\"\nprotocol = \"redis\"\nroute = \"c\"\n\n[pools.c]\n\
         kind = \"redis_cluster\"\nservers = [\"127.0.0.1:7000\"]\ntls = true\ntls_ca = {:?}\n",
        f.ca
    );
    let cfg = Config::parse(&text).unwrap();
    let tls = cfg.pool("c").unwrap().tls.clone().expect("tls on a cluster pool");
    // The running config shows it, and parses back to the same config.
    let shown = cfg.to_redacted_toml();
    assert!(shown.contains("tls = true"), "{shown}");
    assert_eq!(Config::parse(&shown).unwrap(), cfg);
    use rustls::pki_types::ServerName;
    let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
    let dns = |n: &str| ServerName::try_from(n.to_owned()).unwrap();
    assert_eq!(tls.node_name(Some("node-1.example"), ip), dns("node-1.example"));
    assert_eq!(tls.node_name(Some("10.0.0.8"), ip), ServerName::IpAddress(ip.into()));
    assert_eq!(tls.node_name(None, ip), ServerName::IpAddress(ip.into()));
    let named = Config::parse(&text.replace("tls = true\n", "tls = true\ntls_server_name = \"cluster.example\"\n"))
        .unwrap()
        .pool("c")
        .unwrap()
        .tls
        .clone()
        .unwrap();
    assert_eq!(named.node_name(None, ip), dns("cluster.example"));
    assert_eq!(named.node_name(Some(""), ip), dns("cluster.example"));
    assert_eq!(named.node_name(Some("node-1.example"), ip), dns("node-1.example"));
}
