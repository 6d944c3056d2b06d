//! Backend faults: each fails only the requests that were on it, fast and with a clear reason.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn start_two(extra: &str) -> (Proc, u16, Ferrule, u16) {
    let good = redis_server();
    let dead_port = free_port(); // nothing listens there
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml(
            "main",
            &[format!("127.0.0.1:{}:1", good.port), format!("127.0.0.1:{dead_port}:1")],
            // Long enough that the live server's requests never time out on a loaded machine; the dead one's fail
            // at once (refused), so a request that waited for the timeout would break the 2 s bound below.
            &format!("timeout_ms = 5000\nhash = \"md5\"\n{extra}")
        )
    );
    let f = Ferrule::start(&body, port);
    (good, dead_port, f, port)
}

#[test]
fn refused_backend_fails_its_keys_fast_and_others_work() {
    let (_good, dead_port, _f, port) = start_two("");
    let mut c = Client::connect(port);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..100 {
        let t = Instant::now();
        let r = c.redis_str(&["SET", &format!("k{i}"), "v"]);
        assert!(t.elapsed() < Duration::from_secs(2));
        if r == "+OK\r\n" {
            ok += 1;
        } else {
            assert!(r.starts_with("-ERR ferrule: backend"), "{r}");
            assert!(r.contains(&dead_port.to_string()), "error names the server: {r}");
            assert!(r.contains("refused") || r.contains("unavailable"), "error gives the cause: {r}");
            failed += 1;
        }
    }
    assert!(ok > 10 && failed > 10, "ok={ok} failed={failed}");
}

#[test]
fn killed_backend_fails_pending_then_recovers_on_restart() {
    let a = redis_server();
    let b_port = free_port();
    let b = redis_server_on(b_port);
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml(
            "main",
            &[format!("127.0.0.1:{}:1", a.port), format!("127.0.0.1:{b_port}:1")],
            "timeout_ms = 500\nhash = \"md5\""
        )
    );
    let _f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    for i in 0..50 {
        assert_eq!(c.redis_str(&["SET", &format!("k{i}"), "v"]), "+OK\r\n");
    }
    b.signal(libc::SIGKILL);
    drop(b);
    let mut errors = 0;
    for i in 0..50 {
        let r = c.redis_str(&["GET", &format!("k{i}")]);
        if r.starts_with("-ERR") {
            errors += 1;
        } else {
            assert_eq!(r, "$1\r\nv\r\n");
        }
    }
    assert!(errors > 0);
    // Restart it (empty): ferrule reconnects after its back-off; keys of b are now misses, not errors.
    let _b2 = redis_server_on(b_port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let errs = (0..50).filter(|i| c.redis_str(&["GET", &format!("k{i}")]).starts_with("-ERR")).count();
        if errs == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "backend never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn stalled_backend_times_out_within_the_timeout() {
    let a = redis_server();
    let b = redis_server();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml(
            "main",
            &[format!("127.0.0.1:{}:1", a.port), format!("127.0.0.1:{}:1", b.port)],
            "timeout_ms = 300\nhash = \"md5\""
        )
    );
    let _f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    for i in 0..20 {
        assert_eq!(c.redis_str(&["SET", &format!("s{i}"), "v"]), "+OK\r\n");
    }
    b.signal(libc::SIGSTOP);
    let mut timeouts = 0;
    for i in 0..20 {
        let t = Instant::now();
        let r = c.redis_str(&["GET", &format!("s{i}")]);
        // 300 ms and the 5 ms tick, with room for a loaded machine; without the timeout it would wait for as long
        // as the server is stopped (the client's 10 s read timeout).
        assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
        if r.starts_with("-ERR") {
            assert!(r.contains("timed out"), "{r}");
            timeouts += 1;
        }
    }
    assert!(timeouts > 0);
    b.signal(libc::SIGCONT);
}

/// A fake server that answers the first request with half a reply and then stalls (a fault redis cannot produce).
#[test]
fn half_reply_then_stall_is_a_timeout_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"$10\r\nhal");
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{fake_port}:1")], "timeout_ms = 300")
    );
    let _f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    let t = Instant::now();
    let r = c.redis_str(&["GET", "x"]);
    assert!(r.starts_with("-ERR ferrule: backend") && r.contains("timed out"), "{r}");
    // timeout_ms is 300; the fake server holds the half reply for 30 s, so a hang would show (and take the client's
    // 10 s read timeout).
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(c.redis_str(&["PING"]), "+PONG\r\n");
}

/// A fake memcached that sends garbage: SERVER_ERROR naming the cause, the client connection stays usable.
#[test]
fn garbage_from_memcache_backend_is_a_server_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten().take(3) {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"WHAT IS THIS\r\n");
        }
    });
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("mc", port, "memcache", "mc", ""),
        redis_pool_toml("mc", &[format!("127.0.0.1:{fake_port}:1")], "timeout_ms = 300")
    );
    let _f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    let r = c.mc("get x\r\n", ferrule::protocol::memcache::Command::Get);
    assert!(r.starts_with("SERVER_ERROR backend"), "{r}");
    assert!(c.mc("version\r\n", ferrule::protocol::memcache::Command::Version).starts_with("VERSION"));
}
