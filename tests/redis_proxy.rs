//! Redis through ferrule against real redis-server backends.

mod common;
use common::*;

fn setup(extra_pool: &str, extra_listener: &str) -> (Vec<Proc>, Ferrule, u16) {
    let backends = vec![redis_server(), redis_server()];
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    // md5 unless the test picks a hash: twemproxy's fnv1a_64 (the default) can put every one of a test's short,
    // similar keys on one of two servers, and then split and CROSSSLOT paths would go untested.
    let hash = if extra_pool.contains("hash =") { "" } else { "hash = \"md5\"\n" };
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", extra_listener),
        redis_pool_toml("main", &servers, &format!("{hash}{extra_pool}"))
    );
    let f = Ferrule::start(&body, port);
    (backends, f, port)
}

#[test]
fn get_set_and_keys_spread_over_servers() {
    // md5: twemproxy's fnv1a_64 can put all of these similar short keys on one of two servers.
    let (backends, _f, port) = setup("hash = \"md5\"", "");
    let mut c = Client::connect(port);
    for i in 0..200 {
        assert_eq!(c.redis_str(&["SET", &format!("key:{i}"), &format!("v{i}")]), "+OK\r\n");
    }
    for i in 0..200 {
        let v = format!("v{i}");
        assert_eq!(c.redis_str(&["GET", &format!("key:{i}")]), format!("${}\r\n{v}\r\n", v.len()));
    }
    let counts: Vec<i64> = backends
        .iter()
        .map(|b| {
            let mut d = Client::connect(b.port);
            let r = d.redis_str(&["DBSIZE"]);
            r.trim_start_matches(':').trim().parse().unwrap()
        })
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 200);
    assert!(counts.iter().all(|&n| n > 40), "keys should spread over both servers: {counts:?}");
}

#[test]
fn pipelined_replies_come_back_in_order() {
    let (_b, _f, port) = setup("", "");
    let mut c = Client::connect(port);
    let mut out = Vec::new();
    for i in 0..1000 {
        let k = format!("p{i}");
        let v = format!("{i}");
        ferrule::protocol::redis::write_command(&mut out, &[b"SET", k.as_bytes(), v.as_bytes()]);
        ferrule::protocol::redis::write_command(&mut out, &[b"GET", k.as_bytes()]);
        ferrule::protocol::redis::write_command(&mut out, &[b"PING"]);
    }
    c.send(&out);
    for i in 0..1000 {
        assert_eq!(c.redis_reply(), b"+OK\r\n");
        let v = format!("{i}");
        assert_eq!(String::from_utf8(c.redis_reply()).unwrap(), format!("${}\r\n{v}\r\n", v.len()));
        assert_eq!(c.redis_reply(), b"+PONG\r\n");
    }
}

#[test]
fn multi_key_commands_split_and_merge() {
    let (_b, _f, port) = setup("", "");
    let mut c = Client::connect(port);
    let mut args = vec!["MSET".to_string()];
    for i in 0..20 {
        args.push(format!("m{i}"));
        args.push(format!("val{i}"));
    }
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    assert_eq!(c.redis_str(&a), "+OK\r\n");
    let mut mget = vec!["MGET".to_string()];
    for i in 0..20 {
        mget.push(format!("m{i}"));
    }
    mget.push("missing".into());
    let a: Vec<&str> = mget.iter().map(|s| s.as_str()).collect();
    let mut expect = String::from("*21\r\n");
    for i in 0..20 {
        let v = format!("val{i}");
        expect.push_str(&format!("${}\r\n{v}\r\n", v.len()));
    }
    expect.push_str("$-1\r\n");
    assert_eq!(c.redis_str(&a), expect);
    // EXISTS counts every key, including repeats (twemproxy sends all keys to the first key's server).
    assert_eq!(c.redis_str(&["EXISTS", "m0", "m1", "m2", "m3", "m0", "nope"]), ":5\r\n");
    assert_eq!(c.redis_str(&["TOUCH", "m0", "m1", "m2", "m3"]), ":4\r\n");
    assert_eq!(c.redis_str(&["DEL", "m0", "m1", "m2", "m3", "nope"]), ":4\r\n");
    assert_eq!(c.redis_str(&["UNLINK", "m4", "m5", "m6"]), ":3\r\n");
    assert_eq!(c.redis_str(&["EXISTS", "m0", "m4"]), ":0\r\n");
}

#[test]
fn same_server_commands_are_checked_not_misrouted() {
    let (_b, _f, port) = setup("hash_tag = \"{}\"", "");
    let mut c = Client::connect(port);
    // Keys sharing a hash tag land on one server and work.
    c.redis_str(&["SADD", "{u1}:a", "x", "y"]);
    c.redis_str(&["SADD", "{u1}:b", "y", "z"]);
    assert_eq!(c.redis_str(&["SINTER", "{u1}:a", "{u1}:b"]), "*1\r\n$1\r\ny\r\n");
    // Keys on different servers are refused with CROSSSLOT.
    let mut refused = 0;
    for i in 0..20 {
        let r = c.redis_str(&["SUNIONSTORE", &format!("dst{i}"), &format!("a{i}"), &format!("b{i}")]);
        if r.starts_with("-CROSSSLOT") {
            refused += 1;
        } else {
            assert!(r.starts_with(':'), "unexpected {r}");
        }
    }
    assert!(refused > 0, "some key pairs must straddle servers");
    assert!(c.redis_str(&["EVAL", "return 1", "2", "{x}a", "{x}b"]).starts_with(':'));
}

#[test]
fn local_and_unsupported_commands() {
    let (_b, _f, port) = setup("", "");
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["PING"]), "+PONG\r\n");
    assert_eq!(c.redis_str(&["PING", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(c.redis_str(&["ECHO", "hey"]), "$3\r\nhey\r\n");
    assert_eq!(c.redis_str(&["SELECT", "0"]), "+OK\r\n");
    assert!(c.redis_str(&["SELECT", "3"]).starts_with("-ERR"));
    let r = c.redis_str(&["KEYS", "*"]);
    assert!(r.starts_with("-ERR KEYS is not supported by ferrule"), "{r}");
    let r = c.redis_str(&["MONITOR"]);
    assert!(r.starts_with("-ERR MONITOR is not supported by ferrule"), "{r}");
    let r = c.redis_str(&["NOSUCHCMD", "x"]);
    assert!(r.starts_with("-ERR unknown command 'NOSUCHCMD'"), "{r}");
    let r = c.redis_str(&["GET"]);
    assert_eq!(r, "-ERR wrong number of arguments for 'get' command\r\n");
    // The connection is still usable after all those errors.
    assert_eq!(c.redis_str(&["SET", "after", "1"]), "+OK\r\n");
    // Inline commands work too.
    c.send(b"GET after\r\n");
    assert_eq!(c.redis_reply(), b"$1\r\n1\r\n");
    assert_eq!(c.redis_str(&["QUIT"]), "+OK\r\n");
    assert!(c.closed_by_peer());
}

#[test]
fn malformed_stream_gets_protocol_error_and_close() {
    let (_b, _f, port) = setup("", "");
    let mut c = Client::connect(port);
    c.send(b"*1\r\n$abc\r\n");
    let r = String::from_utf8(c.redis_reply()).unwrap();
    assert!(r.starts_with("-ERR Protocol error:"), "{r}");
    assert!(c.closed_by_peer());
    // Other clients are untouched.
    let mut d = Client::connect(port);
    assert_eq!(d.redis_str(&["PING"]), "+PONG\r\n");
}

#[test]
fn auth_on_listener() {
    let (_b, _f, port) = setup("", "auth = \"s3cret\"");
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["GET", "x"]), "-NOAUTH Authentication required.\r\n");
    assert!(c.redis_str(&["AUTH", "wrong"]).starts_with("-WRONGPASS"));
    assert_eq!(c.redis_str(&["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["SET", "x", "1"]), "+OK\r\n");
}

#[test]
fn backend_auth_and_db_are_sent_on_connect() {
    let b = redis_server();
    let mut admin = Client::connect(b.port);
    assert_eq!(admin.redis_str(&["CONFIG", "SET", "requirepass", "pw"]), "+OK\r\n");
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{}:1", b.port)], "redis_auth = \"pw\"\nredis_db = 3")
    );
    let _f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["SET", "dbkey", "v"]), "+OK\r\n");
    assert_eq!(admin.redis_str(&["AUTH", "pw"]), "+OK\r\n");
    assert_eq!(admin.redis_str(&["SELECT", "3"]), "+OK\r\n");
    assert_eq!(admin.redis_str(&["GET", "dbkey"]), "$1\r\nv\r\n");
}

#[test]
fn many_clients_share_backend_connections() {
    let (backends, _f, port) = setup("", "");
    let mut clients: Vec<Client> = (0..50).map(|_| Client::connect(port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.redis_str(&["SET", &format!("c{i}"), "x"]), "+OK\r\n");
    }
    // One connection per backend per worker (plus our probe client): multiplexed, not one per client.
    for b in &backends {
        let mut d = Client::connect(b.port);
        let r = d.redis_str(&["INFO", "clients"]);
        let n: usize =
            r.lines().find_map(|l| l.strip_prefix("connected_clients:")).map(|v| v.trim().parse().unwrap()).unwrap();
        assert!(n <= 2, "expected one multiplexed connection, redis sees {n} clients");
    }
}

#[test]
fn unix_socket_listener_and_ipv6_backend() {
    let b = redis_server();
    let dir = tempdir("unix");
    let sock = dir.join("ferrule.sock");
    let port = free_port();
    let body = format!(
        "[listeners.tcp]\nlisten = \"[::1]:{port}\"\nprotocol = \"redis\"\nroute = \"main\"\n\n\
         [listeners.local]\nlisten = \"{}\"\nprotocol = \"redis\"\nroute = \"main\"\n\n{}",
        sock.display(),
        redis_pool_toml("main", &[format!("127.0.0.1:{}:1", b.port)], "")
    );
    let dir2 = tempdir("unixcfg");
    let cfg = dir2.join("ferrule.toml");
    std::fs::write(&cfg, format!("[proxy]\nworkers = 1\nadmin = \"off\"\n\n{body}")).unwrap();
    let child = std::process::Command::new(ferrule_bin())
        .arg("-c")
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Proc::new(child, port, "ferrule");
    let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
    let mut u = loop {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&sock) {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "unix listener never came up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    use std::io::{Read, Write};
    u.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nu\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\nu\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < b"+OK\r\n$1\r\n1\r\n".len() {
        let n = u.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"+OK\r\n$1\r\n1\r\n");
    // The same pool over IPv6 loopback.
    let mut s = std::net::TcpStream::connect(("::1", port)).expect("ipv6 listener");
    s.write_all(b"GET u\r\n").unwrap();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"$1\r\n1\r\n");
}

#[test]
fn huge_multi_element_reply_is_framed_and_relayed() {
    use std::io::Read;
    let (_b, _f, port) = setup("", "");
    let mut c = Client::connect(port);
    let count = 200_000;
    for batch in (0..count).collect::<Vec<usize>>().chunks(2000) {
        let elements: Vec<String> = batch.iter().map(|i| format!("e{i}")).collect();
        let mut args = vec!["RPUSH", "biglist"];
        args.extend(elements.iter().map(String::as_str));
        assert_eq!(c.redis_str(&args), format!(":{}\r\n", batch.last().unwrap() + 1));
    }
    // Twice: the second reply arrives after the backend connection's grown read buffer shrank back.
    for _ in 0..2 {
        let mut out = Vec::new();
        ferrule::protocol::redis::write_command(&mut out, &[b"LRANGE", b"biglist", b"0", b"-1"]);
        c.send(&out);
        // Framed here with a resumable parser: the test client's own reply_len would start over on every read.
        let mut parser = ferrule::protocol::redis::ReplyParser::new();
        let mut reply = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        let len = loop {
            let n = c.s.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed after {} bytes", reply.len());
            reply.extend_from_slice(&chunk[..n]);
            if reply.len() >= parser.needed() {
                if let Some(len) = parser.parse(&reply).unwrap() {
                    break len;
                }
            }
        };
        assert_eq!(len, reply.len(), "nothing follows the reply");
        let mut elements = Vec::new();
        assert!(ferrule::protocol::redis::array_elements(&reply, &mut elements));
        assert_eq!(elements.len(), count);
        for i in [0, 1, 4_999, 123_456, count - 1] {
            let value = format!("e{i}");
            assert_eq!(reply[elements[i].clone()], *format!("${}\r\n{value}\r\n", value.len()).as_bytes(), "#{i}");
        }
        assert_eq!(c.redis_str(&["LLEN", "biglist"]), format!(":{count}\r\n"));
    }
}
