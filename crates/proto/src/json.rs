//! Renders (and parses) any weft wire message in the canonical proto JSON mapping
//! (camelCase names, enums as strings, bytes as base64), driven by the descriptors compiled
//! at build time.

use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};
use std::sync::OnceLock;

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/weft_descriptor.bin"));

/// Why a message could not be rendered as JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The message's full name is not in weft's descriptor set.
    #[error("message type {0} is not part of weft's protocol descriptors")]
    UnknownType(String),
    /// Re-decoding the message through its descriptor failed.
    #[error("cannot decode {name} through its descriptor: {source}")]
    Decode {
        /// Full protobuf name of the message.
        name: String,
        /// Underlying decode error.
        source: prost::DecodeError,
    },
    /// The JSON does not follow the proto JSON mapping of the message (unknown field,
    /// wrong type, bad enum name, bad base64...).
    #[error("cannot parse {name} from proto JSON: {source}")]
    Parse {
        /// Full protobuf name of the message.
        name: String,
        /// Underlying serde error (names the offending field).
        source: serde_json::Error,
    },
    /// Serializing to JSON failed.
    #[error("cannot render {name} as JSON: {source}")]
    Serialize {
        /// Full protobuf name of the message.
        name: String,
        /// Underlying serde error.
        source: serde_json::Error,
    },
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS).expect("descriptor set compiled by build.rs is valid")
    })
}

/// Renders `message`, whose protobuf full name is `full_name` (e.g. `istio.workload.Address`),
/// as proto JSON.
///
/// # Errors
/// Fails if the type is unknown to weft's descriptors or the bytes do not decode.
pub fn to_json<M: prost::Message>(
    full_name: &str,
    message: &M,
) -> Result<serde_json::Value, JsonError> {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownType(full_name.to_owned()))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).map_err(
        |source| JsonError::Decode {
            name: full_name.to_owned(),
            source,
        },
    )?;
    let options = prost_reflect::SerializeOptions::new().skip_default_fields(true);
    let mut out = serde_json::Serializer::new(Vec::new());
    dynamic
        .serialize_with_options(&mut out, &options)
        .map_err(|source| JsonError::Serialize {
            name: dynamic.descriptor().full_name().to_owned(),
            source,
        })?;
    serde_json::from_slice(&out.into_inner()).map_err(|source| JsonError::Serialize {
        name: full_name.to_owned(),
        source,
    })
}

/// Parses `value`, written in the proto JSON mapping of the message whose protobuf full name
/// is `full_name`, into the generated type `M`. Unknown fields are rejected.
///
/// # Errors
/// Fails if the type is unknown to weft's descriptors, the JSON does not follow the mapping,
/// or the parsed message does not re-decode as `M` (a `full_name`/`M` mismatch).
pub fn from_json<M: prost::Message + Default>(
    full_name: &str,
    value: &serde_json::Value,
) -> Result<M, JsonError> {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownType(full_name.to_owned()))?;
    let dynamic =
        DynamicMessage::deserialize(descriptor, value).map_err(|source| JsonError::Parse {
            name: full_name.to_owned(),
            source,
        })?;
    dynamic
        .transcode_to::<M>()
        .map_err(|source| JsonError::Decode {
            name: full_name.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Address, Workload, address};

    #[test]
    fn workload_renders_with_camel_case_names_and_string_enums() {
        let address = Address {
            r#type: Some(address::Type::Workload(Workload {
                uid: "Kubernetes//Pod/default/web-1".into(),
                addresses: vec![vec![10, 0, 0, 1]],
                tunnel_protocol: crate::workload::TunnelProtocol::Hbone.into(),
                service_account: "web".into(),
                ..Workload::default()
            })),
        };
        let json = to_json("istio.workload.Address", &address).unwrap();
        let workload = &json["workload"];
        assert_eq!(workload["uid"], "Kubernetes//Pod/default/web-1");
        assert_eq!(workload["tunnelProtocol"], "HBONE");
        assert_eq!(workload["serviceAccount"], "web");
        assert_eq!(workload["addresses"][0], "CgAAAQ==");
    }

    #[test]
    fn workload_parses_back_from_proto_json() {
        let json = serde_json::json!({
            "uid": "Kubernetes//Pod/default/web-1",
            "addresses": ["CgAAAQ=="],
            "tunnelProtocol": "HBONE",
        });
        let workload: Workload = from_json("istio.workload.Workload", &json).unwrap();
        assert_eq!(workload.uid, "Kubernetes//Pod/default/web-1");
        assert_eq!(workload.addresses, vec![vec![10, 0, 0, 1]]);
        assert_eq!(
            workload.tunnel_protocol,
            i32::from(crate::workload::TunnelProtocol::Hbone)
        );
    }

    #[test]
    fn parse_names_the_unknown_field() {
        let json = serde_json::json!({ "uid": "x", "bogusField": 1 });
        let err = from_json::<Workload>("istio.workload.Workload", &json).unwrap_err();
        assert!(err.to_string().contains("bogusField"), "{err}");
    }

    #[test]
    fn unknown_type_is_an_error() {
        let err = to_json("no.such.Message", &Workload::default()).unwrap_err();
        assert!(err.to_string().contains("no.such.Message"));
    }
}
