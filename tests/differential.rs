//! Randomized differential test: the same seeded, pipelined command stream goes through ferrule (keys sharded over
//! three servers) and straight to one server of the same kind; every reply must be byte for byte the same.
//!
//! The commands are those whose reply depends only on the values of the keys they name (no keyspace-wide commands,
//! no randomness, no TTL countdowns, no CAS ids), so sharding must not change a single byte. Single-key and
//! multi-key commands (split and merged by ferrule) are mixed, along with same-server commands on hash-tagged keys,
//! wrong-type errors and memcache noreply. The stream is written to ferrule in random-sized chunks, so requests
//! arrive cut at arbitrary bytes.
//!
//! The seed is printed and included in every failure; `FERRULE_DIFF_SEED=<n>` replays one.

mod common;
use common::*;
use ferrule::protocol::memcache::Command as Mc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::time::{Duration, Instant};

const ROUNDS: usize = 4;
const COMMANDS_PER_ROUND: usize = 1500;
/// The whole test must stay well under this.
const TIME_BUDGET: Duration = Duration::from_secs(60);

/// Sends `stream` (in random chunks when `chunk_seed` is given) and reads `count` replies, each framed by
/// `frame(i, buf)` (the length of reply i at the start of buf, or None when incomplete).
fn exchange(
    port: u16,
    stream: Vec<u8>,
    count: usize,
    chunk_seed: Option<u64>,
    frame: impl Fn(usize, &[u8]) -> Option<usize>,
) -> Vec<Vec<u8>> {
    let mut replies = Vec::with_capacity(count);
    let took = pipelined::exchange(port, stream, chunk_seed, |buf| {
        while replies.len() < count {
            let Some(n) = frame(replies.len(), buf) else { return false };
            replies.push(buf.drain(..n).collect());
        }
        true
    });
    match took {
        Ok(rest) => assert!(rest.is_empty(), "unexpected extra bytes: {:?}", String::from_utf8_lossy(&rest)),
        Err((why, _)) => panic!("{why} after {} of {count} replies", replies.len()),
    }
    replies
}

fn compare(seed: u64, round: usize, what: &[String], via: &[Vec<u8>], direct: &[Vec<u8>]) {
    assert_eq!(via.len(), direct.len());
    for (i, (a, b)) in via.iter().zip(direct).enumerate() {
        if a != b {
            let context: Vec<&String> = what[i.saturating_sub(3)..=i].iter().collect();
            panic!(
                "seed {seed} round {round}: reply {i} differs for {:?}\n  through ferrule: {:?}\n  direct:          {:?}\n  \
                 preceding commands: {context:?}\nreplay with FERRULE_DIFF_SEED={seed}",
                what[i],
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
    }
}

/// Guards against a generator that only produces trivial replies: counts replies that start with each marker.
fn assert_varied(seed: u64, replies: &[Vec<u8>], markers: &[(&str, usize)]) {
    for &(marker, at_least) in markers {
        let n = replies.iter().filter(|r| r.windows(marker.len()).next() == Some(marker.as_bytes())).count();
        assert!(n >= at_least, "seed {seed}: only {n} replies start with {marker:?} (want {at_least})");
    }
}

fn value(rng: &mut StdRng) -> String {
    match rng.gen_range(0..10) {
        0..=3 => rng.gen_range(-1000i64..100_000).to_string(),
        4 => String::new(),
        _ => {
            let len = rng.gen_range(1..40);
            (0..len).map(|_| rng.gen_range(b'!'..=b'~') as char).collect()
        }
    }
}

/// A redis key: `family` is the intended type; a few keys are shared across families to produce WRONGTYPE errors.
/// About a third carry a hash tag from a small set, so that same-server commands can name several of them.
fn rkey(rng: &mut StdRng, prefix: &str, family: &str) -> String {
    let family = if rng.gen_ratio(1, 30) { "x" } else { family };
    let i = rng.gen_range(0..12);
    if rng.gen_ratio(1, 3) {
        format!("{{{prefix}:t{}}}:{family}{i}", rng.gen_range(0..3))
    } else {
        format!("{prefix}:{family}{i}")
    }
}

fn tagged(rng: &mut StdRng, prefix: &str, tag: u32, family: &str) -> String {
    format!("{{{prefix}:t{tag}}}:{family}{}", rng.gen_range(0..12))
}

fn redis_command(rng: &mut StdRng, p: &str) -> Vec<String> {
    let s = |rng: &mut StdRng| rkey(rng, p, "s");
    let many = |rng: &mut StdRng, family: &str| -> Vec<String> {
        let n = rng.gen_range(1..8);
        (0..n).map(|_| rkey(rng, p, family)).collect()
    };
    let v = value;
    let n = |rng: &mut StdRng| rng.gen_range(-50i64..50).to_string();
    let mut c: Vec<String> = match rng.gen_range(0..46) {
        0..=3 => vec!["SET".into(), s(rng), v(rng)],
        4 => vec!["SET".into(), s(rng), v(rng), if rng.gen() { "NX" } else { "XX" }.into()],
        5..=8 => vec!["GET".into(), s(rng)],
        9 => vec!["SETNX".into(), s(rng), v(rng)],
        10 => vec!["APPEND".into(), s(rng), v(rng)],
        11 => vec!["STRLEN".into(), s(rng)],
        12 | 13 => vec!["INCR".into(), s(rng)],
        14 => vec!["INCRBY".into(), s(rng), n(rng)],
        15 => vec!["DECRBY".into(), s(rng), n(rng)],
        16 => vec!["GETRANGE".into(), s(rng), n(rng), n(rng)],
        17 => vec!["SETRANGE".into(), s(rng), rng.gen_range(0..20).to_string(), v(rng)],
        18 | 19 => [vec!["MGET".into()], many(rng, "s")].concat(),
        20 => {
            let keys = many(rng, "s");
            let mut c = vec!["MSET".to_string()];
            for k in keys {
                c.push(k);
                c.push(v(rng));
            }
            c
        }
        21 => [vec!["DEL".into()], many(rng, "s")].concat(),
        22 => [vec!["EXISTS".into()], many(rng, "s")].concat(),
        23 => [vec!["UNLINK".into()], many(rng, "h")].concat(),
        24 => [vec!["TOUCH".into()], many(rng, "l")].concat(),
        25 => vec!["HSET".into(), rkey(rng, p, "h"), format!("f{}", rng.gen_range(0..6)), v(rng)],
        26 => vec!["HGET".into(), rkey(rng, p, "h"), format!("f{}", rng.gen_range(0..6))],
        27 => vec!["HDEL".into(), rkey(rng, p, "h"), format!("f{}", rng.gen_range(0..6))],
        28 => vec!["HINCRBY".into(), rkey(rng, p, "h"), format!("n{}", rng.gen_range(0..3)), n(rng)],
        29 => vec!["HMGET".into(), rkey(rng, p, "h"), "f0".into(), "f1".into(), "n0".into()],
        30 => vec!["HGETALL".into(), rkey(rng, p, "h")],
        31 => vec!["HLEN".into(), rkey(rng, p, "h")],
        32 => {
            let mut c = vec![if rng.gen() { "LPUSH" } else { "RPUSH" }.to_string(), rkey(rng, p, "l")];
            for _ in 0..rng.gen_range(1..4) {
                c.push(v(rng));
            }
            c
        }
        33 => vec![if rng.gen() { "LPOP" } else { "RPOP" }.into(), rkey(rng, p, "l")],
        34 => vec!["LRANGE".into(), rkey(rng, p, "l"), "0".into(), "-1".into()],
        35 => vec!["LINDEX".into(), rkey(rng, p, "l"), n(rng)],
        36 => vec![
            "SADD".into(),
            rkey(rng, p, "S"),
            format!("m{}", rng.gen_range(0..8)),
            format!("m{}", rng.gen_range(0..8)),
        ],
        37 => vec!["SREM".into(), rkey(rng, p, "S"), format!("m{}", rng.gen_range(0..8))],
        38 => vec!["SISMEMBER".into(), rkey(rng, p, "S"), format!("m{}", rng.gen_range(0..8))],
        39 => vec!["SCARD".into(), rkey(rng, p, "S")],
        40 => vec!["ZADD".into(), rkey(rng, p, "z"), n(rng), format!("m{}", rng.gen_range(0..8))],
        41 => vec!["ZRANGE".into(), rkey(rng, p, "z"), "0".into(), "-1".into(), "WITHSCORES".into()],
        42 => vec!["ZINCRBY".into(), rkey(rng, p, "z"), n(rng), format!("m{}", rng.gen_range(0..8))],
        43 => vec!["TYPE".into(), rkey(rng, p, "z")],
        // Same-server commands on keys sharing a hash tag.
        44 => {
            let t = rng.gen_range(0..3);
            vec!["SUNIONSTORE".into(), tagged(rng, p, t, "S"), tagged(rng, p, t, "S"), tagged(rng, p, t, "S")]
        }
        _ => {
            let t = rng.gen_range(0..3);
            vec!["RPOPLPUSH".into(), tagged(rng, p, t, "l"), tagged(rng, p, t, "l")]
        }
    };
    // Commands are case-insensitive; so must ferrule be.
    if rng.gen_ratio(1, 10) {
        c[0] = c[0].to_lowercase();
    }
    c
}

fn redis_stream(rng: &mut StdRng, prefix: &str, n: usize) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let mut what = Vec::new();
    for _ in 0..n {
        let c = redis_command(rng, prefix);
        let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
        ferrule::protocol::redis::write_command(&mut out, &args);
        what.push(c.join(" "));
    }
    (out, what)
}

#[test]
fn redis_replies_match_a_single_server() {
    let seed = pipelined::seed();
    println!("differential seed: {seed} (FERRULE_DIFF_SEED={seed} replays it)");
    let started = Instant::now();
    let shards: Vec<Proc> = (0..3).map(|_| redis_server()).collect();
    let reference = redis_server();
    let port = free_port();
    let servers: Vec<String> = shards.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &servers, "hash_tag = \"{}\"\ntimeout_ms = 5000\n")
    );
    let _f = Ferrule::start_with(&body, port, 2);
    let mut rng = StdRng::seed_from_u64(seed);
    let frame = |_: usize, buf: &[u8]| ferrule::protocol::redis::reply_len(buf).ok().flatten();
    let mut seen = Vec::new();
    for round in 0..ROUNDS {
        // Two connections with separate key spaces (they may land on different workers).
        for conn in 0..2 {
            let prefix = format!("c{conn}");
            let (stream, what) = redis_stream(&mut rng, &prefix, COMMANDS_PER_ROUND);
            let chunks: u64 = rng.gen();
            let via = exchange(port, stream.clone(), what.len(), Some(chunks), frame);
            let direct = exchange(reference.port, stream, what.len(), None, frame);
            compare(seed, round, &what, &via, &direct);
            seen.extend(via);
        }
        assert!(started.elapsed() < TIME_BUDGET, "seed {seed}: too slow ({:?})", started.elapsed());
    }
    let n = seen.len() / 100;
    assert_varied(
        seed,
        &seen,
        &[("$", 10 * n), ("$-1", n), (":", 10 * n), ("*", 5 * n), ("-WRONGTYPE", 1), ("-ERR", 1)],
    );
}

/// One memcache request: its bytes, a description, and the command to frame its reply with (None for noreply).
fn memcache_command(rng: &mut StdRng, p: &str, out: &mut Vec<u8>) -> (String, Option<Mc>) {
    // k keys take any value; n keys hold only plain numbers (or a word) and are the only ones incremented, because
    // memcached pads a number that gets shorter with spaces when it can rewrite the item in place, which depends on
    // whether a reply still holds the item: timing, not the command stream. Increments never shorten a plain number;
    // an append could make "05" out of "0" and "5".
    let kkey = |rng: &mut StdRng| format!("{p}:k{}", rng.gen_range(0..16));
    let nkey = |rng: &mut StdRng| format!("{p}:n{}", rng.gen_range(0..4));
    let key = |rng: &mut StdRng| if rng.gen_ratio(1, 4) { nkey(rng) } else { kkey(rng) };
    let noreply = rng.gen_ratio(1, 12);
    let nr = if noreply { " noreply" } else { "" };
    let start = out.len();
    let cmd = match rng.gen_range(0..16) {
        0 => {
            let data = if rng.gen_ratio(1, 8) { "abc".to_string() } else { rng.gen_range(0u64..100_000).to_string() };
            write!(out, "set {} 0 0 {}{nr}\r\n{data}\r\n", nkey(rng), data.len()).unwrap();
            Mc::Set
        }
        1..=5 => {
            let verb = ["set", "set", "add", "replace", "append", "prepend"][rng.gen_range(0..6)];
            let data: Vec<u8> = match rng.gen_range(0..4) {
                0 => rng.gen_range(0u64..1000).to_string().into_bytes(),
                // Binary values, CR LF included: the data block is length-framed.
                1 => (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
                _ => value(rng).into_bytes(),
            };
            let flags: u16 = if verb == "set" { rng.gen() } else { 0 };
            write!(out, "{verb} {} {flags} 0 {}{nr}\r\n", kkey(rng), data.len()).unwrap();
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            Mc::from_name(verb.as_bytes()).unwrap()
        }
        6..=9 => {
            let keys: Vec<String> = (0..rng.gen_range(1..8)).map(|_| key(rng)).collect();
            write!(out, "get {}\r\n", keys.join(" ")).unwrap();
            return (String::from_utf8_lossy(&out[start..]).trim_end().to_string(), Some(Mc::Get));
        }
        10 => {
            let keys: Vec<String> = (0..rng.gen_range(1..5)).map(|_| key(rng)).collect();
            write!(out, "gat 0 {}\r\n", keys.join(" ")).unwrap();
            return (String::from_utf8_lossy(&out[start..]).trim_end().to_string(), Some(Mc::Gat));
        }
        11 => {
            write!(out, "delete {}{nr}\r\n", key(rng)).unwrap();
            Mc::Delete
        }
        // No decr: it can shorten a number (see above).
        12 | 13 => {
            write!(out, "incr {} {}{nr}\r\n", nkey(rng), rng.gen_range(0u64..100)).unwrap();
            Mc::Incr
        }
        14 => {
            write!(out, "touch {} 0{nr}\r\n", key(rng)).unwrap();
            Mc::Touch
        }
        _ => {
            write!(out, "get {}\r\n", key(rng)).unwrap();
            return (String::from_utf8_lossy(&out[start..]).trim_end().to_string(), Some(Mc::Get));
        }
    };
    let line_end = out[start..].windows(2).position(|w| w == b"\r\n").map_or(out.len(), |i| start + i);
    (String::from_utf8_lossy(&out[start..line_end]).into_owned(), if noreply { None } else { Some(cmd) })
}

#[test]
fn memcache_replies_match_a_single_server() {
    let seed = pipelined::seed();
    println!("differential seed: {seed} (FERRULE_DIFF_SEED={seed} replays it)");
    let started = Instant::now();
    let shards: Vec<Proc> = (0..3).map(|_| memcached()).collect();
    let reference = memcached();
    let port = free_port();
    let servers: Vec<String> = shards.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let body = format!(
        "{}{}",
        listener_toml("mc", port, "memcache", "mc", ""),
        redis_pool_toml("mc", &servers, "timeout_ms = 5000\n")
    );
    let _f = Ferrule::start_with(&body, port, 2);
    // Not the redis test's sequence, for the same seed.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6d63);
    let mut seen = Vec::new();
    for round in 0..ROUNDS {
        for conn in 0..2 {
            let prefix = format!("c{conn}");
            let mut stream = Vec::new();
            let mut what = Vec::new();
            let mut framers = Vec::new();
            for _ in 0..COMMANDS_PER_ROUND {
                let (w, f) = memcache_command(&mut rng, &prefix, &mut stream);
                // noreply commands get no reply; they still change the state that later replies show.
                if let Some(f) = f {
                    what.push(w);
                    framers.push(f);
                }
            }
            // A final get of every key, so that the effect of trailing noreply commands is compared too.
            let all: Vec<String> =
                (0..16).map(|i| format!("{prefix}:k{i}")).chain((0..4).map(|i| format!("{prefix}:n{i}"))).collect();
            write!(stream, "get {}\r\n", all.join(" ")).unwrap();
            what.push(format!("get {}", all.join(" ")));
            framers.push(Mc::Get);
            let frame = |i: usize, buf: &[u8]| ferrule::protocol::memcache::reply_len(buf, framers[i]).ok().flatten();
            let chunks: u64 = rng.gen();
            let via = exchange(port, stream.clone(), what.len(), Some(chunks), frame);
            let direct = exchange(reference.port, stream, what.len(), None, frame);
            compare(seed, round, &what, &via, &direct);
            seen.extend(via);
        }
        assert!(started.elapsed() < TIME_BUDGET, "seed {seed}: too slow ({:?})", started.elapsed());
    }
    let n = seen.len() / 100;
    let markers =
        [("VALUE", 10 * n), ("END", n), ("STORED", 5 * n), ("NOT_STORED", n), ("NOT_FOUND", n), ("CLIENT_ERROR", 1)];
    assert_varied(seed, &seen, &markers);
}
