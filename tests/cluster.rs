//! A real Redis Cluster (3 primaries, 3 replicas on loopback) behind ferrule: routing by slot, hash tags, split
//! and cross-slot commands, MOVED and ASK, a live reshard and a failover under pipelined load; and a TLS-only
//! cluster reached over TLS.

mod common;

use common::certs::Ca;
use common::cluster::{cli, ferrule_for, pipeline, ClusterTls, RedisCluster};
use common::{free_port, listener_toml, resp, tempdir, Client, Ferrule};
use ferrule::cluster::key_slot;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One key for every slot (found by brute force with ferrule's own slot function, checked against redis below).
fn key_per_slot() -> Vec<String> {
    let mut keys: Vec<Option<String>> = vec![None; 16384];
    let mut left = 16384;
    let mut n = 0u64;
    while left > 0 {
        let k = format!("k{n}");
        let slot = key_slot(k.as_bytes()) as usize;
        if keys[slot].is_none() {
            keys[slot] = Some(k);
            left -= 1;
        }
        n += 1;
    }
    keys.into_iter().map(Option::unwrap).collect()
}

fn bulk(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

/// Slot ranges to primary port, from CLUSTER SLOTS of `port` (via redis-cli's plain output: start, end, ip, port, id
/// per line group).
fn owners(cluster: &RedisCluster, port: u16) -> Vec<u16> {
    let text = cluster.cli(port, &["CLUSTER", "SLOTS"]);
    let lines: Vec<&str> = text.lines().collect();
    let mut owner = vec![0u16; 16384];
    // redis-cli prints each entry as: start, end, ip, port, id[, hostname..], then replicas' ip, port, id...
    let mut i = 0;
    while i + 3 < lines.len() {
        let (a, b) = (lines[i].parse::<usize>(), lines[i + 1].parse::<usize>());
        if let (Ok(a), Ok(b)) = (a, b) {
            if lines[i + 2].contains('.') {
                let p: u16 = lines[i + 3].parse().unwrap();
                owner[a..=b].fill(p);
                i += 4;
                continue;
            }
        }
        i += 1;
    }
    owner
}

#[test]
fn the_cluster_is_redis_7_with_cluster_shards() {
    let version = std::process::Command::new(common::require_binary("redis-server", "redis-server"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&version.stdout).into_owned();
    let major: u32 = text.split("v=").nth(1).and_then(|v| v.split('.').next()).and_then(|m| m.parse().ok()).unwrap();
    assert!(major >= 7, "CLUSTER SHARDS needs redis 7 or newer; installed: {text}");
}

/// SETs `v-<key>` for every key of `keys` (one per slot) through `c`, then reads each back from the primary that
/// owns its slot, directly: every slot's key is where redis says the slot lives.
fn set_every_slot_and_check_owners(cluster: &RedisCluster, c: &mut Client, keys: &[String]) {
    for chunk in keys.chunks(1000) {
        let cmds: Vec<Vec<String>> = chunk.iter().map(|k| vec!["SET".into(), k.clone(), format!("v-{k}")]).collect();
        assert!(pipeline(c, &cmds).iter().all(|r| r == "+OK\r\n"));
    }
    let owner = owners(cluster, cluster.ports[0]);
    let mut by_node: HashMap<u16, Vec<&String>> = HashMap::new();
    for (slot, k) in keys.iter().enumerate() {
        by_node.entry(owner[slot]).or_default().push(k);
    }
    assert_eq!(by_node.len(), cluster.want_primaries, "every primary owns slots");
    for (node, ks) in &by_node {
        let mut direct = Client::connect(*node);
        for chunk in ks.chunks(1000) {
            let cmds: Vec<Vec<String>> = chunk.iter().map(|k| vec!["GET".into(), (*k).clone()]).collect();
            let replies = pipeline(&mut direct, &cmds);
            for (k, r) in chunk.iter().zip(replies) {
                assert_eq!(r, bulk(&format!("v-{k}")), "key {k} on node {node}");
            }
        }
    }
}

#[test]
fn every_slot_routes_to_its_owner_and_multi_key_commands_work_across_slots() {
    let _one = serial();
    let cluster = RedisCluster::start(3, 1);
    let (f, port) = ferrule_for(&cluster, "");
    let keys = key_per_slot();
    // Ferrule's slots are redis' slots.
    for k in keys.iter().step_by(997) {
        assert_eq!(cli(cluster.ports[0], &["CLUSTER", "KEYSLOT", k]), key_slot(k.as_bytes()).to_string());
    }
    let mut c = Client::connect(port);
    set_every_slot_and_check_owners(&cluster, &mut c, &keys);
    // Split commands across slots: MGET merges in key order, DEL/EXISTS/TOUCH sum, MSET answers +OK.
    let some: Vec<String> = keys.iter().step_by(163).take(100).cloned().collect();
    let mut mget = vec!["MGET".to_string()];
    mget.extend(some.iter().cloned());
    let reply = pipeline(&mut c, &[mget])[0].clone();
    let expected: String =
        format!("*{}\r\n", some.len()) + &some.iter().map(|k| bulk(&format!("v-{k}"))).collect::<String>();
    assert_eq!(reply, expected);
    let mut exists = vec!["EXISTS".to_string()];
    exists.extend(some.iter().cloned());
    exists.push("no-such-key".into());
    assert_eq!(pipeline(&mut c, &[exists])[0], format!(":{}\r\n", some.len()));
    let mut mset = vec!["MSET".to_string()];
    for k in &some {
        mset.push(k.clone());
        mset.push(format!("w-{k}"));
    }
    assert_eq!(pipeline(&mut c, &[mset])[0], "+OK\r\n");
    assert_eq!(c.redis_str(&["GET", &some[57]]), bulk(&format!("w-{}", some[57])));
    let mut del = vec!["DEL".to_string()];
    del.extend(some.iter().take(10).cloned());
    assert_eq!(pipeline(&mut c, &[del.clone()])[0], ":10\r\n");
    assert_eq!(pipeline(&mut c, &[del])[0], ":0\r\n");

    // Hash tags: keys sharing a tag share a slot, so commands that need one slot work on them.
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
    assert_eq!(c.redis_str(&["SADD", "{user1000}.following", "a", "b"]), ":2\r\n");
    assert_eq!(c.redis_str(&["SADD", "{user1000}.followers", "b", "c"]), ":2\r\n");
    assert_eq!(
        c.redis_str(&["SUNIONSTORE", "{user1000}.all", "{user1000}.following", "{user1000}.followers"]),
        ":3\r\n"
    );
    assert_eq!(c.redis_str(&["RENAME", "{user1000}.all", "{user1000}.everyone"]), "+OK\r\n");
    // Keys of different slots in a command that cannot split: redis' own CROSSSLOT.
    let crossslot = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    assert_eq!(c.redis_str(&["RENAME", &keys[1], &keys[2]]), crossslot);
    assert_eq!(c.redis_str(&["SUNIONSTORE", "dst", "{user1000}.following", "{user2000}.x"]), crossslot);
    assert_eq!(c.redis_str(&["GET", &keys[1]]), bulk(&format!("v-{}", keys[1])), "nothing was renamed");
    drop(f);
}

/// A seed that speaks like redis before 7: it forwards every command to the real node on `upstream`, but answers
/// CLUSTER SHARDS as redis 6 does. Counts (SHARDS refused, SLOTS forwarded).
fn pre_7_seed(upstream: u16) -> (u16, Arc<Mutex<(usize, usize)>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new((0, 0)));
    let counts = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let counts = counts.clone();
            std::thread::spawn(move || {
                let mut node = Client::connect(upstream);
                let (mut buf, mut tmp) = (Vec::new(), [0u8; 4096]);
                loop {
                    // A request is an array of bulk strings: RESP, so the reply framer frames it too.
                    while let Ok(Some(n)) = ferrule::protocol::redis::reply_len(&buf) {
                        let req: Vec<u8> = buf.drain(..n).collect();
                        let upper = String::from_utf8_lossy(&req).to_ascii_uppercase();
                        let reply = if upper.contains("\r\nCLUSTER\r\n") && upper.contains("\r\nSHARDS\r\n") {
                            counts.lock().unwrap().0 += 1;
                            b"-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n".to_vec()
                        } else {
                            if upper.contains("\r\nSLOTS\r\n") {
                                counts.lock().unwrap().1 += 1;
                            }
                            node.send(&req);
                            node.redis_reply()
                        };
                        if conn.write_all(&reply).is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn a_seed_without_cluster_shards_gives_the_map_through_cluster_slots_and_every_slot_routes_right() {
    let _one = serial();
    let cluster = RedisCluster::start(3, 0);
    let (seed, seen) = pre_7_seed(cluster.ports[0]);
    let port = free_port();
    // The fake is the only seed, so the first map can only come from it; no periodic read follows.
    let body = format!(
        "{}[pools.c]\nkind = \"redis_cluster\"\nservers = [\"127.0.0.1:{seed}\"]\ncluster_refresh_ms = 3600000\n",
        listener_toml("l", port, "redis", "c", "")
    );
    let f = Ferrule::start_with(&body, port, 2);
    let mut c = Client::connect(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.redis(&["GET", "warmup"]).starts_with(b"$") {
        assert!(Instant::now() < deadline, "ferrule never routed to the cluster; log:\n{}", f.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = format!("cluster topology version 1 (from 127.0.0.1:{seed}): 3 shards");
    assert!(f.log().contains(&first), "the first map came from the pre-7 seed; log:\n{}", f.log());
    let (shards, slots) = *seen.lock().unwrap();
    assert!(shards >= 1 && slots >= 1, "CLUSTER SHARDS refused {shards} times, CLUSTER SLOTS asked {slots} times");
    set_every_slot_and_check_owners(&cluster, &mut c, &key_per_slot());
    // The map read through CLUSTER SLOTS was right: no request needed a redirect.
    assert_eq!(cluster_stat(&f, "moved") + cluster_stat(&f, "ask"), 0);
}

/// The elements of a RESP array of bulk strings (one level), as text.
fn bulks(reply: &str) -> Vec<String> {
    reply.split("\r\n").collect::<Vec<_>>().windows(2).filter(|w| w[0].starts_with('$')).map(|w| w[1].into()).collect()
}

#[test]
fn scan_dbsize_script_and_function_cover_every_primary() {
    let _one = serial();
    let cluster = RedisCluster::start(3, 0);
    let (_f, port) = ferrule_for(&cluster, "");
    let mut c = Client::connect(port);
    let keys: Vec<String> = (0..300).map(|i| format!("whole-{i}")).collect();
    let cmds: Vec<Vec<String>> = keys.iter().map(|k| vec!["SET".into(), k.clone(), "v".into()]).collect();
    assert!(pipeline(&mut c, &cmds).iter().all(|r| r == "+OK\r\n"));
    let primaries = cluster.primaries();
    let per_node: Vec<u64> = primaries.iter().map(|&p| cli(p, &["DBSIZE"]).parse().unwrap()).collect();
    assert!(per_node.iter().all(|&n| n > 0), "the keys are spread over every primary: {per_node:?}");
    // DBSIZE: the sum over the primaries (the warm-up GET wrote nothing).
    assert_eq!(c.redis_str(&["DBSIZE"]), format!(":{}\r\n", per_node.iter().sum::<u64>()));
    assert_eq!(per_node.iter().sum::<u64>(), 300);
    // SCAN: one primary after the other, the cursor carrying which; every key once, then cursor 0.
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    for round in 0.. {
        assert!(round < 1000, "SCAN never ended");
        let reply = c.redis_str(&["SCAN", &cursor, "COUNT", "50"]);
        let items = bulks(&reply);
        cursor = items[0].clone();
        seen.extend(items[1..].iter().cloned());
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(seen, want, "every key exactly once");
    // SCRIPT LOAD goes to every primary, so EVALSHA runs on whichever node a key lives on.
    let body = "return redis.call('GET', KEYS[1])";
    let sha = bulks(&c.redis_str(&["SCRIPT", "LOAD", body]))[0].clone();
    assert_eq!(sha.len(), 40, "{sha}");
    for &p in &primaries {
        assert_eq!(cli(p, &["SCRIPT", "EXISTS", &sha]), "1", "loaded on {p}");
    }
    for k in keys.iter().take(30) {
        assert_eq!(c.redis_str(&["EVALSHA", &sha, "1", k]), bulk("v"), "EVALSHA on {k}");
    }
    assert_eq!(
        c.redis_str(&["SCRIPT", "EXISTS", &sha, "0000000000000000000000000000000000000000"]),
        "*2\r\n:1\r\n:0\r\n"
    );
    assert_eq!(c.redis_str(&["SCRIPT", "FLUSH"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["SCRIPT", "EXISTS", &sha]), "*1\r\n:0\r\n");
    for &p in &primaries {
        assert_eq!(cli(p, &["SCRIPT", "EXISTS", &sha]), "0", "flushed on {p}");
    }
    // FUNCTION LOAD / LIST / DELETE likewise; FCALL runs on every node.
    let lib =
        "#!lua name=ferrulelib\nredis.register_function('getit', function(keys) return redis.call('GET', keys[1]) end)";
    assert_eq!(c.redis_str(&["FUNCTION", "LOAD", lib]), bulk("ferrulelib"));
    for &p in &primaries {
        assert!(cli(p, &["FUNCTION", "LIST"]).contains("ferrulelib"), "function on {p}");
    }
    assert!(c.redis_str(&["FUNCTION", "LIST"]).contains("ferrulelib"));
    for k in keys.iter().take(30) {
        assert_eq!(c.redis_str(&["FCALL", "getit", "1", k]), bulk("v"), "FCALL on {k}");
    }
    assert_eq!(c.redis_str(&["FUNCTION", "DELETE", "ferrulelib"]), "+OK\r\n");
    for &p in &primaries {
        assert!(!cli(p, &["FUNCTION", "LIST"]).contains("ferrulelib"), "deleted on {p}");
    }
    // Still refused on a cluster pool, with the reason.
    assert!(c.redis_str(&["SCRIPT", "KILL"]).starts_with("-ERR ferrule: SCRIPT KILL is not supported"));
}

/// One cluster test at a time: each runs six redis-servers, and a starved node could miss its timeout.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_slot_moved_by_hand_is_followed_through_moved_and_the_map_is_refreshed() {
    let _one = serial();
    let cluster = RedisCluster::start(3, 1);
    // No periodic refresh during the test: on a loaded machine one could read the new map between the move and the
    // next GET, and then no request would meet the MOVED this test is about.
    let (f, port) = ferrule_for(&cluster, "cluster_refresh_ms = 600000");
    let mut c = Client::connect(port);
    let key = "{moved}.k";
    let slot = key_slot(key.as_bytes());
    assert_eq!(c.redis_str(&["SET", key, "before"]), "+OK\r\n");
    let from = cluster.owner_of(slot);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    cluster.move_slot(slot, from, to, &[key], true);
    // The old owner now redirects; a plain client through ferrule never sees it.
    assert!(cli(from, &["GET", key]).starts_with("MOVED"), "the old owner answers MOVED");
    assert_eq!(c.redis_str(&["GET", key]), bulk("before"));
    assert_eq!(c.redis_str(&["SET", key, "after"]), "+OK\r\n");
    assert_eq!(cli(to, &["GET", key]), "after", "the write went to the new owner");
    // The redirect asked for a new map: ferrule logs the move and stops being redirected.
    let moved_line = format!("1 slots moved from primary 127.0.0.1:{from} to 127.0.0.1:{to}");
    assert!(f.wait_log(&moved_line, 1, Duration::from_secs(10)), "no refresh; log:\n{}", f.log());
    let moved_before = cluster_stat(&f, "moved");
    for _ in 0..20 {
        assert_eq!(c.redis_str(&["GET", key]), bulk("after"));
    }
    assert_eq!(cluster_stat(&f, "moved"), moved_before, "after the refresh, requests go straight to the new owner");
    assert!(moved_before >= 1);
}

#[test]
fn a_half_done_migration_is_followed_through_ask_without_changing_the_map() {
    let _one = serial();
    let cluster = RedisCluster::start(3, 1);
    let (f, port) = ferrule_for(&cluster, "");
    let mut c = Client::connect(port);
    let (moved, stays, fresh) = ("{ask}.moved", "{ask}.stays", "{ask}.fresh");
    let slot = key_slot(moved.as_bytes());
    assert_eq!(c.redis_str(&["SET", moved, "m"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["SET", stays, "s"]), "+OK\r\n");
    let from = cluster.owner_of(slot);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    cluster.move_slot(slot, from, to, &[moved], false);
    assert!(cli(from, &["GET", moved]).starts_with("ASK"), "the source answers ASK for a key it gave away");
    // The moved key is read from the target (ASKING first), the other from the source; a new key goes to the
    // target, as the source sends it there.
    assert_eq!(c.redis_str(&["GET", moved]), bulk("m"));
    assert_eq!(c.redis_str(&["GET", stays]), bulk("s"));
    assert_eq!(c.redis_str(&["SET", fresh, "f"]), "+OK\r\n");
    let mut direct = Client::connect(to);
    assert_eq!(pipeline(&mut direct, &[vec!["ASKING"], vec!["GET", fresh]])[1], bulk("f"));
    // Pipelined, many times: each ASK is followed once per request.
    let cmds: Vec<Vec<String>> =
        (0..50).map(|i| vec!["GET".into(), if i % 2 == 0 { moved } else { stays }.into()]).collect();
    for (i, r) in pipeline(&mut c, &cmds).iter().enumerate() {
        assert_eq!(r, &bulk(if i % 2 == 0 { "m" } else { "s" }));
    }
    assert!(cluster_stat(&f, "ask") >= 26, "ASKs followed: {}", cluster_stat(&f, "ask"));
    // ASK changes no map: the periodic refreshes (every second) keep seeing the same owners.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!f.log().contains("slots moved"), "{}", f.log());
    // Finishing the migration turns it into MOVED, still invisible to the client.
    assert_eq!(cli(from, &["MIGRATE", "127.0.0.1", &to.to_string(), stays, "0", "5000"]), "OK");
    cluster.move_slot_finish(slot, to);
    assert_eq!(c.redis_str(&["GET", stays]), bulk("s"));
    assert_eq!(c.redis_str(&["GET", moved]), bulk("m"));
}

#[test]
fn a_multi_key_request_answered_tryagain_during_a_migration_is_retried_until_the_keys_have_moved() {
    let _one = serial();
    let cluster = RedisCluster::start(3, 1);
    let (f, port) = ferrule_for(&cluster, "");
    let mut c = Client::connect(port);
    let (a, b) = ("{try}.a", "{try}.b");
    let slot = key_slot(a.as_bytes());
    assert_eq!(c.redis_str(&["MSET", a, "va", b, "vb"]), "+OK\r\n");
    let from = cluster.owner_of(slot);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    // Half moved: the source has b only, so an MGET of both is neither its to answer nor the target's.
    cluster.move_slot(slot, from, to, &[a], false);
    let mget = ["MGET", a, b];
    assert!(Client::connect(from).redis_str(&mget).starts_with("-TRYAGAIN"), "redis answers TRYAGAIN");
    // Nothing changes: after its retries (about 300 ms), the client gets redis' answer, not a hang.
    let started = Instant::now();
    assert!(c.redis_str(&mget).starts_with("-TRYAGAIN"));
    assert!(started.elapsed() >= Duration::from_millis(200), "retried with delays: {:?}", started.elapsed());
    assert_eq!(cluster_stat(&f, "tryagain"), 5, "five retries, then the error");
    // Again, and this time the rest of the slot's keys move while ferrule retries: the retry is redirected by ASK
    // to the target, which now has both, and the client gets the values.
    let mut out = Vec::new();
    ferrule::protocol::redis::write_command(&mut out, &[b"MGET", a.as_bytes(), b.as_bytes()]);
    c.send(&out);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster_stat(&f, "tryagain") < 6 {
        assert!(Instant::now() < deadline, "the MGET was never answered TRYAGAIN");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Other clients are served meanwhile (the retries wait on a timer, not on the worker).
    let mut other = Client::connect(port);
    assert_eq!(other.redis_str(&["SET", "other", "1"]), "+OK\r\n");
    let mut source = Client::connect(from);
    assert_eq!(source.redis_str(&["MIGRATE", "127.0.0.1", &to.to_string(), b, "0", "5000"]), "+OK\r\n");
    assert_eq!(String::from_utf8_lossy(&c.redis_reply()), format!("*2\r\n{}{}", bulk("va"), bulk("vb")));
    assert!(cluster_stat(&f, "ask") >= 1, "the retry was sent on by ASK");
    cluster.move_slot_finish(slot, to);
    assert_eq!(c.redis_str(&["MGET", a, b]), format!("*2\r\n{}{}", bulk("va"), bulk("vb")));
}

/// A figure of the cluster pool from GET /stats (`cluster_<name>` in the pool's object).
fn cluster_stat(f: &Ferrule, name: &str) -> u64 {
    let (code, body) = f.admin("GET", "/stats");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["c"][format!("cluster_{name}")].as_u64().unwrap_or_else(|| panic!("no cluster_{name} in {body}"))
}

/// What one load connection saw.
#[derive(Debug, Default, Clone)]
struct LoadReport {
    replies: u64,
    /// (when, request, reply) of every error reply.
    errors: Vec<(Instant, String, String)>,
    /// (request, reply, what was expected) of every reply that was not an error and not what it had to be.
    wrong: Vec<(String, String, String)>,
    /// Replies per key slot owner, after `since`: filled by the caller.
    ended: Option<String>,
}

/// Connections pipelining SET k v / GET k pairs (50 per batch) over their own share of `keys`, checking every
/// reply: a SET answers +OK; a GET answers the value just set, or with `lenient` (a failover may lose writes
/// the old primary acknowledged) any value ever written to that key, or nil.
struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<LoadReport>>,
}

impl Load {
    fn start(port: u16, conns: usize, keys: Arc<Vec<String>>, lenient: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..conns)
            .map(|t| {
                let (stop, keys) = (stop.clone(), keys.clone());
                std::thread::spawn(move || load_thread(port, t, conns, &keys, lenient, &stop))
            })
            .collect();
        Load { stop, handles }
    }

    fn finish(self) -> Vec<LoadReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.handles.into_iter().map(|h| h.join().expect("load thread panicked")).collect()
    }
}

fn load_thread(port: u16, t: usize, conns: usize, keys: &[String], lenient: bool, stop: &AtomicBool) -> LoadReport {
    let mine: Vec<&String> = keys.iter().skip(t).step_by(conns).collect();
    let mut report = LoadReport::default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut n = 0u64;
    // Bounded in time by the caller's stop flag, and in count as a safety net.
    while !stop.load(Ordering::Relaxed) && n < 50_000_000 {
        let mut out = Vec::new();
        let mut reqs = Vec::new();
        for _ in 0..25 {
            let key = mine[(n as usize) % mine.len()];
            let val = format!("{key}:{n}");
            ferrule::protocol::redis::write_command(&mut out, &[b"SET", key.as_bytes(), val.as_bytes()]);
            ferrule::protocol::redis::write_command(&mut out, &[b"GET", key.as_bytes()]);
            reqs.push((format!("SET {key} {val}"), "+OK\r\n".to_string(), key.clone()));
            reqs.push((format!("GET {key}"), bulk(&val), key.clone()));
            n += 1;
        }
        if let Err(e) = s.write_all(&out) {
            report.ended = Some(format!("write: {e}"));
            break;
        }
        let mut got = 0;
        let mut tmp = [0u8; 65536];
        while got < reqs.len() {
            match ferrule::protocol::redis::reply_len(&buf) {
                Ok(Some(len)) => {
                    let reply = String::from_utf8_lossy(&buf[..len]).into_owned();
                    buf.drain(..len);
                    let (req, expected, key) = &reqs[got];
                    if reply.starts_with('-') {
                        report.errors.push((Instant::now(), req.clone(), reply));
                    } else if reply != *expected {
                        let acceptable = lenient
                            && req.starts_with("GET")
                            && (reply == "$-1\r\n"
                                || reply.split("\r\n").nth(1).is_some_and(|v| v.starts_with(&format!("{key}:"))));
                        if !acceptable {
                            report.wrong.push((req.clone(), reply, expected.clone()));
                        }
                    }
                    report.replies += 1;
                    got += 1;
                }
                Ok(None) => match s.read(&mut tmp) {
                    Ok(0) => {
                        report.ended = Some("closed by ferrule".into());
                        return report;
                    }
                    Ok(k) => buf.extend_from_slice(&tmp[..k]),
                    Err(e) => {
                        report.ended = Some(format!("read: {e}"));
                        return report;
                    }
                },
                Err(e) => {
                    report.ended = Some(format!("unparseable reply: {e:?}"));
                    return report;
                }
            }
        }
    }
    report
}

fn spread_keys(n: usize) -> Arc<Vec<String>> {
    Arc::new((0..n).map(|i| format!("load:{i}")).collect())
}

#[test]
fn a_live_reshard_under_pipelined_load_fails_nothing_and_answers_nothing_wrong() {
    let _one = serial();
    let cluster = RedisCluster::start(3, 1);
    let (f, port) = ferrule_for(&cluster, "");
    let keys = spread_keys(3000);
    let load = Load::start(port, 4, keys.clone(), false);
    std::thread::sleep(Duration::from_millis(500));
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let started = Instant::now();
    let out = std::process::Command::new("timeout")
        .arg("180")
        .arg(common::require_binary("redis-cli", "redis-tools"))
        .args(["--cluster", "reshard", &format!("127.0.0.1:{}", cluster.ports[0])])
        .args(["--cluster-from", &cluster.id_of(from), "--cluster-to", &cluster.id_of(to)])
        .args(["--cluster-slots", "1000", "--cluster-yes"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "reshard failed: {}", String::from_utf8_lossy(&out.stdout));
    std::thread::sleep(Duration::from_millis(1500));
    let reports = load.finish();
    let replies: u64 = reports.iter().map(|r| r.replies).sum();
    let errors: Vec<_> = reports.iter().flat_map(|r| r.errors.iter()).collect();
    let wrong: Vec<_> = reports.iter().flat_map(|r| r.wrong.iter()).collect();
    let ended: Vec<_> = reports.iter().filter_map(|r| r.ended.as_ref()).collect();
    eprintln!("reshard of 1000 slots took {took:?}; {replies} replies under load");
    assert!(ended.is_empty(), "load connections ended: {ended:?}");
    assert!(errors.is_empty(), "{} failed replies, first: {:?}", errors.len(), errors.first());
    assert!(wrong.is_empty(), "{} wrong replies, first: {:?}", wrong.len(), wrong.first());
    assert!(replies > 10_000, "the load ran: {replies} replies");
    let followed = cluster_stat(&f, "moved") + cluster_stat(&f, "ask");
    assert!(followed > 0, "the reshard was seen through redirects");
    assert!(
        f.wait_log(
            &format!("1000 slots moved from primary 127.0.0.1:{from} to 127.0.0.1:{to}"),
            1,
            Duration::from_secs(5)
        ) || f.log().contains("slots moved"),
        "{}",
        f.log()
    );
    // Everything written is where the cluster now says it is.
    let mut c = Client::connect(port);
    for k in keys.iter().step_by(97) {
        assert!(c.redis_str(&["GET", k]).contains(&format!("{k}:")));
    }
}

#[test]
fn a_primary_killed_under_load_fails_only_its_requests_until_the_new_map_arrives() {
    let _one = serial();
    let mut cluster = RedisCluster::start_with_timeout(3, 1, 1000);
    let (f, port) = ferrule_for(&cluster, "");
    // The replicas are in the map before the failure (their first reads may predate their sync).
    assert!(f.wait_log("3 shards, 6 nodes (3 replicas)", 1, Duration::from_secs(10)), "{}", f.log());
    let keys = spread_keys(3000);
    let load = Load::start(port, 4, keys.clone(), true);
    std::thread::sleep(Duration::from_millis(700));
    let victim = cluster.owner_of(0);
    let killed_at = Instant::now();
    cluster.kill(victim);
    cluster.want_replicas -= 1;
    cluster.wait_healthy(Duration::from_secs(30));
    let promoted = cluster.owner_of(0);
    assert_ne!(promoted, victim);
    let needle = format!("slots moved from primary 127.0.0.1:{victim} to 127.0.0.1:{promoted}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f.log().contains(&needle) {
        assert!(Instant::now() < deadline, "ferrule never saw the failover; log:\n{}", f.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let map_seen = Instant::now();
    std::thread::sleep(Duration::from_millis(2000));
    let reports = load.finish();
    let ended: Vec<_> = reports.iter().filter_map(|r| r.ended.as_ref()).collect();
    assert!(ended.is_empty(), "load connections ended: {ended:?}");
    let wrong: Vec<_> = reports.iter().flat_map(|r| r.wrong.iter()).collect();
    assert!(wrong.is_empty(), "{} wrong replies, first: {:?}", wrong.len(), wrong.first());
    let errors: Vec<_> = reports.iter().flat_map(|r| r.errors.iter()).collect();
    let victim_slots: Vec<bool> = {
        let owner = owners(&cluster, promoted);
        (0..16384).map(|s| owner[s] == promoted).collect()
    };
    eprintln!(
        "failover: map seen {:?} after the kill; {} errors, the last {:?} after the kill",
        map_seen - killed_at,
        errors.len(),
        errors.iter().map(|e| e.0 - killed_at).max()
    );
    for (at, req, reply) in &errors {
        let key = req.split(' ').nth(1).unwrap();
        assert!(
            victim_slots[key_slot(key.as_bytes()) as usize],
            "an error for a key of a live primary: {req} -> {reply}"
        );
        assert!(*at >= killed_at, "an error before the kill: {req} -> {reply}");
        assert!(*at <= map_seen + Duration::from_millis(500), "an error after the new map was in: {req} -> {reply}");
        assert!(reply.starts_with("-ERR ferrule: backend c/") || reply.starts_with("-CLUSTERDOWN"), "{reply}");
    }
    // After the map arrived, the promoted replica serves the dead primary's keys.
    let mut c = Client::connect(port);
    let on_victim: Vec<&String> =
        keys.iter().filter(|k| victim_slots[key_slot(k.as_bytes()) as usize]).take(50).collect();
    assert!(!on_victim.is_empty());
    for k in on_victim {
        assert_eq!(c.redis_str(&["SET", k, "x"]), "+OK\r\n");
        assert_eq!(c.redis_str(&["GET", k]), bulk("x"));
    }
    assert!(cluster_stat(&f, "topology_version") >= 2);
}

/// `cmdstat_get` calls on the node at `port`.
fn get_calls(cluster: &RedisCluster, port: u16) -> u64 {
    let info = cluster.cli(port, &["INFO", "commandstats"]);
    info.lines()
        .find(|l| l.starts_with("cmdstat_get:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn read_from_replica_sends_reads_to_replicas_with_readonly_and_writes_to_primaries() {
    let _one = serial();
    let cluster = RedisCluster::start(3, 1);
    let (f, port) = ferrule_for(&cluster, "read_from = \"replica\"");
    assert!(f.wait_log("3 shards, 6 nodes (3 replicas)", 1, Duration::from_secs(10)), "{}", f.log());
    let primaries = cluster.primaries();
    let replicas: Vec<u16> = cluster.ports.iter().copied().filter(|p| !primaries.contains(p)).collect();
    let before: Vec<u64> = primaries.iter().map(|&p| get_calls(&cluster, p)).collect();
    let mut c = Client::connect(port);
    let keys: Vec<String> = (0..60).map(|i| format!("ro:{i}")).collect();
    for k in &keys {
        assert_eq!(c.redis_str(&["SET", k, k]), "+OK\r\n");
    }
    // Replication is asynchronous: a read may come before the write reached the replica (nil), never another value.
    let deadline = Instant::now() + Duration::from_secs(10);
    for k in &keys {
        loop {
            let r = c.redis_str(&["GET", k]);
            if r == bulk(k) {
                break;
            }
            assert_eq!(r, "$-1\r\n", "{k}");
            assert!(Instant::now() < deadline, "{k} never reached its replica");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let after: Vec<u64> = primaries.iter().map(|&p| get_calls(&cluster, p)).collect();
    assert_eq!(before, after, "no GET reached a primary");
    assert!(replicas.iter().map(|&p| get_calls(&cluster, p)).sum::<u64>() >= keys.len() as u64);
    // The replicas' connections from ferrule are READONLY ones (flag r).
    assert!(replicas.iter().any(|&p| cli(p, &["CLIENT", "LIST"]).lines().any(|l| l.contains("flags=r "))));
}

/// Waits until `port` routes to the cluster (a GET answers nil or a value).
fn wait_routed(f: &Ferrule, port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = Client::connect(port);
    while !c.redis(&["GET", "warmup"]).starts_with(b"$") {
        assert!(Instant::now() < deadline, "ferrule never routed to the cluster; log:\n{}", f.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

#[test]
fn a_tls_only_cluster_is_reached_over_tls_for_every_node_and_a_wrong_ca_fails_clearly() {
    let _one = serial();
    let dir = tempdir("cluster-tls");
    let ca = Ca::new("cluster CA");
    let node = ca.leaf(&dir, "node", false);
    let tls = ClusterTls { cert: node.cert, key: node.key, ca: ca.write(&dir, "ca") };
    let stranger = Ca::new("a CA the cluster does not use").write(&dir, "stranger");
    let cluster = RedisCluster::start_tls(3, 1, tls.clone());
    let (p, r, bad) = (free_port(), free_port(), free_port());
    let pool = |name: &str, ca: &str, extra: &str| {
        format!(
            "[pools.{name}]\nkind = \"redis_cluster\"\nservers = {}\ntimeout_ms = 2000\ntls = true\ntls_ca = {ca:?}\n\
             {extra}\n",
            cluster.seeds_toml()
        )
    };
    let body = listener_toml("p", p, "redis", "c", "")
        + &listener_toml("r", r, "redis", "r", "")
        + &listener_toml("bad", bad, "redis", "bad", "")
        // No periodic refresh on `c`: the MOVED below must meet ferrule's old map.
        + &pool("c", &tls.ca, "cluster_refresh_ms = 600000")
        + &pool("r", &tls.ca, "read_from = \"replica\"\ncluster_refresh_ms = 300\ncluster_refresh_min_interval_ms = 50")
        + &pool("bad", &stranger, "");
    let f = Ferrule::start_with(&body, p, 2);
    let mut c = wait_routed(&f, p);
    // Replicas count once they are in sync (CLUSTER SHARDS says `online`); pool r reads the topology often.
    assert!(f.wait_log("3 shards, 6 nodes (3 replicas)", 1, Duration::from_secs(10)), "{}", f.log());

    // Every primary is reached over TLS: keys of 256 slots spread over all three, each where redis says its slot is.
    let keys: Vec<String> = key_per_slot().into_iter().step_by(64).collect();
    let sets: Vec<Vec<String>> = keys.iter().map(|k| vec!["SET".into(), k.clone(), format!("v-{k}")]).collect();
    assert!(pipeline(&mut c, &sets).iter().all(|r| r == "+OK\r\n"));
    let owner = owners(&cluster, cluster.ports[0]);
    let primaries = cluster.primaries();
    let mut found = 0;
    for &node in &primaries {
        let held: Vec<String> = cluster.cli(node, &["--scan"]).lines().map(String::from).collect();
        assert!(!held.is_empty(), "primary {node} got no key");
        for k in &held {
            assert_eq!(owner[key_slot(k.as_bytes()) as usize], node, "{k} on {node}");
        }
        found += held.len();
    }
    assert_eq!(found, keys.len());
    let gets: Vec<Vec<String>> = keys.iter().map(|k| vec!["GET".into(), k.clone()]).collect();
    for (k, reply) in keys.iter().zip(pipeline(&mut c, &gets)) {
        assert_eq!(reply, bulk(&format!("v-{k}")));
    }

    // A slot moved by hand: the old owner answers MOVED (naming the new owner's TLS port), which ferrule follows
    // over TLS.
    let key = "{tls-moved}.k";
    let slot = key_slot(key.as_bytes());
    assert_eq!(c.redis_str(&["SET", key, "before"]), "+OK\r\n");
    let from = cluster.owner_of(slot);
    let to = *primaries.iter().find(|&&n| n != from).unwrap();
    cluster.move_slot(slot, from, to, &[key], true);
    assert_eq!(cluster.cli(from, &["GET", key]), format!("MOVED {slot} 127.0.0.1:{to}"));
    assert_eq!(c.redis_str(&["GET", key]), bulk("before"));
    assert!(cluster_stat(&f, "moved") >= 1);
    assert_eq!(c.redis_str(&["SET", key, "after"]), "+OK\r\n");
    assert_eq!(cluster.cli(to, &["GET", key]), "after");

    // Transactions and blocking commands run on dedicated connections to the slot's node: over TLS too.
    assert_eq!(c.redis_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["SET", "{tls-txn}.n", "1"]), "+QUEUED\r\n");
    assert_eq!(c.redis_str(&["INCR", "{tls-txn}.n"]), "+QUEUED\r\n");
    assert_eq!(c.redis_str(&["EXEC"]), "*2\r\n+OK\r\n:2\r\n");
    assert_eq!(cluster.cli(cluster.owner_of(key_slot(b"{tls-txn}.n")), &["GET", "{tls-txn}.n"]), "2");
    assert_eq!(c.redis_str(&["BLPOP", "{tls-txn}.list", "0.1"]), "*-1\r\n");
    assert_eq!(c.redis_str(&["RPUSH", "{tls-txn}.list", "x"]), ":1\r\n");
    assert_eq!(c.redis_str(&["BLPOP", "{tls-txn}.list", "1"]), "*2\r\n$14\r\n{tls-txn}.list\r\n$1\r\nx\r\n");
    // Subscriber connections too: a shard channel's subscriber on its slot's node hears an SPUBLISH.
    let mut sub = Client::connect(p);
    sub.send(&resp(&["SSUBSCRIBE", "{tls-txn}.ch"]));
    assert_eq!(String::from_utf8_lossy(&sub.redis_reply()), "*3\r\n$10\r\nssubscribe\r\n$12\r\n{tls-txn}.ch\r\n:1\r\n");
    assert_eq!(c.redis_str(&["SPUBLISH", "{tls-txn}.ch", "hi"]), ":1\r\n");
    assert_eq!(
        String::from_utf8_lossy(&sub.redis_reply()),
        "*3\r\n$8\r\nsmessage\r\n$12\r\n{tls-txn}.ch\r\n$2\r\nhi\r\n"
    );
    drop(sub);

    // read_from = replica: reads go to the replicas, over TLS, on READONLY connections.
    let replicas: Vec<u16> = cluster.ports.iter().copied().filter(|n| !primaries.contains(n)).collect();
    let before: u64 = replicas.iter().map(|&n| get_calls(&cluster, n)).sum();
    let mut rc = wait_routed(&f, r);
    let deadline = Instant::now() + Duration::from_secs(10);
    for k in keys.iter().take(30) {
        loop {
            let reply = rc.redis_str(&["GET", k]);
            if reply == bulk(&format!("v-{k}")) {
                break;
            }
            assert_eq!(reply, "$-1\r\n", "{k}");
            assert!(Instant::now() < deadline, "{k} never reached its replica");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let calls: Vec<u64> = replicas.iter().map(|&n| get_calls(&cluster, n)).collect();
    assert!(
        calls.iter().sum::<u64>() >= before + 30,
        "GETs on the replicas {replicas:?}: {calls:?}, {before} before; moved {}; log:\n{}",
        cluster_stat(&f, "moved"),
        f.log()
    );
    assert!(replicas.iter().any(|&n| cluster.cli(n, &["CLIENT", "LIST"]).lines().any(|l| l.contains("flags=r "))));

    // A wrong CA: no topology can be read; requests fail at once with a clear error instead of waiting, and the
    // log says why.
    let mut b = Client::connect(bad);
    let asked = Instant::now();
    let reply = b.redis_str(&["GET", "k"]);
    assert!(asked.elapsed() < Duration::from_secs(3), "answered after {:?}", asked.elapsed());
    assert!(reply.starts_with("-CLUSTERDOWN") && reply.contains("pool 'bad'"), "{reply}");
    assert!(reply.contains("TLS handshake failed: the peer's certificate is not issued by a trusted CA"), "{reply}");
    assert!(f.log().contains("pool bad: cannot read the cluster topology"), "{}", f.log());

    // A node that announces a host name is checked against it: one its certificate is not for fails that node's
    // requests with the handshake's reason, and the others go on.
    let named = "{tls-named}.k";
    let (named_slot, other) = (
        key_slot(named.as_bytes()),
        keys.iter()
            .find(|k| owner[key_slot(k.as_bytes()) as usize] != cluster.owner_of(key_slot(named.as_bytes())))
            .unwrap(),
    );
    let victim = cluster.owner_of(named_slot);
    assert_eq!(cluster.cli(victim, &["CONFIG", "SET", "cluster-announce-hostname", "wrong.example"]), "OK");
    let mut failed = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !failed.contains("TLS handshake failed") {
        assert!(Instant::now() < deadline, "the new name was never used; last reply {failed:?}; log:\n{}", f.log());
        std::thread::sleep(Duration::from_millis(50));
        failed = rc.redis_str(&["SET", named, "x"]);
    }
    assert!(failed.starts_with("-ERR ferrule: backend r/127.0.0.1:"), "{failed}");
    assert!(failed.contains("not valid for the expected name"), "{failed}");
    assert_eq!(rc.redis_str(&["SET", other, "still"]), "+OK\r\n", "the other nodes are still served");
    let (_, metrics) = f.admin("GET", "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferrule_tls_handshake_failures_total{side=\"backend\"") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // The name announced no more: the node is checked against its IP again, and served.
    assert_eq!(cluster.cli(victim, &["CONFIG", "SET", "cluster-announce-hostname", ""]), "OK");
    let deadline = Instant::now() + Duration::from_secs(15);
    while rc.redis_str(&["SET", named, "x"]) != "+OK\r\n" {
        assert!(Instant::now() < deadline, "never served again; log:\n{}", f.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}
