//! What a scalar means, by YAML 1.2's core schema: a plain (unquoted) scalar is null
//! (`~`, `null`, nothing), a boolean (`true`, `False`, ...), an integer (decimal, `0x`, `0o`,
//! `0b`), a float (`1.5`, `1e3`, `.inf`, `.nan`) or else a string; a quoted or block scalar is
//! always a string. `yes`/`no`/`on`/`off` are strings (they were booleans in YAML 1.1), and so
//! are digits with a leading zero (`0123`), as in serde_yaml and Kubernetes' YAML 1.2 readers.

use crate::yaml::node::Scalar;

/// A scalar's meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Typed<'a> {
    /// `~`, `null`, `Null`, `NULL` or an empty plain scalar.
    Null,
    /// `true`/`false` in lower, title or upper case.
    Bool(bool),
    /// An integer (i128 holds every u64 and i64).
    Int(i128),
    /// A float.
    Float(f64),
    /// Anything else.
    Str(&'a str),
}

/// The meaning of `scalar`.
#[must_use]
pub fn resolve(scalar: &Scalar) -> Typed<'_> {
    if scalar.plain {
        resolve_plain(&scalar.text)
    } else {
        Typed::Str(&scalar.text)
    }
}

/// The meaning of a plain scalar's `text`.
#[must_use]
pub fn resolve_plain(text: &str) -> Typed<'_> {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Typed::Null;
    }
    match text {
        "true" | "True" | "TRUE" => return Typed::Bool(true),
        "false" | "False" | "FALSE" => return Typed::Bool(false),
        _ => {}
    }
    if leading_zero_digits(text) {
        return Typed::Str(text);
    }
    if let Some(int) = integer(text) {
        return Typed::Int(int);
    }
    float(text).map_or(Typed::Str(text), Typed::Float)
}

/// Digits with a leading zero (`0123`, `-007`): a string in YAML 1.2.
fn leading_zero_digits(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits.len() > 1 && digits.starts_with('0') && digits[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A decimal, hexadecimal (`0x`), octal (`0o`) or binary (`0b`) integer with optional sign.
fn integer(text: &str) -> Option<i128> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(prefix, radix)| unsigned.strip_prefix(prefix).map(|d| (radix, d)))
        .unwrap_or((10, unsigned));
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A finite float as Rust reads it, or one of YAML's `.inf`/`.nan` spellings.
fn float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    match unsigned {
        ".inf" | ".Inf" | ".INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    if unsigned.starts_with(['+', '-']) && text.starts_with('+') {
        return None;
    }
    unsigned.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> String {
        let scalar = Scalar {
            text: text.into(),
            plain: true,
        };
        format!("{:?}", resolve(&scalar))
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        assert_eq!(plain(""), format!("{:?}", Typed::Null));
        assert_eq!(plain("~"), format!("{:?}", Typed::Null));
        assert_eq!(plain("True"), format!("{:?}", Typed::Bool(true)));
        assert_eq!(plain("yes"), format!("{:?}", Typed::Str("yes")));
        assert_eq!(plain("80"), format!("{:?}", Typed::Int(80)));
        assert_eq!(plain("-0x10"), format!("{:?}", Typed::Int(-16)));
        assert_eq!(plain("0o17"), format!("{:?}", Typed::Int(15)));
        assert_eq!(plain("0123"), format!("{:?}", Typed::Str("0123")));
        assert_eq!(plain("1.5"), format!("{:?}", Typed::Float(1.5)));
        assert_eq!(plain("1e3"), format!("{:?}", Typed::Float(1000.0)));
        assert_eq!(plain(".inf"), format!("{:?}", Typed::Float(f64::INFINITY)));
        assert_eq!(plain("inf"), format!("{:?}", Typed::Str("inf")));
        assert_eq!(plain("1.2.3"), format!("{:?}", Typed::Str("1.2.3")));
        assert_eq!(plain("+-1"), format!("{:?}", Typed::Str("+-1")));
        let quoted = Scalar {
            text: "80".into(),
            plain: false,
        };
        assert_eq!(resolve(&quoted), Typed::Str("80"));
    }
}
