//! RESP encoders. Each appends to a caller-owned buffer that is reused across requests, so encoding a
//! reply or a sub-request allocates nothing beyond that buffer's occasional growth.

use std::ops::Range;

/// `+s\r\n`. CR and LF in `s` become spaces: they would end the line early and desynchronize the client.
pub fn write_simple(out: &mut Vec<u8>, s: &[u8]) {
    write_line(out, b'+', s);
}

/// `-msg\r\n`, where `msg` starts with the error code, e.g. `b"ERR unknown command"`. CR and LF in `msg`
/// become spaces, as redis does, since messages often quote client bytes.
pub fn write_error(out: &mut Vec<u8>, msg: &[u8]) {
    write_line(out, b'-', msg);
}

/// `:n\r\n`.
pub fn write_integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    push_signed(out, n);
    out.extend_from_slice(b"\r\n");
}

/// `$len\r\nb\r\n`.
pub fn write_bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 16);
    out.push(b'$');
    crate::protocol::push_decimal(out, b.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// `$-1\r\n`, the RESP2 nil.
pub fn write_null_bulk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*-1\r\n`, the RESP2 nil array.
pub fn write_null_array(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*-1\r\n");
}

/// `*n\r\n`; the `n` elements follow.
pub fn write_array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    crate::protocol::push_decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// A multibulk request: `*N\r\n` then each argument as a bulk string.
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    write_command_iter(out, args.len(), args.iter().copied());
}

/// A multibulk request whose `n` arguments come from an iterator, e.g. the command name followed by the
/// keys of one server's share of a split MGET. The iterator must yield exactly `n` arguments.
pub fn write_command_iter<'a>(out: &mut Vec<u8>, n: usize, args: impl Iterator<Item = &'a [u8]>) {
    write_array_header(out, n);
    let mut written = 0;
    for arg in args {
        write_bulk(out, arg);
        written += 1;
    }
    debug_assert_eq!(written, n, "write_command_iter: argument count mismatch");
}

/// The error redis gives for an unknown command, e.g.
/// `-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n`, from a parsed request (`args`
/// are ranges of `buf`, the first being the command name). Like redis, the name is cut to 128 bytes and
/// the quoted arguments stop once they reach 128 bytes.
pub fn write_unknown_command(out: &mut Vec<u8>, buf: &[u8], args: &[Range<usize>]) {
    const LIMIT: usize = 128;
    let bytes = |range: &Range<usize>| buf.get(range.clone()).unwrap_or_default();
    let start = out.len();
    out.extend_from_slice(b"-ERR unknown command '");
    let name = args.first().map(bytes).unwrap_or_default();
    out.extend_from_slice(&name[..name.len().min(LIMIT)]);
    out.extend_from_slice(b"', with args beginning with: ");
    let mut quoted = 0;
    for arg in args.iter().skip(1).map(bytes) {
        if quoted >= LIMIT {
            break;
        }
        let shown = &arg[..arg.len().min(LIMIT - quoted)];
        out.push(b'\'');
        out.extend_from_slice(shown);
        out.extend_from_slice(b"' ");
        quoted += shown.len() + 3;
    }
    replace_line_breaks(&mut out[start + 1..]);
    out.extend_from_slice(b"\r\n");
}

fn write_line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.push(kind);
    let start = out.len();
    out.extend_from_slice(text);
    replace_line_breaks(&mut out[start..]);
    out.extend_from_slice(b"\r\n");
}

fn replace_line_breaks(text: &mut [u8]) {
    for byte in text {
        if *byte == b'\r' || *byte == b'\n' {
            *byte = b' ';
        }
    }
}

fn push_signed(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    crate::protocol::push_decimal(out, n.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::super::{parse_request, reply_len};
    use super::*;

    fn encoded(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        write(&mut out);
        assert!(out.starts_with(b"prefix"), "encoders append");
        out.split_off(6)
    }

    #[test]
    fn encodes_every_reply_type() {
        assert_eq!(encoded(|o| write_simple(o, b"OK")), b"+OK\r\n");
        assert_eq!(encoded(|o| write_simple(o, b"a\r\nb")), b"+a  b\r\n");
        assert_eq!(encoded(|o| write_error(o, b"ERR bad\nthing")), b"-ERR bad thing\r\n");
        assert_eq!(encoded(|o| write_integer(o, 0)), b":0\r\n");
        assert_eq!(encoded(|o| write_integer(o, 1234567)), b":1234567\r\n");
        assert_eq!(encoded(|o| write_integer(o, -9)), b":-9\r\n");
        assert_eq!(encoded(|o| write_integer(o, i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(encoded(|o| write_integer(o, i64::MAX)), b":9223372036854775807\r\n");
        assert_eq!(encoded(|o| write_bulk(o, b"a\r\nb")), b"$4\r\na\r\nb\r\n");
        assert_eq!(encoded(|o| write_bulk(o, b"")), b"$0\r\n\r\n");
        assert_eq!(encoded(write_null_bulk), b"$-1\r\n");
        assert_eq!(encoded(write_null_array), b"*-1\r\n");
        assert_eq!(encoded(|o| write_array_header(o, 10)), b"*10\r\n");
    }

    #[test]
    fn encoded_replies_frame_back() {
        let mut out = Vec::new();
        write_array_header(&mut out, 3);
        write_bulk(&mut out, b"v");
        write_null_bulk(&mut out);
        write_integer(&mut out, -1);
        assert_eq!(reply_len(&out).unwrap(), Some(out.len()));
    }

    #[test]
    fn encodes_commands() {
        let expected = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n";
        assert_eq!(encoded(|o| write_command(o, &[b"SET", b"k", b""])), expected);
        let keys = [&b"SET"[..], b"k", b""];
        assert_eq!(encoded(|o| write_command_iter(o, 3, keys.into_iter())), expected);
        let mut args = Vec::new();
        assert_eq!(parse_request(expected, &mut args).unwrap(), Some(expected.len()));
    }

    #[test]
    fn unknown_command_error_matches_redis() {
        let buf = b"FOO a bc";
        let args = [0..3, 4..5, 6..8];
        assert_eq!(
            encoded(|o| write_unknown_command(o, buf, &args)),
            b"-ERR unknown command 'FOO', with args beginning with: 'a' 'bc' \r\n"
        );
        assert_eq!(
            encoded(|o| write_unknown_command(o, b"", &[Range { start: 0, end: 0 }])),
            b"-ERR unknown command '', with args beginning with: \r\n"
        );
        let buf = b"X\r\nY";
        assert_eq!(
            encoded(|o| write_unknown_command(o, buf, &[Range { start: 0, end: 4 }])),
            b"-ERR unknown command 'X  Y', with args beginning with: \r\n"
        );
        let long = [b'n'; 300];
        let reply = encoded(|o| write_unknown_command(o, &long, &[0..300, 0..100, 0..100]));
        let text = String::from_utf8(reply).unwrap();
        assert!(text.starts_with(&format!("-ERR unknown command '{}',", "n".repeat(128))));
        // redis: '%.*s' with 128 - len(so far): 100 bytes + 3, then 25 bytes + 3
        assert!(text.ends_with(&format!("'{}' '{}' \r\n", "n".repeat(100), "n".repeat(25))));
    }
}
