//! The one error type of config loading: where (file, line, column), which key, what is wrong.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a config was rejected.
///
/// Displayed as `[<file>: ][line <l>, column <c>: ][<key>: ]<message>`, for example
/// `conf/ferrule.toml: line 12, column 8: pools.main.hash: unknown hash "fnv"; expected one of ...`.
/// The line and column point at the offending value (or key, or table header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    origin: Option<PathBuf>,
    position: Option<(usize, usize)>,
    key: Option<String>,
    message: String,
}

impl ConfigError {
    /// An error not tied to a place in the text (e.g. something required is absent).
    pub(super) fn new(key: Option<&str>, message: impl Into<String>) -> ConfigError {
        ConfigError { origin: None, position: None, key: key.map(str::to_owned), message: message.into() }
    }

    /// An error about `key`, located at byte range `span` of `text`.
    pub(super) fn at(text: &str, span: &Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: None,
            position: Some(line_and_column(text, span.start)),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    /// The file could not be read at all.
    pub(super) fn unreadable(path: &Path, err: &std::io::Error) -> ConfigError {
        ConfigError::new(None, format!("cannot read the file: {err}")).with_origin(path)
    }

    /// Translates a TOML syntax or structure error, whose message already names what is wrong.
    pub(super) fn from_toml(text: &str, err: &toml::de::Error) -> ConfigError {
        let mut raw = err.message().trim().replace('\n', "; ");
        if raw.is_empty() {
            raw = unexplained_toml_error(text, err.span());
        }
        let (key, message) = if let Some(rest) = raw.strip_prefix("unknown field ") {
            let key = backticked(rest);
            let hint = key.and_then(super::fields::twemproxy_hint).unwrap_or("");
            (key, format!("unknown key {rest}{hint}"))
        } else if raw.contains("expected a borrowed string") {
            // serde_spanned cannot locate tables created by dotted keys (`a.b = 1`), and says so
            // in terms of its internals; say it in terms of the file instead.
            (
                None,
                "dotted keys are not supported; write tables with headers such as [proxy], \
                 [listeners.<name>] and [pools.<name>], and plain `key = value` lines under them"
                    .to_owned(),
            )
        } else {
            (None, raw.replace("expected a map", "expected a table"))
        };
        ConfigError {
            origin: None,
            position: err.span().map(|span| line_and_column(text, span.start)),
            key: key.map(str::to_owned),
            message,
        }
    }

    /// Names the file the text came from.
    pub(super) fn with_origin(mut self, path: &Path) -> ConfigError {
        self.origin = Some(path.to_path_buf());
        self
    }

    /// 1-based line of the problem, when it has a place in the text.
    pub fn line(&self) -> Option<usize> {
        self.position.map(|(line, _)| line)
    }

    /// 1-based column (in characters) of the problem, when it has a place in the text.
    pub fn column(&self) -> Option<usize> {
        self.position.map(|(_, column)| column)
    }

    /// Dotted path of the offending key, e.g. `pools.main.servers[1]`, when known.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The file, for errors from [`super::Config::load`].
    pub fn origin(&self) -> Option<&Path> {
        self.origin.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{}: ", origin.display())?;
        }
        if let Some((line, column)) = self.position {
            write!(f, "line {line}, column {column}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// toml leaves some syntax errors without any text (a control character in a comment, for one, found by the config
/// fuzz target); say what is at the place it points to.
fn unexplained_toml_error(text: &str, span: Option<Range<usize>>) -> String {
    match span.and_then(|span| text.get(span.start..)).and_then(|rest| rest.chars().next()) {
        Some(c) if c.is_control() => {
            format!("control character {c:?} is not allowed in TOML, not even in a comment or a string")
        }
        Some(c) => format!("invalid TOML at {c:?}"),
        None => "invalid TOML at the end of the file".to_owned(),
    }
}

/// 1-based line and column (counted in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The text between the first pair of backticks in `s`.
fn backticked(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}
