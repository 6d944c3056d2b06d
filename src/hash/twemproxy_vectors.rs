//! Placements recorded from real twemproxy (nutcracker 0.5.0, Debian amd64 package), so that
//! agreement stays tested without nutcracker installed.
//!
//! How they were recorded: redis-servers on loopback behind one nutcracker with a pool per case
//! below (each with its own `redis_db`); 2000 keys were SET through each pool, then every backend
//! was asked which keys it holds. Each case keeps the per-server key counts, an FNV-1a-64
//! fingerprint of all 2000 server indices in key order, and a few readable samples.
//! Keys 1600.. start with a byte >= 0x80, which exercises twemproxy's sign extension of `char`.
//! The "w16666" case needs twemproxy's `float` point count (28/188 points, not 32/192).

use super::{ketama_ident, locate_key, DistributionKind, HashKind, Ring, RingMember};

const KEY_COUNT: usize = 2000;

/// Which key family a case was recorded with.
#[derive(Clone, Copy)]
enum Keys {
    /// "key:<i>" below 1600, then binary keys with high bytes.
    Plain,
    /// Keys with well-formed, empty, unclosed and second-position hash tags.
    Tagged,
}

impl Keys {
    fn key(self, i: usize) -> Vec<u8> {
        match self {
            Keys::Plain if i < 1600 => format!("key:{i}").into_bytes(),
            Keys::Plain => {
                let mut key = vec![0x80 + (i % 128) as u8, b'-'];
                key.extend_from_slice(i.to_string().as_bytes());
                key.extend(std::iter::repeat_n(((i * 37) % 256) as u8, i % 4));
                key
            }
            Keys::Tagged => match i % 5 {
                0 => format!("tag:{{{}}}:{i}", i % 97),
                1 => format!("{{}}:{i}"),
                2 => format!("open{{{i}"),
                3 => format!("a{{}}b{{{i}}}"),
                _ => format!("{{{}}}x{i}", i % 13),
            }
            .into_bytes(),
        }
    }
}

/// One pool as configured in nutcracker, and where its keys went.
struct Case {
    name: &'static str,
    hash: HashKind,
    distribution: DistributionKind,
    keys: Keys,
    /// host, port, weight, name: as in a `servers:` line.
    servers: &'static [(&'static str, u16, u32, Option<&'static str>)],
    counts: &'static [usize],
    fingerprint: u64,
    samples: &'static [(&'static [u8], usize)],
}

const CASES: &[Case] = &[
    Case {
        name: "ketama_w123_one_at_a_time",
        hash: HashKind::OneAtATime,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[291, 683, 1026],
        fingerprint: 0xf253a0881196535c,
        samples: &[
            (b"key:0", 0),
            (b"key:1", 1),
            (b"key:2", 1),
            (b"key:3", 0),
            (b"key:4", 1),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 1),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 1),
        ],
    },
    Case {
        name: "ketama_w123_md5",
        hash: HashKind::Md5,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[307, 685, 1008],
        fingerprint: 0x6a8da06ccdab452a,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 2),
            (b"key:2", 0),
            (b"key:3", 2),
            (b"key:4", 2),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 0),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 2),
        ],
    },
    Case {
        name: "ketama_w123_crc16",
        hash: HashKind::Crc16,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[208, 570, 1222],
        fingerprint: 0x298907a01d789061,
        samples: &[
            (b"key:0", 1),
            (b"key:1", 1),
            (b"key:2", 1),
            (b"key:3", 1),
            (b"key:4", 1),
            (b"\xc0-1600", 0),
            (b"\xc1-1601e", 1),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 1),
        ],
    },
    Case {
        name: "ketama_w123_crc32",
        hash: HashKind::Crc32,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[0, 0, 2000],
        fingerprint: 0x3747e8f7de47b725,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 2),
            (b"key:2", 2),
            (b"key:3", 2),
            (b"key:4", 2),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 2),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 2),
        ],
    },
    Case {
        name: "ketama_w123_crc32a",
        hash: HashKind::Crc32a,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[328, 704, 968],
        fingerprint: 0xa8ee70bb4695ad91,
        samples: &[
            (b"key:0", 1),
            (b"key:1", 2),
            (b"key:2", 0),
            (b"key:3", 2),
            (b"key:4", 1),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 2),
            (b"\xc2-1602\x8a\x8a", 1),
            (b"\xc3-1603\xaf\xaf\xaf", 1),
            (b"\xcf-1999\xeb\xeb\xeb", 0),
        ],
    },
    Case {
        name: "ketama_w123_fnv1_32",
        hash: HashKind::Fnv1_32,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[482, 777, 741],
        fingerprint: 0xa4a812154bee5e56,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 2),
            (b"key:2", 2),
            (b"key:3", 2),
            (b"key:4", 2),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 0),
            (b"\xc2-1602\x8a\x8a", 0),
            (b"\xc3-1603\xaf\xaf\xaf", 0),
            (b"\xcf-1999\xeb\xeb\xeb", 1),
        ],
    },
    Case {
        name: "ketama_w123_fnv1a_32",
        hash: HashKind::Fnv1a_32,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[320, 674, 1006],
        fingerprint: 0xbde179334e055f9f,
        samples: &[
            (b"key:0", 1),
            (b"key:1", 2),
            (b"key:2", 2),
            (b"key:3", 1),
            (b"key:4", 0),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 1),
            (b"\xc2-1602\x8a\x8a", 1),
            (b"\xc3-1603\xaf\xaf\xaf", 1),
            (b"\xcf-1999\xeb\xeb\xeb", 2),
        ],
    },
    Case {
        name: "ketama_w123_fnv1_64",
        hash: HashKind::Fnv1_64,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[65, 1041, 894],
        fingerprint: 0x6c29227f90fa3304,
        samples: &[
            (b"key:0", 1),
            (b"key:1", 1),
            (b"key:2", 1),
            (b"key:3", 1),
            (b"key:4", 1),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 2),
            (b"\xc2-1602\x8a\x8a", 0),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 0),
        ],
    },
    Case {
        name: "ketama_w123_fnv1a_64",
        hash: HashKind::Fnv1a_64,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[185, 931, 884],
        fingerprint: 0x88ea97bf83856c72,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 2),
            (b"key:2", 2),
            (b"key:3", 2),
            (b"key:4", 2),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 1),
            (b"\xc2-1602\x8a\x8a", 1),
            (b"\xc3-1603\xaf\xaf\xaf", 1),
            (b"\xcf-1999\xeb\xeb\xeb", 2),
        ],
    },
    Case {
        name: "ketama_w123_hsieh",
        hash: HashKind::Hsieh,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[297, 693, 1010],
        fingerprint: 0xfae52e8585eb4fca,
        samples: &[
            (b"key:0", 0),
            (b"key:1", 2),
            (b"key:2", 2),
            (b"key:3", 0),
            (b"key:4", 2),
            (b"\xc0-1600", 1),
            (b"\xc1-1601e", 2),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 1),
        ],
    },
    Case {
        name: "ketama_w123_murmur",
        hash: HashKind::Murmur,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[299, 670, 1031],
        fingerprint: 0x4c92adb035ea3125,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 2),
            (b"key:2", 2),
            (b"key:3", 2),
            (b"key:4", 2),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 2),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 2),
        ],
    },
    Case {
        name: "ketama_w123_jenkins",
        hash: HashKind::Jenkins,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[348, 654, 998],
        fingerprint: 0xdb3996338ebfcba3,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 2),
            (b"key:2", 2),
            (b"key:3", 2),
            (b"key:4", 0),
            (b"\xc0-1600", 0),
            (b"\xc1-1601e", 0),
            (b"\xc2-1602\x8a\x8a", 1),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 2),
        ],
    },
    Case {
        name: "ketama_named_fnv1a_64",
        hash: HashKind::Fnv1a_64,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[
            ("127.0.0.1", 27101, 1, Some("alpha")),
            ("127.0.0.1", 27102, 2, Some("beta")),
            ("127.0.0.1", 27103, 3, Some("gamma")),
        ],
        counts: &[371, 605, 1024],
        fingerprint: 0xdb260efe86fd7e08,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 2),
            (b"key:2", 2),
            (b"key:3", 2),
            (b"key:4", 2),
            (b"\xc0-1600", 1),
            (b"\xc1-1601e", 2),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 1),
        ],
    },
    Case {
        name: "ketama_named_md5",
        hash: HashKind::Md5,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[
            ("127.0.0.1", 27101, 1, Some("alpha")),
            ("127.0.0.1", 27102, 2, Some("beta")),
            ("127.0.0.1", 27103, 3, Some("gamma")),
        ],
        counts: &[298, 596, 1106],
        fingerprint: 0x9cf75d0b0afe693b,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 0),
            (b"key:2", 2),
            (b"key:3", 1),
            (b"key:4", 0),
            (b"\xc0-1600", 2),
            (b"\xc1-1601e", 1),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 0),
        ],
    },
    Case {
        name: "ketama_named_murmur",
        hash: HashKind::Murmur,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[
            ("127.0.0.1", 27101, 1, Some("alpha")),
            ("127.0.0.1", 27102, 2, Some("beta")),
            ("127.0.0.1", 27103, 3, Some("gamma")),
        ],
        counts: &[301, 664, 1035],
        fingerprint: 0xeec81f94841d1799,
        samples: &[
            (b"key:0", 1),
            (b"key:1", 0),
            (b"key:2", 0),
            (b"key:3", 1),
            (b"key:4", 2),
            (b"\xc0-1600", 1),
            (b"\xc1-1601e", 2),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 1),
            (b"\xcf-1999\xeb\xeb\xeb", 1),
        ],
    },
    Case {
        name: "ketama_w16666_fnv1a_64",
        hash: HashKind::Fnv1a_64,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[
            ("127.0.0.1", 27101, 1, None),
            ("127.0.0.1", 27102, 6, None),
            ("127.0.0.1", 27103, 6, None),
            ("127.0.0.1", 27104, 6, None),
            ("127.0.0.1", 27105, 6, None),
        ],
        counts: &[92, 696, 513, 218, 481],
        fingerprint: 0x5f5634ae2fe231e9,
        samples: &[
            (b"key:0", 3),
            (b"key:1", 3),
            (b"key:2", 3),
            (b"key:3", 3),
            (b"key:4", 3),
            (b"\xc0-1600", 4),
            (b"\xc1-1601e", 3),
            (b"\xc2-1602\x8a\x8a", 1),
            (b"\xc3-1603\xaf\xaf\xaf", 4),
            (b"\xcf-1999\xeb\xeb\xeb", 3),
        ],
    },
    Case {
        name: "ketama_w5132_named_jenkins",
        hash: HashKind::Jenkins,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[
            ("127.0.0.1", 27101, 5, Some("s1")),
            ("127.0.0.1", 27102, 1, Some("s2")),
            ("127.0.0.1", 27103, 3, Some("s3")),
            ("127.0.0.1", 27104, 2, Some("s4")),
        ],
        counts: &[1006, 152, 493, 349],
        fingerprint: 0x5e26b08baa11cdf2,
        samples: &[
            (b"key:0", 3),
            (b"key:1", 0),
            (b"key:2", 3),
            (b"key:3", 0),
            (b"key:4", 0),
            (b"\xc0-1600", 0),
            (b"\xc1-1601e", 0),
            (b"\xc2-1602\x8a\x8a", 0),
            (b"\xc3-1603\xaf\xaf\xaf", 3),
            (b"\xcf-1999\xeb\xeb\xeb", 0),
        ],
    },
    Case {
        name: "ketama_port11211_md5",
        hash: HashKind::Md5,
        distribution: DistributionKind::Ketama,
        keys: Keys::Plain,
        servers: &[("127.0.0.2", 11211, 1, None), ("127.0.0.3", 11211, 1, None), ("127.0.0.4", 11211, 1, None)],
        counts: &[632, 726, 642],
        fingerprint: 0xebea75fa3cd89443,
        samples: &[
            (b"key:0", 1),
            (b"key:1", 1),
            (b"key:2", 0),
            (b"key:3", 0),
            (b"key:4", 1),
            (b"\xc0-1600", 0),
            (b"\xc1-1601e", 0),
            (b"\xc2-1602\x8a\x8a", 0),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 0),
        ],
    },
    Case {
        name: "modula_w123_fnv1a_64",
        hash: HashKind::Fnv1a_64,
        distribution: DistributionKind::Modula,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[119, 904, 977],
        fingerprint: 0xf7773e33c6107095,
        samples: &[
            (b"key:0", 1),
            (b"key:1", 2),
            (b"key:2", 1),
            (b"key:3", 2),
            (b"key:4", 1),
            (b"\xc0-1600", 1),
            (b"\xc1-1601e", 0),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 0),
            (b"\xcf-1999\xeb\xeb\xeb", 0),
        ],
    },
    Case {
        name: "modula_w123_crc32",
        hash: HashKind::Crc32,
        distribution: DistributionKind::Modula,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[326, 697, 977],
        fingerprint: 0xa2fc30d5d9d1c0b6,
        samples: &[
            (b"key:0", 0),
            (b"key:1", 2),
            (b"key:2", 0),
            (b"key:3", 2),
            (b"key:4", 2),
            (b"\xc0-1600", 1),
            (b"\xc1-1601e", 2),
            (b"\xc2-1602\x8a\x8a", 1),
            (b"\xc3-1603\xaf\xaf\xaf", 2),
            (b"\xcf-1999\xeb\xeb\xeb", 0),
        ],
    },
    Case {
        name: "modula_w123_one_at_a_time",
        hash: HashKind::OneAtATime,
        distribution: DistributionKind::Modula,
        keys: Keys::Plain,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 2, None), ("127.0.0.1", 27103, 3, None)],
        counts: &[331, 671, 998],
        fingerprint: 0xece1afbe63d21c28,
        samples: &[
            (b"key:0", 2),
            (b"key:1", 1),
            (b"key:2", 2),
            (b"key:3", 1),
            (b"key:4", 2),
            (b"\xc0-1600", 1),
            (b"\xc1-1601e", 0),
            (b"\xc2-1602\x8a\x8a", 2),
            (b"\xc3-1603\xaf\xaf\xaf", 1),
            (b"\xcf-1999\xeb\xeb\xeb", 1),
        ],
    },
    Case {
        name: "ketama_tag_fnv1a_64",
        hash: HashKind::Fnv1a_64,
        distribution: DistributionKind::Ketama,
        keys: Keys::Tagged,
        servers: &[("127.0.0.1", 27101, 1, None), ("127.0.0.1", 27102, 1, None), ("127.0.0.1", 27103, 1, None)],
        counts: &[750, 915, 335],
        fingerprint: 0x980d31e114612364,
        samples: &[
            (b"tag:{0}:0", 0),
            (b"{}:1", 1),
            (b"open{2", 1),
            (b"a{}b{3}", 1),
            (b"{4}x4", 0),
            (b"tag:{48}:1600", 1),
            (b"{}:1601", 2),
            (b"open{1602", 2),
            (b"a{}b{1603}", 0),
            (b"{10}x1999", 1),
        ],
    },
];

/// FNV-1a 64 over the placement sequence (one byte per key).
fn fingerprint(placements: &[usize]) -> u64 {
    placements.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &server| (hash ^ server as u64).wrapping_mul(0x0100_0000_01b3))
}

fn ring_for(case: &Case) -> Ring {
    let idents: Vec<String> =
        case.servers.iter().map(|&(host, port, _, name)| ketama_ident(host, port, name)).collect();
    let members: Vec<RingMember<'_>> = case
        .servers
        .iter()
        .zip(&idents)
        .map(|(&(_, _, weight, _), ident)| RingMember { ident, weight, live: true })
        .collect();
    Ring::build(case.distribution, &members)
}

fn tag_for(case: &Case) -> Option<[u8; 2]> {
    match case.keys {
        Keys::Plain => None,
        Keys::Tagged => Some(*b"{}"),
    }
}

#[test]
fn samples_land_where_nutcracker_put_them() {
    for case in CASES {
        let ring = ring_for(case);
        for &(key, server) in case.samples {
            let got = locate_key(&ring, case.hash, tag_for(case), key);
            assert_eq!(got, Some(server), "{}: key {key:?}", case.name);
        }
    }
}

#[test]
fn every_recorded_key_lands_where_nutcracker_put_it() {
    for case in CASES {
        let ring = ring_for(case);
        let placements: Vec<usize> = (0..KEY_COUNT)
            .map(|i| {
                let key = case.keys.key(i);
                locate_key(&ring, case.hash, tag_for(case), &key).unwrap_or(usize::MAX)
            })
            .collect();
        let counts: Vec<usize> =
            (0..case.servers.len()).map(|server| placements.iter().filter(|&&p| p == server).count()).collect();
        assert_eq!(counts, case.counts, "{}: keys per server", case.name);
        assert_eq!(fingerprint(&placements), case.fingerprint, "{}: placement fingerprint", case.name);
    }
}

#[test]
fn empty_key_lands_where_nutcracker_put_it() {
    // nutcracker accepted `SET "" v` on the ketama_w123_fnv1a_64 pool and stored it on server 2.
    let case = CASES.iter().find(|case| case.name == "ketama_w123_fnv1a_64").expect("case exists");
    assert_eq!(locate_key(&ring_for(case), case.hash, None, b""), Some(2));
}
