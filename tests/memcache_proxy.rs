//! Memcached (ASCII) through ferrule against real memcached backends.

mod common;
use common::*;
use ferrule::protocol::memcache::Command;

fn setup(extra_pool: &str) -> (Vec<Proc>, Ferrule, u16) {
    let backends = vec![memcached(), memcached()];
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    // md5 spreads short test keys evenly; twemproxy's fnv1a_64 can put k0..k39 all on one server.
    let pool = redis_pool_toml("mc", &servers, &format!("hash = \"md5\"\n{extra_pool}"));
    let body = format!("{}{}", listener_toml("mc", port, "memcache", "mc", ""), pool);
    let f = Ferrule::start(&body, port);
    (backends, f, port)
}

#[test]
fn storage_and_retrieval_commands() {
    let (_b, _f, port) = setup("");
    let mut c = Client::connect(port);
    assert_eq!(c.mc("set a 5 0 3\r\nabc\r\n", Command::Set), "STORED\r\n");
    assert_eq!(c.mc("get a\r\n", Command::Get), "VALUE a 5 3\r\nabc\r\nEND\r\n");
    assert_eq!(c.mc("add a 0 0 1\r\nx\r\n", Command::Add), "NOT_STORED\r\n");
    assert_eq!(c.mc("replace a 0 0 1\r\nx\r\n", Command::Replace), "STORED\r\n");
    assert_eq!(c.mc("append a 0 0 2\r\nyz\r\n", Command::Append), "STORED\r\n");
    assert_eq!(c.mc("prepend a 0 0 1\r\nw\r\n", Command::Prepend), "STORED\r\n");
    assert_eq!(c.mc("get a\r\n", Command::Get), "VALUE a 0 4\r\nwxyz\r\nEND\r\n");
    let gets = c.mc("gets a\r\n", Command::Gets);
    let cas: u64 = gets.lines().next().unwrap().split(' ').nth(4).unwrap().parse().unwrap();
    assert_eq!(c.mc(&format!("cas a 0 0 1 {}\r\nq\r\n", cas + 1000), Command::Cas), "EXISTS\r\n");
    assert_eq!(c.mc(&format!("cas a 0 0 1 {cas}\r\nq\r\n"), Command::Cas), "STORED\r\n");
    assert_eq!(c.mc("set n 0 0 2\r\n10\r\n", Command::Set), "STORED\r\n");
    assert_eq!(c.mc("incr n 5\r\n", Command::Incr), "15\r\n");
    assert_eq!(c.mc("decr n 20\r\n", Command::Decr), "0\r\n");
    assert_eq!(c.mc("touch n 100\r\n", Command::Touch), "TOUCHED\r\n");
    // memcached keeps the length on decr, padding with spaces.
    assert_eq!(c.mc("gat 100 n\r\n", Command::Gat), "VALUE n 0 2\r\n0 \r\nEND\r\n");
    assert_eq!(c.mc("delete n\r\n", Command::Delete), "DELETED\r\n");
    assert_eq!(c.mc("delete n\r\n", Command::Delete), "NOT_FOUND\r\n");
    assert!(c.mc("version\r\n", Command::Version).starts_with("VERSION 1.6.0-ferrule-"));
}

#[test]
fn multi_get_is_split_and_reassembled_in_order() {
    let (backends, _f, port) = setup("");
    let mut c = Client::connect(port);
    for i in 0..40 {
        assert_eq!(c.mc(&format!("set k{i} {i} 0 {}\r\nv{i}\r\n", format!("v{i}").len()), Command::Set), "STORED\r\n");
    }
    // Both servers hold some keys.
    for b in &backends {
        let mut d = Client::connect(b.port);
        let stats = d.mc("stats\r\n", Command::Stats);
        let items: u64 =
            stats.lines().find_map(|l| l.strip_prefix("STAT curr_items ")).map(|v| v.trim().parse().unwrap()).unwrap();
        assert!(items > 5, "keys should spread: {items}");
    }
    let mut line = String::from("get");
    let mut expect = String::new();
    for i in (0..40).rev() {
        line.push_str(&format!(" k{i}"));
        if i % 7 == 0 {
            line.push_str(" nokey");
        }
        expect.push_str(&format!("VALUE k{i} {i} {}\r\nv{i}\r\n", format!("v{i}").len()));
    }
    line.push_str("\r\n");
    expect.push_str("END\r\n");
    assert_eq!(c.mc(&line, Command::Get), expect);
}

#[test]
fn noreply_and_pipelining_keep_the_stream_in_sync() {
    let (_b, _f, port) = setup("");
    let mut c = Client::connect(port);
    let mut out = String::new();
    for i in 0..500 {
        out.push_str(&format!("set q{i} 0 0 1 noreply\r\n{}\r\n", i % 10));
        out.push_str(&format!("get q{i}\r\n"));
    }
    c.send(out.as_bytes());
    for i in 0..500 {
        assert_eq!(
            String::from_utf8(c.mc_reply(Command::Get)).unwrap(),
            format!("VALUE q{i} 0 1\r\n{}\r\nEND\r\n", i % 10)
        );
    }
}

#[test]
fn bad_input_gets_clear_errors_and_the_stream_continues() {
    let (_b, _f, port) = setup("max_value_bytes = 1024");
    let mut c = Client::connect(port);
    let long_key = "k".repeat(251);
    let r = c.mc(&format!("get {long_key}\r\n"), Command::Get);
    assert!(r.starts_with("CLIENT_ERROR"), "{r}");
    assert_eq!(c.mc("bogus command\r\n", Command::Get), "ERROR\r\n");
    let big = "x".repeat(2000);
    let r = c.mc(&format!("set big 0 0 2000\r\n{big}\r\n"), Command::Set);
    assert_eq!(r, "SERVER_ERROR object too large for cache\r\n");
    // The value bytes were swallowed: the next command is parsed correctly.
    assert_eq!(c.mc("set small 0 0 2\r\nok\r\n", Command::Set), "STORED\r\n");
    assert_eq!(c.mc("get small\r\n", Command::Get), "VALUE small 0 2\r\nok\r\nEND\r\n");
}

#[test]
fn oversized_value_arriving_in_pieces_is_swallowed() {
    let (_b, _f, port) = setup("max_value_bytes = 1024");
    let mut c = Client::connect(port);
    c.send(b"set big 0 0 100000\r\n");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let chunk = vec![b'y'; 10000];
    for _ in 0..10 {
        c.send(&chunk);
    }
    c.send(b"\r\nget big\r\n");
    assert_eq!(String::from_utf8(c.mc_reply(Command::Set)).unwrap(), "SERVER_ERROR object too large for cache\r\n");
    assert_eq!(String::from_utf8(c.mc_reply(Command::Get)).unwrap(), "END\r\n");
}

#[test]
fn multi_get_of_thousands_of_keys_comes_back_whole_and_in_order() {
    let (_b, _f, port) = setup("");
    let mut c = Client::connect(port);
    let count = 2000;
    let value = |i: usize| format!("{i}:{}", "v".repeat(100 + i % 50));
    let mut sets = String::new();
    for i in 0..count {
        sets.push_str(&format!("set many{i} {i} 0 {}\r\n{}\r\n", value(i).len(), value(i)));
    }
    c.send(sets.as_bytes());
    for _ in 0..count {
        assert_eq!(c.mc_reply(Command::Set), b"STORED\r\n");
    }
    let mut get = String::from("get");
    let mut expect = String::new();
    for i in 0..count {
        get.push_str(&format!(" many{i}"));
        expect.push_str(&format!("VALUE many{i} {i} {}\r\n{}\r\n", value(i).len(), value(i)));
    }
    get.push_str("\r\n");
    expect.push_str("END\r\n");
    // Twice: the second reply arrives after the backend connections' grown read buffers shrank back.
    for _ in 0..2 {
        assert!(c.mc(&get, Command::Get) == expect, "multi-get reply differs");
    }
}
