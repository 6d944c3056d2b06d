//! Byte-level rules shared by the request parser and the reply framer: where a line ends, how a
//! line splits into tokens, and which numbers and keys memcached accepts.

use std::ops::Range;

use super::MAX_KEY_LEN;

/// One text line found in a buffer, as absolute offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Line {
    /// Where the line's text starts.
    pub start: usize,
    /// Where its text ends: before the `\r\n`, or before a bare `\n` (memcached accepts both).
    pub text_end: usize,
    /// Just past the `\n`: where the next line or data block starts.
    pub next: usize,
}

impl Line {
    pub fn text<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start..self.text_end).unwrap_or_default()
    }

    /// The line's space-separated tokens.
    pub fn tokens<'a>(&self, buf: &'a [u8]) -> Tokens<'a> {
        Tokens::new(buf, self.start..self.text_end)
    }
}

/// Finds the line starting at `start` whose `\n` lies before `start + limit`. None when there is
/// no `\n` in `buf[start..start + limit]` (the caller tells "incomplete" from "too long" by the
/// length of what it has).
pub(super) fn find_line(buf: &[u8], start: usize, limit: usize) -> Option<Line> {
    let end = buf.len().min(start.saturating_add(limit));
    let window = buf.get(start..end)?;
    let newline = start + window.iter().position(|&b| b == b'\n')?;
    let text_end = if newline > start && buf.get(newline - 1) == Some(&b'\r') { newline - 1 } else { newline };
    Some(Line { start, text_end, next: newline + 1 })
}

/// The space-separated tokens of a line, as absolute ranges into the buffer. Like memcached,
/// only the space separates tokens and runs of spaces count as one; a tab or `\r` inside a
/// token is part of it.
#[derive(Debug, Clone)]
pub(super) struct Tokens<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Tokens<'a> {
    pub fn new(buf: &'a [u8], span: Range<usize>) -> Self {
        Tokens { buf, pos: span.start, end: span.end.min(buf.len()) }
    }

    fn byte_at(&self, i: usize) -> Option<u8> {
        if i < self.end {
            self.buf.get(i).copied()
        } else {
            None
        }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        while self.byte_at(self.pos) == Some(b' ') {
            self.pos += 1;
        }
        let start = self.pos;
        while matches!(self.byte_at(self.pos), Some(b) if b != b' ') {
            self.pos += 1;
        }
        (self.pos > start).then_some(start..self.pos)
    }
}

/// An unsigned decimal as memcached's strtoul-based readers take it: an optional `+`, then
/// digits, with no overflow. Signs, spaces and hex are refused, which is stricter than
/// memcached in corners no client uses; being stricter is safe for a proxy, because a request
/// it refuses never reaches a server.
pub(super) fn parse_unsigned(token: &[u8]) -> Option<u64> {
    parse_digits(token.strip_prefix(b"+").unwrap_or(token))
}

/// A signed decimal (an optional `+` or `-`, then digits) that fits an `i32`: memcached keeps
/// expiration times in 32 bits.
pub(super) fn parse_exptime(token: &[u8]) -> Option<i32> {
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, token),
    };
    let magnitude = i64::try_from(parse_digits(digits)?).ok()?;
    i32::try_from(if negative { -magnitude } else { magnitude }).ok()
}

fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A key memcached and mcrouter both store: 1 to [`MAX_KEY_LEN`] bytes, none of them a
/// control character or space. (memcached itself tolerates control characters, but a key
/// with `\r` or a tab in it is almost always a client bug, and mcrouter refuses them.)
pub(super) fn is_valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

pub(super) use crate::protocol::push_decimal;

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(line: &[u8]) -> Vec<&[u8]> {
        Tokens::new(line, 0..line.len()).map(|r| &line[r]).collect()
    }

    #[test]
    fn tokens_split_on_spaces_only() {
        assert_eq!(tokens(b"  get a  b\tc \r"), [&b"get"[..], b"a", b"b\tc", b"\r"]);
        assert!(tokens(b"").is_empty());
        assert!(tokens(b"    ").is_empty());
    }

    #[test]
    fn tokens_stay_inside_their_span() {
        let buf = b"xx get a yy";
        let found: Vec<_> = Tokens::new(buf, 2..8).collect();
        assert_eq!(found, [3..6, 7..8]);
        assert_eq!(Tokens::new(buf, 5..100).count(), 3);
    }

    #[test]
    fn lines() {
        let buf = b"ab\r\ncd\nef";
        let first = find_line(buf, 0, 100).unwrap();
        assert_eq!((first.text(buf), first.next), (&b"ab"[..], 4));
        let second = find_line(buf, 4, 100).unwrap();
        assert_eq!((second.text(buf), second.next), (&b"cd"[..], 7));
        assert_eq!(find_line(buf, 7, 100), None);
        assert_eq!(find_line(buf, 0, 2), None, "newline beyond the limit");
        assert_eq!(find_line(buf, 0, 4).map(|l| l.next), Some(4));
        assert_eq!(find_line(buf, 50, 4), None);
        let bare = find_line(b"\n", 0, 10).unwrap();
        assert_eq!((bare.start, bare.text_end, bare.next), (0, 0, 1));
    }

    #[test]
    fn unsigned_numbers() {
        assert_eq!(parse_unsigned(b"0"), Some(0));
        assert_eq!(parse_unsigned(b"007"), Some(7));
        assert_eq!(parse_unsigned(b"+5"), Some(5));
        assert_eq!(parse_unsigned(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"+", b"-1", b"-0", b"18446744073709551616", b"0x1", b"1a", b" 1"] {
            assert_eq!(parse_unsigned(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn exptimes() {
        assert_eq!(parse_exptime(b"0"), Some(0));
        assert_eq!(parse_exptime(b"-1"), Some(-1));
        assert_eq!(parse_exptime(b"+10"), Some(10));
        assert_eq!(parse_exptime(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_exptime(b"-2147483648"), Some(i32::MIN));
        for bad in [&b""[..], b"-", b"2147483648", b"-2147483649", b"--1", b"+-1", b"1.5", b"abc"] {
            assert_eq!(parse_exptime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys() {
        assert!(is_valid_key(b"a"));
        assert!(is_valid_key(&[b'k'; MAX_KEY_LEN]));
        assert!(is_valid_key("clé:ünïcode".as_bytes()));
        assert!(!is_valid_key(&[b'k'; MAX_KEY_LEN + 1]));
        assert!(!is_valid_key(b""));
        for bad in [&b"a\x01b"[..], b"a\tb", b"a\rb", b"a\x7fb", b"a b", b"\x00"] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn decimals() {
        for n in [0, 1, 9, 10, 4294967295, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }
}
