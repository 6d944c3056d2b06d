//! Hash slots, exactly as redis computes them (cluster spec, `keyHashSlot` in redis' cluster.c).
//!
//! A key's slot is `CRC16(k) mod 16384`, where CRC16 is the XMODEM variant (polynomial 0x1021, initial value 0, no
//! reflection) and `k` is the whole key unless it holds a hash tag: when the key contains a `{` and, after the first
//! `{`, a `}` with at least one byte between them, only the bytes between that first `{` and the first `}` after it
//! are hashed. So `{user1000}.following` and `{user1000}.followers` share a slot, `foo{}{bar}` hashes the whole key
//! (the first tag is empty) and `foo{{bar}}zap` hashes `{bar`.

/// Number of hash slots in a redis cluster.
pub const SLOTS: usize = 16384;

/// CRC16/XMODEM lookup table, built at compile time.
const TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16/XMODEM of `data`, the checksum redis cluster hashes keys with.
#[inline]
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| (crc << 8) ^ TABLE[((crc >> 8) as u8 ^ b) as usize])
}

/// The part of `key` that is hashed: the hash tag when there is a non-empty one, else the whole key.
#[inline]
pub fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The hash slot of `key`, in `0..16384`.
#[inline]
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) & (SLOTS as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_redis_test_vector() {
        // The check value of CRC16/XMODEM, also in redis' own crc16.c comment.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{{bar}}zap"), 4015);
    }

    #[test]
    fn hash_tags_follow_the_spec() {
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty first tag: the whole key is hashed.
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        // The tag runs from the first '{' to the first '}' after it.
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
        // No closing brace: the whole key.
        assert_eq!(hashed_part(b"foo{bar"), b"foo{bar");
        assert_eq!(hashed_part(b"}{"), b"}{");
        assert_eq!(hashed_part(b"{}"), b"{}");
    }
}
