//! A backend connection out of step with its request queue: a fake middlebox between ferrule and a real server
//! injects a well-formed reply nobody asked for, under pipelined load from several clients with unique key=value
//! pairs. Every reply a client gets must be its own (the right value) or an error naming the server; the fault is
//! counted, and the server is used again afterwards.
//!
//! The injected replies are of a type the requests around them cannot get (an integer or `+OK` among SET/GET/MGET
//! replies, `STORED`/`DELETED` among memcached gets): an extra reply of the very type expected (a bulk string among
//! GETs) can only be caught at the next mismatch, which is what docs/architecture.md says.

mod common;
use common::*;
use ferrule::protocol::memcache::{self, Command};
use ferrule::protocol::redis;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
enum Wire {
    Redis,
    Memcache,
}

/// The length of the complete reply at the start of `buf` (the test traffic's replies only).
fn frame(wire: Wire, buf: &[u8]) -> Option<usize> {
    match wire {
        Wire::Redis => redis::reply_len(buf).ok().flatten(),
        Wire::Memcache => {
            let retrieval = buf.starts_with(b"VALUE ") || buf.starts_with(b"END");
            memcache::reply_len(buf, if retrieval { Command::Get } else { Command::Set }).ok().flatten()
        }
    }
}

/// A forwarder between ferrule and a real server that, after `first` replies and then every `every` replies
/// (counted over all its connections), slips one of `inject` into the reply stream at a reply boundary.
struct Injector {
    port: u16,
    injected: Arc<AtomicUsize>,
}

fn injector(upstream: u16, wire: Wire, inject: &'static [&'static [u8]], first: usize, every: usize) -> Injector {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let injected = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(AtomicUsize::new(0));
    let done = injected.clone();
    std::thread::spawn(move || {
        for down in listener.incoming().flatten() {
            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
            let (mut down_r, mut up_w) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut down_r, &mut up_w);
                let _ = up_w.shutdown(Shutdown::Both);
                let _ = down_r.shutdown(Shutdown::Both);
            });
            let (mut up_r, mut down_w) = (up, down);
            let (replies, injected) = (replies.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut buf, mut tmp) = (Vec::new(), vec![0u8; 64 * 1024]);
                loop {
                    let n = match up_r.read(&mut tmp) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&tmp[..n]);
                    let (mut out, mut at) = (Vec::new(), 0);
                    while let Some(len) = frame(wire, &buf[at..]) {
                        out.extend_from_slice(&buf[at..at + len]);
                        at += len;
                        let seen = replies.fetch_add(1, Ordering::SeqCst) + 1;
                        let k = injected.load(Ordering::SeqCst);
                        if k < inject.len() && seen >= first + k * every {
                            out.extend_from_slice(inject[k]);
                            injected.store(k + 1, Ordering::SeqCst);
                        }
                    }
                    buf.drain(..at);
                    if down_w.write_all(&out).is_err() {
                        break;
                    }
                }
                let _ = down_w.shutdown(Shutdown::Both);
                let _ = up_r.shutdown(Shutdown::Both);
            });
        }
    });
    Injector { port, injected }
}

/// What the clients saw.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    /// Error replies naming a server.
    errors: usize,
    /// Of those, the ones that give the cause: a reply that cannot answer the request.
    caught: usize,
    wrong: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.caught += other.caught;
        self.wrong.extend(other.wrong);
    }

    /// An error reply made by ferrule for a failed server: fine, as long as it names one.
    fn error(&mut self, reply: &str, what: &str) -> bool {
        let named = reply.starts_with("-ERR ferrule: backend main/127.0.0.1:")
            || reply.starts_with("SERVER_ERROR backend mc/127.0.0.1:");
        if named {
            self.errors += 1;
            self.caught += usize::from(reply.contains("cannot answer"));
        } else if reply.starts_with('-') || reply.starts_with("SERVER_ERROR") {
            self.wrong.push(format!("{what}: an error that names no server: {reply}"));
        }
        named || reply.starts_with('-') || reply.starts_with("SERVER_ERROR")
    }
}

fn bulk(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

/// One redis client: batches of SET k v; GET k for fresh keys, and an MGET over the batch's keys.
fn redis_client(port: u16, id: usize, batches: usize) -> Tally {
    let mut c = Client::connect(port);
    let mut t = Tally::default();
    for b in 0..batches {
        let keys: Vec<String> = (0..8).map(|i| format!("k:{id}:{b}:{i}")).collect();
        let value = |k: &str| format!("v{}", &k[1..]);
        let mut out = Vec::new();
        for k in &keys {
            redis::write_command(&mut out, &[b"SET", k.as_bytes(), value(k).as_bytes()]);
            redis::write_command(&mut out, &[b"GET", k.as_bytes()]);
        }
        let mut mget: Vec<&[u8]> = vec![b"MGET"];
        mget.extend(keys.iter().map(|k| k.as_bytes()));
        redis::write_command(&mut out, &mget);
        c.send(&out);
        // A key whose SET failed may or may not have been written: nil is then a right answer too.
        let mut unsure = Vec::new();
        for k in &keys {
            let set = String::from_utf8_lossy(&c.redis_reply()).into_owned();
            if set == "+OK\r\n" {
                t.ok += 1;
            } else if t.error(&set, &format!("SET {k}")) {
                unsure.push(k.clone());
            } else {
                t.wrong.push(format!("SET {k}: {set:?}"));
            }
            let get = String::from_utf8_lossy(&c.redis_reply()).into_owned();
            if get == bulk(&value(k)) || (get == "$-1\r\n" && unsure.contains(k)) {
                t.ok += 1;
            } else if !t.error(&get, &format!("GET {k}")) {
                t.wrong.push(format!("GET {k}: {get:?}"));
            }
        }
        let reply = c.redis_reply();
        let text = String::from_utf8_lossy(&reply).into_owned();
        let mut elems = Vec::new();
        if redis::array_elements(&reply, &mut elems) && elems.len() == keys.len() {
            let fine = keys.iter().zip(&elems).all(|(k, r)| {
                let e = String::from_utf8_lossy(&reply[r.clone()]).into_owned();
                e == bulk(&value(k)) || (e == "$-1\r\n" && unsure.contains(k))
            });
            if fine {
                t.ok += 1;
            } else {
                t.wrong.push(format!("MGET {keys:?}: {text:?}"));
            }
        } else if !t.error(&text, "MGET") {
            t.wrong.push(format!("MGET {keys:?}: {text:?}"));
        }
    }
    t
}

/// One memcached client: batches of set k v; get k, and one multi-get over the batch's keys.
fn memcache_client(port: u16, id: usize, batches: usize) -> Tally {
    let mut c = Client::connect(port);
    let mut t = Tally::default();
    for b in 0..batches {
        let keys: Vec<String> = (0..8).map(|i| format!("k:{id}:{b}:{i}")).collect();
        let value = |k: &str| format!("v{}", &k[1..]);
        let item = |k: &str| format!("VALUE {k} 0 {}\r\n{}\r\n", value(k).len(), value(k));
        let mut out = String::new();
        for k in &keys {
            out.push_str(&format!("set {k} 0 0 {}\r\n{}\r\nget {k}\r\n", value(k).len(), value(k)));
        }
        out.push_str(&format!("get {}\r\n", keys.join(" ")));
        c.send(out.as_bytes());
        let mut unsure = Vec::new();
        for k in &keys {
            let set = String::from_utf8_lossy(&c.mc_reply(Command::Set)).into_owned();
            if set == "STORED\r\n" {
                t.ok += 1;
            } else if t.error(&set, &format!("set {k}")) {
                unsure.push(k.clone());
            } else {
                t.wrong.push(format!("set {k}: {set:?}"));
            }
            let get = String::from_utf8_lossy(&c.mc_reply(Command::Get)).into_owned();
            if get == format!("{}END\r\n", item(k)) || (get == "END\r\n" && unsure.contains(k)) {
                t.ok += 1;
            } else if !t.error(&get, &format!("get {k}")) {
                t.wrong.push(format!("get {k}: {get:?}"));
            }
        }
        let reply = c.mc_reply(Command::Get);
        let text = String::from_utf8_lossy(&reply).into_owned();
        // Each key's item, or nothing for a key whose set failed; in request order.
        let mut rest = text.as_str();
        let mut fine = true;
        for k in &keys {
            let it = item(k);
            if let Some(after) = rest.strip_prefix(it.as_str()) {
                rest = after;
            } else if !unsure.contains(k) {
                fine = false;
            }
        }
        if fine && rest == "END\r\n" {
            t.ok += 1;
        } else if !t.error(&text, "multi-get") {
            t.wrong.push(format!("get {keys:?}: {text:?}"));
        }
    }
    t
}

/// The Prometheus counter `name` for the server on `port`.
fn server_counter(f: &Ferrule, name: &str, port: u16) -> u64 {
    let (code, body) = f.admin("GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    let needle = format!(":{port}\"");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Runs `clients` clients of `batches` batches each at once and adds up what they saw.
fn load(clients: usize, batches: usize, client: fn(u16, usize, usize) -> Tally, port: u16) -> Tally {
    let handles: Vec<_> = (0..clients).map(|id| std::thread::spawn(move || client(port, id, batches))).collect();
    let mut total = Tally::default();
    for h in handles {
        total.add(h.join().expect("client thread"));
    }
    total
}

fn check(t: &Tally, inj: &Injector, injections: usize) {
    eprintln!("ok {} errors {} caught {} wrong {}", t.ok, t.errors, t.caught, t.wrong.len());
    assert!(t.wrong.is_empty(), "{} wrong replies, first: {:?}", t.wrong.len(), &t.wrong[..t.wrong.len().min(5)]);
    assert_eq!(inj.injected.load(Ordering::SeqCst), injections, "every injection happened");
    // An injection while no request was written fails none (it is counted below, as every one is).
    assert!(t.caught >= 1, "the requests on the broken connection were failed with the cause: {t:?}");
    assert!(t.ok > 10 * t.errors, "only the requests on the broken connection failed: {t:?}");
}

#[test]
fn an_unsolicited_redis_reply_closes_the_connection_and_no_client_gets_a_wrong_value() {
    let (injected, direct) = (redis_server(), redis_server());
    const INJECT: &[&[u8]] = &[b":1\r\n", b"+OK\r\n", b":0\r\n"];
    let inj = injector(injected.port, Wire::Redis, INJECT, 300, 1500);
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml(
            "main",
            &[format!("127.0.0.1:{}:1", inj.port), format!("127.0.0.1:{}:1", direct.port)],
            "timeout_ms = 2000\nhash = \"md5\"\n"
        )
    );
    let f = Ferrule::start(&body, port);
    let started = Instant::now();
    let t = load(4, 150, redis_client, port);
    assert!(started.elapsed() < Duration::from_secs(60));
    check(&t, &inj, INJECT.len());
    let faults = server_counter(&f, "ferrule_server_protocol_faults_total", inj.port);
    assert!(faults >= INJECT.len() as u64, "protocol faults counted: {faults}");
    assert_eq!(server_counter(&f, "ferrule_server_protocol_faults_total", direct.port), 0);
    assert!(f.log().contains("cannot answer"), "the fault is logged with its cause");
    // The server is used again: a fresh client's requests on it all succeed.
    let after = load(1, 20, redis_client, port);
    assert!(after.wrong.is_empty() && after.errors == 0, "{after:?}");
}

#[test]
fn an_unsolicited_memcached_reply_closes_the_connection_and_no_client_gets_a_wrong_value() {
    let (injected, direct) = (memcached(), memcached());
    const INJECT: &[&[u8]] = &[b"STORED\r\n", b"DELETED\r\n", b"TOUCHED\r\n"];
    let inj = injector(injected.port, Wire::Memcache, INJECT, 300, 1500);
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("mc", port, "memcache", "mc", ""),
        redis_pool_toml(
            "mc",
            &[format!("127.0.0.1:{}:1", inj.port), format!("127.0.0.1:{}:1", direct.port)],
            "timeout_ms = 2000\nhash = \"md5\"\n"
        )
    );
    let f = Ferrule::start(&body, port);
    let started = Instant::now();
    let t = load(4, 150, memcache_client, port);
    assert!(started.elapsed() < Duration::from_secs(60));
    check(&t, &inj, INJECT.len());
    let faults = server_counter(&f, "ferrule_server_protocol_faults_total", inj.port);
    assert!(faults >= INJECT.len() as u64, "protocol faults counted: {faults}");
    let after = load(1, 20, memcache_client, port);
    assert!(after.wrong.is_empty() && after.errors == 0, "{after:?}");
}

/// With nothing in flight, any byte from the server is a reply nobody asked for (no request to blame it on).
#[test]
fn a_reply_while_nothing_was_asked_closes_the_connection() {
    let real = redis_server();
    const INJECT: &[&[u8]] = &[b"$3\r\nzzz\r\n"];
    // Injected right after the first reply: an unpipelined client has nothing else in flight then.
    let inj = injector(real.port, Wire::Redis, INJECT, 1, 1);
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{}:1", inj.port)], "timeout_ms = 2000\n")
    );
    let f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["SET", "a", "1"]), "+OK\r\n");
    assert!(eventually(Duration::from_secs(5), || {
        server_counter(&f, "ferrule_server_protocol_faults_total", inj.port) == 1
    }));
    assert!(f.log().contains("sent data nobody asked for"));
    // The next request goes out on a new connection and gets its own reply, not the injected one.
    assert_eq!(c.redis_str(&["GET", "a"]), "$1\r\n1\r\n");
}

/// A server that answers the AUTH prelude with something other than `+OK` is not talking to us about AUTH: the
/// connection is closed and the client's request fails with the cause, never receiving a reply meant for AUTH.
#[test]
fn a_prelude_answered_with_anything_but_ok_closes_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten().take(4) {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            // +QUEUED for AUTH, then a value for the GET: the GET must not get "v".
            let _ = s.write_all(b"+QUEUED\r\n$1\r\nv\r\n");
        }
    });
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{fake_port}:1")], "timeout_ms = 500\nredis_auth = \"pw\"\n")
    );
    let f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    let r = c.redis_str(&["GET", "x"]);
    assert!(
        r.starts_with(&format!(
            "-ERR ferrule: backend main/127.0.0.1:{fake_port} sent a reply that cannot answer AUTH/SELECT"
        )),
        "{r}"
    );
    assert!(server_counter(&f, "ferrule_server_protocol_faults_total", fake_port) >= 1);
}
