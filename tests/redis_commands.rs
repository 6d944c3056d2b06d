//! Redis as today's clients speak it, through ferrule against real redis-server backends and side by side with a
//! direct connection: ACL users and their errors, CLIENT answered per client, COMMAND from the table, argument
//! errors, keys given by options, SCAN / DBSIZE over the whole pool, scripts loaded on every server.

mod common;
use common::*;
use std::collections::HashSet;

const RO_SHA256: &str = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"; // sha256("pw")

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// Backends, ferrule on a pool of them (md5 hashing, `{}` hash tags), and its port.
fn setup(servers: usize, listener_extra: &str) -> (Vec<Proc>, Ferrule, u16) {
    let backends: Vec<Proc> = (0..servers).map(|_| redis_server()).collect();
    let specs: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", listener_extra),
        redis_pool_toml("main", &specs, "hash = \"md5\"\nhash_tag = \"{}\"")
    );
    let f = Ferrule::start(&body, port);
    (backends, f, port)
}

/// The server (index in `backends`) holding `key`, asked of each directly.
fn holder(backends: &[Proc], key: &str) -> Option<usize> {
    backends.iter().position(|b| Client::connect(b.port).redis(&["EXISTS", key]) == b":1\r\n")
}

#[test]
fn users_and_their_errors_as_redis_7_words_them() {
    let users = format!(
        "auth = \"secret\"\nusers = [{{ name = \"ro\", password_sha256 = \"{RO_SHA256}\", permissions = \"read-only\" }}, \
         {{ name = \"app\", password = \"app-pw\" }}]"
    );
    let (backends, f, port) = setup(1, &users);
    // The same users on a redis of its own, for comparison.
    let reference = redis_server();
    let mut admin = Client::connect(reference.port);
    assert_eq!(
        admin.redis_str(&["ACL", "SETUSER", "ro", "on", &format!("#{RO_SHA256}"), "~*", "+@read", "+@connection"]),
        "+OK\r\n"
    );
    assert_eq!(admin.redis_str(&["ACL", "SETUSER", "app", "on", ">app-pw", "~*", "+@all"]), "+OK\r\n");
    assert_eq!(admin.redis_str(&["CONFIG", "SET", "requirepass", "secret"]), "+OK\r\n");

    let mut proxy = Client::connect(port);
    let mut direct = Client::connect(reference.port);
    let same = |proxy: &mut Client, direct: &mut Client, args: &[&str]| {
        let (ours, theirs) = (proxy.redis(args), direct.redis(args));
        assert_eq!(text(&ours), text(&theirs), "{args:?}");
        ours
    };
    assert_eq!(same(&mut proxy, &mut direct, &["GET", "k"]), b"-NOAUTH Authentication required.\r\n");
    // A malformed command gets its arity error first, as in redis.
    same(&mut proxy, &mut direct, &["GET"]);
    for args in [
        &["AUTH", "wrong"][..],
        &["AUTH", "ro", "wrong"],
        &["AUTH", "nobody", "pw"],
        &["HELLO", "3", "AUTH", "ro", "x"],
    ] {
        assert_eq!(
            same(&mut proxy, &mut direct, args),
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
    }
    same(&mut proxy, &mut direct, &["AUTH", "a", "b", "c"]);
    assert_eq!(same(&mut proxy, &mut direct, &["AUTH", "ro", "pw"]), b"+OK\r\n");
    for args in [&["SET", "k", "v"][..], &["DEL", "k"], &["EVAL", "return 1", "0"], &["FLUSHALL"]] {
        let reply = same(&mut proxy, &mut direct, args);
        assert!(reply.starts_with(b"-NOPERM this user has no permissions to run the '"), "{}", text(&reply));
    }
    same(&mut proxy, &mut direct, &["SET", "k"]);
    same(&mut proxy, &mut direct, &["GET", "k"]);
    same(&mut proxy, &mut direct, &["MGET", "a", "b"]);
    same(&mut proxy, &mut direct, &["PING"]);
    same(&mut proxy, &mut direct, &["CLIENT", "GETNAME"]);
    // The write never reached the backend.
    assert_eq!(Client::connect(backends[0].port).redis(&["EXISTS", "k"]), b":0\r\n");

    // A full user writes; HELLO AUTH switches user and protocol at once.
    let mut app = Client::connect(port);
    assert!(app.redis(&["HELLO", "3", "AUTH", "app", "app-pw"]).starts_with(b"%7\r\n"));
    assert_eq!(app.redis(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(app.redis(&["AUTH", "secret"]), b"+OK\r\n");
    assert_eq!(app.redis(&["DEL", "k"]), b":1\r\n");
    assert_eq!(app.redis(&["AUTH", "ro", "pw"]), b"+OK\r\n");
    assert!(app.redis(&["SET", "k", "v"]).starts_with(b"-NOPERM"));

    // Secrets are masked in /config.
    let (code, shown) = f.admin("GET", "/config");
    assert_eq!(code, 200);
    for secret in ["secret", "app-pw", RO_SHA256] {
        assert!(!shown.contains(&format!("\"{secret}\"")), "{secret} shown in {shown}");
    }
    assert!(shown.contains("permissions = \"read-only\""), "{shown}");
}

#[test]
fn client_subcommands_answer_for_the_client() {
    let (_backends, _f, port) = setup(1, "");
    let direct_redis = redis_server();
    let mut proxy = Client::connect(port);
    let mut direct = Client::connect(direct_redis.port);
    for args in [
        &["CLIENT", "GETNAME"][..],
        &["CLIENT", "SETNAME", "a b"],
        &["CLIENT", "SETNAME", "worker-1"],
        &["CLIENT", "GETNAME"],
        &["CLIENT", "SETNAME", ""],
        &["CLIENT", "GETNAME"],
        &["CLIENT", "FOO"],
        &["CLIENT", "ID", "x"],
        &["CLIENT", "NO-EVICT", "on"],
        &["CLIENT", "NO-EVICT", "maybe"],
        &["CLIENT"],
    ] {
        assert_eq!(text(&proxy.redis(args)), text(&direct.redis(args)), "{args:?}");
    }
    // The id is the one HELLO reports.
    let id = proxy.redis_str(&["CLIENT", "ID"]);
    assert!(id.starts_with(':'), "{id}");
    let hello = proxy.redis_str(&["HELLO", "2"]);
    assert!(hello.contains(&format!("$2\r\nid\r\n{id}")), "{hello} / {id}");
    // HELLO SETNAME sets the name; RESP3 clients get `_` for none.
    assert!(proxy.redis(&["HELLO", "3", "SETNAME", "via-hello"]).starts_with(b"%7"));
    assert_eq!(proxy.redis(&["CLIENT", "GETNAME"]), b"$9\r\nvia-hello\r\n");
    assert_eq!(proxy.redis(&["CLIENT", "SETINFO", "lib-name", "ferrule-test"]), b"+OK\r\n");
    let info = proxy.redis_str(&["CLIENT", "INFO"]);
    assert!(
        info.starts_with("=") && info.contains(" name=via-hello ") && info.contains(" lib-name=ferrule-test "),
        "{info}"
    );
    assert!(info.contains(" resp=3 "), "{info}");
    proxy.redis(&["CLIENT", "SETNAME", ""]);
    assert_eq!(proxy.redis(&["CLIENT", "GETNAME"]), b"_\r\n");
    // Subcommands that would desynchronise or act on shared connections are refused, and the client stays in step.
    for args in [
        &["CLIENT", "REPLY", "OFF"][..],
        &["CLIENT", "TRACKING", "on"],
        &["CLIENT", "KILL", "ID", "1"],
        &["CLIENT", "PAUSE", "10"],
    ] {
        let reply = proxy.redis_str(args);
        assert!(reply.starts_with(&format!("-ERR CLIENT {} is not supported by ferrule (", args[1])), "{reply}");
    }
    assert_eq!(proxy.redis(&["PING"]), b"+PONG\r\n");
    assert_eq!(proxy.redis(&["ECHO", "in step"]), b"$7\r\nin step\r\n");
}

#[test]
fn command_answers_from_the_table() {
    let (_backends, _f, port) = setup(1, "");
    let direct_redis = redis_server();
    let mut proxy = Client::connect(port);
    let mut direct = Client::connect(direct_redis.port);
    let count = proxy.redis_str(&["COMMAND", "COUNT"]);
    let n: usize = count.trim_start_matches(':').trim().parse().unwrap();
    assert!(n > 200, "{count}");
    assert!(proxy.redis_str(&["COMMAND"]).starts_with(&format!("*{n}\r\n")));
    // Key positions as redis gives them: name, arity, flags, then first, last, step.
    for name in ["get", "mget", "mset", "set", "rename", "zunionstore", "eval", "sinter"] {
        let ours = proxy.redis(&["COMMAND", "INFO", name]);
        let theirs = direct.redis(&["COMMAND", "INFO", name]);
        let fields = |reply: &[u8]| -> Vec<String> {
            let mut elements = Vec::new();
            // `*1` then `*10`: skip both headers, then read name, arity, flags, first, last, step.
            let mut rest = &reply[reply.windows(2).position(|w| w == b"\r\n").unwrap() + 2..];
            rest = &rest[rest.windows(2).position(|w| w == b"\r\n").unwrap() + 2..];
            for _ in 0..6 {
                let len = ferrule::protocol::redis::reply_len(rest).unwrap().unwrap();
                elements.push(text(&rest[..len]));
                rest = &rest[len..];
            }
            elements.remove(2); // flags: the proxy gives fewer
            elements
        };
        assert_eq!(fields(&ours), fields(&theirs), "{name}: {} vs {}", text(&ours), text(&theirs));
    }
    // Key specifications: where each one begins searching and how it finds keys, as redis 7 describes them (the
    // flags and notes too: see `docs_and_key_specs_are_redis_own`).
    for name in ["get", "mget", "mset", "set", "zunionstore", "eval", "sinter", "xread", "lmove", "rename", "hset"] {
        let ours = key_spec_searches(&proxy.redis(&["COMMAND", "INFO", name]));
        let theirs = key_spec_searches(&direct.redis(&["COMMAND", "INFO", name]));
        assert!(!ours.is_empty(), "{name}");
        assert_eq!(ours, theirs, "{name}");
    }
    for args in [
        &["COMMAND", "GETKEYS", "get", "a"][..],
        &["COMMAND", "GETKEYS", "mset", "a", "1", "b", "2"],
        &["COMMAND", "GETKEYS", "zunionstore", "d", "2", "a", "b"],
        &["COMMAND", "GETKEYS", "sort", "l", "BY", "w*", "STORE", "dst"],
        &["COMMAND", "GETKEYS", "eval", "return 1", "1", "k", "arg"],
        &["COMMAND", "GETKEYS", "ping", "x"],
        &["COMMAND", "GETKEYS", "nosuch", "x"],
        &["COMMAND", "GETKEYS", "get", "a", "b"],
        &["COMMAND", "COUNT", "x"],
        &["COMMAND", "INFO", "nosuch"],
        &["COMMAND", "DOCS", "nosuch"],
        &["COMMAND", "FOO"],
    ] {
        assert_eq!(text(&proxy.redis(args)), text(&direct.redis(args)), "{args:?}");
    }
    proxy.redis(&["HELLO", "3"]);
    direct.redis(&["HELLO", "3"]);
    assert_eq!(proxy.redis(&["COMMAND", "INFO", "nosuch"]), direct.redis(&["COMMAND", "INFO", "nosuch"]));
    assert!(proxy.redis_str(&["COMMAND", "INFO", "get"]).contains("~1\r\n+readonly\r\n"));
}

#[test]
fn argument_errors_match_redis() {
    let (_backends, _f, port) = setup(1, "");
    let direct_redis = redis_server();
    let mut proxy = Client::connect(port);
    let mut direct = Client::connect(direct_redis.port);
    for args in [
        &["PING", "a", "b"][..],
        &["PING", "a"],
        &["ECHO"],
        &["ECHO", "a", "b"],
        &["SELECT", "00"],
        &["SELECT", "-0"],
        &["SELECT", "x"],
        &["SELECT", "0"],
        &["AUTH"],
        &["AUTH", "a", "b", "c"],
        &["AUTH", "pw"],
        &["AUTH", "default", "pw"],
        &["AUTH", "bob", "pw"],
        &["GET"],
    ] {
        assert_eq!(text(&proxy.redis(args)), text(&direct.redis(args)), "{args:?}");
    }
}

#[test]
fn destinations_given_by_options_route_with_the_source() {
    let (backends, _f, port) = setup(3, "");
    let mut c = Client::connect(port);
    // Keys on different servers: refused, nothing written.
    let (src, dst) = (0..200)
        .map(|i| (format!("src{i}"), format!("dst{i}")))
        .find(|(s, d)| {
            c.redis(&["SET", s, "1"]);
            c.redis(&["SET", d, "1"]);
            let apart = holder(&backends, s) != holder(&backends, d);
            c.redis(&["DEL", s, d]);
            apart
        })
        .expect("two keys on different servers");
    c.redis(&["RPUSH", &src, "3", "1", "2"]);
    for args in [
        &["SORT", &src, "STORE", &dst][..],
        &["GEORADIUS", &src, "0", "0", "1", "km", "STORE", &dst],
        &["GEORADIUSBYMEMBER", &src, "m", "1", "km", "STOREDIST", &dst],
    ] {
        assert_eq!(c.redis_str(args), "-CROSSSLOT Keys in request don't hash to the same server\r\n", "{args:?}");
    }
    // With one hash tag they share a server: the destination is where ferrule will read it.
    c.redis(&["RPUSH", "{t}src", "3", "1", "2"]);
    assert_eq!(c.redis(&["SORT", "{t}src", "STORE", "{t}dst"]), b":3\r\n");
    assert_eq!(c.redis_str(&["LRANGE", "{t}dst", "0", "-1"]), "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n");
}

#[test]
fn scan_visits_every_key_of_every_server_and_dbsize_sums() {
    let (backends, _f, port) = setup(3, "");
    let mut c = Client::connect(port);
    let keys: Vec<String> = (0..300).map(|i| format!("key:{i}")).collect();
    for k in &keys {
        assert_eq!(c.redis(&["SET", k, "v"]), b"+OK\r\n");
    }
    c.redis(&["RPUSH", "alist", "x"]);
    for (i, b) in backends.iter().enumerate() {
        let n = Client::connect(b.port).redis_str(&["DBSIZE"]);
        assert_ne!(n, ":0\r\n", "server {i} holds some keys");
    }
    assert_eq!(c.redis(&["DBSIZE"]), b":301\r\n");

    let scan = |c: &mut Client, extra: &[&str]| -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor = "0".to_string();
        for _ in 0..1000 {
            let mut args = vec!["SCAN", cursor.as_str()];
            args.extend_from_slice(extra);
            let reply = c.redis(&args);
            let mut elements = Vec::new();
            assert!(ferrule::protocol::redis::array_elements(&reply, &mut elements), "{}", text(&reply));
            let next = text(&reply[elements[0].clone()]);
            cursor = next.lines().nth(1).unwrap().to_string();
            let mut keys = Vec::new();
            ferrule::protocol::redis::array_elements(&reply[elements[1].clone()], &mut keys);
            let body = &reply[elements[1].clone()];
            seen.extend(keys.iter().map(|r| text(&body[r.clone()]).lines().nth(1).unwrap().to_string()));
            if cursor == "0" {
                return seen;
            }
        }
        panic!("SCAN did not end");
    };
    let all: HashSet<String> = scan(&mut c, &["COUNT", "7"]).into_iter().collect();
    let mut expected: HashSet<String> = keys.iter().cloned().collect();
    expected.insert("alist".into());
    assert_eq!(all, expected);
    let matched: HashSet<String> = scan(&mut c, &["MATCH", "key:1?", "COUNT", "50"]).into_iter().collect();
    assert_eq!(matched, (10..20).map(|i| format!("key:{i}")).collect::<HashSet<_>>());
    assert_eq!(scan(&mut c, &["TYPE", "list"]), ["alist"]);
    // RESP3 clients scan the same way.
    c.redis(&["HELLO", "3"]);
    assert_eq!(scan(&mut c, &["COUNT", "100"]).into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(c.redis(&["SCAN", "x"]), b"-ERR invalid cursor\r\n");
}

#[test]
fn scripts_are_loaded_on_every_server() {
    let (backends, _f, port) = setup(3, "");
    let mut c = Client::connect(port);
    let script = "return redis.call('INCR', KEYS[1])";
    let sha = c.redis_str(&["SCRIPT", "LOAD", script]);
    let direct_sha = Client::connect(backends[0].port).redis_str(&["SCRIPT", "LOAD", script]);
    assert_eq!(sha, direct_sha);
    let sha = sha.lines().nth(1).unwrap().to_string();
    // EVALSHA works on keys of every server.
    let mut servers_hit = HashSet::new();
    for i in 0..60 {
        let key = format!("counter:{i}");
        assert_eq!(c.redis_str(&["EVALSHA", &sha, "1", &key]), ":1\r\n", "{key}");
        servers_hit.insert(holder(&backends, &key).unwrap());
    }
    assert_eq!(servers_hit.len(), 3, "keys landed on every server");
    let bogus = "0000000000000000000000000000000000000000";
    assert_eq!(c.redis_str(&["SCRIPT", "EXISTS", &sha, bogus]), "*2\r\n:1\r\n:0\r\n");
    // A script only one server has does not count as loaded.
    Client::connect(backends[1].port).redis(&["SCRIPT", "LOAD", "return 2"]);
    let partial = Client::connect(backends[1].port).redis_str(&["SCRIPT", "LOAD", "return 2"]);
    let partial = partial.lines().nth(1).unwrap().to_string();
    assert_eq!(c.redis_str(&["SCRIPT", "EXISTS", &partial, &sha]), "*2\r\n:0\r\n:1\r\n");
    assert_eq!(c.redis(&["SCRIPT", "FLUSH"]), b"+OK\r\n");
    assert_eq!(c.redis_str(&["SCRIPT", "EXISTS", &sha]), "*1\r\n:0\r\n");
    assert!(c.redis_str(&["EVALSHA", &sha, "1", "counter:0"]).starts_with("-NOSCRIPT"));
    assert!(c.redis_str(&["SCRIPT", "KILL"]).starts_with("-ERR ferrule: SCRIPT KILL is not supported"));

    // Functions too.
    let lib =
        "#!lua name=mylib\nredis.register_function('bump', function(keys) return redis.call('INCR', keys[1]) end)";
    assert_eq!(c.redis_str(&["FUNCTION", "LOAD", lib]), "$5\r\nmylib\r\n");
    for i in 0..30 {
        assert_eq!(c.redis_str(&["FCALL", "bump", "1", &format!("fn:{i}")]), ":1\r\n");
    }
    assert!(c.redis_str(&["FUNCTION", "LOAD", lib]).starts_with("-ERR Library 'mylib' already exists"));
    assert!(c.redis_str(&["FUNCTION", "LIST"]).contains("mylib"));
    assert_eq!(c.redis(&["FUNCTION", "DELETE", "mylib"]), b"+OK\r\n");
    assert_eq!(c.redis(&["FUNCTION", "FLUSH"]), b"+OK\r\n");
    assert_eq!(
        c.redis_str(&["FUNCTION", "DUMP"]),
        "-ERR ferrule: FUNCTION DUMP is not supported (LOAD, DELETE, FLUSH and LIST go to every server of the pool)\r\n"
    );
}

/// The `begin_search` and `find_keys` values of each key specification in a RESP2 `COMMAND INFO` reply of one
/// command, as raw bytes.
/// The key specifications (element 8) of a one-command COMMAND INFO reply, as bytes; RESP2 or RESP3 (the entry is
/// an array in both).
fn key_specs(reply: &[u8]) -> String {
    use ferrule::protocol::redis::array_elements;
    let mut outer = Vec::new();
    assert!(array_elements(reply, &mut outer) && outer.len() == 1, "{}", text(reply));
    let entry = &reply[outer[0].clone()];
    let mut fields = Vec::new();
    assert!(array_elements(entry, &mut fields) && fields.len() == 10, "{}", text(entry));
    text(&entry[fields[8].clone()])
}

#[test]
fn docs_and_key_specs_are_redis_own() {
    let (_backends, _f, port) = setup(2, "");
    let direct_redis = redis_server();
    for proto in ["2", "3"] {
        let mut proxy = Client::connect(port);
        let mut direct = Client::connect(direct_redis.port);
        assert_eq!(
            text(&proxy.redis(&["HELLO", proto])).lines().next(),
            text(&direct.redis(&["HELLO", proto])).lines().next()
        );
        // COMMAND DOCS is forwarded to a server of the pool and comes back as redis wrote it, in the client's
        // protocol version (maps in RESP3).
        for args in [
            &["COMMAND", "DOCS", "get"][..],
            &["COMMAND", "DOCS", "set", "mget", "georadius"],
            &["COMMAND", "DOCS", "sort", "nosuch", "lmove"],
            &["COMMAND", "docs", "nosuch"],
        ] {
            let ours = proxy.redis(args);
            assert_eq!(text(&ours), text(&direct.redis(args)), "RESP{proto} {args:?}");
        }
        let get_docs = text(&proxy.redis(&["COMMAND", "DOCS", "get"]));
        assert!(get_docs.contains("Get the value of a key"), "{get_docs}");
        assert!(get_docs.starts_with(if proto == "3" { "%1\r\n" } else { "*2\r\n" }), "{get_docs}");
        // Without names: the documentation of what COMMAND lists, the commands of the table, which has every
        // command this redis has (and some newer ones it does not know).
        let all = text(&proxy.redis(&["COMMAND", "DOCS"]));
        assert!(all.contains("$4\r\nmget\r\n"), "{}", &all[..200]);
        assert_eq!(all.lines().next(), text(&direct.redis(&["COMMAND", "DOCS"])).lines().next());
        // Key specifications with redis' flags (OW, RM, access, update, insert, delete, not_key, incomplete,
        // variable_flags) and notes, byte for byte.
        for name in [
            "get",
            "set",
            "del",
            "mset",
            "msetnx",
            "lmove",
            "sort",
            "sort_ro",
            "georadius",
            "georadiusbymember",
            "geosearchstore",
            "zunionstore",
            "sinterstore",
            "pfcount",
            "pfmerge",
            "eval",
            "xread",
            "xreadgroup",
            "xadd",
            "blmpop",
            "getex",
            "getdel",
            "hset",
            "lcs",
            "copy",
            "rename",
            "watch",
            "ssubscribe",
            "publish",
            "migrate",
        ] {
            let ours = key_specs(&proxy.redis(&["COMMAND", "INFO", name]));
            assert_eq!(ours, key_specs(&direct.redis(&["COMMAND", "INFO", name])), "RESP{proto} {name}");
        }
    }
}

fn key_spec_searches(reply: &[u8]) -> Vec<(String, String)> {
    use ferrule::protocol::redis::{array_elements, reply_len};
    let mut outer = Vec::new();
    assert!(array_elements(reply, &mut outer) && outer.len() == 1);
    let entry = &reply[outer[0].clone()];
    let mut fields = Vec::new();
    assert!(array_elements(entry, &mut fields) && fields.len() == 10, "{}", text(entry));
    let specs_reply = &entry[fields[8].clone()];
    let mut specs = Vec::new();
    assert!(array_elements(specs_reply, &mut specs));
    specs
        .iter()
        .map(|spec| {
            let spec = &specs_reply[spec.clone()];
            let mut kv = Vec::new();
            assert!(array_elements(spec, &mut kv));
            let value = |key: &str| {
                let at = kv.iter().position(|r| spec[r.clone()] == *format!("${}\r\n{key}\r\n", key.len()).as_bytes());
                let r = kv[at.expect(key) + 1].clone();
                assert_eq!(reply_len(&spec[r.clone()]).unwrap(), Some(r.len()));
                text(&spec[r])
            };
            (value("begin_search"), value("find_keys"))
        })
        .collect()
}
