//! redis-py, the most used Python client, through ferrule: its default protocol (RESP3 since redis-py 8) and
//! protocol=3 and protocol=2 explicitly. scripts/test.sh installs it in a virtualenv under target/.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

/// A Python that has redis-py: `FERRULE_PYTHON`, else the virtualenv scripts/test.sh makes, else `python3`.
fn python_with_redis_py() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let python = std::env::var_os("FERRULE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        }
    });
    let found = Command::new(&python).args(["-c", "import redis"]).output();
    match found {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "redis-py is not installed for {}: run scripts/test.sh (it makes target/pyenv with \
             `python3 -m venv target/pyenv && target/pyenv/bin/pip install redis`), or set FERRULE_PYTHON to a \
             python that has it",
            python.display()
        ),
    }
}

#[test]
fn redis_py_ping_get_set_mget_in_resp3_and_resp2() {
    let python = python_with_redis_py();
    let backends = [redis_server(), redis_server()];
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &servers, "hash = \"md5\"")
    );
    let _f = Ferrule::start(&body, port);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/redis_py_smoke.py");
    let out = Command::new(&python).arg(&script).arg(port.to_string()).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-py failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("protocol=default: ok, proto 3"), "{stdout}");
    assert!(stdout.contains("protocol=3: ok, proto 3"), "{stdout}");
    assert!(stdout.contains("protocol=2: ok, proto 2"), "{stdout}");
}

/// Two redis servers behind ferrule (hash tags on), for the workloads.
fn two_server_ferrule() -> ([Proc; 2], Ferrule, u16) {
    let backends = [redis_server(), redis_server()];
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &servers, "hash = \"md5\"\nhash_tag = \"{}\"")
    );
    (backends, Ferrule::start(&body, port), port)
}

fn run_workload(python: &PathBuf, port: u16, tag: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/redis_py_workload.py");
    let out = Command::new("timeout")
        .arg("120")
        .arg(python)
        .arg(&script)
        .args([&port.to_string(), tag])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "redis-py ({tag}) failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The realistic workload (tests/clients/redis_py_workload.py: pipelines, hashes, a transaction with hash tags,
/// WATCH, a blocking pop fed by a producer, pub/sub with a pattern, scripts, a full SCAN) with redis-py's default
/// RESP3, protocol=2 and its asyncio client: straight to one redis, then through ferrule over two, the same
/// assertions passing both ways.
#[test]
fn redis_py_workload_through_ferrule_as_on_one_redis() {
    let python = python_with_redis_py();
    let reference = redis_server();
    let direct = run_workload(&python, reference.port, "direct");
    let (_backends, _f, port) = two_server_ferrule();
    let through = run_workload(&python, port, "ferrule");
    for label in ["resp3-default", "resp2", "asyncio"] {
        assert!(direct.contains(&format!("{label}: ok")), "{direct}");
        assert!(through.contains(&format!("{label}: ok")), "{through}");
    }
}
