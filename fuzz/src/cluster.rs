//! Redis Cluster replies as control and the workers read them: a topology reply decoded (`cluster::resp`), parsed
//! as CLUSTER SHARDS and as CLUSTER SLOTS and built into a slot map; the same bytes as a redirect line and as a
//! key. None may panic; a decoded reply is no longer than its input; a built map only names slots below 16384 and
//! shards with a primary among its nodes; a redirect's slot is below 16384 and its port is not 0; a key's slot is
//! the slot of its hash tag.

use ferrule::cluster::map::SlotMap;
use ferrule::cluster::resp::decode;
use ferrule::cluster::slot::hashed_part;
use ferrule::cluster::topology::{parse_shards, parse_slots};
use ferrule::cluster::{decide, key_slot, parse_redirect, Decision, SLOTS};
use std::net::SocketAddr;

pub fn check(data: &[u8]) {
    let Some((_, bytes)) = data.split_first() else {
        return;
    };
    if let Ok(Some((value, len))) = decode(bytes) {
        assert!(len > 0 && len <= bytes.len(), "decoded {len} of {} bytes", bytes.len());
        // Host names are never looked up here: only IP literals resolve.
        let mut resolve = |host: &str, port: u16| {
            host.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, port)).map_err(|_| "not an IP".to_string())
        };
        for topo in [parse_shards(&value, false), parse_shards(&value, true), parse_slots(&value)].into_iter().flatten()
        {
            if let Ok(map) = SlotMap::build(&topo, "127.0.0.1", &mut resolve) {
                assert!(map.covered() <= SLOTS);
                for shard in &map.shards {
                    assert!(shard.primary < map.nodes.len());
                    assert!(shard.replicas.iter().all(|&r| r < map.nodes.len() && r != shard.primary));
                }
            }
        }
    }
    if let Some(r) = parse_redirect(bytes) {
        assert!((r.slot as usize) < SLOTS && r.port != 0);
        assert!(matches!(decide(bytes, 0, 5), Decision::Follow(_)));
        assert!(matches!(decide(bytes, 5, 5), Decision::TooMany(_)));
    }
    assert!((key_slot(bytes) as usize) < SLOTS);
    assert_eq!(key_slot(bytes), key_slot(hashed_part(bytes)));
}
