//! A small RESP2/RESP3 reply decoder into a tree, for the topology replies control reads (CLUSTER SHARDS, CLUSTER
//! SLOTS). It is never on the request path: the data path frames replies without decoding them.
//!
//! Maps (`%`) decode as [`Value::Array`] of alternating keys and values, which is exactly the RESP2 form of the
//! same reply, so one parser serves both protocol versions. Sets and pushes decode as arrays; attributes are
//! skipped. Nesting is bounded (a topology reply is 4 deep), so hostile input cannot exhaust the stack.

/// One decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Bulk strings, simple strings, verbatim strings (without their format prefix).
    Str(Vec<u8>),
    Int(i64),
    Array(Vec<Value>),
    Nil,
    /// An error reply's text (without the `-`).
    Error(String),
    /// Doubles, booleans, big numbers: kept as text; topology replies have none.
    Other(Vec<u8>),
}

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 16;

/// Decodes the one complete reply at the start of `buf`: `Ok(Some((value, len)))`, `Ok(None)` when incomplete.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, String> {
    let mut pos = 0;
    match value(buf, &mut pos, 0)? {
        Some(v) => Ok(Some((v, pos))),
        None => Ok(None),
    }
}

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *pos += end + 2;
    Some(&rest[..end])
}

fn number(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(text)))
}

fn value(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, String> {
    if depth > MAX_DEPTH {
        return Err("reply nested too deeply".into());
    }
    let Some(&kind) = buf.get(*pos) else { return Ok(None) };
    *pos += 1;
    let Some(head) = line(buf, pos) else { return Ok(None) };
    Ok(Some(match kind {
        b'+' => Value::Str(head.to_vec()),
        b'-' => Value::Error(String::from_utf8_lossy(head).into_owned()),
        b':' => Value::Int(number(head)?),
        b'_' => Value::Nil,
        b',' | b'#' | b'(' => Value::Other(head.to_vec()),
        b'$' | b'=' | b'!' => {
            let len = number(head)?;
            if len < 0 {
                return Ok(Some(Value::Nil));
            }
            let len = len as usize;
            let Some(body) = buf.get(*pos..pos.saturating_add(len)) else { return Ok(None) };
            if buf.len() < *pos + len + 2 {
                return Ok(None);
            }
            if &buf[*pos + len..*pos + len + 2] != b"\r\n" {
                return Err("bulk string not followed by CRLF".into());
            }
            *pos += len + 2;
            match kind {
                b'!' => Value::Error(String::from_utf8_lossy(body).into_owned()),
                // A verbatim string starts with its three-letter format and a colon.
                b'=' => Value::Str(body.get(4..).unwrap_or_default().to_vec()),
                _ => Value::Str(body.to_vec()),
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Some(Value::Nil));
            }
            let count = if kind == b'%' || kind == b'|' { n as usize * 2 } else { n as usize };
            if count > buf.len() {
                // Each element takes at least 3 bytes: more elements than bytes cannot be complete yet, and a
                // huge count must not allocate.
                return Ok(None);
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                match value(buf, pos, depth + 1)? {
                    Some(v) => items.push(v),
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute annotates the reply after it: skip to that reply.
                return value(buf, pos, depth);
            }
            Value::Array(items)
        }
        other => return Err(format!("unknown reply type {:?}", other as char)),
    }))
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_resp2_and_resp3() {
        let (v, len) = decode(b"*3\r\n$3\r\nfoo\r\n:-7\r\n*-1\r\nrest").unwrap().unwrap();
        assert_eq!(len, 23);
        assert_eq!(v, Value::Array(vec![Value::Str(b"foo".to_vec()), Value::Int(-7), Value::Nil]));
        let (v, _) = decode(b"%1\r\n+id\r\n=7\r\ntxt:abc\r\n").unwrap().unwrap();
        assert_eq!(v, Value::Array(vec![Value::Str(b"id".to_vec()), Value::Str(b"abc".to_vec())]));
        let (v, _) = decode(b"|1\r\n+a\r\n+b\r\n:1\r\n").unwrap().unwrap();
        assert_eq!(v, Value::Int(1));
        assert_eq!(decode(b"-ERR unknown\r\n").unwrap().unwrap().0, Value::Error("ERR unknown".into()));
    }

    #[test]
    fn incomplete_and_malformed() {
        assert_eq!(decode(b"*2\r\n$3\r\nfoo\r\n").unwrap(), None);
        assert_eq!(decode(b"$3\r\nfo").unwrap(), None);
        assert_eq!(decode(b"*99999999\r\n").unwrap(), None);
        assert!(decode(b"$3\r\nfooX\r\n").is_err());
        assert!(decode(b"?\r\n").is_err());
        let deep = "*1\r\n".repeat(40);
        assert!(decode(deep.as_bytes()).is_err());
    }
}
