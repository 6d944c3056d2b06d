//! A real meta-protocol client, the `memcache` package from PyPI (it speaks mg/ms/md/ma only), running one workload
//! through ferrule over two memcached servers and straight to one memcached: set/get/delete/incr/decr, touch and
//! the remaining TTL, gets/cas, pipelined quiet multi-gets, base64 keys, a value just under 1 MiB and one over the
//! limit, missing keys, and the asyncio client's concurrent connections. Every outcome must be the same both ways.
//! scripts/test.sh installs the client in a virtualenv under target/.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

const MODULE_CHECK: &str = "from memcache import MetaCommand";

/// A Python that has the meta `memcache` client: `FERRULE_PYTHON`, else the virtualenv scripts/test.sh makes, else
/// `python3`. (Debian's python3-memcache is a different, text-protocol client with the same module name: the check
/// asks for the meta client's `MetaCommand`.)
fn python_with_meta_client() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let python = std::env::var_os("FERRULE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        }
    });
    match Command::new(&python).args(["-c", MODULE_CHECK]).output() {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "the meta `memcache` client is not installed for {}: run scripts/test.sh (it runs `python3 -m venv \
             target/pyenv && target/pyenv/bin/python -m pip install memcache==0.14.0`), or set FERRULE_PYTHON to \
             a python that has it",
            python.display()
        ),
    }
}

#[test]
fn the_memcache_meta_client_sees_through_ferrule_what_it_sees_direct() {
    let python = python_with_meta_client();
    let shards = [memcached(), memcached()];
    let direct = memcached();
    let servers: Vec<String> = shards.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("mc", port, "memcache", "mc", ""),
        redis_pool_toml("mc", &servers, "timeout_ms = 5000\n")
    );
    let _f = Ferrule::start_with(&body, port, 2);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/meta_memcache_workload.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([port.to_string(), direct.port.to_string()])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the workload failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("ok: "), "{stdout}");
    // The workload did what it says: big values round-tripped, the oversized one was refused as memcached does.
    assert!(stdout.contains("big: ('ok', (None, True))"), "{stdout}");
    assert!(stdout.contains("too big: ('ok', b'SERVER_ERROR object too large for cache\\r\\n')"), "{stdout}");
    // Keys landed on both servers: ferrule really spread the workload.
    for shard in &shards {
        let stats = Client::connect(shard.port).mc("stats\r\n", ferrule::protocol::memcache::Command::Stats);
        let items = stats
            .lines()
            .find_map(|l| l.strip_prefix("STAT curr_items "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert!(items > 10, "shard {} holds only {items} items", shard.port);
    }
}
