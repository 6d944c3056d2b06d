//! Key hashing and server distribution, compatible with twemproxy (nutcracker 0.5.0).
//!
//! Given the same server list, weights, names, hash and distribution, ferrule must place every
//! key on the server twemproxy would pick, so that a fleet can switch proxies without moving
//! data. Everything here is pure and allocation-free on the lookup path:
//! - [`HashKind`]: the twemproxy key hashes (plus xxh3), quirks included.
//! - [`hash_tagged`]: the part of a key that is hashed when the pool has a `hash_tag`.
//! - [`ketama_ident`]: the string a server is known by on the ketama ring.
//! - [`Ring`]: ketama, modula or random distribution over a pool's live servers.
//! - [`locate_key`]: all of the above in the order twemproxy applies them.

mod functions;
pub mod mcrouter;
mod ring;

#[cfg(test)]
mod twemproxy_vectors;

pub use ring::{Ring, RingMember, WEIGHT_PARTS_PER_UNIT};

/// A key hash function. Names and results are twemproxy's; `Xxh3` is ferrule's addition.
// The variant names mirror twemproxy's configuration names (`fnv1a_32` -> `Fnv1a_32`).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashKind {
    OneAtATime,
    Md5,
    Crc16,
    Crc32,
    Crc32a,
    Fnv1_32,
    Fnv1a_32,
    Fnv1_64,
    Fnv1a_64,
    Hsieh,
    Murmur,
    Jenkins,
    Xxh3,
}

impl HashKind {
    /// Every hash, in declaration order.
    pub const ALL: &'static [HashKind] = &[
        HashKind::OneAtATime,
        HashKind::Md5,
        HashKind::Crc16,
        HashKind::Crc32,
        HashKind::Crc32a,
        HashKind::Fnv1_32,
        HashKind::Fnv1a_32,
        HashKind::Fnv1_64,
        HashKind::Fnv1a_64,
        HashKind::Hsieh,
        HashKind::Murmur,
        HashKind::Jenkins,
        HashKind::Xxh3,
    ];

    /// The hash named as in a twemproxy config (`fnv1a_64`, `murmur`, ...), or `xxh3`.
    pub fn from_name(name: &str) -> Option<HashKind> {
        HashKind::ALL.iter().copied().find(|kind| kind.name() == name)
    }

    /// The config name of this hash.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::OneAtATime => "one_at_a_time",
            HashKind::Md5 => "md5",
            HashKind::Crc16 => "crc16",
            HashKind::Crc32 => "crc32",
            HashKind::Crc32a => "crc32a",
            HashKind::Fnv1_32 => "fnv1_32",
            HashKind::Fnv1a_32 => "fnv1a_32",
            HashKind::Fnv1_64 => "fnv1_64",
            HashKind::Fnv1a_64 => "fnv1a_64",
            HashKind::Hsieh => "hsieh",
            HashKind::Murmur => "murmur",
            HashKind::Jenkins => "jenkins",
            HashKind::Xxh3 => "xxh3",
        }
    }

    /// The 32-bit hash of `key`, truncated exactly as twemproxy does; xxh3 is the low 32 bits of
    /// xxh3_64. This is the bare function: twemproxy hashes an empty key to 0 regardless, which
    /// [`locate_key`] applies.
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashKind::OneAtATime => functions::one_at_a_time(key),
            HashKind::Md5 => functions::md5(key),
            HashKind::Crc16 => functions::crc16(key),
            HashKind::Crc32 => functions::crc32_libmemcached(key),
            HashKind::Crc32a => functions::crc32a(key),
            HashKind::Fnv1_32 => functions::fnv1_32(key),
            HashKind::Fnv1a_32 => functions::fnv1a_32(key),
            HashKind::Fnv1_64 => functions::fnv1_64(key),
            HashKind::Fnv1a_64 => functions::fnv1a_64(key),
            HashKind::Hsieh => functions::hsieh(key),
            HashKind::Murmur => functions::murmur(key),
            HashKind::Jenkins => functions::jenkins(key),
            HashKind::Xxh3 => functions::xxh3(key),
        }
    }
}

/// How a pool spreads keys over its servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistributionKind {
    /// Consistent hashing (libmemcached-compatible ketama continuum).
    Ketama,
    /// `hash % total_weight` over the servers, each repeated `weight` times.
    Modula,
    /// A random live server for every request; the key is not hashed.
    Random,
    /// mcrouter's Ch3 (furc hash over MurmurHash64A) over the servers in config order; weights must be 1.
    Ch3,
    /// mcrouter's WeightedCh3: Ch3 where each server keeps the share weight / 1_000_000 of its keys.
    WeightedCh3,
    /// mcrouter's Crc32: `(crc32(key) & 0x7fffffff) % servers`, servers in config order; weights must be 1.
    McrouterCrc32,
}

impl DistributionKind {
    /// Every distribution, twemproxy's first.
    pub const ALL: [DistributionKind; 6] = [
        DistributionKind::Ketama,
        DistributionKind::Modula,
        DistributionKind::Random,
        DistributionKind::Ch3,
        DistributionKind::WeightedCh3,
        DistributionKind::McrouterCrc32,
    ];

    /// The distribution named as in a twemproxy config, or one of mcrouter's (`ch3`, `weighted_ch3`,
    /// `mcrouter_crc32`).
    pub fn from_name(name: &str) -> Option<Self> {
        DistributionKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The config name of this distribution.
    pub fn name(self) -> &'static str {
        match self {
            DistributionKind::Ketama => "ketama",
            DistributionKind::Modula => "modula",
            DistributionKind::Random => "random",
            DistributionKind::Ch3 => "ch3",
            DistributionKind::WeightedCh3 => "weighted_ch3",
            DistributionKind::McrouterCrc32 => "mcrouter_crc32",
        }
    }

    /// mcrouter's distributions hash the key themselves (the pool's `hash` is not used), place over the servers in
    /// config order, and never move keys off a failing server.
    pub fn is_mcrouter(self) -> bool {
        matches!(self, DistributionKind::Ch3 | DistributionKind::WeightedCh3 | DistributionKind::McrouterCrc32)
    }
}

/// The part of the key that is hashed: with a 2-byte tag like `b"{}"`, the text between the
/// first `tag[0]` and the next `tag[1]` after it, when that is non-empty; otherwise the whole key.
/// Only the first `tag[0]` is considered: in `"a{}b{c}"` the first pair is empty, so the whole
/// key is hashed (twemproxy's `server_pool_idx`).
pub fn hash_tagged(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(open_at) = key.iter().position(|&byte| byte == open) else {
        return key;
    };
    let after_open = key.get(open_at + 1..).unwrap_or_default();
    match after_open.iter().position(|&byte| byte == close) {
        Some(length) if length > 0 => after_open.get(..length).unwrap_or(key),
        _ => key,
    }
}

/// mcrouter leaves everything from the first `|#|` out of the hashed key, so that `user:1|#|v2` and `user:1|#|v3`
/// share a server.
pub fn before_hash_stop(key: &[u8]) -> &[u8] {
    match key.windows(3).position(|w| w == b"|#|") {
        Some(at) => key.get(..at).unwrap_or(key),
        None => key,
    }
}

/// twemproxy's default for the port that is left out of a server's ring identity, kept for
/// compatibility with libmemcached's ketama.
const KETAMA_DEFAULT_PORT: u16 = 11211;

/// The identity twemproxy hashes for a server on the ketama ring: `name` if given, else
/// `"host:port"`, or just `"host"` when port == 11211. For a unix socket path (host starting with
/// '/') twemproxy hashes the path followed by the colon that separates it from the weight
/// (`"/tmp/redis.sock:"`); that quirk is reproduced and `port` is ignored.
pub fn ketama_ident(host: &str, port: u16, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_owned(),
        None if host.starts_with('/') => format!("{host}:"),
        None if port == KETAMA_DEFAULT_PORT => host.to_owned(),
        None => format!("{host}:{port}"),
    }
}

/// Index of the server for a key, applying twemproxy's steps in order: no live server -> None;
/// a single live server is chosen without hashing (twemproxy skips hashing for a pool of one
/// server, and when only one server is live every distribution picks it anyway; when that single
/// server is ejected twemproxy fails the request, here None); random ignores the key; otherwise
/// the hash tag is applied, the tagged key hashed (an empty key hashes to 0) and the ring looked up.
///
/// mcrouter's distributions hash the key themselves: the tagged key, up to mcrouter's hash stop `|#|`.
pub fn locate_key(ring: &Ring, kind: HashKind, tag: Option<[u8; 2]>, key: &[u8]) -> Option<usize> {
    if ring.live_count() == 0 {
        return None;
    }
    if ring.kind().is_mcrouter() {
        return ring.locate_mcrouter(before_hash_stop(hash_tagged(key, tag)));
    }
    if let Some(only) = ring.sole_live_member() {
        return Some(only);
    }
    if ring.kind() == DistributionKind::Random {
        return ring.locate(0);
    }
    let hashed = hash_tagged(key, tag);
    let hash = if hashed.is_empty() { 0 } else { kind.hash(hashed) };
    ring.locate(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_vectors_from_the_reference() {
        let expected = [
            (HashKind::OneAtATime, 2_297_466_611u32),
            (HashKind::Md5, 3_195_025_439),
            (HashKind::Crc16, 3_662_830_516),
            (HashKind::Crc32, 10_542),
            (HashKind::Crc32a, 2_838_417_488),
            (HashKind::Fnv1_32, 67_176_023),
            (HashKind::Fnv1a_32, 280_767_167),
            (HashKind::Fnv1_64, 473_199_127),
            (HashKind::Fnv1a_64, 1_488_911_807),
            (HashKind::Hsieh, 3_738_850_110),
            (HashKind::Jenkins, 1_442_444_624),
            (HashKind::Murmur, 4_142_305_122),
        ];
        for (kind, value) in expected {
            assert_eq!(kind.hash(b"apple"), value, "{}", kind.name());
        }
    }

    #[test]
    fn xxh3_is_the_low_half_of_xxh3_64() {
        for key in [&b""[..], b"apple", b"a much longer key that spans several xxh3 stripes......"] {
            let full = xxhash_rust::xxh3::xxh3_64(key);
            assert_eq!(HashKind::Xxh3.hash(key), full as u32);
        }
        // Published XXH3_64bits("") = 0x2D06800538D394C2.
        assert_eq!(HashKind::Xxh3.hash(b""), 0x38d3_94c2);
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(HashKind::ALL.len(), 13);
        for &kind in HashKind::ALL {
            assert_eq!(HashKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(HashKind::from_name("fnv1a_64"), Some(HashKind::Fnv1a_64));
        assert_eq!(HashKind::from_name("FNV1A_64"), None);
        assert_eq!(HashKind::from_name("sha1"), None);
        for kind in DistributionKind::ALL {
            assert_eq!(DistributionKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(DistributionKind::from_name("vnode"), None);
    }

    #[test]
    fn hash_tag_extraction() {
        let braces = Some(*b"{}");
        assert_eq!(hash_tagged(b"user:{42}:name", braces), b"42");
        assert_eq!(hash_tagged(b"{42}", braces), b"42");
        assert_eq!(hash_tagged(b"no tag", braces), b"no tag");
        assert_eq!(hash_tagged(b"empty{}tag", braces), b"empty{}tag");
        assert_eq!(hash_tagged(b"open{only", braces), b"open{only");
        assert_eq!(hash_tagged(b"close}{", braces), b"close}{");
        // The first opener counts, even when its pair is empty.
        assert_eq!(hash_tagged(b"a{}b{c}", braces), b"a{}b{c}");
        // The closer is the first one after the opener; later openers are ordinary bytes.
        assert_eq!(hash_tagged(b"x{a{b}c}", braces), b"a{b");
        assert_eq!(hash_tagged(b"x{ab}c}", braces), b"ab");
        // Same opening and closing byte.
        assert_eq!(hash_tagged(b"pre:mid:post", Some(*b"::")), b"mid");
        assert_eq!(hash_tagged(b"pre::post", Some(*b"::")), b"pre::post");
        assert_eq!(hash_tagged(b"", braces), b"");
        assert_eq!(hash_tagged(b"user:{42}", None), b"user:{42}");
    }

    #[test]
    fn ketama_identity() {
        assert_eq!(ketama_ident("127.0.0.1", 6379, None), "127.0.0.1:6379");
        assert_eq!(ketama_ident("127.0.0.1", 11211, None), "127.0.0.1");
        assert_eq!(ketama_ident("10.0.0.1", 6379, Some("shard-a")), "shard-a");
        assert_eq!(ketama_ident("cache.local", 11211, Some("mc1")), "mc1");
        assert_eq!(ketama_ident("/tmp/r.sock", 0, None), "/tmp/r.sock:");
    }

    fn live(ident: &str, weight: u32) -> RingMember<'_> {
        RingMember { ident, weight, live: true }
    }

    #[test]
    fn ketama_spreads_keys_in_proportion_to_weight() {
        let members = [live("10.0.0.1:6379", 1), live("10.0.0.2:6379", 2), live("10.0.0.3:6379", 3)];
        let ring = Ring::build(DistributionKind::Ketama, &members);
        let mut counts = [0u32; 3];
        let mut key = String::new();
        for i in 0..100_000 {
            key.clear();
            key.push_str("key:");
            key.push_str(&i.to_string());
            let server = locate_key(&ring, HashKind::Fnv1a_64, None, key.as_bytes());
            counts[server.expect("live servers")] += 1;
        }
        let total: u32 = counts.iter().sum();
        for (server, weight) in [(0usize, 1.0f64), (1, 2.0), (2, 3.0)] {
            let share = f64::from(counts[server]) / f64::from(total);
            let wanted = weight / 6.0;
            assert!((share - wanted).abs() < 0.05, "{counts:?}");
        }
        // Deterministic: a second ring agrees key for key.
        let again = Ring::build(DistributionKind::Ketama, &members);
        for i in 0..1000u32 {
            let key = i.to_be_bytes();
            assert_eq!(
                locate_key(&ring, HashKind::Murmur, None, &key),
                locate_key(&again, HashKind::Murmur, None, &key)
            );
        }
    }

    #[test]
    fn mcrouter_distributions_place_as_mcrouter_in_config_order() {
        // Identities do not matter to mcrouter: only positions do.
        let members = [live("zz", 1), live("a", 1), live("m", 1)];
        let ring = Ring::build(DistributionKind::Ch3, &members);
        let mut counts = [0usize; 3];
        for i in 0..1000 {
            counts[locate_key(&ring, HashKind::Fnv1a_64, None, i.to_string().as_bytes()).unwrap()] += 1;
        }
        assert_eq!(counts, [307, 342, 351], "the reference's ch3 vector");
        // 700_000 parts per million is mcrouter's weight 0.7.
        let weighted = [live("a", 1_000_000), live("b", 1_000_000), live("c", 700_000)];
        let ring = Ring::build(DistributionKind::WeightedCh3, &weighted);
        let mut counts = [0usize; 3];
        for i in 0..1000 {
            counts[locate_key(&ring, HashKind::Fnv1a_64, None, i.to_string().as_bytes()).unwrap()] += 1;
        }
        assert_eq!(counts, [341, 371, 288], "mcrouter's reducedWeight vector");
        let ring = Ring::build(DistributionKind::McrouterCrc32, &members);
        assert_eq!(locate_key(&ring, HashKind::Fnv1a_64, None, b"123456789"), Some(0x4bf4_3926 % 3));
        // The hash stop and the hash tag narrow what is hashed.
        let ring = Ring::build(DistributionKind::Ch3, &[live("a", 1); 100]);
        assert_eq!(locate_key(&ring, HashKind::Md5, None, b"sample|#|anything"), Some(97));
        assert_eq!(locate_key(&ring, HashKind::Md5, Some(*b"{}"), b"x{sample}y"), Some(97));
        assert_eq!(before_hash_stop(b"|#|"), b"");
        assert_eq!(before_hash_stop(b"a|#"), b"a|#");
    }

    #[test]
    fn ejecting_a_server_moves_only_its_keys() {
        let mut members = [live("a", 1), live("b", 1), live("c", 1)];
        let before = Ring::build(DistributionKind::Ketama, &members);
        members[1].live = false;
        let after = Ring::build(DistributionKind::Ketama, &members);
        for i in 0..5000u32 {
            let key = i.to_le_bytes();
            let old = locate_key(&before, HashKind::Md5, None, &key);
            let new = locate_key(&after, HashKind::Md5, None, &key);
            assert_ne!(new, Some(1));
            if old != Some(1) {
                assert_eq!(old, new);
            }
        }
    }

    #[test]
    fn one_live_server_takes_everything_and_none_fails() {
        let mut members = [live("a", 1), live("b", 5)];
        members[1].live = false;
        for kind in [DistributionKind::Ketama, DistributionKind::Modula, DistributionKind::Random] {
            let ring = Ring::build(kind, &members);
            for key in [&b""[..], b"x", b"{tag}"] {
                assert_eq!(locate_key(&ring, HashKind::Crc32, Some(*b"{}"), key), Some(0));
            }
            let none = Ring::build(kind, &[RingMember { live: false, ..members[0] }]);
            assert_eq!(locate_key(&none, HashKind::Crc32, None, b"x"), None);
        }
    }

    #[test]
    fn empty_key_hashes_to_zero_and_tags_decide_placement() {
        let members = [live("a", 1), live("b", 1), live("c", 1)];
        let ring = Ring::build(DistributionKind::Ketama, &members);
        assert_eq!(locate_key(&ring, HashKind::Md5, None, b""), ring.locate(0));
        let tag = Some(*b"{}");
        for i in 0..200u32 {
            let key = format!("user:{{{i}}}:profile");
            let plain = format!("{i}");
            assert_eq!(
                locate_key(&ring, HashKind::Fnv1a_64, tag, key.as_bytes()),
                locate_key(&ring, HashKind::Fnv1a_64, None, plain.as_bytes())
            );
        }
    }
}
