//! `ferrule convert`: configs of other proxies, converted by the real binary, run by ferrule against real servers.
//! twemproxy: keys written through nutcracker on a fixture are read back through ferrule started on the converted
//! file, so placement is identical, for redis and memcached pools.

mod common;
use common::*;
use ferrule::protocol::memcache::Command as Mc;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
    check_config(&toml).unwrap_or_else(|e| panic!("ferrule -t refused the converted file: {e}\n{toml}"));
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
    check_config(&toml).unwrap_or_else(|e| panic!("ferrule -t refused the converted file: {e}\n{toml}"));
    let admin = free_port();
    let _f = Ferrule::start_config(&with_test_proxy(&toml, admin), port, admin);
    let mut c = Client::connect(port);
    for key in &keys {
        let want = format!("VALUE {key} 0 {}\r\n{key}\r\nEND\r\n", key.len());
        assert_eq!(c.mc(&format!("get {key}\r\n"), Mc::Get), want, "{key} not where ch3 put it");
    }
}

/// Runs `ferrule -t` on a converted config: Ok when it passes, Err(stderr) when not.
fn check_config(toml: &str) -> Result<(), String> {
    let dir = tempdir("convert-check");
    let path = dir.join("ferrule.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(ferrule_bin()).arg("-t").arg("-c").arg(&path).output().expect("run ferrule -t");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Converts `text` (an mcrouter or Envoy config) with the real binary; returns the TOML and the warnings.
fn convert_text(from: &str, text: &str, extra: &[&str]) -> (String, String) {
    let dir = tempdir("convert-in");
    let input = dir.join("input");
    std::fs::write(&input, text).unwrap();
    let (ok, toml, stderr) = run_convert(from, &input, extra);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("does not validate"), "{stderr}");
    (toml, stderr)
}

fn mc_get(c: &mut Client, key: &str) -> String {
    c.mc(&format!("get {key}\r\n"), Mc::Get)
}

fn mc_hit(key: &str, value: &str) -> String {
    format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len())
}

/// The guide's PrefixSelectorRoute (written with `prefixes` / `default` and a `#` line): converted, it passes
/// `ferrule -t`, and keys written through ferrule are on the memcached that mcrouter's longest-prefix match picks.
#[test]
fn mcrouter_prefix_selector_routes_keys_to_the_servers_mcrouter_picks() {
    let backends: Vec<Proc> = (0..3).map(|_| memcached()).collect();
    let json = fill(include_str!("fixtures/mcrouter/prefix_selector.json"), 0, &backends.iter().collect::<Vec<_>>());
    let port = free_port();
    let (toml, stderr) = convert_text("mcrouter", &json, &["--listen", &format!("127.0.0.1:{port}")]);
    assert!(stderr.contains("guide's spelling") && stderr.contains("`#` comment"), "{stderr}");
    check_config(&toml).unwrap_or_else(|e| panic!("ferrule -t refused the converted file: {e}\n{toml}"));
    let admin = free_port();
    let _f = Ferrule::start_config(&with_test_proxy(&toml, admin), port, admin);
    let mut c = Client::connect(port);
    // workload1 is "a", workload2 "b", common_cache the rest.
    let keys = [("a:user:1", 0), ("apple", 0), ("b:cart:7", 1), ("banana", 1), ("c:1", 2), ("xyz", 2), ("Ab", 2)];
    for (key, _) in keys {
        assert_eq!(c.mc(&format!("set {key} 0 0 1\r\nv\r\n"), Mc::Set), "STORED\r\n", "{key}");
    }
    let mut direct: Vec<Client> = backends.iter().map(|b| Client::connect(b.port)).collect();
    for (key, server) in keys {
        for (i, d) in direct.iter_mut().enumerate() {
            let want = if i == server { mc_hit(key, "v") } else { "END\r\n".to_owned() };
            assert_eq!(mc_get(d, key), want, "{key} on server {i}");
        }
    }
}

/// The guide's replicated pool (OperationSelectorRoute: writes to every server with AllSyncRoute, gets through
/// LatestRoute): converted, it passes `ferrule -t`, writes through ferrule reach both memcached servers and gets find
/// them.
#[test]
fn mcrouter_replicated_pool_converts_and_replicates() {
    let backends: Vec<Proc> = (0..2).map(|_| memcached()).collect();
    let json = fill(include_str!("fixtures/mcrouter/operation_selector.json"), 0, &backends.iter().collect::<Vec<_>>());
    let port = free_port();
    let (toml, stderr) = convert_text("mcrouter", &json, &["--listen", &format!("127.0.0.1:{port}")]);
    assert!(!stderr.contains("not executable in this build yet"), "{stderr}");
    check_config(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let admin = free_port();
    let _f = Ferrule::start_config(&with_test_proxy(&toml, admin), port, admin);
    let mut c = Client::connect(port);
    for i in 0..20 {
        let key = format!("r{i}");
        assert_eq!(c.mc(&format!("set {key} 0 0 1\r\nv\r\n"), Mc::Set), "STORED\r\n");
        assert_eq!(mc_get(&mut c, &key), mc_hit(&key, "v"));
    }
    for b in &backends {
        let mut d = Client::connect(b.port);
        for i in 0..20 {
            let key = format!("r{i}");
            assert_eq!(mc_get(&mut d, &key), mc_hit(&key, "v"), "{key} not replicated to {}", b.port);
        }
    }
}

/// The guide's Envoy redis proxy: prefix routes over three clusters (user: -> a, session: -> b, catch-all c),
/// case-insensitive, with the writes of user: mirrored to a fourth. Converted, it passes `ferrule -t`, and keys
/// written through ferrule are on the real redis-server Envoy would have sent them to, the user: writes on the mirror.
#[test]
fn envoy_prefix_routes_put_keys_on_the_clusters_envoy_picks() {
    let backends: Vec<Proc> = (0..4).map(|_| redis_server()).collect();
    let port = free_port();
    let fixture = include_str!("fixtures/envoy/prefix_routes.yaml");
    let yaml = fill(fixture, port, &backends.iter().collect::<Vec<_>>());
    let (toml, _) = convert_text("envoy", &yaml, &[]);
    check_config(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let admin = free_port();
    let _f = Ferrule::start_config(&with_test_proxy(&toml, admin), port, admin);
    let mut c = Client::connect(port);
    // Envoy matches prefixes case-insensitively here and forwards the key as written.
    let keys = [("user:1", 0), ("USER:2", 0), ("session:9", 1), ("Session:x", 1), ("cart:3", 2), ("users", 2)];
    for (key, _) in keys {
        assert_eq!(c.redis_str(&["SET", key, "v"]), "+OK\r\n", "{key}");
        assert_eq!(c.redis_str(&["GET", key]), "$1\r\nv\r\n", "{key}");
    }
    let mut direct: Vec<Client> = backends.iter().map(|b| Client::connect(b.port)).collect();
    for (key, server) in keys {
        for (i, d) in direct.iter_mut().enumerate().take(3) {
            let want = if i == server { "$1\r\nv\r\n" } else { "$-1\r\n" };
            assert_eq!(d.redis_str(&["GET", key]), want, "{key} on server {i}");
        }
        // The mirror holds the user: writes (and nothing else); its copy is sent in the background.
        let want = if server == 0 { "$1\r\nv\r\n" } else { "$-1\r\n" };
        assert!(
            eventually(Duration::from_secs(5), || direct[3].redis_str(&["GET", key]) == want),
            "{key} on the mirror: want {want:?}"
        );
    }
}
