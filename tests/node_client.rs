//! ioredis, the most used Node client, through ferrule against three real redis-servers and straight to one redis
//! (tests/clients/ioredis_workload.js). scripts/test.sh installs it into target/node_modules (pinned version).

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

fn node_modules() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/node_modules");
    let has_node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_node || !dir.join("ioredis").exists() {
        panic!(
            "ioredis is not installed: run scripts/test.sh (it runs `npm install --no-save --prefix target \
             ioredis@5.9.3`; it needs node 18+ and npm, Debian: apt-get install nodejs npm)"
        );
    }
    dir
}

#[test]
fn ioredis_workload() {
    let modules = node_modules();
    let backends: Vec<Proc> = (0..3).map(|_| redis_server()).collect();
    let specs: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", "users = [{ name = \"app\", password = \"app-pw\" }]"),
        redis_pool_toml("main", &specs, "hash = \"md5\"\nhash_tag = \"{}\"")
    );
    let _f = Ferrule::start(&body, port);
    run(&modules, port, &["app", "app-pw"]);
    // The same workload straight to one redis: what it asserts is what redis does.
    let reference = redis_server();
    run(&modules, reference.port, &[]);
}

fn run(modules: &PathBuf, port: u16, auth: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ioredis_workload.js");
    let out = Command::new("timeout")
        .args(["60", "node"])
        .arg(&script)
        .arg(port.to_string())
        .args(auth)
        .env("NODE_PATH", modules)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.trim() == "ok", "ioredis on port {port} failed:\n{stdout}\n{stderr}");
}
