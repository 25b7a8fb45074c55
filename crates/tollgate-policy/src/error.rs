//! Policy errors, each naming the script and, where known, the line.

/// The kind of a policy failure, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The script does not compile.
    Compile,
    /// The script threw or hit a type error.
    Runtime,
    /// A sandbox limit (operations, sizes, call depth) stopped the script.
    Limit,
    /// The wall-clock deadline stopped the script.
    Timeout,
    /// The script returned something that is not a valid decision.
    InvalidDecision,
}

impl ErrorKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Compile => "compile",
            ErrorKind::Runtime => "runtime",
            ErrorKind::Limit => "limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidDecision => "invalid_decision",
        }
    }
}

/// A policy failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct PolicyError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The script file.
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub col: usize,
    /// What went wrong.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(
        kind: ErrorKind,
        file: &str,
        pos: rhai::Position,
        message: impl Into<String>,
    ) -> Self {
        PolicyError {
            kind,
            file: file.to_owned(),
            line: pos.line().unwrap_or(0),
            col: pos.position().unwrap_or(0),
            message: message.into(),
        }
    }
}
