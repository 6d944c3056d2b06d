//! The command line: config checking, start-up failures with clear messages.

mod common;
use common::*;
use std::process::Command;

/// Writes `body` to a config file: (its directory, removed when dropped; the file).
fn write_conf(body: &str) -> (TempDir, std::path::PathBuf) {
    let dir = tempdir("startup");
    let p = dir.join("ferrule.toml");
    std::fs::write(&p, body).unwrap();
    (dir, p)
}

fn valid_body(port: u16) -> String {
    format!(
        "[proxy]\nworkers = 1\nadmin = \"off\"\n\n{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &["127.0.0.1:6379:1".to_string()], "")
    )
}

#[test]
fn test_config_accepts_valid_and_rejects_invalid_naming_key_and_line() {
    let (_ok_dir, ok) = write_conf(&valid_body(free_port()));
    let out = Command::new(ferrule_bin()).arg("-c").arg(&ok).arg("-t").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (_bad_dir, bad) =
        write_conf(&valid_body(free_port()).replace("[pools.main]\n", "[pools.main]\nhsah = \"md5\"\n"));
    let out = Command::new(ferrule_bin()).arg("-c").arg(&bad).arg("--test-config").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hsah") && err.contains("line"), "error must name the key and its line: {err}");

    let out = Command::new(ferrule_bin()).arg("-c").arg("/nonexistent/ferrule.toml").arg("-t").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ferrule.toml"));
}

#[test]
fn shipped_configs_are_valid() {
    for f in ["conf/ferrule.toml", "conf/redis.toml", "conf/memcache.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        let out = Command::new(ferrule_bin()).arg("-c").arg(&path).arg("-t").output().unwrap();
        assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn version_and_help() {
    let out = Command::new(ferrule_bin()).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ferrule "));
    let out = Command::new(ferrule_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--test-config") && help.contains("--workers"));
}

#[test]
fn too_little_locked_memory_is_explained() {
    let (_dir, conf) = write_conf(&valid_body(free_port()));
    let out = Command::new("prlimit")
        .arg("--memlock=262144:262144")
        .arg(ferrule_bin())
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("prlimit (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RLIMIT_MEMLOCK") && err.contains("io_memory_kib"), "{err}");
}

#[test]
fn port_in_use_is_explained() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_dir, conf) = write_conf(&valid_body(port));
    let out = Command::new(ferrule_bin()).arg("-c").arg(&conf).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on") && err.contains(&port.to_string()), "{err}");
}

/// Every worker starts however the executors' threads are scheduled: under CPU load a worker could reach its end of
/// the control channel before control did, and glommio never woke it when control connected ("a worker did not
/// start within 10 s", about one start in twenty under load). The test makes its own load (busy threads, stopped
/// at the end) and starts a 2-worker ferrule repeatedly; each must become ready.
#[test]
fn two_workers_start_under_cpu_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let backend = redis_server();
    for i in 0..25 {
        let port = free_port();
        let body = listener_toml("cache", port, "redis", "main", "")
            + &redis_pool_toml("main", &[format!("127.0.0.1:{}:1", backend.port)], "");
        // Panics with ferrule's log if it exits ("a worker did not start") instead of becoming ready.
        let f = Ferrule::start_with(&body, port, 2);
        assert!(f.log().contains("ready: 2 workers"), "start {i}: {}", f.log());
    }
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
}
