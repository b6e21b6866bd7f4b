//! Declaration errors and where they point: byte spans of the TOML text
//! turned into `FILE:LINE:COL: message`. A leaf module: it uses nothing
//! else of the declaration, so the loader and every check can use it.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A declaration that cannot be used, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", file.display())]
pub struct DeclError {
    /// The declaration file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong, lower-case, naming the field.
    pub message: String,
}

/// Turns byte spans into `FILE:LINE:COL` errors.
pub(crate) struct Locator<'a> {
    /// The declaration file, named in errors; relative paths of the
    /// declaration are taken from its directory.
    pub(crate) file: &'a Path,
    /// The declaration's text, which spans index.
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    /// An error at the start of `span`, with its line and column.
    pub(crate) fn error(&self, span: &Range<usize>, message: impl Into<String>) -> DeclError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        DeclError {
            file: self.file.to_owned(),
            line,
            col,
            message: message.into(),
        }
    }
}
