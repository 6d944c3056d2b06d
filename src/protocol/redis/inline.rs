//! Splitting an inline request line into arguments, with redis' quoting rules (`sdssplitargs`).
//!
//! Arguments are byte ranges of the read buffer, so only arguments whose value is a contiguous run of the
//! line are representable: plain words, and words that are one quoted string without escapes. Escapes
//! (`"a\n"`, `'it\'s'`) and quotes glued to a word (`a"b c"`) change the bytes, so they are refused with a
//! protocol error rather than routed on a key that differs from what the backend will see. redis-cli and
//! client libraries always send multibulk, so only hand-typed telnet sessions can meet this.

use std::ops::Range;

use super::ProtocolError;

/// Splits `line` (without its newline) into argument ranges, appended to `args`.
pub(crate) fn split_inline(line: &[u8], args: &mut Vec<Range<usize>>) -> Result<(), ProtocolError> {
    let mut index = 0;
    loop {
        while line.get(index).is_some_and(|&b| is_c_space(b)) {
            index += 1;
        }
        let Some(&first) = line.get(index) else {
            return Ok(());
        };
        index = match first {
            b'"' | b'\'' => {
                let quoted = scan_quoted(line, index)?;
                if quoted.escaped {
                    return Err(needs_unescaping());
                }
                args.push(index + 1..quoted.closing);
                quoted.closing + 1
            }
            _ => {
                let end = scan_plain(line, index)?;
                args.push(index..end);
                end
            }
        };
    }
}

/// Returns the end of a plain word starting at `start`.
fn scan_plain(line: &[u8], start: usize) -> Result<usize, ProtocolError> {
    let mut index = start;
    while let Some(&byte) = line.get(index) {
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => break,
            b'"' | b'\'' => {
                // redis would open a quote here and glue its content to the word: not a contiguous value.
                // Report unbalanced quotes first, as redis would.
                scan_quoted(line, index)?;
                return Err(needs_unescaping());
            }
            _ => index += 1,
        }
    }
    Ok(index)
}

struct Quoted {
    /// Index of the closing quote.
    closing: usize,
    /// Whether an escape sequence makes the value differ from the bytes between the quotes.
    escaped: bool,
}

/// Scans the quoted string opening at `open`, enforcing redis' rules: it must be closed, and the closing
/// quote must be followed by whitespace or the end of the line.
fn scan_quoted(line: &[u8], open: usize) -> Result<Quoted, ProtocolError> {
    let quote = line.get(open).copied().unwrap_or(b'"');
    let mut index = open + 1;
    let mut escaped = false;
    loop {
        let Some(&byte) = line.get(index) else {
            return Err(unbalanced_quotes());
        };
        let next = line.get(index + 1).copied();
        if byte == b'\\' && next.is_some() && (quote == b'"' || next == Some(b'\'')) {
            // In double quotes every backslash escapes the next byte (`\xHH` consumes two more, which are
            // hex digits and so cannot close the string). In single quotes only `\'` is an escape.
            escaped = true;
            index += 2;
        } else if byte == quote {
            if next.is_some_and(|b| !is_c_space(b)) {
                return Err(unbalanced_quotes());
            }
            return Ok(Quoted { closing: index, escaped });
        } else {
            index += 1;
        }
    }
}

/// C `isspace`: what redis skips between arguments.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn unbalanced_quotes() -> ProtocolError {
    ProtocolError::new("unbalanced quotes in request")
}

fn needs_unescaping() -> ProtocolError {
    ProtocolError::new("escaped or partly quoted inline arguments are not supported, use the multibulk protocol")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<String>, String> {
        let mut args = Vec::new();
        split_inline(line.as_bytes(), &mut args).map_err(|e| e.0)?;
        Ok(args.into_iter().map(|r| line[r].to_string()).collect())
    }

    #[test]
    fn plain_words_and_whitespace() {
        assert_eq!(split("GET key").unwrap(), ["GET", "key"]);
        assert_eq!(split("\x0b\x0c GET\tkey \r").unwrap(), ["GET", "key"]);
        assert_eq!(split("ECHO a\x0bb").unwrap(), ["ECHO", "a\x0bb"]);
        assert_eq!(split("ECHO a\rb").unwrap(), ["ECHO", "a", "b"]);
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert_eq!(split("ECHO a\\b").unwrap(), ["ECHO", "a\\b"]);
    }

    #[test]
    fn quoted_words_without_escapes() {
        assert_eq!(split(r#"SET "a key" 'a value'"#).unwrap(), ["SET", "a key", "a value"]);
        assert_eq!(split(r#"ECHO """#).unwrap(), ["ECHO", ""]);
        assert_eq!(split("ECHO \"a\"\x0b").unwrap(), ["ECHO", "a"]);
        assert_eq!(split(r"ECHO 'a\b'").unwrap(), ["ECHO", r"a\b"]);
        assert_eq!(split(r#"ECHO 'say "hi"'"#).unwrap(), ["ECHO", r#"say "hi""#]);
    }

    #[test]
    fn unbalanced_quotes_like_redis() {
        for line in [r#"GET "a"#, r#"GET "a"b"#, "GET ''x", r#"GET a"b"#, r#"GET "a\""#, "GET 'a\\'"] {
            assert_eq!(split(line).unwrap_err(), "unbalanced quotes in request", "{line}");
        }
    }

    #[test]
    fn values_that_are_not_contiguous_are_refused() {
        for line in [r#"ECHO "a\n""#, r#"ECHO "\x41""#, r"ECHO 'it\'s'", r#"ECHO a"b c""#, "ECHO a'b'"] {
            assert!(split(line).unwrap_err().contains("multibulk"), "{line}");
        }
    }
}
