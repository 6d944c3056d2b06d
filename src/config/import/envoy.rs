//! Envoy YAML -> ferrule TOML.

use super::{Conversion, ImportError};

pub fn convert(_text: &str) -> Result<Conversion, ImportError> {
    Err(ImportError::new("not yet"))
}
