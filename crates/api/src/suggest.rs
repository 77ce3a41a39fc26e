//! "Did you mean" for unknown fields.
//!
//! `serde_ignored` tells us the path of a field nobody consumed, but not which fields were
//! expected there. Serde passes the expected field names to `Deserializer::deserialize_struct`,
//! so we replay the type's `Deserialize` impl against a tiny probe deserializer that walks
//! down the same path (one map entry or one sequence element per level) and records the
//! `fields` list of the struct it lands on. This works for serde-derived types and for
//! `k8s-openapi`'s hand-written impls alike, and needs no list of field names kept by hand.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use std::cell::Cell;
use std::fmt;

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Converts a `serde_ignored` path into segments (dropping `Option`/newtype levels).
pub fn segments_of(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut cursor = path;
    loop {
        cursor = match cursor {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                parent
            }
            serde_ignored::Path::Map { parent, key } => {
                out.push(Segment::Key(key.clone()));
                parent
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => parent,
        };
    }
    out.reverse();
    out
}

/// The last key of an unknown field's path, the path of its parent, and where that parent
/// is in words (`top level` or `spec.rules[0]`).
#[must_use]
pub fn unknown_field_location(path: &[Segment]) -> (&str, &[Segment], String) {
    let (field, parent) = match path.split_last() {
        Some((Segment::Key(field), parent)) => (field.as_str(), parent),
        _ => ("?", path),
    };
    let location = if parent.is_empty() {
        "top level".to_owned()
    } else {
        display_path(parent)
    };
    (field, parent, location)
}

/// Renders segments as `spec.rules[0].to`.
pub fn display_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// The field names the struct at `path` (relative to `T`) accepts, if `T` is a struct there.
pub fn known_fields<'de, T: de::Deserialize<'de>>(
    path: &[Segment],
) -> Option<&'static [&'static str]> {
    let found = Cell::new(None);
    let _ = T::deserialize(Probe {
        path,
        found: &found,
    });
    found.get()
}

/// The closest of `candidates` to `typo`, if it is close enough to be a plausible typo.
pub fn closest<'a>(typo: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (typo.len() / 3).max(2);
    candidates
        .iter()
        .map(|candidate| {
            (
                edit_distance(&typo.to_ascii_lowercase(), &candidate.to_ascii_lowercase()),
                *candidate,
            )
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe finished")
    }
}

impl std::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        ProbeDone
    }
}

struct Probe<'p> {
    path: &'p [Segment],
    found: &'p Cell<Option<&'static [&'static str]>>,
}

impl<'p> Probe<'p> {
    fn descend(&self) -> Probe<'p> {
        Probe {
            path: &self.path[1..],
            found: self.found,
        }
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        if self.path.is_empty() {
            self.found.set(Some(fields));
            return Err(ProbeDone);
        }
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeDone> {
        match self.path.first() {
            Some(Segment::Key(key)) => visitor.visit_map(OneEntry {
                key: Some(key.clone()),
                value: Some(self.descend()),
            }),
            _ => Err(ProbeDone),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeDone> {
        match self.path.first() {
            Some(Segment::Index(_)) => visitor.visit_seq(OneElement {
                value: Some(self.descend()),
            }),
            _ => Err(ProbeDone),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeDone> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct enum identifier ignored_any
    }
}

struct OneEntry<'p> {
    key: Option<String>,
    value: Option<Probe<'p>>,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = ProbeDone;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeDone> {
        match self.key.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ProbeDone> {
        match self.value.take() {
            Some(probe) => seed.deserialize(probe),
            None => Err(ProbeDone),
        }
    }
}

struct OneElement<'p> {
    value: Option<Probe<'p>>,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = ProbeDone;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeDone> {
        match self.value.take() {
            Some(probe) => seed.deserialize(probe).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_owned())
    }

    #[test]
    fn finds_fields_through_k8s_openapi_types() {
        let fields =
            known_fields::<Pod>(&[key("spec"), key("containers"), Segment::Index(0)]).unwrap();
        assert!(fields.contains(&"image"));
        assert!(fields.contains(&"ports"));
        assert_eq!(closest("imag", fields), Some("image"));
    }

    #[test]
    fn finds_fields_through_our_types() {
        let path = [
            key("spec"),
            key("rules"),
            Segment::Index(0),
            key("to"),
            Segment::Index(0),
            key("operation"),
        ];
        let fields = known_fields::<crate::istio::AuthorizationPolicy>(&path).unwrap();
        assert_eq!(closest("methds", fields), Some("methods"));
        assert_eq!(closest("zzzzzzzz", fields), None);
    }

    #[test]
    fn renders_paths() {
        assert_eq!(
            display_path(&[key("spec"), key("ports"), Segment::Index(1), key("port")]),
            "spec.ports[1].port"
        );
    }
}
