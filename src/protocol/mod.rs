//! Wire protocols: parsers and encoders, free of I/O.
pub mod memcache;
pub mod redis;

/// Appends `n` in decimal without going through `fmt` (no allocation, no formatter state). Shared by the encoders.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}
