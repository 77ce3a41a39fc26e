//! Typed validation errors for resources a proxy receives (policies here; workloads and
//! services in the node proxy). Each error names the resource and the field path inside it,
//! so a config client (xDS) can reject exactly that resource (NACK with the error's text)
//! while the other resources of the same response are applied.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One rejected resource: which one, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource {resource:?}: field {field}: {problem}")]
pub struct ValidationError {
    /// The resource name (workload uid, `<ns>/<hostname>`, `<ns>/<policy>`), or the best
    /// name available when the name itself is the problem.
    pub resource: String,
    /// Path of the offending field, e.g. `addresses[1]` or
    /// `rules[0].clauses[0].matches[2].source_ips[0].length`.
    pub field: String,
    /// What is wrong with the field.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A required string is empty.
    Empty,
    /// An IP address field is not 4 or 16 bytes long.
    AddressLength(usize),
    /// A port is 0 where a port is required, or above 65535.
    PortOutOfRange(u32),
    /// A CIDR prefix length exceeds the address width.
    PrefixTooLong {
        /// Given prefix length.
        length: u32,
        /// Maximum for the address family.
        max: u32,
    },
    /// An enum field holds a number this proxy does not know.
    UnknownEnum(i32),
    /// A oneof that must be set is unset.
    Unset,
    /// The delivered resource name (e.g. by xDS) disagrees with the name derived from the
    /// content.
    NameMismatch {
        /// Name the content implies.
        expected: String,
    },
    /// The value has the wrong shape (the text says how).
    Malformed(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("must not be empty"),
            Self::AddressLength(len) => {
                write!(f, "an IP address must be 4 or 16 bytes, got {len}")
            }
            Self::PortOutOfRange(port) => write!(f, "port {port} is not in 1..=65535"),
            Self::PrefixTooLong { length, max } => {
                write!(f, "prefix length {length} exceeds {max}")
            }
            Self::UnknownEnum(value) => write!(f, "unknown enum value {value}"),
            Self::Unset => f.write_str("must be set"),
            Self::NameMismatch { expected } => {
                write!(
                    f,
                    "resource name must be {expected:?} (derived from the content)"
                )
            }
            Self::Malformed(what) => f.write_str(what),
        }
    }
}

/// Builds errors for one resource without repeating its name at every call site.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The resource name errors carry.
    pub resource: &'a str,
}

impl Ctx<'_> {
    /// An error about `field` of this resource.
    pub fn error(self, field: impl Into<String>, problem: Problem) -> ValidationError {
        ValidationError {
            resource: self.resource.to_owned(),
            field: field.into(),
            problem,
        }
    }

    /// `value` must not be empty.
    pub fn non_empty(self, field: &str, value: &str) -> Result<(), ValidationError> {
        if value.is_empty() {
            Err(self.error(field, Problem::Empty))
        } else {
            Ok(())
        }
    }

    /// Parses a raw 4- or 16-byte address.
    pub fn ip(
        self,
        field: impl FnOnce() -> String,
        bytes: &[u8],
    ) -> Result<IpAddr, ValidationError> {
        if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
            Ok(IpAddr::V4(Ipv4Addr::from(v4)))
        } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
            Ok(IpAddr::V6(Ipv6Addr::from(v6)))
        } else {
            Err(self.error(field(), Problem::AddressLength(bytes.len())))
        }
    }

    /// A port in `1..=65535`.
    pub fn port(self, field: impl FnOnce() -> String, port: u32) -> Result<u16, ValidationError> {
        match u16::try_from(port) {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(self.error(field(), Problem::PortOutOfRange(port))),
        }
    }

    /// A port in `0..=65535`, where 0 means "not given".
    pub fn optional_port(
        self,
        field: impl FnOnce() -> String,
        port: u32,
    ) -> Result<Option<u16>, ValidationError> {
        if port == 0 {
            Ok(None)
        } else {
            self.port(field, port).map(Some)
        }
    }

    /// An enum value known to prost.
    pub fn known_enum<E: TryFrom<i32>>(
        self,
        field: &str,
        value: i32,
    ) -> Result<E, ValidationError> {
        E::try_from(value).map_err(|_| self.error(field, Problem::UnknownEnum(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_names_resource_field_and_problem() {
        let err = Ctx {
            resource: "Kubernetes//Pod/a/b",
        }
        .ip(|| "addresses[1]".into(), &[1, 2, 3])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resource \"Kubernetes//Pod/a/b\": field addresses[1]: \
             an IP address must be 4 or 16 bytes, got 3"
        );
    }

    #[test]
    fn ports_must_fit_u16_and_be_non_zero() {
        let ctx = Ctx { resource: "r" };
        assert_eq!(ctx.port(|| "p".into(), 8080).unwrap(), 8080);
        assert_eq!(
            ctx.port(|| "p".into(), 0).unwrap_err().problem,
            Problem::PortOutOfRange(0)
        );
        assert_eq!(
            ctx.port(|| "p".into(), 70_000).unwrap_err().problem,
            Problem::PortOutOfRange(70_000)
        );
        assert_eq!(ctx.optional_port(|| "p".into(), 0).unwrap(), None);
    }
}
