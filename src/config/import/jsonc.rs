//! JSON as mcrouter reads it: `//` and `/* */` comments and trailing commas allowed (folly's parseJson with comments
//! stripped and allow_trailing_comma). Comments and trailing commas are blanked out in place, keeping every line
//! where it was, and the rest is parsed by serde_json, so errors name the line and column of the original text.
//! Lines starting with `#` are accepted too (a guide's configs carry one; mcrouter itself would refuse them) and
//! reported, so the caller can warn.

use super::ImportError;

/// The parsed value, and the lines (1-based) of `#` comments that mcrouter would refuse.
pub fn parse(text: &str) -> Result<(serde_json::Value, Vec<usize>), ImportError> {
    let (clean, hash_lines) = blank_comments(text)?;
    let value = serde_json::from_str(&clean).map_err(|err| {
        let message = err.to_string().replace(&format!(" at line {} column {}", err.line(), err.column()), "");
        ImportError::at(err.line(), err.column().max(1), format!("JSON: {message}"))
    })?;
    Ok((value, hash_lines))
}

fn blank_comments(text: &str) -> Result<(String, Vec<usize>), ImportError> {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut hash_lines = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let mut line_start = true;
    // Where the last comma outside strings was written to `out`, while only blanks followed it.
    let mut pending_comma: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                pending_comma = None;
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    if bytes.get(i) == Some(&b'\n') {
                        line += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                out.extend_from_slice(&bytes[start..i]);
                line_start = false;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
                continue;
            }
            b'#' if line_start => {
                hash_lines.push(line);
                while i < bytes.len() && bytes[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let opened = line;
                i += 2;
                out.extend_from_slice(b"  ");
                loop {
                    match bytes.get(i) {
                        None => return Err(ImportError::at(opened, 1, "a /* comment is never closed")),
                        Some(b'*') if bytes.get(i + 1) == Some(&b'/') => {
                            out.extend_from_slice(b"  ");
                            i += 2;
                            break;
                        }
                        Some(b'\n') => {
                            line += 1;
                            out.push(b'\n');
                            i += 1;
                        }
                        Some(_) => {
                            out.push(b' ');
                            i += 1;
                        }
                    }
                }
                continue;
            }
            b',' => {
                pending_comma = Some(out.len());
                line_start = false;
            }
            b']' | b'}' => {
                if let Some(at) = pending_comma.take() {
                    out[at] = b' ';
                }
                line_start = false;
            }
            b'\n' => {
                line += 1;
                line_start = true;
            }
            b' ' | b'\t' | b'\r' => {}
            _ => {
                pending_comma = None;
                line_start = false;
            }
        }
        out.push(b);
        i += 1;
    }
    // Only ASCII bytes were replaced, and only outside strings, so the text is still UTF-8.
    let clean = String::from_utf8(out).map_err(|_| ImportError::new("the file is not UTF-8"))?;
    Ok((clean, hash_lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_as_mcrouter_reads_them() {
        let text =
            "# guide comment\n{\n  // a comment\n  \"a\": [1, 2,], /* x\n y */ \"b\": \"//not a comment, \\\"#\",\n}\n";
        let (value, hashes) = parse(text).unwrap();
        assert_eq!(value["a"], serde_json::json!([1, 2]));
        assert_eq!(value["b"], "//not a comment, \"#");
        assert_eq!(hashes, [1]);
    }

    #[test]
    fn errors_keep_the_original_line() {
        let err = parse("{\n  // c\n  /* d\n */\n  \"a\": 1 2\n}").unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        let err = parse("{\n /* open").unwrap_err();
        assert_eq!(err.line, Some(2));
    }
}
