//! `ferrule convert`: configs of other proxies, converted by the real binary, run by ferrule against real servers.
//! twemproxy: keys written through nutcracker on a fixture are read back through ferrule started on the converted
//! file, so placement is identical, for redis and memcached pools.

mod common;
use common::*;
use ferrule::protocol::memcache::Command as Mc;
use std::path::Path;
use std::process::Command;

/// Runs `ferrule convert` on `input`; returns (exit ok, stdout, stderr).
fn run_convert(from: &str, input: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(ferrule_bin())
        .args(["convert", "--from", from])
        .arg(input)
        .args(extra)
        .output()
        .expect("run ferrule convert");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The converted config with one worker and an admin endpoint on a free port, so tests can run side by side.
fn with_test_proxy(toml: &str, admin_port: u16) -> String {
    assert!(toml.contains("\n[proxy]\n"), "{toml}");
    toml.replacen("\n[proxy]\n", &format!("\n[proxy]\nworkers = 1\nadmin = \"127.0.0.1:{admin_port}\"\n"), 1)
}

/// A fixture with its listen port and three servers' ports filled in.
fn fill(template: &str, listen: u16, servers: &[&Proc]) -> String {
    let mut text = template.replace("${LISTEN}", &listen.to_string());
    for (i, server) in servers.iter().enumerate() {
        text = text.replace(&format!("${{SERVER{i}}}"), &server.port.to_string());
    }
    text
}

/// Converts the nutcracker config `yaml` with the real binary and starts ferrule on it (on nutcracker's port).
fn ferrule_on_converted(yaml: &str, port: u16) -> Ferrule {
    let dir = tempdir("convert");
    let input = dir.join("nutcracker.yml");
    std::fs::write(&input, yaml).unwrap();
    let output = dir.join("ferrule.toml");
    let stats = free_port().to_string();
    let (ok, stdout, stderr) =
        run_convert("twemproxy", &input, &["--stats-port", &stats, "-o", output.to_str().unwrap()]);
    assert!(ok, "convert failed: {stderr}");
    assert!(stdout.is_empty(), "-o writes the file, not stdout: {stdout}");
    assert!(!stderr.contains("does not validate"), "{stderr}");
    let toml = std::fs::read_to_string(&output).unwrap();
    let admin = free_port();
    Ferrule::start_config(&with_test_proxy(&toml, admin), port, admin)
}

fn redis_placement_matches(fixture: &str) {
    let backends: Vec<Proc> = (0..3).map(|_| redis_server()).collect();
    let port = free_port();
    let yaml = fill(fixture, port, &backends.iter().collect::<Vec<_>>());
    let keys: Vec<String> = (0..300).map(|i| format!("user:{{{}}}:{i}", i % 37)).collect();
    {
        let _nc = nutcracker(&yaml, port);
        let mut c = Client::connect(port);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(c.redis_str(&["SET", key, &i.to_string()]), "+OK\r\n");
        }
    }
    // Every server got some keys, or the test would not tell placements apart.
    // (The named fixture SELECTs database 2.)
    for b in &backends {
        let mut direct = Client::connect(b.port);
        let sizes: Vec<String> =
            ["0", "2"].iter().map(|db| (direct.redis_str(&["SELECT", db]), direct.redis_str(&["DBSIZE"])).1).collect();
        assert!(sizes.iter().any(|s| s != ":0\r\n"), "{fixture}: server {} got no keys", b.port);
    }
    let _f = ferrule_on_converted(&yaml, port);
    let mut c = Client::connect(port);
    for (i, key) in keys.iter().enumerate() {
        let v = i.to_string();
        assert_eq!(c.redis_str(&["GET", key]), format!("${}\r\n{v}\r\n", v.len()), "{key} placed differently\n{yaml}");
    }
}

/// The guide's config: fnv1a_64 over ketama (with redis_db left at 0, timeouts, ejection settings).
#[test]
fn twemproxy_guide_config_places_keys_as_nutcracker() {
    redis_placement_matches(include_str!("fixtures/twemproxy/guide.yml"));
}

/// modula with weights 2/1/3 and a hash tag.
#[test]
fn twemproxy_modula_config_places_keys_as_nutcracker() {
    redis_placement_matches(include_str!("fixtures/twemproxy/modula.yml"));
}

/// Named servers with a weight and redis_db 2: the converted file keeps the names (the ring is built from them) and
/// the database nutcracker SELECTed.
#[test]
fn twemproxy_named_servers_config_places_keys_as_nutcracker() {
    redis_placement_matches(include_str!("fixtures/twemproxy/named.yml"));
}

#[test]
fn twemproxy_memcache_config_places_keys_as_nutcracker() {
    let backends: Vec<Proc> = (0..3).map(|_| memcached()).collect();
    let port = free_port();
    let yaml = fill(include_str!("fixtures/twemproxy/memcache.yml"), port, &backends.iter().collect::<Vec<_>>());
    let keys: Vec<String> = (0..300).map(|i| format!("session:{i}")).collect();
    {
        let _nc = nutcracker(&yaml, port);
        let mut c = Client::connect(port);
        for (i, key) in keys.iter().enumerate() {
            let v = i.to_string();
            assert_eq!(c.mc(&format!("set {key} 0 0 {}\r\n{v}\r\n", v.len()), Mc::Set), "STORED\r\n");
        }
    }
    let _f = ferrule_on_converted(&yaml, port);
    let mut c = Client::connect(port);
    for (i, key) in keys.iter().enumerate() {
        let v = i.to_string();
        let want = format!("VALUE {key} 0 {}\r\n{v}\r\nEND\r\n", v.len());
        assert_eq!(c.mc(&format!("get {key}\r\n"), Mc::Get), want, "{key} placed differently");
    }
}

#[test]
fn convert_errors_name_file_and_line_and_exit_non_zero() {
    let dir = tempdir("convert-err");
    let input = dir.join("bad.yml");
    std::fs::write(&input, "alpha:\n  listen: 127.0.0.1:22121\n  hash: fnv\n  servers:\n   - 127.0.0.1:6379:1\n")
        .unwrap();
    let (ok, stdout, stderr) = run_convert("twemproxy", &input, &[]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("bad.yml: line 3, column 9: pool \"alpha\": hash: unknown hash \"fnv\""), "{stderr}");
    // Without -o the config goes to stdout, warnings to stderr.
    std::fs::write(
        &input,
        "alpha:\n  listen: 127.0.0.1:22121\n  tcpkeepalive: true\n  servers:\n   - 127.0.0.1:6379:1\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run_convert("twemproxy", &input, &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("[pools.alpha]"), "{stdout}");
    assert!(stderr.contains("warning: pool \"alpha\": tcpkeepalive: true"), "{stderr}");
}

/// mcrouter is not installed here: the keys are put where mcrouter's Ch3 puts them (the hash is unit-tested against
/// mcrouter's own vectors) straight into memcached, and must be found through ferrule on the converted config.
#[test]
fn mcrouter_sharded_pool_reads_keys_where_ch3_put_them() {
    let backends: Vec<Proc> = (0..3).map(|_| memcached()).collect();
    let json = fill(include_str!("fixtures/mcrouter/sharded.json"), 0, &backends.iter().collect::<Vec<_>>());
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let mut direct: Vec<Client> = backends.iter().map(|b| Client::connect(b.port)).collect();
    for key in &keys {
        let server = ferrule::hash::mcrouter::ch3(key.as_bytes(), 3);
        assert_eq!(direct[server].mc(&format!("set {key} 0 0 {}\r\n{key}\r\n", key.len()), Mc::Set), "STORED\r\n");
    }
    let dir = tempdir("convert-mcrouter");
    let input = dir.join("mcrouter.json");
    std::fs::write(&input, &json).unwrap();
    let port = free_port();
    let (ok, toml, stderr) = run_convert("mcrouter", &input, &["--listen", &format!("127.0.0.1:{port}")]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("`#` comment"), "{stderr}");
    let admin = free_port();
    let _f = Ferrule::start_config(&with_test_proxy(&toml, admin), port, admin);
    let mut c = Client::connect(port);
    for key in &keys {
        let want = format!("VALUE {key} 0 {}\r\n{key}\r\nEND\r\n", key.len());
        assert_eq!(c.mc(&format!("get {key}\r\n"), Mc::Get), want, "{key} not where ch3 put it");
    }
}

#[test]
fn mcrouter_routes_are_refused_with_the_route_named() {
    let dir = tempdir("convert-mcrouter-routes");
    let input = dir.join("mcrouter.json");
    std::fs::write(&input, include_str!("fixtures/mcrouter/operation_selector.json")).unwrap();
    let (ok, stdout, stderr) = run_convert("mcrouter", &input, &[]);
    assert!(!ok && stdout.is_empty());
    assert!(
        stderr.contains("route OperationSelectorRoute needs ferrule routes (issue 13), not converted yet"),
        "{stderr}"
    );
}
