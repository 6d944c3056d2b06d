//! `HELLO [protover [AUTH username password] [SETNAME clientname]]`: its arguments read and checked as redis 7
//! checks them, so the session only has to decide about the password and switch protocol.

use std::ops::Range;

use super::encode::Proto;

/// What a well-formed `HELLO` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hello<'a> {
    /// The version asked for; `None` keeps the current one (plain `HELLO` only reports it).
    pub proto: Option<Proto>,
    /// `AUTH username password`.
    pub auth: Option<(&'a [u8], &'a [u8])>,
    /// `SETNAME clientname` (already checked for the characters redis refuses).
    pub setname: Option<&'a [u8]>,
}

/// Reads a `HELLO` request whose arguments are `args` (ranges of `req`, the first being `HELLO` itself). `Err` is
/// the error reply's text (code first, no `-`), worded as redis 7.0 words it; as in redis, the version is checked
/// before the options, and the last of a repeated option wins.
pub fn parse_hello<'a>(req: &'a [u8], args: &[Range<usize>]) -> Result<Hello<'a>, String> {
    let arg = |i: usize| args.get(i).and_then(|r| req.get(r.clone()));
    let mut hello = Hello::default();
    let Some(version) = arg(1) else { return Ok(hello) };
    let version = strict_integer(version).ok_or("ERR Protocol version is not an integer or out of range")?;
    hello.proto = Some(Proto::from_version(version).ok_or("NOPROTO unsupported protocol version")?);
    let mut i = 2;
    while let Some(option) = arg(i) {
        let more = args.len() - 1 - i;
        if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            hello.auth = arg(i + 1).zip(arg(i + 2));
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            let name = arg(i + 1).unwrap_or_default();
            if !valid_client_name(name) {
                return Err("ERR Client names cannot contain spaces, newlines or special characters.".into());
            }
            hello.setname = Some(name);
            i += 2;
        } else {
            return Err(format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(option)));
        }
    }
    Ok(hello)
}

/// Whether a backend's reply to the `HELLO 3` of its connection prelude shows it switched to RESP3: redis answers
/// with a map; a server without RESP3 answers an error (`-NOPROTO`, or `-ERR unknown command` before redis 6).
pub fn is_resp3_hello_reply(reply: &[u8]) -> bool {
    reply.first() == Some(&b'%')
}

/// Redis' `string2ll`: an optional `-`, then digits without a leading zero (but `0` itself), fitting an i64.
pub fn strict_integer(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    // redis' string2ll: no leading zero, and no "-0" either.
    let leading_zero = (digits.len() > 1 || digits.len() < text.len()) && digits.first() == Some(&b'0');
    if digits.is_empty() || leading_zero || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Redis' `validateClientName`: printable ASCII without spaces (empty clears the name).
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(words: &[&str]) -> Result<Hello<'static>, String> {
        let line: &'static str = Box::leak(words.join(" ").into_boxed_str());
        let mut args = Vec::new();
        let mut at = 0;
        for w in words {
            args.push(at..at + w.len());
            at += w.len() + 1;
        }
        parse_hello(line.as_bytes(), &args)
    }

    #[test]
    fn reads_version_and_options() {
        assert_eq!(hello(&["HELLO"]), Ok(Hello::default()));
        assert_eq!(hello(&["HELLO", "2"]).unwrap().proto, Some(Proto::Resp2));
        let h = hello(&["HELLO", "3", "AUTH", "default", "pw", "SETNAME", "app"]).unwrap();
        assert_eq!(h.proto, Some(Proto::Resp3));
        assert_eq!(h.auth, Some((&b"default"[..], &b"pw"[..])));
        assert_eq!(h.setname, Some(&b"app"[..]));
        let h = hello(&["hello", "3", "setname", "a", "auth", "u", "p", "SETNAME", "b"]).unwrap();
        assert_eq!((h.auth, h.setname), (Some((&b"u"[..], &b"p"[..])), Some(&b"b"[..])));
    }

    /// The texts redis-server 7.0.15 answers with, asked over a raw socket.
    #[test]
    fn refuses_as_redis_does() {
        let not_integer = "ERR Protocol version is not an integer or out of range";
        for bad in ["x", "03", "+3", " 3", "3.0", "99999999999999999999", "", "-"] {
            assert_eq!(hello(&["HELLO", bad]).unwrap_err(), not_integer, "{bad:?}");
        }
        for unsupported in ["1", "4", "-1", "0"] {
            assert_eq!(hello(&["HELLO", unsupported]).unwrap_err(), "NOPROTO unsupported protocol version");
        }
        assert_eq!(hello(&["HELLO", "4", "FOO"]).unwrap_err(), "NOPROTO unsupported protocol version");
        assert_eq!(hello(&["HELLO", "3", "FOO"]).unwrap_err(), "ERR Syntax error in HELLO option 'FOO'");
        assert_eq!(hello(&["HELLO", "3", "SETNAME", "a", "b"]).unwrap_err(), "ERR Syntax error in HELLO option 'b'");
        assert_eq!(hello(&["HELLO", "2", "AUTH", "default"]).unwrap_err(), "ERR Syntax error in HELLO option 'AUTH'");
        assert_eq!(hello(&["HELLO", "2", "SETNAME"]).unwrap_err(), "ERR Syntax error in HELLO option 'SETNAME'");
        let line = b"HELLO 2 SETNAME a b";
        assert_eq!(
            parse_hello(line, &[0..5, 6..7, 8..15, 16..19]).unwrap_err(),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(hello(&["HELLO", "2", "SETNAME", ""]).unwrap().setname, Some(&b""[..]));
    }

    #[test]
    fn recognises_a_resp3_hello_reply() {
        assert!(is_resp3_hello_reply(b"%7\r\n$6\r\nserver\r\n"));
        assert!(!is_resp3_hello_reply(b"*14\r\n$6\r\nserver\r\n"));
        assert!(!is_resp3_hello_reply(b"-NOPROTO unsupported protocol version\r\n"));
        assert!(!is_resp3_hello_reply(b""));
    }
}
