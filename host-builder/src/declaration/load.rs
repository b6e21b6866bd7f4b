//! Reading a declaration: the file, its TOML, then the checks of
//! [`super::validate`].

use std::path::Path;

use super::error::{DeclError, Locator};
use super::{Declaration, Loaded, validate};

/// Reads and checks a declaration file.
pub fn load(file: &Path) -> Result<Loaded, DeclError> {
    let text = std::fs::read_to_string(file).map_err(|e| DeclError {
        file: file.to_owned(),
        line: 1,
        col: 1,
        message: format!("cannot read the declaration: {e}"),
    })?;
    parse(file, &text)
}

/// Parses and checks declaration text; `file` is used in errors and for
/// relative paths.
pub fn parse(file: &Path, text: &str) -> Result<Loaded, DeclError> {
    let at = Locator { file, text };
    let decl: Declaration = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        at.error(&span, e.message().trim_end().replace('\n', " "))
    })?;
    validate::check(&at, decl)
}
