//! What ferrule refuses must be refused whole: a transaction refused (on a listener whose route sends to several
//! destinations; pools and single-destination routes run them, tests/dedicated.rs) leaves nothing applied, a data
//! block is never run as a command, and error replies read as the real servers' do. Against real redis-server and memcached, and redis-py for what
//! a client library makes of it.

mod common;
use common::*;
use ferrule::protocol::memcache::Command as Mc;
use std::process::Command;
use std::time::Duration;

fn redis_setup() -> (Proc, Ferrule, u16) {
    let backend = redis_server();
    let port = free_port();
    let servers = vec![format!("127.0.0.1:{}:1", backend.port)];
    let body =
        format!("{}{}", listener_toml("cache", port, "redis", "main", ""), redis_pool_toml("main", &servers, ""));
    (backend, Ferrule::start(&body, port), port)
}

/// A listener whose route sends every request to several destinations (all_sync over the pool's servers): a
/// transaction cannot have one connection of its own there, so its keyed commands are refused.
fn routed_setup() -> (Proc, Ferrule, u16) {
    let backend = redis_server();
    let port = free_port();
    let servers = vec![format!("127.0.0.1:{}:1", backend.port)];
    let route = "[routes.front]\ntype = \"all_sync\"\nchildren = [\"main/*\"]\n\n";
    let body = format!(
        "{}{route}{}",
        listener_toml("cache", port, "redis", "front", ""),
        redis_pool_toml("main", &servers, "")
    );
    (backend, Ferrule::start(&body, port), port)
}

fn memcache_setup() -> (Proc, Ferrule, u16) {
    let backend = memcached();
    let port = free_port();
    let servers = vec![format!("127.0.0.1:{}:1", backend.port)];
    let body = format!("{}{}", listener_toml("cache", port, "memcache", "mc", ""), redis_pool_toml("mc", &servers, ""));
    (backend, Ferrule::start(&body, port), port)
}

const EXECABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\r\n";

fn not_run(name: &str) -> String {
    format!(
        "-ERR ferrule: {name} cannot run on a connection of its own here: route 'front' sends to several \
         destinations\r\n"
    )
}

#[test]
fn a_refused_multi_leaves_nothing_applied() {
    let (backend, _f, port) = routed_setup();
    let mut c = Client::connect(port);
    // What every client library's transaction sends, in one pipeline.
    let mut out = Vec::new();
    for args in
        [&["MULTI"][..], &["INCR", "acct"], &["SET", "other", "1"], &["INCR", "acct"], &["EXEC"], &["GET", "acct"]]
    {
        out.extend(resp(args));
    }
    c.send(&out);
    let replies: Vec<String> = (0..6).map(|_| String::from_utf8_lossy(&c.redis_reply()).into_owned()).collect();
    assert_eq!(replies, ["+OK\r\n", &not_run("INCR"), &not_run("SET"), &not_run("INCR"), EXECABORT, "$-1\r\n"]);
    let mut direct = Client::connect(backend.port);
    assert_eq!(direct.redis_str(&["EXISTS", "acct", "other"]), ":0\r\n", "nothing reached the server");
    // After EXEC the session is back to normal.
    assert_eq!(c.redis_str(&["INCR", "acct"]), ":1\r\n");
    assert_eq!(c.redis_str(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(c.redis_str(&["DISCARD"]), "-ERR DISCARD without MULTI\r\n");
}

#[test]
fn discard_nesting_watch_and_quit_in_a_refused_multi() {
    let (backend, _f, port) = routed_setup();
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["MULTI"]), "-ERR MULTI calls can not be nested\r\n");
    assert_eq!(c.redis_str(&["WATCH", "k"]), "-ERR WATCH inside MULTI is not allowed\r\n");
    assert_eq!(c.redis_str(&["GET"]), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(c.redis_str(&["SET", "k", "v"]), not_run("SET"));
    assert_eq!(c.redis_str(&["DISCARD"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["PING"]), "+PONG\r\n");
    assert_eq!(c.redis_str(&["UNWATCH"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["WATCH", "k"]), not_run("WATCH"));
    assert_eq!(c.redis_str(&["BLPOP", "k", "1"]), not_run("BLPOP"));
    // QUIT inside MULTI closes, as in redis; a new connection starts outside any transaction.
    assert_eq!(c.redis_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["QUIT"]), "+OK\r\n");
    assert!(c.closed_by_peer());
    let mut d = Client::connect(port);
    assert_eq!(d.redis_str(&["SET", "k", "v"]), "+OK\r\n");
    let mut direct = Client::connect(backend.port);
    assert_eq!(direct.redis_str(&["GET", "k"]), "$1\r\nv\r\n");
}

/// A python interpreter that has redis-py, or how to get one.
fn python_with_redis() -> String {
    let candidates =
        std::env::var("FERRULE_TEST_PYTHON").into_iter().chain(["python3".into(), "/usr/bin/python3".into()]);
    for python in candidates {
        let ok = Command::new(&python).args(["-c", "import redis"]).output().is_ok_and(|o| o.status.success());
        if ok {
            return python;
        }
    }
    panic!(
        "redis-py is not installed: run `apt-get install -y python3-redis` (scripts/test.sh does this) or \
         `pip install redis`, or point FERRULE_TEST_PYTHON at a python that has it"
    );
}

#[test]
fn redis_py_transaction_raises_and_applies_nothing() {
    let python = python_with_redis();
    let (backend, _f, port) = routed_setup();
    let script = r#"
import sys, redis
r = redis.Redis(port=int(sys.argv[1]), socket_timeout=10)
p = r.pipeline(transaction=True)
p.incr("acct")
p.incr("acct")
try:
    p.execute()
    print("executed")
except redis.ResponseError as e:
    print("raised:", e)
# The pooled connection goes back to normal use after the failed transaction.
print("after:", r.set("after", "1"), r.get("after"))
"#;
    let out = Command::new(&python).args(["-c", script, &port.to_string()]).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    let mut direct = Client::connect(backend.port);
    assert_eq!(direct.redis_str(&["EXISTS", "acct"]), ":0\r\n", "acct must stay unset: {stdout}");
    assert!(stdout.contains("cannot run on a connection of its own here"), "{stdout}");
    assert!(stdout.contains("after: True b'1'"), "{stdout}");
}

#[test]
fn key_position_errors_read_as_redis_7s() {
    let (backend, _f, port) = redis_setup();
    let mut c = Client::connect(port);
    let mut direct = Client::connect(backend.port);
    for args in [
        &["MSET", "a", "b", "c"][..],
        &["EVAL", "return 1", "9999999999"],
        &["EVAL", "return 1", "-1"],
        &["EVAL", "return 1", "x", "k"],
        &["MSETNX", "a", "1", "b"],
        &["SINTERCARD", "5", "a"],
    ] {
        let got = c.redis_str(args);
        assert!(!got.starts_with("-ERR ERR"), "{args:?}: {got}");
        assert_eq!(got, direct.redis_str(args), "{args:?}");
    }
}

/// Sends `bytes`, then a `get` of a key never set as a marker, and returns what came back before the marker's
/// `END`: exactly the replies to `bytes` (whose own gets, if any, must be of values without "END").
fn mc_replies(port: u16, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let gets = bytes.split(|&b| b == b'\n').filter(|line| line.starts_with(b"get ")).count();
    let mut c = Client::connect(port);
    c.send(bytes);
    c.send(b"get __marker_never_set__\r\n");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.windows(5).filter(|w| w == b"END\r\n").count() < gets + 1 {
        assert!(std::time::Instant::now() < deadline, "no marker after {:?}", String::from_utf8_lossy(&got));
        let mut tmp = [0u8; 4096];
        match c.s.read(&mut tmp) {
            Ok(0) => panic!("closed after {:?}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("{e} after {:?}", String::from_utf8_lossy(&got)),
        }
    }
    assert!(got.ends_with(b"END\r\n"), "{:?}", String::from_utf8_lossy(&got));
    got.truncate(got.len() - 5);
    got
}

#[test]
fn a_meta_set_data_block_is_never_run_as_a_command() {
    let (backend, _f, port) = memcache_setup();
    let mut c = Client::connect(port);
    assert_eq!(c.mc("set victim 0 0 1\r\nx\r\n", Mc::Set), "STORED\r\n");
    // A refused ms (key over 250 bytes) still has its value discarded.
    let long = format!("ms {} 13\r\ndelete victim\r\n", "k".repeat(251));
    let bad = "CLIENT_ERROR bad command line format\r\n";
    assert_eq!(String::from_utf8_lossy(&mc_replies(port, long.as_bytes())), bad);
    // A data block arriving in pieces, and one with flags after the length.
    let mut d = Client::connect(port);
    d.send(format!("ms {} 13 T0 F5\r\ndel", "k".repeat(251)).as_bytes());
    std::thread::sleep(Duration::from_millis(50));
    d.send(b"ete victim\r\n");
    d.send(b"get victim\r\n");
    assert_eq!(String::from_utf8_lossy(&d.mc_reply(Mc::Set)), bad);
    assert_eq!(d.mc_reply(Mc::Get), b"VALUE victim 0 1\r\nx\r\nEND\r\n");
    // Unreadable lengths: only the line can be dropped, as memcached does.
    for line in ["ms k\r\n", "ms k abc\r\n", "ms k -1\r\n", "ms k 2147483647\r\n"] {
        let got = mc_replies(port, line.as_bytes());
        assert_eq!(got, b"CLIENT_ERROR bad command line format\r\n", "{line:?}");
    }
    assert_eq!(mc_replies(port, b"ms\r\n"), b"ERROR\r\n");
    assert_eq!(mc_replies(port, b"mn\r\nmg victim v\r\n"), b"MN\r\nVA 1\r\nx\r\n");
    let mut direct = Client::connect(backend.port);
    assert_eq!(direct.mc("get victim k\r\n", Mc::Get), "VALUE victim 0 1\r\nx\r\nEND\r\n", "victim survives");
}

#[test]
fn a_storage_line_with_too_many_arguments_swallows_its_data_block() {
    let (backend, _f, port) = memcache_setup();
    let mut c = Client::connect(port);
    assert_eq!(c.mc("set victim 0 0 1\r\nx\r\n", Mc::Set), "STORED\r\n");
    // memcached answers ERROR and then runs the value; ferrule answers ERROR once and drops the value.
    assert_eq!(mc_replies(port, b"set k 0 0 13 a b\r\ndelete victim\r\n"), b"ERROR\r\n");
    assert_eq!(mc_replies(port, b"cas k 0 0 13 1 a b c\r\ndelete victim\r\n"), b"ERROR\r\n");
    let mut direct = Client::connect(backend.port);
    assert_eq!(direct.mc("get victim\r\n", Mc::Get), "VALUE victim 0 1\r\nx\r\nEND\r\n");
}

/// noreply with bad arguments: exactly what memcached answers (nothing, mostly), request by request.
#[test]
fn noreply_errors_match_memcached() {
    let (backend, _f, port) = memcache_setup();
    let cases: &[&[u8]] = &[
        b"incr k noreply\r\n",
        b"decr k noreply\r\n",
        b"incr k abc noreply\r\n",
        b"incr k -1 noreply\r\n",
        b"touch k noreply\r\n",
        b"touch k abc noreply\r\n",
        b"set k 0 0 noreply\r\n",
        b"set k 0 0 abc noreply\r\n",
        b"set k 0 0 -1 noreply\r\n",
        b"set k 0 noreply\r\n",
        b"cas k 0 0 noreply\r\n",
        b"delete k 5 noreply\r\n",
        b"delete k 0 0 noreply\r\n",
        b"delete noreply\r\n",
        b"verbosity abc noreply\r\n",
        b"verbosity noreply\r\n",
        b"verbosity 1 2 noreply\r\n",
        b"flush_all abc noreply\r\n",
        b"incr noreply\r\n",
        b"set n 0 0 1\r\n5\r\nincr n 99999999999999999999 noreply\r\nget n\r\n",
        b"set s 0 0 1\r\nx\r\nincr s 1 noreply\r\nget s\r\n",
        b"set q 0 0 1 noreply\r\nx\r\nget q\r\n",
    ];
    for &case in cases {
        let want = mc_replies(backend.port, case);
        let got = mc_replies(port, case);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{:?}",
            String::from_utf8_lossy(case)
        );
    }
    // Where memcached drops only the line and then runs the value as a command (its reply to the value is an
    // ERROR), ferrule drops the value too and stays silent: the request was noreply.
    for case in
        [&b"set k abc 0 1 noreply\r\nx\r\n"[..], b"cas k 0 0 1 noreply\r\nx\r\n", b"cas k 0 0 1 abc noreply\r\nx\r\n"]
    {
        assert_eq!(mc_replies(backend.port, case), b"ERROR\r\n", "{:?}", String::from_utf8_lossy(case));
        assert_eq!(mc_replies(port, case), b"", "{:?}", String::from_utf8_lossy(case));
    }
    // flush_all is refused, silently when noreply (a reply would be read as the answer to the next request).
    assert_eq!(mc_replies(port, b"flush_all noreply\r\n"), b"");
}

#[test]
fn version_parses_as_numbers() {
    let (_backend, _f, port) = memcache_setup();
    let mut c = Client::connect(port);
    let v = c.mc("version\r\n", Mc::Version);
    let version = v.strip_prefix("VERSION ").and_then(|v| v.strip_suffix("\r\n")).expect(&v);
    // libmemcached reads major.minor.micro with strtol, each ending at the next '.' or a non-digit.
    let mut parts = version.splitn(3, '.');
    for _ in 0..2 {
        let n = parts.next().unwrap_or_default();
        assert!(!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()), "{version}");
    }
    let micro = parts.next().unwrap_or_default();
    assert!(micro.starts_with(|c: char| c.is_ascii_digit()), "{version}");
    assert!(version.contains("ferrule"), "{version}");
}

#[test]
fn a_binary_protocol_client_gets_a_binary_error_and_a_close() {
    let (_backend, f, port) = memcache_setup();
    let mut c = Client::connect(port);
    // A binary GET of "k": magic 0x80, opcode 0x00, key length 1, body length 1, opaque 0xdeadbeef.
    let mut get = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    get.extend_from_slice(&[0; 8]);
    get.push(b'k');
    c.send(&get);
    assert!(c.closed_by_peer());
    let reply = c.pending_bytes().to_vec();
    let message = b"ferrule speaks the memcached text protocol only";
    assert_eq!(reply.len(), 24 + message.len(), "{reply:?}");
    assert_eq!(reply[0], 0x81, "response magic");
    assert_eq!(reply[1], 0x00, "the request's opcode");
    assert_eq!(&reply[2..8], &[0, 0, 0, 0, 0x00, 0x83], "no key or extras; status 0x0083 not supported");
    assert_eq!(&reply[8..12], &(message.len() as u32).to_be_bytes(), "body length");
    assert_eq!(&reply[12..16], &[0xde, 0xad, 0xbe, 0xef], "the request's opaque");
    assert_eq!(&reply[16..24], &[0; 8], "cas");
    assert_eq!(&reply[24..], message);
    assert!(f.wait_log("binary protocol", 1, Duration::from_secs(5)), "log: {}", f.log());
}

/// libmemcached's own tools through ferrule: `memcping` (which parses the version and reports the server down when
/// it cannot) and `memcstat --server-version`.
#[test]
fn libmemcached_tools_read_the_version() {
    let (_backend, _f, port) = memcache_setup();
    let server = format!("127.0.0.1:{port}");
    let ping = Command::new(require_binary("memcping", "libmemcached-tools")).args(["-s", &server]).output().unwrap();
    assert!(ping.status.success(), "memcping: {}", String::from_utf8_lossy(&ping.stderr));
    let stat =
        Command::new(require_binary("memcstat", "libmemcached-tools")).args(["-S", "-s", &server]).output().unwrap();
    // memcstat prints the versions on stderr.
    let text = String::from_utf8_lossy(&stat.stderr);
    assert!(stat.status.success() && text.starts_with(&format!("{server} 1.6.")), "memcstat: {text}");
}
