//! Content versions: a resource's version is a truncated SHA-256 of a canonical encoding of
//! it, so an unchanged resource keeps its version across runs and processes and is never
//! re-sent.
//!
//! Protobuf encoding is deterministic for everything we emit except maps: prost encodes
//! `Workload.services` (a `HashMap`) in iteration order, which differs between runs. The
//! canonical form therefore encodes the workload with its map emptied and then appends the
//! map entries sorted by key.

use super::Versioned;
use aws_lc_rs::digest;
use prost::Message;
use weft_proto::security::Authorization;
use weft_proto::workload::{Address, address};

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

/// Deterministic bytes of an `Address` (see the module doc).
fn canonical_address(message: &Address) -> Vec<u8> {
    let Some(address::Type::Workload(workload)) = &message.r#type else {
        return message.encode_to_vec();
    };
    if workload.services.len() < 2 {
        return message.encode_to_vec();
    }
    let mut without_map = workload.clone();
    without_map.services.clear();
    let mut bytes = Address {
        r#type: Some(address::Type::Workload(without_map)),
    }
    .encode_to_vec();
    let mut entries: Vec<_> = workload.services.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (key, ports) in entries {
        key.encode_length_delimited(&mut bytes).unwrap_or_default();
        ports
            .encode_length_delimited(&mut bytes)
            .unwrap_or_default();
    }
    bytes
}

/// Wraps an `Address` with its name, aliases and version.
pub(crate) fn versioned_address(
    name: String,
    aliases: Vec<String>,
    message: Address,
) -> Versioned<Address> {
    let version = content_version(&canonical_address(&message));
    Versioned {
        name,
        version,
        aliases,
        encoded_len: message.encoded_len(),
        message,
    }
}

/// Wraps an `Authorization` with its name and version.
pub(crate) fn versioned_authorization(
    name: String,
    message: Authorization,
) -> Versioned<Authorization> {
    let version = content_version(&message.encode_to_vec());
    Versioned {
        name,
        version,
        aliases: Vec::new(),
        encoded_len: message.encoded_len(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::workload::{Port, PortList, Workload};

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
        let a = versioned_address("a".to_owned(), Vec::new(), workload_with_services(&forward));
        let b = versioned_address(
            "a".to_owned(),
            Vec::new(),
            workload_with_services(&backward),
        );
        assert_eq!(a.version, b.version);
        assert_eq!(a.version.len(), VERSION_HEX_LEN);
    }

    #[test]
    fn version_changes_with_content() {
        let a = versioned_address(
            "a".to_owned(),
            Vec::new(),
            workload_with_services(&["x/a", "x/b"]),
        );
        let b = versioned_address(
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
