//! YAML in and out, for every crate of weft: parsing with positions, typed reading, and
//! writing.
//!
//! Text is parsed by `saphyr-parser` (a maintained YAML 1.2 parser whose events carry their
//! spans) into a small spanned tree ([`Node`]: mappings, sequences and scalars, each with the
//! line and column where it starts), under the input bounds of [`parse`]. Typed objects are
//! read from that tree by a serde deserializer ([`from_node`]) whose errors carry positions,
//! and findings about a field are placed by walking the tree ([`Node::mark_of`]), so
//! positions are right for flow style, JSON, repeated structures and `kind: List` items
//! alike. Writing goes through `serde-saphyr`'s serializer ([`to_string`]).

mod de;
mod error;
mod node;
mod parse;
pub mod scalar;

pub use de::{NodeDeserializer, from_node};
pub use error::{Error, ErrorKind};
pub use node::{Entry, Mark, Node, Scalar, Value};
pub use parse::{MAX_ALIAS_NODES, MAX_NESTING, parse};

/// Parses one YAML document and reads `T` from it (an empty text reads as null).
///
/// # Errors
/// A syntax error, a repeated key, a broken bound, or a node that does not fit `T`, each
/// with its line and column.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    let node = parse(text)?.unwrap_or_else(|| Node {
        value: Value::Scalar(Scalar {
            text: "".into(),
            plain: true,
        }),
        mark: Mark { line: 1, column: 1 },
    });
    from_node(&node)
}

/// Writes `value` as one YAML document (block style, sequences indented below their key).
///
/// # Errors
/// When `value` cannot be written as YAML (a map with keys that are not scalars).
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, WriteError> {
    serde_saphyr::to_string(value).map_err(|error| WriteError(error.to_string()))
}

/// Why a value could not be written as YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write YAML: {0}")]
pub struct WriteError(String);
