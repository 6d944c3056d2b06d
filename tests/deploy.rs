//! The deployment files in deploy/: the systemd unit passes `systemd-analyze verify` (with its binary path pointed
//! at this build), and the compose setup's ferrule config serves both protocols when its compose services are
//! real servers on loopback. (The image itself needs a Docker daemon, which the tests do not assume.)

mod common;
use common::*;
use ferrule::protocol::memcache::Command as Mc;
use std::process::Command;

const UNIT: &str = include_str!("../deploy/ferrule.service");
const COMPOSE: &str = include_str!("../deploy/docker-compose.yml");
const COMPOSE_CONFIG: &str = include_str!("../deploy/ferrule-compose.toml");

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let bin = require_binary("systemd-analyze", "systemd");
    let dir = tempdir("deploy-unit");
    let unit = dir.join("ferrule.service");
    // The unit names the installed binary; verify checks that it exists and is executable.
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/ferrule", ferrule_bin().to_str().unwrap())).unwrap();
    let out = Command::new(bin).arg("verify").arg(&unit).output().expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on keys it ignores (a misspelt key, a bad value): those are only on stderr.
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    for line in ["Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "LimitMEMLOCK=64M", "User=ferrule"] {
        assert!(UNIT.lines().any(|l| l == line), "the unit lacks {line}");
    }
}

#[test]
fn the_compose_config_serves_both_protocols_with_its_services_on_loopback() {
    // What compose publishes is what the config listens on, and io_uring's two needs are there.
    for port in ["22121:22121", "22122:22122", "127.0.0.1:22222:22222"] {
        assert!(COMPOSE.contains(&format!("- \"{port}\"")), "docker-compose.yml does not publish {port}");
    }
    for listen in ["listen = \"0.0.0.0:22121\"", "listen = \"0.0.0.0:22122\"", "admin = \"0.0.0.0:22222\""] {
        assert!(COMPOSE_CONFIG.contains(listen), "ferrule-compose.toml lacks {listen}");
    }
    assert!(COMPOSE.contains("seccomp=unconfined") && COMPOSE.contains("memlock:"), "{COMPOSE}");

    // The compose services, as real servers on loopback ports.
    let (ra, rb, ma, mb) = (redis_server(), redis_server(), memcached(), memcached());
    let (redis_port, mc_port, admin_port) = (free_port(), free_port(), free_port());
    let mut config = COMPOSE_CONFIG
        .replace("0.0.0.0:22121", &format!("127.0.0.1:{redis_port}"))
        .replace("0.0.0.0:22122", &format!("127.0.0.1:{mc_port}"))
        .replace("0.0.0.0:22222", &format!("127.0.0.1:{admin_port}"));
    for (service, port, real) in
        [("redis-a", 6379, &ra), ("redis-b", 6379, &rb), ("memcached-a", 11211, &ma), ("memcached-b", 11211, &mb)]
    {
        let written = format!("\"{service}:{port}:1\"");
        assert!(config.contains(&written), "ferrule-compose.toml lacks {written}");
        config = config.replace(&written, &format!("\"127.0.0.1:{}:1\"", real.port));
    }
    let f = Ferrule::start_config(&config, redis_port, admin_port);
    let mut r = Client::connect(redis_port);
    let mut m = Client::connect(mc_port);
    // Keys that differ at the front: fnv1a_64 (the pools' default hash, as twemproxy's) spreads keys that differ only
    // in their last bytes over a narrow range of the ring, often one server's.
    for i in 0..100 {
        let key = format!("{i}:compose");
        assert_eq!(r.redis_str(&["SET", &key, "v"]), "+OK\r\n");
        assert_eq!(r.redis_str(&["GET", &key]), "$1\r\nv\r\n");
        assert_eq!(m.mc(&format!("set {key} 0 0 1\r\nv\r\n"), Mc::Set), "STORED\r\n");
        assert_eq!(m.mc(&format!("get {key}\r\n"), Mc::Get), format!("VALUE {key} 0 1\r\nv\r\nEND\r\n"));
    }
    // Both servers of each pool got keys.
    for p in [&ra, &rb] {
        assert_ne!(Client::connect(p.port).redis_str(&["DBSIZE"]), ":0\r\n", "redis {} got no key\n{config}", p.port);
    }
    for p in [&ma, &mb] {
        let stats = Client::connect(p.port).mc("stats\r\n", Mc::Stats);
        assert!(!stats.contains("STAT curr_items 0\r\n"), "memcached {} got no key\n{config}\n{stats}", p.port);
    }
    assert_eq!(f.admin("GET", "/health"), (200, "ok\n".to_string()));
}
