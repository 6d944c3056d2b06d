//! The signed decimal that ends every RESP length header and integer reply: `-?digits\r\n`.

/// Outcome of reading a decimal line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decimal {
    /// The number and the index just past its `\r\n`.
    Value { value: i64, end: usize },
    /// The bytes so far are a valid prefix; more are needed.
    Incomplete,
    /// Not a number redis would accept.
    Invalid,
}

/// Reads `-?digits\r\n` starting at `start`, as strictly as redis' `string2ll`: no `+`, no leading zeros,
/// no `-0`, no empty number, and it must fit an `i64`. Stops at the first byte that cannot belong to a
/// valid number, so an abusive header is rejected after at most ~22 bytes instead of being buffered.
pub(crate) fn parse_decimal_line(buf: &[u8], start: usize) -> Decimal {
    let mut index = start;
    let negative = buf.get(index) == Some(&b'-');
    if negative {
        index += 1;
    }
    let digits_start = index;
    // i64::MIN's magnitude is one more than i64::MAX's.
    let limit = i64::MAX as u64 + u64::from(negative);
    let mut magnitude: u64 = 0;
    loop {
        match buf.get(index) {
            None => return Decimal::Incomplete,
            Some(b'\r') => break,
            Some(&byte) if byte.is_ascii_digit() => {
                let leading_zero = index > digits_start && buf.get(digits_start) == Some(&b'0');
                let next = magnitude
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(u64::from(byte - b'0')))
                    .filter(|&m| m <= limit);
                match next {
                    Some(next) if !leading_zero => magnitude = next,
                    _ => return Decimal::Invalid,
                }
                index += 1;
            }
            Some(_) => return Decimal::Invalid,
        }
    }
    if index == digits_start || (negative && magnitude == 0) {
        return Decimal::Invalid;
    }
    match buf.get(index + 1) {
        None => Decimal::Incomplete,
        Some(b'\n') => {
            // Wrapping negation maps the magnitude 2^63 (seen as i64::MIN) onto itself, which is right.
            let value = if negative { (magnitude as i64).wrapping_neg() } else { magnitude as i64 };
            Decimal::Value { value, end: index + 2 }
        }
        Some(_) => Decimal::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Decimal {
        parse_decimal_line(text, 0)
    }

    #[test]
    fn accepts_canonical_numbers() {
        assert_eq!(parse(b"0\r\n"), Decimal::Value { value: 0, end: 3 });
        assert_eq!(parse(b"42\r\nxx"), Decimal::Value { value: 42, end: 4 });
        assert_eq!(parse(b"-1\r\n"), Decimal::Value { value: -1, end: 4 });
        assert_eq!(parse(b"9223372036854775807\r\n"), Decimal::Value { value: i64::MAX, end: 21 });
        assert_eq!(parse(b"-9223372036854775808\r\n"), Decimal::Value { value: i64::MIN, end: 22 });
    }

    #[test]
    fn rejects_what_redis_rejects() {
        for bad in [
            &b"+1\r\n"[..],
            b"01\r\n",
            b"-0\r\n",
            b"\r\n",
            b"-\r\n",
            b"1 \r\n",
            b"1x",
            b"9223372036854775808\r\n",
            b"-9223372036854775809\r\n",
            b"99999999999999999999999",
            b"1\rx",
        ] {
            assert_eq!(parse(bad), Decimal::Invalid, "{:?}", bad.escape_ascii());
        }
    }

    #[test]
    fn waits_for_more_on_a_valid_prefix() {
        for partial in [&b""[..], b"-", b"12", b"12\r", b"0", b"0\r"] {
            assert_eq!(parse(partial), Decimal::Incomplete);
        }
    }

    #[test]
    fn starts_at_the_given_offset() {
        assert_eq!(parse_decimal_line(b"$5\r\n", 1), Decimal::Value { value: 5, end: 4 });
    }
}
