//! Spec problems, located in the file: an error stops the load, a warning does not.

use std::fmt;
use std::path::{Path, PathBuf};

/// A spec problem, with enough position to point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Something flow accepts but the author should know: an ignored field, which of two spec
/// files was read. `cli` prints these before it does anything else.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecWarning {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.path, self.line, self.column, &self.message)
    }
}

impl std::error::Error for SpecError {}

impl fmt::Display for SpecWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.path, self.line, self.column, &self.message)
    }
}

/// `path:line:col: message`, leaving out what is unknown.
fn write_located(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    line: Option<usize>,
    column: Option<usize>,
    message: &str,
) -> fmt::Result {
    match (line, column) {
        (Some(line), Some(column)) => write!(f, "{}:{line}:{column}: {message}", path.display()),
        (Some(line), None) => write!(f, "{}:{line}: {message}", path.display()),
        _ => write!(f, "{}: {message}", path.display()),
    }
}
