//! The key hash functions twemproxy offers, reproduced bit for bit.
//!
//! Each function returns the 32-bit value twemproxy feeds to its distributor, including its quirks:
//! several of its C implementations read key bytes through a (signed, on x86-64) `char`, so bytes
//! from 0x80 up are sign-extended before they are mixed in. We reproduce the x86-64 behaviour, which
//! is what the Debian/Ubuntu `nutcracker` packages on amd64 do, so that non-ASCII keys land on the
//! same server too (an arm64 build of twemproxy, where `char` is unsigned, places them differently).

use md5::{Digest, Md5};

/// A key byte as twemproxy's C code sees it after reading it through `char` and widening it to
/// `uint32_t`: sign-extended on x86-64.
fn c_char_u32(byte: u8) -> u32 {
    byte as i8 as i32 as u32
}

/// As [`c_char_u32`], widened to `uint64_t`.
fn c_char_u64(byte: u8) -> u64 {
    byte as i8 as i64 as u64
}

/// Bob Jenkins' one-at-a-time hash.
pub(crate) fn one_at_a_time(key: &[u8]) -> u32 {
    let mut value: u32 = 0;
    for &byte in key {
        value = value.wrapping_add(c_char_u32(byte));
        value = value.wrapping_add(value << 10);
        value ^= value >> 6;
    }
    value = value.wrapping_add(value << 3);
    value ^= value >> 11;
    value.wrapping_add(value << 15)
}

/// The MD5 digest of `input`.
pub(crate) fn md5_digest(input: &[u8]) -> [u8; 16] {
    Md5::digest(input).into()
}

/// Word `word` (0..4) of an MD5 digest read little-endian: how both the `md5` key hash and the
/// ketama points turn a digest into 32-bit values.
pub(crate) fn digest_word(digest: &[u8; 16], word: usize) -> u32 {
    let start = (word % 4) * 4;
    u32::from_le_bytes([digest[start], digest[start + 1], digest[start + 2], digest[start + 3]])
}

/// The first little-endian word of the key's MD5 digest.
pub(crate) fn md5(key: &[u8]) -> u32 {
    digest_word(&md5_digest(key), 0)
}

/// CRC-16/XMODEM lookup table (polynomial 0x1021, MSB first), computed at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = (index as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

/// twemproxy's crc16: the XMODEM table step, but the running value is a 32-bit integer that is
/// never masked, so bits above 16 accumulate and are part of the result.
pub(crate) fn crc16(key: &[u8]) -> u32 {
    key.iter().fold(0u32, |crc, &byte| {
        let index = ((crc >> 8) ^ u32::from(byte)) & 0xff;
        (crc << 8) ^ u32::from(CRC16_TABLE[index as usize])
    })
}

/// libmemcached's "crc32": bits 16..31 of the standard CRC-32, masked to 15 bits.
pub(crate) fn crc32_libmemcached(key: &[u8]) -> u32 {
    (crc32fast::hash(key) >> 16) & 0x7fff
}

/// The standard CRC-32 (IEEE, as zlib computes it).
pub(crate) fn crc32a(key: &[u8]) -> u32 {
    crc32fast::hash(key)
}

const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;
const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1, 32-bit.
pub(crate) fn fnv1_32(key: &[u8]) -> u32 {
    key.iter().fold(FNV_32_INIT, |hash, &byte| hash.wrapping_mul(FNV_32_PRIME) ^ c_char_u32(byte))
}

/// FNV-1a, 32-bit.
pub(crate) fn fnv1a_32(key: &[u8]) -> u32 {
    key.iter().fold(FNV_32_INIT, |hash, &byte| (hash ^ c_char_u32(byte)).wrapping_mul(FNV_32_PRIME))
}

/// FNV-1, 64-bit, truncated to its low 32 bits.
pub(crate) fn fnv1_64(key: &[u8]) -> u32 {
    let hash = key.iter().fold(FNV_64_INIT, |hash, &byte| hash.wrapping_mul(FNV_64_PRIME) ^ c_char_u64(byte));
    hash as u32
}

/// twemproxy's "fnv1a_64": despite the name, FNV-1a computed entirely in 32 bits with the 64-bit
/// offset basis and prime truncated to 32 bits (not the low half of the real 64-bit FNV-1a).
pub(crate) fn fnv1a_64(key: &[u8]) -> u32 {
    let init = FNV_64_INIT as u32;
    let prime = FNV_64_PRIME as u32;
    key.iter().fold(init, |hash, &byte| (hash ^ c_char_u32(byte)).wrapping_mul(prime))
}

/// Two key bytes as a little-endian 16-bit value (Hsieh's `get16bits`).
fn le16(low: u8, high: u8) -> u32 {
    u32::from(u16::from_le_bytes([low, high]))
}

/// Paul Hsieh's SuperFastHash; the empty key hashes to 0.
pub(crate) fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let mut hash: u32 = 0;
    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        hash = hash.wrapping_add(le16(block[0], block[1]));
        let tmp = (le16(block[2], block[3]) << 11) ^ hash;
        hash = (hash << 16) ^ tmp;
        hash = hash.wrapping_add(hash >> 11);
    }
    match *blocks.remainder() {
        [a, b, c] => {
            hash = hash.wrapping_add(le16(a, b));
            hash ^= hash << 16;
            // The C code reads this byte through a plain `char`: sign-extended.
            hash ^= c_char_u32(c) << 18;
            hash = hash.wrapping_add(hash >> 11);
        }
        [a, b] => {
            hash = hash.wrapping_add(le16(a, b));
            hash ^= hash << 11;
            hash = hash.wrapping_add(hash >> 17);
        }
        [a] => {
            hash = hash.wrapping_add(u32::from(a));
            hash ^= hash << 10;
            hash = hash.wrapping_add(hash >> 1);
        }
        _ => {}
    }
    hash ^= hash << 3;
    hash = hash.wrapping_add(hash >> 5);
    hash ^= hash << 4;
    hash = hash.wrapping_add(hash >> 17);
    hash ^= hash << 25;
    hash.wrapping_add(hash >> 6)
}

/// MurmurHash2 with twemproxy's length-derived seed (`0xdeadbeef * len`).
pub(crate) fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // twemproxy narrows the length to 32 bits for the seed and the initial value.
    let length = key.len() as u32;
    let seed = 0xdead_beef_u32.wrapping_mul(length);
    let mut hash = seed ^ length;

    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M) ^ k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (position, &byte) in tail.iter().enumerate().rev() {
            hash ^= u32::from(byte) << (8 * position);
        }
        hash = hash.wrapping_mul(M);
    }

    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^ (hash >> 15)
}

/// Little-endian word from up to four bytes, missing high bytes taken as zero.
fn le_partial(bytes: &[u8]) -> u32 {
    bytes.iter().take(4).enumerate().fold(0, |word, (position, &byte)| word | (u32::from(byte) << (8 * position)))
}

/// The `mix` step of Bob Jenkins' lookup3.
fn jenkins_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// The `final` step of Bob Jenkins' lookup3.
fn jenkins_final(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// Bob Jenkins' lookup3 `hashlittle` with twemproxy's initial value 13.
pub(crate) fn jenkins(key: &[u8]) -> u32 {
    const INITVAL: u32 = 13;
    let start = 0xdead_beef_u32.wrapping_add(key.len() as u32).wrapping_add(INITVAL);
    let (mut a, mut b, mut c) = (start, start, start);

    let mut rest = key;
    // Every full 12-byte block except the last one is mixed; the last (possibly partial or
    // full) block goes through `final`.
    while rest.len() > 12 {
        let (block, tail) = rest.split_at(12);
        a = a.wrapping_add(le_partial(&block[0..4]));
        b = b.wrapping_add(le_partial(&block[4..8]));
        c = c.wrapping_add(le_partial(&block[8..12]));
        jenkins_mix(&mut a, &mut b, &mut c);
        rest = tail;
    }
    if rest.is_empty() {
        // Only reachable for the empty key: lookup3 returns without the final mix.
        return c;
    }
    a = a.wrapping_add(le_partial(rest));
    b = b.wrapping_add(le_partial(rest.get(4..).unwrap_or_default()));
    c = c.wrapping_add(le_partial(rest.get(8..).unwrap_or_default()));
    jenkins_final(&mut a, &mut b, &mut c);
    c
}

/// XXH3-64 truncated to its low 32 bits (ferrule's addition; not in twemproxy).
pub(crate) fn xxh3(key: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(key) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_table_matches_the_xmodem_polynomial() {
        assert_eq!(CRC16_TABLE[0], 0x0000);
        assert_eq!(CRC16_TABLE[1], 0x1021);
        assert_eq!(CRC16_TABLE[2], 0x2042);
        assert_eq!(CRC16_TABLE[16], 0x1231);
        assert_eq!(CRC16_TABLE[255], 0x1ef0);
    }

    #[test]
    fn digest_word_reads_little_endian_words() {
        let digest: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(digest_word(&digest, 0), 0x0302_0100);
        assert_eq!(digest_word(&digest, 3), 0x0f0e_0d0c);
    }

    #[test]
    fn high_bytes_are_sign_extended_where_twemproxy_reads_a_char() {
        // FNV-1a 32 of [0x80]: (basis ^ 0xffffff80) * prime, not (basis ^ 0x80) * prime.
        let expected = (FNV_32_INIT ^ 0xffff_ff80).wrapping_mul(FNV_32_PRIME);
        assert_eq!(fnv1a_32(&[0x80]), expected);
        assert_ne!(fnv1a_32(&[0x80]), (FNV_32_INIT ^ 0x80).wrapping_mul(FNV_32_PRIME));
    }

    #[test]
    fn empty_keys() {
        assert_eq!(hsieh(b""), 0);
        assert_eq!(one_at_a_time(b""), 0);
        assert_eq!(crc16(b""), 0);
        assert_eq!(jenkins(b""), 0xdead_beef_u32.wrapping_add(13));
        assert_eq!(fnv1_32(b""), FNV_32_INIT);
        assert_eq!(murmur(b""), {
            let mut h = 0u32;
            h ^= h >> 13;
            h = h.wrapping_mul(0x5bd1_e995);
            h ^ (h >> 15)
        });
    }
}
