//! The hash functions mcrouter's pools place keys with, reproduced bit for bit so that a pool converted from mcrouter
//! keeps every key on the server mcrouter picked for the same server list (in config order):
//! - [`ch3`]: mcrouter's default, "furc" consistent hashing: a binary decision tree walked with bits from
//!   MurmurHash64A (seed 4193360111) and its re-hashes; adding a server only moves keys onto it.
//! - [`weighted_ch3`]: ch3 plus a per-server weight in [0, 1]: the chosen server keeps a key when SpookyHashV2-32 of
//!   the key (seed 0xface2014) is below weight x u32::MAX, otherwise a decimal salt is appended and ch3 tried again.
//! - [`crc32_index`]: `(crc32(key) & 0x7fffffff) % n`.
//!
//! All are pure and allocation-free; weighted_ch3's salted retries reuse a caller's buffer.

/// furc's seed, chosen by its authors for diffusion.
const FURC_SEED: u32 = 4_193_360_111;
/// Gap in bit index between decisions; limits pools to 2^23 servers.
const FURC_SHIFT: u32 = 23;
/// In-range attempts before furc gives up and answers 0.
const FURC_MAX_TRIES: u32 = 32;
/// Hashes furc can need: bit indices stay below MAX_TRIES x (SHIFT + 1) x SHIFT + SHIFT < 288 x 64.
const FURC_CACHE: usize = 288;
/// The largest pool ch3 can address.
pub const CH3_MAX_SERVERS: usize = 1 << FURC_SHIFT;

/// weighted_ch3: salted attempts before the last index is taken.
const WEIGHTED_TRIES: usize = 32;
/// weighted_ch3's SpookyHashV2 seed.
const WEIGHTED_SEED: u32 = 0xface_2014;

const MURMUR_M: u64 = 0xc6a4_a793_5bd1_e995;
const MURMUR_R: u32 = 47;

/// MurmurHash64A (Austin Appleby), reading the key as little-endian 64-bit words as x86-64 does.
pub fn murmur_hash_64a(key: &[u8], seed: u32) -> u64 {
    let mut h = u64::from(seed) ^ (key.len() as u64).wrapping_mul(MURMUR_M);
    let mut words = key.chunks_exact(8);
    for word in &mut words {
        let mut k = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        k = k.wrapping_mul(MURMUR_M);
        k ^= k >> MURMUR_R;
        k = k.wrapping_mul(MURMUR_M);
        h ^= k;
        h = h.wrapping_mul(MURMUR_M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u64::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(MURMUR_M);
    }
    h ^= h >> MURMUR_R;
    h = h.wrapping_mul(MURMUR_M);
    h ^= h >> MURMUR_R;
    h
}

/// MurmurHash64A of one 64-bit word with furc's seed: how furc extends its bit stream.
fn murmur_rehash(word: u64) -> u64 {
    let mut h = u64::from(FURC_SEED) ^ 8u64.wrapping_mul(MURMUR_M);
    let mut k = word.wrapping_mul(MURMUR_M);
    k ^= k >> MURMUR_R;
    k = k.wrapping_mul(MURMUR_M);
    h ^= k;
    h = h.wrapping_mul(MURMUR_M);
    h ^= h >> MURMUR_R;
    h = h.wrapping_mul(MURMUR_M);
    h ^= h >> MURMUR_R;
    h
}

/// furc's bit stream for one key: bit i is bit (i % 64) of hash number i / 64, where hash 0 is the key's
/// MurmurHash64A and hash n + 1 re-hashes hash n. Hashes are computed once, on first use.
struct FurcBits {
    hashes: [u64; FURC_CACHE],
    computed: usize,
}

impl FurcBits {
    fn new(key: &[u8]) -> FurcBits {
        let mut hashes = [0u64; FURC_CACHE];
        hashes[0] = murmur_hash_64a(key, FURC_SEED);
        FurcBits { hashes, computed: 1 }
    }

    fn bit(&mut self, index: u32) -> u32 {
        let ord = (index >> 6) as usize;
        // Bit indices stay below FURC_CACHE * 64 (see FURC_CACHE); past that, answer 0 rather than panic.
        if ord >= FURC_CACHE {
            return 0;
        }
        while self.computed <= ord {
            self.hashes[self.computed] = murmur_rehash(self.hashes[self.computed - 1]);
            self.computed += 1;
        }
        ((self.hashes[ord] >> (index & 0x3f)) & 1) as u32
    }
}

/// mcrouter's Ch3 (furc_hash): the index in `0..servers` for `key`. `servers` above [`CH3_MAX_SERVERS`] is clamped
/// (mcrouter refuses such pools; config validation does too).
pub fn ch3(key: &[u8], servers: usize) -> usize {
    let m = servers.min(CH3_MAX_SERVERS) as u32;
    if m <= 1 {
        return 0;
    }
    let mut bits = FurcBits::new(key);
    // d: the number of bits needed to address m servers.
    let mut d = 0u32;
    while m > (1u32 << d) {
        d += 1;
    }
    let mut a = d;
    for _ in 0..FURC_MAX_TRIES {
        while bits.bit(a) == 0 {
            d -= 1;
            if d == 0 {
                return 0;
            }
            a = d;
        }
        a += FURC_SHIFT;
        let mut num = 1u32;
        for _ in 0..d - 1 {
            num = (num << 1) | bits.bit(a);
            a += FURC_SHIFT;
        }
        if num < m {
            return num as usize;
        }
    }
    0
}

/// mcrouter's Crc32 hash function: `(crc32(key) & 0x7fffffff) % servers`.
pub fn crc32_index(key: &[u8], servers: usize) -> usize {
    if servers == 0 {
        return 0;
    }
    ((crc32fast::hash(key) & 0x7fff_ffff) as usize) % servers
}

/// mcrouter's WeightedCh3: `weights[i]` in [0, 1] is the share of server i's ch3 keys it keeps; the others are
/// re-hashed with a salt. `scratch` holds the salted key (reused, so steady-state lookups do not allocate).
pub fn weighted_ch3(key: &[u8], weights: &[f64], scratch: &mut Vec<u8>) -> usize {
    let n = weights.len();
    let mut index = 0;
    let mut salted = false;
    for salt in 0..WEIGHTED_TRIES {
        let attempt: &[u8] = if salted { scratch } else { key };
        index = ch3(attempt, n);
        let p = u64::from(spooky_hash32(attempt, WEIGHTED_SEED));
        let weight = weights.get(index).copied().unwrap_or(0.0);
        // As mcrouter computes it: the double product truncated to an integer.
        let threshold = (weight * f64::from(u32::MAX)) as u64;
        if p < threshold {
            return index;
        }
        // The next attempt hashes the key followed by the salt's decimal digits, least significant first.
        scratch.clear();
        scratch.extend_from_slice(key);
        let mut s = salt;
        loop {
            scratch.push(b'0' + (s % 10) as u8);
            s /= 10;
            if s == 0 {
                break;
            }
        }
        salted = true;
    }
    index
}

/// SpookyHashV2 (Bob Jenkins) 32-bit result, as folly's `SpookyHashV2::Hash32`: both 64-bit seeds are `seed`, the
/// result is the low half of the first 64-bit hash.
pub fn spooky_hash32(message: &[u8], seed: u32) -> u32 {
    let (h1, _) = spooky_hash128(message, u64::from(seed), u64::from(seed));
    h1 as u32
}

const SC_CONST: u64 = 0xdead_beef_dead_beef;
const SC_NUM_VARS: usize = 12;
const SC_BLOCK_SIZE: usize = SC_NUM_VARS * 8;
const SC_BUF_SIZE: usize = 2 * SC_BLOCK_SIZE;

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u64::from(u32::from_le_bytes(word))
}

/// SpookyHashV2's 128-bit hash of `message` with seeds `seed1`, `seed2`.
pub fn spooky_hash128(message: &[u8], seed1: u64, seed2: u64) -> (u64, u64) {
    if message.len() < SC_BUF_SIZE {
        return spooky_short(message, seed1, seed2);
    }
    let mut h = [seed1, seed2, SC_CONST, seed1, seed2, SC_CONST, seed1, seed2, SC_CONST, seed1, seed2, SC_CONST];
    let whole = message.len() / SC_BLOCK_SIZE * SC_BLOCK_SIZE;
    let mut block = [0u64; SC_NUM_VARS];
    for chunk in message[..whole].chunks_exact(SC_BLOCK_SIZE) {
        for (i, word) in block.iter_mut().enumerate() {
            *word = read_u64(chunk, i * 8);
        }
        spooky_mix(&block, &mut h);
    }
    // The last partial block, zero-padded, with its length in the last byte.
    let remainder = &message[whole..];
    let mut last = [0u8; SC_BLOCK_SIZE];
    last[..remainder.len()].copy_from_slice(remainder);
    last[SC_BLOCK_SIZE - 1] = remainder.len() as u8;
    for (i, word) in block.iter_mut().enumerate() {
        *word = read_u64(&last, i * 8);
    }
    spooky_end(&block, &mut h);
    (h[0], h[1])
}

fn spooky_mix(data: &[u64; SC_NUM_VARS], s: &mut [u64; SC_NUM_VARS]) {
    // (index added to, xored, xored, rotation, added) per step, as SpookyHashV2's Mix.
    const ROT: [u32; 12] = [11, 32, 43, 31, 17, 28, 39, 57, 55, 54, 22, 46];
    for (i, (&word, &rot)) in data.iter().zip(ROT.iter()).enumerate() {
        s[i] = s[i].wrapping_add(word);
        s[(i + 2) % 12] ^= s[(i + 10) % 12];
        s[(i + 11) % 12] ^= s[i];
        s[i] = s[i].rotate_left(rot);
        s[(i + 11) % 12] = s[(i + 11) % 12].wrapping_add(s[(i + 1) % 12]);
    }
}

fn spooky_end_partial(h: &mut [u64; SC_NUM_VARS]) {
    const ROT: [u32; 12] = [44, 15, 34, 21, 38, 33, 10, 13, 38, 53, 42, 54];
    for (i, &rot) in ROT.iter().enumerate() {
        // h[i+11] += h[i+1]; h[i+2] ^= h[i+11]; h[i+1] = rot(h[i+1])
        let (a, b, c) = ((i + 11) % 12, (i + 1) % 12, (i + 2) % 12);
        h[a] = h[a].wrapping_add(h[b]);
        h[c] ^= h[a];
        h[b] = h[b].rotate_left(rot);
    }
}

fn spooky_end(data: &[u64; SC_NUM_VARS], h: &mut [u64; SC_NUM_VARS]) {
    for (word, &add) in h.iter_mut().zip(data.iter()) {
        *word = word.wrapping_add(add);
    }
    spooky_end_partial(h);
    spooky_end_partial(h);
    spooky_end_partial(h);
}

fn short_mix(h: &mut [u64; 4]) {
    const ROT: [u32; 12] = [50, 52, 30, 41, 54, 48, 38, 37, 62, 34, 5, 36];
    for (step, rot) in ROT.iter().enumerate() {
        // h2 = rot(h2); h2 += h3; h0 ^= h2; then the same one place on.
        let (x, y, z) = ((step + 2) % 4, (step + 3) % 4, step % 4);
        h[x] = h[x].rotate_left(*rot);
        h[x] = h[x].wrapping_add(h[y]);
        h[z] ^= h[x];
    }
}

fn short_end(h: &mut [u64; 4]) {
    const ROT: [u32; 11] = [15, 52, 26, 51, 28, 9, 47, 54, 32, 25, 63];
    for (step, rot) in ROT.iter().enumerate() {
        // h3 ^= h2; h2 = rot(h2); h3 += h2; then the same one place on.
        let (x, y) = ((step + 3) % 4, (step + 2) % 4);
        h[x] ^= h[y];
        h[y] = h[y].rotate_left(*rot);
        h[x] = h[x].wrapping_add(h[y]);
    }
}

fn spooky_short(message: &[u8], seed1: u64, seed2: u64) -> (u64, u64) {
    let length = message.len();
    let mut h = [seed1, seed2, SC_CONST, SC_CONST];
    let mut at = 0;
    let mut remainder = length % 32;
    if length > 15 {
        while at + 32 <= length {
            h[2] = h[2].wrapping_add(read_u64(message, at));
            h[3] = h[3].wrapping_add(read_u64(message, at + 8));
            short_mix(&mut h);
            h[0] = h[0].wrapping_add(read_u64(message, at + 16));
            h[1] = h[1].wrapping_add(read_u64(message, at + 24));
            at += 32;
        }
        if remainder >= 16 {
            h[2] = h[2].wrapping_add(read_u64(message, at));
            h[3] = h[3].wrapping_add(read_u64(message, at + 8));
            short_mix(&mut h);
            at += 16;
            remainder -= 16;
        }
    }
    let tail = &message[at..];
    let byte = |i: usize| u64::from(tail.get(i).copied().unwrap_or(0));
    h[3] = h[3].wrapping_add((length as u64) << 56);
    match remainder {
        0 => {
            h[2] = h[2].wrapping_add(SC_CONST);
            h[3] = h[3].wrapping_add(SC_CONST);
        }
        1..=3 => {
            let mut c = 0u64;
            for i in (0..remainder).rev() {
                c += byte(i) << (8 * i);
            }
            h[2] = h[2].wrapping_add(c);
        }
        4..=7 => {
            let mut c = read_u32(tail, 0);
            for i in 4..remainder {
                c += byte(i) << (8 * i);
            }
            h[2] = h[2].wrapping_add(c);
        }
        8..=11 => {
            h[2] = h[2].wrapping_add(read_u64(tail, 0));
            let mut d = 0u64;
            for i in 8..remainder {
                d += byte(i) << (8 * (i - 8));
            }
            h[3] = h[3].wrapping_add(d);
        }
        _ => {
            h[2] = h[2].wrapping_add(read_u64(tail, 0));
            let mut d = read_u32(tail, 8);
            for i in 12..remainder {
                d += byte(i) << (8 * (i - 8));
            }
            h[3] = h[3].wrapping_add(d);
        }
    }
    short_end(&mut h);
    (h[0], h[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mcrouter's tests build pools of `n` servers with equal weights; their polynomial checksum over keys.
    fn checksum(keys: impl Iterator<Item = String>, mut place: impl FnMut(&[u8]) -> usize) -> u32 {
        keys.fold(0u32, |acc, key| acc.wrapping_mul(31).wrapping_add(place(key.as_bytes()) as u32))
    }

    #[test]
    fn ch3_vectors_from_the_reference() {
        assert_eq!(ch3(b"sample", 100), 97);
        assert_eq!(ch3(b"", 100), 72);
        assert_eq!(ch3(b"sample", 1), 0);
        assert_eq!(ch3(b"", 1), 0);
        assert_eq!(ch3(b"", CH3_MAX_SERVERS), 6_173_600);
        assert_eq!(ch3(b"sample", CH3_MAX_SERVERS), 5_167_780);
        let mut counts = [0usize; 3];
        for i in 0..1000 {
            counts[ch3(i.to_string().as_bytes(), 3)] += 1;
        }
        assert_eq!(counts, [307, 342, 351]);
    }

    /// Vectors from mcrouter's WeightedCh3HashFunc tests (which, with unit weights, are ch3's).
    #[test]
    fn ch3_vectors_from_mcrouter_tests() {
        // Every byte value, both orders, over 99999 servers.
        let ascending: Vec<u8> = (0..=255u8).map(|i| i.wrapping_sub(128)).collect();
        assert_eq!(ch3(&ascending, 99_999), 31_015);
        let descending: Vec<u8> = ascending.iter().rev().copied().collect();
        assert_eq!(ch3(&descending, 99_999), 67_101);
        let mut counts = [0usize; 10];
        for i in 0..10_000 {
            counts[ch3(i.to_string().as_bytes(), 10)] += 1;
        }
        assert_eq!(counts, [995, 955, 1046, 968, 1032, 972, 1016, 1038, 1010, 968]);
        let expected = [
            (2, 1_346_413_954u32),
            (3, 914_505_363),
            (7, 4_252_552_508),
            (10, 2_894_016_351),
            (16, 2_995_729_350),
            (100, 2_289_223_413),
            (1000, 2_251_851_331),
        ];
        for (n, sum) in expected {
            assert_eq!(checksum((0..100_000).map(|i| format!("k{i}")), |k| ch3(k, n)), sum, "n={n}");
        }
    }

    #[test]
    fn ch3_only_moves_keys_onto_added_servers() {
        for i in 0..2000 {
            let key = format!("key:{i}");
            let before = ch3(key.as_bytes(), 7);
            let after = ch3(key.as_bytes(), 8);
            assert!(after == before || after == 7, "{key}: {before} -> {after}");
        }
    }

    #[test]
    fn weighted_ch3_vectors_from_mcrouter_tests() {
        let mut scratch = Vec::new();
        let mut place = |key: &[u8], weights: &[f64]| weighted_ch3(key, weights, &mut scratch);
        // Unit weights are ch3.
        assert_eq!(place(b"sample", &[1.0; 100]), 97);
        assert_eq!(place(b"", &[1.0; 100]), 72);
        // Zero weights give up and return the last index tried.
        assert_eq!(place(b"sample", &[0.0]), 0);
        assert_eq!(place(b"sample", &[0.0; 100]), 59);
        assert_eq!(place(b"", &[0.0; 100]), 45);
        let mut counts = [0usize; 3];
        for i in 0..1000 {
            counts[place(i.to_string().as_bytes(), &[1.0, 1.0, 0.7])] += 1;
        }
        assert_eq!(counts, [341, 371, 288]);
        let weights = [0.429, 0.541, 0.117, 0.998, 0.283, 0.065, 0.109, 0.042, 0.676, 0.943];
        let mut counts = [0usize; 10];
        for i in 0..10_000 {
            counts[place(i.to_string().as_bytes(), &weights)] += 1;
        }
        assert_eq!(counts, [1016, 1252, 288, 2354, 661, 195, 247, 122, 1668, 2197]);
        let mixed = [1.0, 0.5, 0.0, 0.75, 1.0];
        assert_eq!(checksum((0..10_000).map(|i| format!("d{i}")), |k| place(k, &mixed)), 2_309_057_571);
        for (n, sum) in [(2, 2_395_690_262u32), (10, 547_444_706), (100, 2_951_198_297), (1000, 1_336_857_622)] {
            let half = vec![0.5; n];
            assert_eq!(checksum((0..10_000).map(|i| format!("k{i}")), |k| place(k, &half)), sum, "n={n}");
        }
        for (n, sum) in [(2, 3_431_444_300u32), (10, 1_290_067_504), (100, 2_604_325_093), (1000, 337_394_182)] {
            let zero = vec![0.0; n];
            assert_eq!(checksum((0..10_000).map(|i| format!("k{i}")), |k| place(k, &zero)), sum, "n={n}");
        }
        // 128-byte keys plus a number: SpookyHash over several 32-byte rounds.
        let base: String = (0..128u8).map(|i| char::from(b'A' + i % 26)).collect();
        for (n, sum) in [(2, 3_784_301_429u32), (10, 707_485_837), (100, 4_273_108_085), (1000, 954_106_693)] {
            let half = vec![0.5; n];
            assert_eq!(checksum((0..10_000).map(|i| format!("{base}{i}")), |k| place(k, &half)), sum, "n={n}");
        }
        for (n, sum) in [(2, 2_171_781_178u32), (10, 2_937_312_667), (100, 532_711_027)] {
            let zero = vec![0.0; n];
            assert_eq!(checksum((0..10_000).map(|i| format!("{base}{i}")), |k| place(k, &zero)), sum, "n={n}");
        }
    }

    #[test]
    fn spooky_hash32_matches_jenkins_published_results() {
        // SpookyHashV2's own test (TestResults): Hash32 with seed 0 of the first i bytes of a buffer whose byte j is
        // j + 128. Lengths from 192 on take the long (block) path.
        let buffer: Vec<u8> = (0..512u32).map(|j| (j + 128) as u8).collect();
        let expected = [
            (0, 0x6bf5_0919u32),
            (1, 0x70de_1d26),
            (2, 0xa2b3_7298),
            (191, 0xe13d_9e19),
            (192, 0x77e0_12bd),
            (193, 0x2d05_114c),
            (255, 0x2f40_ee0b),
            (256, 0x38ce_bf03),
            (300, 0x37e2_b1da),
            (511, 0xcc1c_8250),
        ];
        for (length, hash) in expected {
            assert_eq!(spooky_hash32(&buffer[..length], 0), hash, "length {length}");
        }
    }

    #[test]
    fn crc32_index_is_the_masked_standard_crc() {
        // CRC-32 of "123456789" is 0xCBF43926; masked to 31 bits, 0x4BF43926.
        assert_eq!(crc32_index(b"123456789", usize::MAX), 0x4bf4_3926);
        assert_eq!(crc32_index(b"123456789", 10), 0x4bf4_3926 % 10);
        assert_eq!(crc32_index(b"x", 0), 0);
    }
}
