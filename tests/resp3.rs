//! RESP3 clients through ferrule (`HELLO 3`) against real redis-server backends: the handshake as redis 7
//! answers it, backend replies in RESP3 from connections that negotiated it, ferrule's own replies in the
//! client's version, and RESP2 clients unaffected beside them.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;

fn setup(extra_listener: &str) -> (Vec<Proc>, Ferrule, u16) {
    let backends = vec![redis_server(), redis_server()];
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", extra_listener),
        redis_pool_toml("main", &servers, "hash = \"md5\"\nserver_connections = 2")
    );
    let f = Ferrule::start(&body, port);
    (backends, f, port)
}

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// The HELLO reply's fields as (key, raw value) pairs, checking the shape: `%7` / `*14` header, bulk-string keys.
fn hello_fields(reply: &[u8]) -> Vec<(String, String)> {
    let (header, mut rest) = split_line(reply);
    assert!(header == "%7" || header == "*14", "HELLO header {header:?} in {:?}", text(reply));
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let key_len = ferrule::protocol::redis::reply_len(rest).unwrap().unwrap();
        let key = text(&rest[..key_len]);
        rest = &rest[key_len..];
        let value_len = ferrule::protocol::redis::reply_len(rest).unwrap().unwrap();
        let value = text(&rest[..value_len]);
        rest = &rest[value_len..];
        assert!(key.starts_with('$'), "key {key:?}");
        fields.push((key.lines().nth(1).unwrap().to_string(), value));
    }
    fields
}

fn split_line(reply: &[u8]) -> (String, &[u8]) {
    let end = reply.windows(2).position(|w| w == b"\r\n").unwrap();
    (text(&reply[..end]), &reply[end + 2..])
}

/// Field names, in order, and the type byte of each value.
fn hello_shape(reply: &[u8]) -> Vec<(String, char)> {
    hello_fields(reply).into_iter().map(|(k, v)| (k, v.chars().next().unwrap())).collect()
}

#[test]
fn hello_is_shaped_as_redis_7_answers_it() {
    let (backends, _f, port) = setup("");
    let mut proxy = Client::connect(port);
    let mut direct = Client::connect(backends[0].port);
    for version in ["3", "2"] {
        let ours = proxy.redis(&["HELLO", version]);
        let theirs = direct.redis(&["HELLO", version]);
        assert_eq!(ours[..4], theirs[..4], "header: {} vs {}", text(&ours), text(&theirs));
        assert_eq!(hello_shape(&ours), hello_shape(&theirs), "{} vs {}", text(&ours), text(&theirs));
        let fields = hello_fields(&ours);
        assert_eq!(fields[2], ("proto".to_string(), format!(":{version}\r\n")));
        assert_eq!(fields[6], ("modules".to_string(), "*0\r\n".to_string()));
    }
    // Plain HELLO reports the version in use; errors as redis words them.
    proxy.redis(&["HELLO", "3"]);
    assert_eq!(hello_fields(&proxy.redis(&["HELLO"]))[2].1, ":3\r\n");
    for (args, expected) in [
        (&["HELLO", "4"][..], "-NOPROTO unsupported protocol version\r\n"),
        (&["HELLO", "x"], "-ERR Protocol version is not an integer or out of range\r\n"),
        (&["HELLO", "3", "FOO"], "-ERR Syntax error in HELLO option 'FOO'\r\n"),
        (&["HELLO", "3", "AUTH", "bob", "pw"], "-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
    ] {
        assert_eq!(proxy.redis_str(args), expected, "{args:?}");
        assert_eq!(direct.redis_str(args), expected, "redis itself, {args:?}");
    }
    // A refused HELLO changes nothing.
    assert_eq!(proxy.redis_str(&["GET", "missing"]), "_\r\n");
}

/// The same commands through ferrule (keys spread over two servers) and straight to one redis, both after
/// `HELLO 3`: byte for byte the same replies, RESP3 types included.
#[test]
fn resp3_client_gets_what_redis_7_sends() {
    let (_backends, _f, port) = setup("");
    let reference = redis_server();
    let mut proxy = Client::connect(port);
    let mut direct = Client::connect(reference.port);
    proxy.redis(&["HELLO", "3"]);
    direct.redis(&["HELLO", "3"]);
    let script: &[&[&str]] = &[
        &["GET", "missing"],
        &["SET", "k1", "v1"],
        &["SET", "k2", "v2"],
        &["GET", "k1"],
        &["MGET", "k1", "missing", "k2", "k3", "k4"],
        &["MSET", "k3", "3", "k4", "4", "k5", "5"],
        &["MGET", "k1", "k2", "k3", "k4", "k5", "nope"],
        &["EXISTS", "k1", "k2", "k3", "missing"],
        &["HSET", "h", "f", "1", "g", "2.5"],
        &["HGETALL", "h"],
        &["HGETALL", "missing"],
        &["SADD", "s", "a"],
        &["SMEMBERS", "s"],
        &["ZADD", "z", "1.5", "m"],
        &["ZSCORE", "z", "m"],
        &["ZSCORE", "z", "x"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["LPOP", "nolist", "2"],
        &["HINCRBYFLOAT", "h", "g", "0.1"],
        &["DEL", "k1", "k2", "k3", "k4", "k5", "missing"],
        &["PING"],
        &["PING", "hi"],
        &["ECHO", "x"],
        &["NOSUCHCOMMAND", "a"],
    ];
    for args in script {
        let ours = proxy.redis(args);
        let theirs = direct.redis(args);
        assert_eq!(text(&ours), text(&theirs), "{args:?}");
    }
    // INFO is a verbatim string in RESP3; ferrule's text is its own.
    let info = proxy.redis(&["INFO"]);
    assert!(info.starts_with(b"="), "{}", text(&info));
    assert!(text(&info).split("\r\n").nth(1).unwrap().starts_with("txt:"), "{}", text(&info));
    assert_eq!(ferrule::protocol::redis::reply_len(&info).unwrap(), Some(info.len()));
    // Back to RESP2 on the same connection.
    assert_eq!(hello_fields(&proxy.redis(&["HELLO", "2"]))[2].1, ":2\r\n");
    assert_eq!(proxy.redis_str(&["GET", "missing"]), "$-1\r\n");
    assert!(proxy.redis(&["INFO"]).starts_with(b"$"));
}

#[test]
fn resp2_and_resp3_clients_side_by_side() {
    let (_backends, _f, port) = setup("");
    let mut resp3 = Client::connect(port);
    let mut resp2 = Client::connect(port);
    resp3.redis(&["HELLO", "3"]);
    // Interleaved, and pipelined on both, so their requests are in flight on the same servers at once.
    for round in 0..20 {
        let mut out3 = Vec::new();
        let mut out2 = Vec::new();
        for i in 0..50 {
            let key = format!("r{round}k{i}");
            ferrule::protocol::redis::write_command(&mut out3, &[b"GET", key.as_bytes()]);
            ferrule::protocol::redis::write_command(&mut out2, &[b"GET", key.as_bytes()]);
            ferrule::protocol::redis::write_command(&mut out3, &[b"MGET", key.as_bytes(), b"x", b"y"]);
            ferrule::protocol::redis::write_command(&mut out2, &[b"MGET", key.as_bytes(), b"x", b"y"]);
        }
        resp3.send(&out3);
        resp2.send(&out2);
        for _ in 0..50 {
            assert_eq!(resp3.redis_reply(), b"_\r\n");
            assert_eq!(resp3.redis_reply(), b"*3\r\n_\r\n_\r\n_\r\n");
            assert_eq!(resp2.redis_reply(), b"$-1\r\n");
            assert_eq!(resp2.redis_reply(), b"*3\r\n$-1\r\n$-1\r\n$-1\r\n");
        }
    }
}

/// Requests pipelined around a HELLO that switches version: each is answered in the version in force when it
/// was sent, in order, and the write before the switch is seen by the read after it (they go to different
/// backend connections, so the read waits for the write's reply).
#[test]
fn hello_in_the_middle_of_a_pipeline() {
    let (_backends, _f, port) = setup("");
    let mut c = Client::connect(port);
    let mut out = Vec::new();
    for i in 0..100 {
        let key = format!("p{i}");
        ferrule::protocol::redis::write_command(&mut out, &[b"SET", key.as_bytes(), b"v"]);
    }
    ferrule::protocol::redis::write_command(&mut out, &[b"GET", b"missing"]);
    ferrule::protocol::redis::write_command(&mut out, &[b"HELLO", b"3"]);
    for i in 0..100 {
        let key = format!("p{i}");
        ferrule::protocol::redis::write_command(&mut out, &[b"GET", key.as_bytes()]);
    }
    ferrule::protocol::redis::write_command(&mut out, &[b"GET", b"missing"]);
    ferrule::protocol::redis::write_command(&mut out, &[b"HELLO", b"2"]);
    ferrule::protocol::redis::write_command(&mut out, &[b"GET", b"missing"]);
    c.send(&out);
    for _ in 0..100 {
        assert_eq!(c.redis_reply(), b"+OK\r\n");
    }
    assert_eq!(c.redis_reply(), b"$-1\r\n");
    assert!(c.redis_reply().starts_with(b"%7\r\n"));
    for _ in 0..100 {
        assert_eq!(c.redis_reply(), b"$1\r\nv\r\n");
    }
    assert_eq!(c.redis_reply(), b"_\r\n");
    assert!(c.redis_reply().starts_with(b"*14\r\n"));
    assert_eq!(c.redis_reply(), b"$-1\r\n");
}

#[test]
fn hello_authenticates_as_redis_does() {
    let (_backends, _f, port) = setup("auth = \"sekret\"");
    let mut c = Client::connect(port);
    assert!(c
        .redis_str(&["HELLO", "3"])
        .starts_with("-NOAUTH HELLO must be called with the client already authenticated"));
    assert_eq!(c.redis_str(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.redis_str(&["HELLO", "3", "AUTH", "default", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.redis_str(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");
    let reply = c.redis(&["HELLO", "3", "AUTH", "default", "sekret", "SETNAME", "app"]);
    assert_eq!(hello_fields(&reply)[2].1, ":3\r\n");
    assert_eq!(c.redis_str(&["GET", "k"]), "_\r\n");
}

/// A fake redis on a free port: answers `HELLO` with `hello` and every other request with `other`.
fn fake_backend(hello: &'static [u8], other: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut args = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    match ferrule::protocol::redis::parse_request(&buf, &mut args) {
                        Ok(Some(len)) => {
                            let is_hello = buf[args[0].clone()].eq_ignore_ascii_case(b"HELLO");
                            buf.drain(..len);
                            if stream.write_all(if is_hello { hello } else { other }).is_err() {
                                return;
                            }
                        }
                        Ok(None) => match stream.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        },
                        Err(_) => return,
                    }
                }
            });
        }
    });
    port
}

fn proxy_to(backend_port: u16) -> (Ferrule, u16) {
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{backend_port}:1")], "auto_eject_hosts = false")
    );
    (Ferrule::start(&body, port), port)
}

/// A backend that refuses `HELLO 3` (as redis before 6 does), or answers it with something else than a map:
/// RESP3 clients get an error naming it, RESP2 clients of the same server go on.
#[test]
fn backend_refusing_hello_3_fails_only_resp3_requests() {
    for (hello, expected) in [
        (&b"-ERR unknown command 'HELLO'\r\n"[..], "rejected HELLO 3: -ERR unknown command 'HELLO'"),
        (b"+OK\r\n", "rejected HELLO 3: +OK"),
    ] {
        let (_f, port) = proxy_to(fake_backend(hello, b"$-1\r\n"));
        let mut resp2 = Client::connect(port);
        let mut resp3 = Client::connect(port);
        resp3.redis(&["HELLO", "3"]);
        let reply = resp3.redis_str(&["GET", "k"]);
        assert!(reply.starts_with("-ERR ferrule: backend main/"), "{reply}");
        assert!(reply.contains(expected), "{reply}");
        for _ in 0..3 {
            assert_eq!(resp2.redis_str(&["GET", "k"]), "$-1\r\n");
        }
    }
}

/// A push on a RESP3 backend connection answers no request: the request it arrived for gets an error and the
/// connection is closed, rather than the push being taken for the reply (and every later reply shifted by one).
#[test]
fn unsolicited_push_ends_the_resp3_connection() {
    let (_f, port) = proxy_to(fake_backend(b"%0\r\n", b">2\r\n$10\r\ninvalidate\r\n_\r\n$-1\r\n"));
    let mut c = Client::connect(port);
    c.redis(&["HELLO", "3"]);
    let reply = c.redis_str(&["GET", "k"]);
    assert!(reply.starts_with("-ERR ferrule: backend main/"), "{reply}");
    assert!(reply.ends_with(" sent an unsolicited RESP3 push\r\n"), "{reply}");
}

/// redis-cli in RESP3 mode (`-3`) shows RESP3 types as such: a null, a map, a set, a double.
#[test]
fn redis_cli_in_resp3_mode() {
    let cli = require_binary("redis-cli", "redis-tools");
    let (_backends, _f, port) = setup("");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&cli)
            .args(["--no-raw", "-3", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    assert_eq!(run(&["PING"]), "PONG");
    assert_eq!(run(&["GET", "cli:missing"]), "(nil)");
    assert_eq!(run(&["HSET", "cli:h", "f", "v"]), "(integer) 1");
    assert_eq!(run(&["HGETALL", "cli:h"]), "1# \"f\" => \"v\"");
    assert_eq!(run(&["SADD", "cli:s", "m"]), "(integer) 1");
    assert_eq!(run(&["SMEMBERS", "cli:s"]), "1~ \"m\"");
    assert_eq!(run(&["ZADD", "cli:z", "1.5", "m"]), "(integer) 1");
    assert_eq!(run(&["ZSCORE", "cli:z", "m"]), "(double) 1.5");
    assert_eq!(run(&["MGET", "cli:missing", "cli:other"]), "1) (nil)\n2) (nil)");
}
