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
    write_header(out, b'*', n as u64);
}

/// The RESP version a client chose with `HELLO`: replies the proxy makes itself are written in it, because a
/// RESP3 client expects `_` where a RESP2 one expects `$-1`, a map where RESP2 has a flat array, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

impl Proto {
    /// The version `HELLO <protover>` asks for: `Some` for 2 and 3 only (redis answers `-NOPROTO` otherwise).
    pub fn from_version(version: i64) -> Option<Proto> {
        match version {
            2 => Some(Proto::Resp2),
            3 => Some(Proto::Resp3),
            _ => None,
        }
    }

    /// 2 or 3, as `HELLO` reports it in its `proto` field.
    pub fn version(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// The missing value where redis replies with a nil bulk string (`GET` of a missing key): `$-1` in RESP2,
/// `_` in RESP3.
pub fn write_null(out: &mut Vec<u8>, proto: Proto) {
    match proto {
        Proto::Resp2 => write_null_bulk(out),
        Proto::Resp3 => out.extend_from_slice(b"_\r\n"),
    }
}

/// The missing value where redis replies with a nil array (`BLPOP` timing out): `*-1` in RESP2, `_` in RESP3.
pub fn write_null_aggregate(out: &mut Vec<u8>, proto: Proto) {
    match proto {
        Proto::Resp2 => write_null_array(out),
        Proto::Resp3 => out.extend_from_slice(b"_\r\n"),
    }
}

/// A map of `n` pairs; the `2n` keys and values follow, alternating. RESP3 `%n`, RESP2 the flat array `*2n`
/// redis sends instead (as for `HGETALL` or `HELLO`).
pub fn write_map_header(out: &mut Vec<u8>, n: usize, proto: Proto) {
    match proto {
        Proto::Resp2 => write_header(out, b'*', 2 * n as u64),
        Proto::Resp3 => write_header(out, b'%', n as u64),
    }
}

/// A set of `n` elements (`SMEMBERS`): RESP3 `~n`, RESP2 `*n`.
pub fn write_set_header(out: &mut Vec<u8>, n: usize, proto: Proto) {
    match proto {
        Proto::Resp2 => write_header(out, b'*', n as u64),
        Proto::Resp3 => write_header(out, b'~', n as u64),
    }
}

/// An out-of-band message of `n` elements (a pub/sub message): RESP3 push `>n`, RESP2 the plain array `*n`
/// a subscribed RESP2 connection receives.
pub fn write_push_header(out: &mut Vec<u8>, n: usize, proto: Proto) {
    match proto {
        Proto::Resp2 => write_header(out, b'*', n as u64),
        Proto::Resp3 => write_header(out, b'>', n as u64),
    }
}

/// A boolean: RESP3 `#t` / `#f`, RESP2 the integers `:1` / `:0` redis sends instead.
pub fn write_boolean(out: &mut Vec<u8>, value: bool, proto: Proto) {
    out.extend_from_slice(match (proto, value) {
        (Proto::Resp2, true) => b":1\r\n",
        (Proto::Resp2, false) => b":0\r\n",
        (Proto::Resp3, true) => b"#t\r\n",
        (Proto::Resp3, false) => b"#f\r\n",
    });
}

/// A double as redis 7.0 writes it (`addReplyDouble`): `printf("%.17g")`, with `inf` / `-inf` spelled out;
/// RESP3 `,<text>`, RESP2 the same text as a bulk string. (Redis 7.2 switched to the shortest round-trip text.)
pub fn write_double(out: &mut Vec<u8>, value: f64, proto: Proto) {
    let mut text = [0u8; 32];
    let len = format_double(value, &mut text);
    match proto {
        Proto::Resp2 => write_bulk(out, &text[..len]),
        Proto::Resp3 => {
            out.push(b',');
            out.extend_from_slice(&text[..len]);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A verbatim string, e.g. `INFO`'s text: RESP3 `=<len>\r\n<format>:<text>\r\n` (`format` is `txt` or `mkd`),
/// RESP2 a bulk string of `text` alone.
pub fn write_verbatim(out: &mut Vec<u8>, format: &[u8; 3], text: &[u8], proto: Proto) {
    match proto {
        Proto::Resp2 => write_bulk(out, text),
        Proto::Resp3 => {
            out.reserve(text.len() + 20);
            write_header(out, b'=', text.len() as u64 + 4);
            out.extend_from_slice(format);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// What `HELLO` reports about the server, besides the protocol version.
#[derive(Debug, Clone, Copy)]
pub struct HelloFields<'a> {
    pub server: &'a [u8],
    pub version: &'a [u8],
    pub id: i64,
    pub mode: &'a [u8],
    pub role: &'a [u8],
}

/// The reply to a successful `HELLO`, shaped as redis 7 shapes it: in RESP3 the map
/// `server, version, proto, id, mode, role, modules` (bulk strings, `proto` and `id` integers, `modules` an
/// empty array); in RESP2 the same fourteen elements as a flat array. `proto` is the version just chosen.
pub fn write_hello(out: &mut Vec<u8>, fields: &HelloFields<'_>, proto: Proto) {
    write_map_header(out, 7, proto);
    for (key, value) in [(&b"server"[..], fields.server), (b"version", fields.version)] {
        write_bulk(out, key);
        write_bulk(out, value);
    }
    write_bulk(out, b"proto");
    write_integer(out, proto.version());
    write_bulk(out, b"id");
    write_integer(out, fields.id);
    for (key, value) in [(&b"mode"[..], fields.mode), (b"role", fields.role)] {
        write_bulk(out, key);
        write_bulk(out, value);
    }
    write_bulk(out, b"modules");
    write_array_header(out, 0);
}

fn write_header(out: &mut Vec<u8>, kind: u8, n: u64) {
    out.push(kind);
    crate::protocol::push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// C's `%.17g` of `value` into `text`, returning its length: 17 significant digits, trailing zeros dropped,
/// exponent form (`1e+20`, at least two exponent digits) when the exponent is below -4 or at least 17.
/// Infinities are `inf` / `-inf` and NaN is `nan`, as redis writes them.
fn format_double(value: f64, text: &mut [u8; 32]) -> usize {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    if value.is_nan() {
        let _ = cursor.write_all(b"nan");
        return cursor.position() as usize;
    }
    if value.is_infinite() {
        let _ = cursor.write_all(if value > 0.0 { b"inf" } else { b"-inf" });
        return cursor.position() as usize;
    }
    // `{:.16e}` rounds to 17 significant digits as printf does: "d.dddddddddddddddde<exp>".
    let mut scientific = [0u8; 32];
    let mut sci = std::io::Cursor::new(&mut scientific[..]);
    let _ = write!(sci, "{value:.16e}");
    let sci_len = sci.position() as usize;
    let scientific = &scientific[..sci_len];
    let e_at = scientific.iter().position(|&b| b == b'e').unwrap_or(sci_len);
    let exponent: i32 = std::str::from_utf8(&scientific[e_at + 1..]).ok().and_then(|e| e.parse().ok()).unwrap_or(0);
    let (negative, mantissa) = match scientific[..e_at].split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, &scientific[..e_at]),
    };
    // The 17 significant digits, without the point, then without trailing zeros.
    let mut digits = [0u8; 17];
    let mut n = 0;
    for &b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
        digits[n] = b;
        n += 1;
    }
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    let digits = &digits[..n];
    if negative {
        let _ = cursor.write_all(b"-");
    }
    if !(-4..17).contains(&exponent) {
        let _ = cursor.write_all(&digits[..1]);
        if digits.len() > 1 {
            let _ = cursor.write_all(b".");
            let _ = cursor.write_all(&digits[1..]);
        }
        let _ = write!(cursor, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs());
    } else if exponent < 0 {
        let _ = cursor.write_all(b"0.");
        for _ in 0..(-exponent - 1) {
            let _ = cursor.write_all(b"0");
        }
        let _ = cursor.write_all(digits);
    } else {
        let int_len = exponent as usize + 1;
        for i in 0..int_len {
            let _ = cursor.write_all(&[digits.get(i).copied().unwrap_or(b'0')]);
        }
        if digits.len() > int_len {
            let _ = cursor.write_all(b".");
            let _ = cursor.write_all(&digits[int_len..]);
        }
    }
    cursor.position() as usize
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
    #[allow(clippy::approx_constant)] // 3.141 is the double `DEBUG PROTOCOL double` sends, not an attempt at pi
    fn encodes_resp3_types_and_their_resp2_forms() {
        use Proto::{Resp2, Resp3};
        assert_eq!(encoded(|o| write_null(o, Resp2)), b"$-1\r\n");
        assert_eq!(encoded(|o| write_null(o, Resp3)), b"_\r\n");
        assert_eq!(encoded(|o| write_null_aggregate(o, Resp2)), b"*-1\r\n");
        assert_eq!(encoded(|o| write_null_aggregate(o, Resp3)), b"_\r\n");
        assert_eq!(encoded(|o| write_map_header(o, 3, Resp2)), b"*6\r\n");
        assert_eq!(encoded(|o| write_map_header(o, 3, Resp3)), b"%3\r\n");
        assert_eq!(encoded(|o| write_set_header(o, 2, Resp2)), b"*2\r\n");
        assert_eq!(encoded(|o| write_set_header(o, 2, Resp3)), b"~2\r\n");
        assert_eq!(encoded(|o| write_push_header(o, 3, Resp2)), b"*3\r\n");
        assert_eq!(encoded(|o| write_push_header(o, 3, Resp3)), b">3\r\n");
        assert_eq!(encoded(|o| write_boolean(o, true, Resp3)), b"#t\r\n");
        assert_eq!(encoded(|o| write_boolean(o, false, Resp3)), b"#f\r\n");
        assert_eq!(encoded(|o| write_boolean(o, true, Resp2)), b":1\r\n");
        assert_eq!(encoded(|o| write_boolean(o, false, Resp2)), b":0\r\n");
        // As redis 7.0 `DEBUG PROTOCOL double` and `verbatim` send them in each version.
        assert_eq!(encoded(|o| write_double(o, 3.141, Resp3)), b",3.141\r\n");
        assert_eq!(encoded(|o| write_double(o, 3.141, Resp2)), b"$5\r\n3.141\r\n");
        assert_eq!(encoded(|o| write_double(o, f64::INFINITY, Resp3)), b",inf\r\n");
        assert_eq!(encoded(|o| write_double(o, f64::NEG_INFINITY, Resp2)), b"$4\r\n-inf\r\n");
        let text = b"This is a verbatim\nstring";
        assert_eq!(encoded(|o| write_verbatim(o, b"txt", text, Resp3)), b"=29\r\ntxt:This is a verbatim\nstring\r\n");
        assert_eq!(encoded(|o| write_verbatim(o, b"txt", text, Resp2)), b"$25\r\nThis is a verbatim\nstring\r\n");
        assert_eq!(Proto::from_version(2), Some(Resp2));
        assert_eq!(Proto::from_version(3), Some(Resp3));
        assert_eq!(Proto::from_version(1), None);
        assert_eq!(Proto::from_version(4), None);
        assert_eq!(Proto::default(), Resp2);
    }

    #[test]
    fn doubles_are_printed_as_printf_17g() {
        for (value, text) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (0.1, "0.10000000000000001"),
            (-2.5, "-2.5"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (1e-300, "1e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "4.9406564584124654e-324"),
            (f64::NAN, "nan"),
        ] {
            let mut buf = [0u8; 32];
            let len = format_double(value, &mut buf);
            assert_eq!(std::str::from_utf8(&buf[..len]).unwrap(), text, "{value:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn doubles_match_libc_printf(bits in proptest::prelude::any::<u64>()) {
            let value = f64::from_bits(bits);
            proptest::prop_assume!(value.is_finite());
            let mut ours = [0u8; 32];
            let len = format_double(value, &mut ours);
            let mut theirs = [0u8; 64];
            // SAFETY: the buffer is 64 bytes and its size is passed; the format takes one double.
            let n = unsafe { libc::snprintf(theirs.as_mut_ptr().cast(), theirs.len(), c"%.17g".as_ptr(), value) };
            proptest::prop_assert_eq!(&ours[..len], &theirs[..n as usize]);
        }
    }

    /// What redis-server 7.0.15 sends for `HELLO 3` and `HELLO 2` (captured from a raw socket), with
    /// ferrule's own values in the same fields.
    #[test]
    fn hello_reply_is_shaped_as_redis_7_sends_it() {
        let fields = HelloFields { server: b"redis", version: b"7.0.15", id: 3, mode: b"standalone", role: b"master" };
        let resp3: &[u8] = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        let resp2: &[u8] = b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        assert_eq!(encoded(|o| write_hello(o, &fields, Proto::Resp3)), resp3);
        assert_eq!(encoded(|o| write_hello(o, &fields, Proto::Resp2)), resp2);
        assert_eq!(reply_len(resp3).unwrap(), Some(resp3.len()));
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
