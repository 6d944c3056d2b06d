//! Drop-in placement: keys written through twemproxy (nutcracker) are found through ferrule on the same backends,
//! for several hash / distribution / weight / name combinations.

mod common;
use common::*;

fn check(hash: &str, distribution: &str, weights: &[u32], names: bool) {
    let backends: Vec<Proc> = weights.iter().map(|_| redis_server()).collect();
    let specs: Vec<String> = backends
        .iter()
        .zip(weights)
        .enumerate()
        .map(
            |(i, (b, w))| {
                if names {
                    format!("127.0.0.1:{}:{w} srv{i}", b.port)
                } else {
                    format!("127.0.0.1:{}:{w}", b.port)
                }
            },
        )
        .collect();
    let nc_port = free_port();
    let yaml = format!(
        "pool:\n  listen: 127.0.0.1:{nc_port}\n  redis: true\n  hash: {hash}\n  distribution: {distribution}\n  servers:\n{}",
        specs.iter().map(|s| format!("   - {s}\n")).collect::<String>()
    );
    let nc = nutcracker(&yaml, nc_port);
    let mut via_nc = Client::connect(nc_port);
    let n = 600;
    for i in 0..n {
        assert_eq!(via_nc.redis_str(&["SET", &format!("user:{i}:profile"), &i.to_string()]), "+OK\r\n");
    }
    drop(nc);

    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &specs, &format!("hash = \"{hash}\"\ndistribution = \"{distribution}\""))
    );
    let _f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    for i in 0..n {
        let v = i.to_string();
        let key = format!("user:{i}:profile");
        let got = c.redis_str(&["GET", &key]);
        if got != format!("${}\r\n{v}\r\n", v.len()) {
            let holder: Vec<String> = backends
                .iter()
                .filter(|b| Client::connect(b.port).redis_str(&["EXISTS", &key]) == ":1\r\n")
                .map(|b| b.port.to_string())
                .collect();
            panic!("{key} placed differently from twemproxy ({hash}/{distribution}/{specs:?}): twemproxy put it on {holder:?}, ferrule answered {got:?}");
        }
    }
}

#[test]
fn ketama_fnv1a_64_equal_weights() {
    check("fnv1a_64", "ketama", &[1, 1, 1], false);
}

#[test]
fn ketama_md5_weighted_named() {
    check("md5", "ketama", &[1, 2, 3], true);
}

#[test]
fn ketama_murmur_odd_weights() {
    check("murmur", "ketama", &[1, 6, 6, 6], false);
}

#[test]
fn modula_crc32a_weighted() {
    check("crc32a", "modula", &[2, 1, 3], false);
}

#[test]
fn ketama_hsieh_and_jenkins() {
    check("hsieh", "ketama", &[1, 1], false);
    check("jenkins", "ketama", &[3, 1], true);
}
