//! The raw TOML document and typed, located access to its values.
//!
//! Tables are read as maps of spanned `toml::Value`s rather than as serde structs so that every
//! error can name the full key path (`pools.main.hash`) and the line of the value; serde's own
//! messages know neither the section nor, for semantic errors, the line.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Range;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::ConfigError;

/// One TOML table: key -> located value.
pub(super) type Table = BTreeMap<String, Spanned<Value>>;

/// The four top-level sections; any other top-level key is rejected by serde with its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocument {
    #[serde(default)]
    pub proxy: Option<Spanned<Table>>,
    #[serde(default)]
    pub listeners: BTreeMap<String, Spanned<Table>>,
    #[serde(default)]
    pub pools: BTreeMap<String, Spanned<Table>>,
    #[serde(default)]
    pub routes: BTreeMap<String, Spanned<Table>>,
}

/// A table of the document together with its key path and location, for error reporting.
pub(super) struct Section<'a> {
    text: &'a str,
    path: String,
    /// Where the table starts; `None` for a section absent from the file (all defaults).
    span: Option<Range<usize>>,
    table: &'a Table,
}

impl<'a> Section<'a> {
    pub fn new(text: &'a str, path: String, span: Option<Range<usize>>, table: &'a Table) -> Self {
        Section { text, path, span, table }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    /// An error about the table as a whole, located at its header.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        match &self.span {
            Some(span) => ConfigError::at(self.text, span, &self.path, message),
            None => ConfigError::new(Some(&self.path), message),
        }
    }

    /// Rejects the key nearest the top of the file that is not in `allowed`.
    pub fn reject_unknown_keys(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        let first_unknown = self
            .table
            .iter()
            .filter(|(key, _)| !allowed.contains(&key.as_str()))
            .min_by_key(|(_, value)| value.span().start);
        match first_unknown {
            None => Ok(()),
            Some((key, value)) => {
                let hint = twemproxy_hint(key).unwrap_or("");
                Err(ConfigError::at(
                    self.text,
                    &key_span(self.text, key, value.span()),
                    &format!("{}.{key}", self.path),
                    format!("unknown key `{key}`; expected one of: {}{hint}", allowed.join(", ")),
                ))
            }
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<Field<'a>> {
        self.table.get(key).map(|value| Field { text: self.text, key: format!("{}.{key}", self.path), value })
    }

    /// The value of `key`, or an error at the table header saying it is required.
    pub fn required(&self, key: &str) -> Result<Field<'a>, ConfigError> {
        self.get(key).ok_or_else(|| self.error(format!("missing required key `{key}`")))
    }

    /// `parse` applied to the value of `key`, or `default` when the key is absent.
    pub fn parse_or<T>(
        &self,
        key: &str,
        default: T,
        parse: impl FnOnce(&Field<'a>) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            Some(field) => parse(&field),
            None => Ok(default),
        }
    }
}

/// One located value and its full key path.
pub(super) struct Field<'a> {
    text: &'a str,
    key: String,
    value: &'a Spanned<Value>,
}

impl<'a> Field<'a> {
    /// Full dotted key path, e.g. `proxy.workers`.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn span(&self) -> Range<usize> {
        self.value.span()
    }

    pub fn value(&self) -> &'a Value {
        self.value.get_ref()
    }

    /// An error about this value, located at it.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.text, &self.value.span(), &self.key, message)
    }

    /// An error about part of this value (e.g. one array element) located at `span`.
    pub fn error_at(&self, span: &Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.text, span, key, message)
    }

    fn wrong_type(&self, expected: &str) -> ConfigError {
        self.error(format!("expected {expected}, found {}", describe(self.value.get_ref())))
    }

    pub fn string(&self) -> Result<&'a str, ConfigError> {
        match self.value.get_ref() {
            Value::String(s) => Ok(s),
            _ => Err(self.wrong_type("a string")),
        }
    }

    /// A string that must not be empty (names, secrets, paths).
    pub fn non_empty_string(&self) -> Result<&'a str, ConfigError> {
        match self.string()? {
            "" => Err(self.error("must not be empty")),
            s => Ok(s),
        }
    }

    pub fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value.get_ref() {
            Value::Boolean(b) => Ok(*b),
            _ => Err(self.wrong_type("true or false")),
        }
    }

    pub fn array(&self) -> Result<&'a [Value], ConfigError> {
        match self.value.get_ref() {
            Value::Array(items) => Ok(items),
            _ => Err(self.wrong_type("an array")),
        }
    }

    /// An integer of type `T` that is at least `min`.
    pub fn integer_at_least<T>(&self, min: T) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + PartialOrd + Display + Copy,
    {
        let raw = self.raw_integer()?;
        match T::try_from(raw) {
            Ok(value) if value >= min => Ok(value),
            Ok(_) => Err(self.error(format!("must be at least {min}, got {raw}"))),
            Err(_) if raw < 0 => Err(self.error(format!("must be at least {min}, got {raw}"))),
            Err(_) => Err(self.error(format!("{raw} is too large"))),
        }
    }

    /// An integer of type `T` in `min..=max`.
    pub fn integer_in<T>(&self, min: T, max: T) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + PartialOrd + Display + Copy,
    {
        let raw = self.raw_integer()?;
        match T::try_from(raw) {
            Ok(value) if value >= min && value <= max => Ok(value),
            _ => Err(self.error(format!("must be from {min} to {max}, got {raw}"))),
        }
    }

    fn raw_integer(&self) -> Result<i64, ConfigError> {
        match self.value.get_ref() {
            Value::Integer(i) => Ok(*i),
            _ => Err(self.wrong_type("an integer")),
        }
    }
}

/// Where `key` is written before its value (on the value's line), so that an error about the key
/// points at it; the value's own span when it cannot be found (e.g. a quoted key).
fn key_span(text: &str, key: &str, value: Range<usize>) -> Range<usize> {
    let line_start = text.get(..value.start).and_then(|before| before.rfind('\n')).map_or(0, |newline| newline + 1);
    text.get(line_start..value.start).and_then(|prefix| prefix.rfind(key)).map_or(value, |found| {
        let start = line_start + found;
        start..start + key.len()
    })
}

/// "integer 5", "string \"x\"": what was found instead of the expected type.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        other => other.type_str().to_owned(),
    }
}

/// Hints for keys a twemproxy user is likely to carry over, appended to "unknown key" messages.
pub(super) fn twemproxy_hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "timeout" => " (ferrule spells twemproxy's `timeout` as `timeout_ms`)",
        "server_retry_timeout" => " (ferrule spells twemproxy's `server_retry_timeout` as `server_retry_timeout_ms`)",
        "listen" | "backlog" => {
            " (in ferrule, `listen` and `backlog` belong to a [listeners.<name>] table that routes to the pool)"
        }
        "redis" => " (in ferrule, set protocol = \"redis\" on the listener that routes to the pool)",
        "servers" | "hash" | "distribution" => {
            " (this key belongs to a [pools.<name>] table; the listener names it with `route`)"
        }
        _ => return None,
    })
}
