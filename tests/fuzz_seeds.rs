//! The fuzz targets' checks (fuzz/src, docs/fuzzing.md) run over their committed seeds as plain tests, so the
//! checks compile, pass clippy and hold on real traffic with every `cargo test`, without the instrumented build.

#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use std::path::Path;

fn replay_seeds(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails the {target} check", path.display());
        }
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
}

#[test]
fn redis_request_seeds() {
    replay_seeds("redis_request", fuzz::redis_request::check);
}

#[test]
fn redis_reply_seeds() {
    replay_seeds("redis_reply", fuzz::redis_reply::check);
}

#[test]
fn memcache_request_seeds() {
    replay_seeds("memcache_request", fuzz::memcache_request::check);
}

#[test]
fn memcache_reply_seeds() {
    replay_seeds("memcache_reply", fuzz::memcache_reply::check);
}

#[test]
fn cluster_seeds() {
    replay_seeds("cluster", fuzz::cluster::check);
}

#[test]
fn config_seeds() {
    replay_seeds("config", fuzz::config::check);
}
