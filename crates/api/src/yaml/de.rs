//! A serde `Deserializer` over the spanned tree, so typed objects are read from the same
//! parse that gives positions, and every error names the line and column of the innermost
//! node that failed (a wrong type at its value, an unknown field at its key, a missing field
//! at its mapping).
//!
//! Reading follows serde_yaml, which weft used before: a string field takes any scalar as
//! written (`version: 1.10` is "1.10"), numbers and booleans come from plain scalars only,
//! null (`~`, nothing) is `None` for an option, and an enum is a scalar (unit variant) or a
//! mapping of one key (the variant) to its content.

use crate::yaml::error::Error;
use crate::yaml::node::{Entry, Mark, Node, Value};
use crate::yaml::scalar::{Typed, resolve, resolve_plain};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

/// `deserialize_string` and `deserialize_identifier` read as `deserialize_str` (a field name
/// or a string is the scalar's text).
macro_rules! read_as_str {
    () => {
        fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_str(visitor)
        }

        fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_str(visitor)
        }
    };
}

/// Deserializes `T` from a node.
///
/// # Errors
/// When the node does not fit `T`; the error carries the failing node's position.
pub fn from_node<'de, T: serde::Deserialize<'de>>(node: &'de Node) -> Result<T, Error> {
    T::deserialize(NodeDeserializer::new(node))
}

/// A deserializer reading one node.
#[derive(Clone, Copy)]
pub struct NodeDeserializer<'de> {
    node: &'de Node,
}

impl<'de> NodeDeserializer<'de> {
    /// Reads `node`.
    #[must_use]
    pub fn new(node: &'de Node) -> Self {
        NodeDeserializer { node }
    }

    fn any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Scalar(scalar) => visit_typed(resolve(scalar), visitor),
            Value::Seq(items) => visitor.visit_seq(Items(items.iter())),
            Value::Map(entries) => visitor.visit_map(Entries {
                entries: entries.iter(),
                value: None,
            }),
        }
    }

    fn unexpected(self) -> Unexpected<'de> {
        match &self.node.value {
            Value::Scalar(scalar) => unexpected_scalar(resolve(scalar)),
            Value::Seq(_) => Unexpected::Seq,
            Value::Map(_) => Unexpected::Map,
        }
    }

    /// Runs `read` and places an error without a position at this node.
    fn at<T>(self, read: impl FnOnce(Self) -> Result<T, Error>) -> Result<T, Error> {
        read(self).map_err(|error| error.or_at(self.node.mark))
    }
}

fn visit_typed<'de, V: Visitor<'de>>(typed: Typed<'de>, visitor: V) -> Result<V::Value, Error> {
    match typed {
        Typed::Null => visitor.visit_unit(),
        Typed::Bool(b) => visitor.visit_bool(b),
        Typed::Int(n) => match (u64::try_from(n), i64::try_from(n)) {
            (Ok(n), _) => visitor.visit_u64(n),
            (_, Ok(n)) => visitor.visit_i64(n),
            _ => visitor.visit_i128(n),
        },
        Typed::Float(f) => visitor.visit_f64(f),
        Typed::Str(text) => visitor.visit_borrowed_str(text),
    }
}

fn unexpected_scalar(typed: Typed<'_>) -> Unexpected<'_> {
    match typed {
        Typed::Null => Unexpected::Unit,
        Typed::Bool(b) => Unexpected::Bool(b),
        Typed::Int(n) => i64::try_from(n).map_or(Unexpected::Other("integer"), Unexpected::Signed),
        Typed::Float(f) => Unexpected::Float(f),
        Typed::Str(text) => Unexpected::Str(text),
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.at(|d| d.any(visitor))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.at(|d| match &d.node.value {
            Value::Scalar(scalar) => visitor.visit_borrowed_str(&scalar.text),
            _ => Err(de::Error::invalid_type(d.unexpected(), &visitor)),
        })
    }

    read_as_str!();

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.node.is_null() {
            self.at(|_| visitor.visit_none())
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.at(|d| visitor.visit_newtype_struct(d))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.at(|d| match &d.node.value {
            Value::Scalar(scalar) => {
                visitor.visit_enum(de::value::BorrowedStrDeserializer::new(&scalar.text))
            }
            Value::Map(entries) if entries.len() == 1 => visitor.visit_enum(Variant(&entries[0])),
            _ => Err(de::Error::invalid_type(d.unexpected(), &visitor)),
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct
    }
}

/// The items of a sequence.
struct Items<'de>(std::slice::Iter<'de, Node>);

impl<'de> de::SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(NodeDeserializer::new(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// The entries of a mapping.
struct Entries<'de> {
    entries: std::slice::Iter<'de, Entry>,
    value: Option<&'de Node>,
}

impl<'de> de::MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(&entry.value);
        seed.deserialize(Key::of(entry)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self.value.take().expect("a value follows its key");
        seed.deserialize(NodeDeserializer::new(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A mapping key: a string to string and identifier readers, typed like a plain scalar to
/// others (a map keyed by numbers).
struct Key<'de> {
    text: &'de str,
    mark: Mark,
}

impl<'de> Key<'de> {
    fn of(entry: &'de Entry) -> Self {
        Key {
            text: &entry.key,
            mark: entry.key_mark,
        }
    }
}

impl<'de> de::Deserializer<'de> for Key<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_typed(resolve_plain(self.text), visitor).map_err(|e| e.or_at(self.mark))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor
            .visit_borrowed_str(self.text)
            .map_err(|e: Error| e.or_at(self.mark))
    }

    read_as_str!();

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let mark = self.mark;
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.or_at(mark))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor
            .visit_enum(self.text.into_deserializer())
            .map_err(|e: Error| e.or_at(self.mark))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf option unit
        unit_struct seq tuple tuple_struct map struct ignored_any
    }
}

/// An enum written as a mapping of one key: the variant and its content.
struct Variant<'de>(&'de Entry);

impl<'de> de::EnumAccess<'de> for Variant<'de> {
    type Error = Error;
    type Variant = NodeDeserializer<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Error> {
        let variant = seed.deserialize(Key::of(self.0))?;
        Ok((variant, NodeDeserializer::new(&self.0.value)))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDeserializer<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}
