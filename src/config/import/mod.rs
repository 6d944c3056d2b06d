//! `ferrule convert`: other proxies' configs turned into ferrule's TOML.
//!
//! Each importer is pure: the source text (and the command-line settings the source proxy took as flags) in, the
//! TOML text and a list of warnings out, or one [`ImportError`] naming the line of the input it cannot read. The
//! TOML carries comments wherever a setting has no ferrule equivalent or changes meaning; the warnings repeat the
//! ones that change behaviour, for the command to print. The caller validates the result with [`super::Config`]
//! (which resolves server host names, so it is not done here).
//!
//! Routes (mcrouter's route handles, Envoy's prefix routes and mirrors) become ferrule's `[routes.*]` tables. The
//! model has kinds this build cannot execute yet; the importers write them (the file says which) and the caller
//! checks with [`super::Config::parse_model`]. What ferrule cannot express is refused by name, not approximated.

pub mod envoy;
mod jsonc;
pub mod mcrouter;
mod toml_out;
pub mod twemproxy;
mod yaml;

use std::fmt;

/// The result of a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The ferrule config, with explanatory comments.
    pub toml: String,
    /// Settings that were dropped or whose meaning changed, one sentence each.
    pub warnings: Vec<String>,
}

/// Why an input could not be converted: a place in the input (1-based line and column) when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl ImportError {
    pub fn at(line: usize, column: usize, message: impl Into<String>) -> ImportError {
        ImportError { line: Some(line), column: Some(column), message: message.into() }
    }

    pub fn new(message: impl Into<String>) -> ImportError {
        ImportError { line: None, column: None, message: message.into() }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: {}", self.message),
            (Some(line), None) => write!(f, "line {line}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ImportError {}

/// Collects the document and the warnings together, so that a warning is never printed without its comment in the
/// file or the other way round.
struct Output {
    doc: toml_out::Document,
    warnings: Vec<String>,
}

impl Output {
    fn new() -> Output {
        Output { doc: toml_out::Document::new(), warnings: Vec::new() }
    }

    fn finish(self) -> Conversion {
        Conversion { toml: self.doc.render(), warnings: self.warnings }
    }
}
