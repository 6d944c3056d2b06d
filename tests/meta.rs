//! The memcached meta protocol through ferrule, against real memcached: a randomized differential test (the same
//! pipelined mix of meta and text commands, with q, O, k and b, through ferrule over two servers and straight to
//! one; the reply streams must be byte for byte the same), and the behaviours a proxy adds: `mn` after every
//! earlier reply, base64 keys routed by their decoded bytes, a fast error when the key's server is down.
//!
//! The seed is printed and included in every failure; `FERRULE_DIFF_SEED=<n>` replays one.

mod common;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const COMMANDS_PER_ROUND: usize = 1500;
const TIME_BUDGET: Duration = Duration::from_secs(60);

fn b64(key: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in key.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// Sends `stream` (in random chunks when `chunk_seed` is given) and reads until the reply stream ends with `end`.
fn exchange(port: u16, stream: Vec<u8>, chunk_seed: Option<u64>, end: &[u8]) -> Vec<u8> {
    match pipelined::exchange(port, stream, chunk_seed, |buf| buf.ends_with(end)) {
        Ok(buf) => buf,
        Err((why, buf)) => panic!("{why} after {} bytes: {:?}", buf.len(), String::from_utf8_lossy(&buf)),
    }
}

/// Appends one random request to `out`. Keys: `k` keys take any value, `n` keys only plain numbers (the only ones
/// incremented: memcached pads a number that gets shorter, depending on timing). No flag whose answer depends on the
/// server or the clock (c, t with a TTL, l, h, T, me).
fn meta_or_text(rng: &mut StdRng, p: &str, out: &mut Vec<u8>) {
    let kkey = format!("{p}:k{}", rng.gen_range(0..12));
    let nkey = format!("{p}:n{}", rng.gen_range(0..3));
    let key = if rng.gen_ratio(1, 4) { nkey.clone() } else { kkey.clone() };
    // A key as sent: base64 with b a third of the time, so the same item is reached both ways.
    let sent = |rng: &mut StdRng, key: &str| {
        if rng.gen_ratio(1, 3) {
            format!("{} b", b64(key))
        } else {
            key.to_string()
        }
    };
    let extras = |rng: &mut StdRng, pool: &[&str]| {
        let mut flags = String::new();
        for f in pool {
            if rng.gen_ratio(1, 3) {
                flags.push(' ');
                flags.push_str(f);
            }
        }
        if rng.gen_ratio(1, 3) {
            flags.push_str(&format!(" O{}", rng.gen_range(0..1000)));
        }
        if rng.gen_ratio(1, 3) {
            flags.push_str(" q");
        }
        flags
    };
    match rng.gen_range(0..20) {
        0..=4 => {
            // No k on n keys: an incremented item may be copied, and the copy loses the b-ness that k reports.
            let flags =
                extras(rng, if key.contains(":n") { &["v", "f", "s", "t"] } else { &["v", "f", "s", "k", "t"] });
            write!(out, "mg {}{flags}\r\n", sent(rng, &key)).unwrap();
        }
        5..=8 => {
            let (key, data): (&str, Vec<u8>) = match rng.gen_range(0..3) {
                0 => (&nkey, rng.gen_range(0u64..1000).to_string().into_bytes()),
                _ => (&kkey, (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect()),
            };
            let mode = ["", "", " MS", " ME", " MA", " MP", " MR"][rng.gen_range(0..7)];
            let mode = if key.contains(":n") && matches!(mode, " MA" | " MP") { "" } else { mode };
            let flags = extras(rng, if key.contains(":n") { &["F7"] } else { &["F7", "k"] });
            let (key, b) = match sent(rng, key).split_once(' ') {
                Some((k, b)) => (k.to_string(), format!(" {b}")),
                None => (key.to_string(), String::new()),
            };
            write!(out, "ms {key} {}{b}{mode}{flags}\r\n", data.len()).unwrap();
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
        }
        9 | 10 => {
            let flags = extras(rng, if key.contains(":n") { &[] } else { &["k"] });
            write!(out, "md {}{flags}\r\n", sent(rng, &key)).unwrap();
        }
        11 | 12 => {
            let mut flags = extras(rng, &["v", "N0", "MI", "D3"]);
            if flags.ends_with(" q") {
                // memcached shows a quiet ma's reply when N created the item, hides it when the item existed: the
                // reply does not say which, so ferrule hides both (documented).
                flags = flags.replace(" N0", "");
            }
            write!(out, "ma {}{flags}\r\n", sent(rng, &nkey)).unwrap();
        }
        13 => out.extend_from_slice(b"mn\r\n"),
        14 => {
            // Malformed: a repeated flag (q among them), an invalid flag, an unreadable length, a bad base64 key.
            let line = [
                format!("mg {key} v v"),
                format!("mg {key} q q"),
                format!("md {key} q q"),
                format!("ma {nkey} q k k"),
                format!("mg {key} !"),
                format!("ms {key} xx"),
                "mg !!!! b v".to_string(),
                format!("mg {key} v O123456789012345678901234567890123"),
            ][rng.gen_range(0..8)]
            .clone();
            write!(out, "{line}\r\n").unwrap();
        }
        15 | 16 => write!(out, "get {} {}\r\n", kkey, nkey).unwrap(),
        17 => write!(out, "set {kkey} 3 0 2\r\nab\r\n").unwrap(),
        18 => write!(out, "incr {nkey} 2\r\n").unwrap(),
        _ => write!(out, "delete {key} noreply\r\n").unwrap(),
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
}

#[test]
fn meta_and_text_replies_match_a_single_server() {
    let seed = pipelined::seed();
    println!("differential seed: {seed} (FERRULE_DIFF_SEED={seed} replays it)");
    let started = Instant::now();
    let shards: Vec<Proc> = (0..2).map(|_| memcached()).collect();
    let reference = memcached();
    let port = free_port();
    let servers: Vec<String> = shards.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let body = format!(
        "{}{}",
        listener_toml("mc", port, "memcache", "mc", ""),
        redis_pool_toml("mc", &servers, "timeout_ms = 5000\n")
    );
    let _f = Ferrule::start_with(&body, port, 2);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6d65);
    let mut seen = Vec::new();
    for round in 0..ROUNDS {
        let prefix = format!("r{round}");
        let mut stream = Vec::new();
        for _ in 0..COMMANDS_PER_ROUND {
            meta_or_text(&mut rng, &prefix, &mut stream);
        }
        // Every key at the end, then a miss whose opaque marks the end of the replies.
        let all: Vec<String> =
            (0..12).map(|i| format!("{prefix}:k{i}")).chain((0..3).map(|i| format!("{prefix}:n{i}"))).collect();
        write!(stream, "get {}\r\n", all.join(" ")).unwrap();
        let end = format!("EN O{:x}\r\n", rng.gen::<u64>());
        write!(stream, "mg {prefix}:never {}", &end[3..]).unwrap();
        let _ = std::fs::write(std::env::temp_dir().join("ferrule-meta-diff.bin"), &stream);
        let via = exchange(port, stream.clone(), Some(rng.gen()), end.as_bytes());
        let direct = exchange(reference.port, stream.clone(), None, end.as_bytes());
        if via != direct {
            let at = first_difference(&via, &direct);
            let from = at.saturating_sub(200);
            panic!(
                "seed {seed} round {round}: reply streams differ at byte {at}\n  through ferrule: {:?}\n  direct: \
                 {:?}\nreplay with FERRULE_DIFF_SEED={seed}",
                String::from_utf8_lossy(&via[from..(at + 100).min(via.len())]),
                String::from_utf8_lossy(&direct[from..(at + 100).min(direct.len())]),
            );
        }
        seen.extend(via);
        assert!(started.elapsed() < TIME_BUDGET, "seed {seed}: too slow ({:?})", started.elapsed());
    }
    let count = |marker: &str| seen.windows(marker.len()).filter(|w| *w == marker.as_bytes()).count();
    for (marker, at_least) in [
        ("\nVA ", 50),
        ("\nHD", 50),
        ("\nEN", 20),
        ("\nNS", 5),
        ("\nNF", 5),
        ("\nMN", 20),
        ("VALUE ", 50),
        ("CLIENT_ERROR duplicate flag", 5),
        ("CLIENT_ERROR invalid or duplicate flag", 2),
        ("CLIENT_ERROR invalid flag", 2),
        ("CLIENT_ERROR error decoding key", 2),
    ] {
        assert!(count(marker) >= at_least, "seed {seed}: only {} of {marker:?} (want {at_least})", count(marker));
    }
}

fn one_pool(servers: &[u16]) -> (u16, String) {
    let port = free_port();
    let servers: Vec<String> = servers.iter().map(|p| format!("127.0.0.1:{p}:1")).collect();
    let body = format!(
        "{}{}",
        listener_toml("mc", port, "memcache", "mc", ""),
        // Far above the 3 s bound on failing fast below: a request that waited for it would show.
        redis_pool_toml("mc", &servers, "timeout_ms = 10000\n")
    );
    (port, body)
}

/// Reads until the reply stream ends with `end` (bounded by the client's read timeout).
fn replies(port: u16, requests: &[u8], end: &[u8]) -> String {
    String::from_utf8_lossy(&exchange(port, requests.to_vec(), None, end)).into_owned()
}

#[test]
fn quiet_requests_show_only_what_memcached_shows_and_mn_comes_after_every_earlier_reply() {
    let (a, b) = (memcached(), memcached());
    let (port, body) = one_pool(&[a.port, b.port]);
    let _f = Ferrule::start(&body, port);
    // Many keys on both servers, quiet: only the misses' absence, the NF and the values are seen, in order.
    let mut req = Vec::new();
    for i in 0..50 {
        write!(req, "ms q{i} 1 q\r\n{}\r\n", i % 10).unwrap();
    }
    for i in 0..60 {
        write!(req, "mg q{i} v q k\r\n").unwrap();
    }
    req.extend_from_slice(b"md q1 q\r\nmd q1 q O7\r\nma q2 q\r\nma q99 q\r\nmn\r\n");
    let got = replies(port, &req, b"MN\r\n");
    let mut want = String::new();
    for i in 0..50 {
        want.push_str(&format!("VA 1 kq{i}\r\n{}\r\n", i % 10));
    }
    want.push_str("NF O7\r\nNF\r\nMN\r\n");
    assert_eq!(got, want);
}

#[test]
fn base64_keys_are_routed_by_their_decoded_bytes() {
    let (a, b) = (memcached(), memcached());
    let (port, body) = one_pool(&[a.port, b.port]);
    let _f = Ferrule::start(&body, port);
    let mut req = Vec::new();
    for i in 0..40 {
        write!(req, "set b64:{i} 0 0 1\r\nx\r\n").unwrap();
    }
    for i in 0..40 {
        write!(req, "mg {} b v\r\n", b64(&format!("b64:{i}"))).unwrap();
    }
    req.extend_from_slice(b"mn\r\n");
    let got = replies(port, &req, b"MN\r\n");
    assert_eq!(got, format!("{}{}MN\r\n", "STORED\r\n".repeat(40), "VA 1\r\nx\r\n".repeat(40)));
}

#[test]
fn a_meta_request_to_a_down_server_fails_fast_and_the_connection_goes_on() {
    let dead = free_port();
    let (port, body) = one_pool(&[dead]);
    let _f = Ferrule::start(&body, port);
    let started = Instant::now();
    let got = replies(port, b"mg k v q\r\nms k 1 q\r\nx\r\nmn\r\n", b"MN\r\n");
    // Refused at once; waiting on the timeout would take 10 s. 3 s is room for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 3, "{got:?}");
    assert!(lines[..2].iter().all(|l| l.starts_with("SERVER_ERROR backend ")), "{got:?}");
    assert_eq!(lines[2], "MN");
}
