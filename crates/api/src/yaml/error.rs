//! The one error type of reading YAML: what went wrong and where (line and column), from the
//! parser, a bound, a repeated key, or the typed deserialization of a node.

use crate::yaml::node::Mark;
use std::fmt;

/// What kind of problem an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not YAML (or not one document where one was expected).
    Syntax,
    /// A mapping has the same key twice.
    DuplicateKey,
    /// A bound was broken: nesting depth or alias expansion.
    OverLimit,
    /// The YAML is fine but does not fit the type read from it.
    Data,
}

/// A YAML problem with the position it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    mark: Option<Mark>,
}

impl Error {
    /// An error of `kind` at `mark`.
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>, mark: Option<Mark>) -> Self {
        Error {
            kind,
            message: message.into(),
            mark,
        }
    }

    /// What kind of problem this is.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the position.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where the problem is (line and column within the text parsed), when known.
    #[must_use]
    pub fn mark(&self) -> Option<Mark> {
        self.mark
    }

    /// The same error placed at `mark` when it has no position yet (the innermost node that
    /// failed names the position).
    #[must_use]
    pub(crate) fn or_at(mut self, mark: Mark) -> Self {
        self.mark.get_or_insert(mark);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mark {
            Some(mark) => write!(
                f,
                "{} at line {} column {}",
                self.message, mark.line, mark.column
            ),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error::new(ErrorKind::Data, message.to_string(), None)
    }
}
