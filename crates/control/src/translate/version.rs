//! Content versions: a resource's version is a truncated SHA-256 of a canonical encoding of
//! it, so an unchanged resource keeps its version across runs and processes and is never
//! re-sent.
//!
//! Protobuf encoding is deterministic for everything we emit except maps: prost encodes
//! `Workload.services` (a `HashMap`) in iteration order, which differs between runs. The
//! canonical form therefore encodes the workload with its map emptied and then appends the
//! map entries sorted by key; the bytes sent encode the entries in that same order, so a
//! resource is encoded once and equal content gives equal bytes.

use super::Resource;
use aws_lc_rs::digest;
use prost::Message;
use weft_proto::workload::{Address, Workload, address};

/// Hex characters kept from the SHA-256 digest (64 bits: collisions are not a concern at
/// mesh scale, and short versions keep `/debug/syncz` readable).
const VERSION_HEX_LEN: usize = 16;

/// The version string of some canonical bytes: the first 16 hex digits of their SHA-256.
#[must_use]
pub fn content_version(canonical: &[u8]) -> String {
    let digest = digest::digest(&digest::SHA256, canonical);
    let mut hex = String::with_capacity(VERSION_HEX_LEN);
    for byte in digest.as_ref().iter().take(VERSION_HEX_LEN / 2) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Field number of `Address.workload` (the oneof arm that carries a map).
const ADDRESS_WORKLOAD_FIELD: u32 = 1;

/// `Address { workload }` around an already encoded workload.
fn wrap_workload(workload: &[u8]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut bytes = Vec::with_capacity(workload.len() + 8);
    encode_key(
        ADDRESS_WORKLOAD_FIELD,
        WireType::LengthDelimited,
        &mut bytes,
    );
    encode_varint(workload.len() as u64, &mut bytes);
    bytes.extend_from_slice(workload);
    bytes
}

/// Encodes an `Address` once, deterministically, and versions it (see the module doc): the
/// workload's `services` map goes out sorted by key, one entry per encoded map field (the
/// protobuf encoding of a message may repeat a map field; decoders merge the entries).
pub(crate) fn address_resource(
    name: String,
    aliases: Vec<String>,
    mut message: Address,
) -> Resource {
    let Some(address::Type::Workload(workload)) = &mut message.r#type else {
        return Resource::encode(name, aliases, &message);
    };
    if workload.services.len() < 2 {
        return Resource::encode(name, aliases, &message);
    }
    let mut entries: Vec<_> = std::mem::take(&mut workload.services).into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut encoded_workload = workload.encode_to_vec();
    let mut canonical = wrap_workload(&encoded_workload);
    for (key, ports) in entries {
        key.encode_length_delimited(&mut canonical)
            .unwrap_or_default();
        ports
            .encode_length_delimited(&mut canonical)
            .unwrap_or_default();
        let entry = Workload {
            services: std::iter::once((key, ports)).collect(),
            ..Workload::default()
        };
        entry.encode(&mut encoded_workload).unwrap_or_default();
    }
    let version = content_version(&canonical);
    Resource::new(name, version, aliases, wrap_workload(&encoded_workload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::workload::{Port, PortList};

    fn workload_with_services(keys: &[&str]) -> Address {
        let mut workload = Workload {
            uid: "Kubernetes//Pod/default/a".to_owned(),
            ..Workload::default()
        };
        for key in keys {
            // the port is a function of the key, so both orders describe the same map
            let port = 80 + key.bytes().map(u32::from).sum::<u32>() % 1000;
            let ports = PortList {
                ports: vec![Port {
                    service_port: port,
                    target_port: port,
                    app_protocol: 0,
                }],
            };
            workload.services.insert((*key).to_owned(), ports);
        }
        Address {
            r#type: Some(address::Type::Workload(workload)),
        }
    }

    #[test]
    fn version_ignores_map_insertion_order() {
        let keys: Vec<String> = (0..32)
            .map(|i| format!("default/svc-{i}.default.svc.cluster.local"))
            .collect();
        let forward: Vec<&str> = keys.iter().map(String::as_str).collect();
        let backward: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
        let a = address_resource("a".to_owned(), Vec::new(), workload_with_services(&forward));
        let b = address_resource(
            "a".to_owned(),
            Vec::new(),
            workload_with_services(&backward),
        );
        assert_eq!(a.version, b.version);
        assert_eq!(a.version.len(), VERSION_HEX_LEN);
        assert_eq!(a.encoded, b.encoded, "equal content, equal bytes");
        let decoded: Address = a.decode().expect("valid protobuf");
        assert_eq!(decoded, workload_with_services(&forward));
        assert_eq!(a.encoded_len(), decoded.encoded_len());
    }

    #[test]
    fn version_changes_with_content() {
        let a = address_resource(
            "a".to_owned(),
            Vec::new(),
            workload_with_services(&["x/a", "x/b"]),
        );
        let b = address_resource(
            "a".to_owned(),
            Vec::new(),
            workload_with_services(&["x/a", "x/c"]),
        );
        assert_ne!(a.version, b.version);
    }

    #[test]
    fn version_of_known_bytes_is_sha256_prefix() {
        // SHA-256("") = e3b0c44298fc1c14...
        assert_eq!(content_version(b""), "e3b0c44298fc1c14");
    }
}
