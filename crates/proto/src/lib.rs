//! Wire types shared by every weft process: the Envoy delta xDS transport, Istio's ambient
//! workload API (`istio.workload`), its L4 authorization API (`istio.security`) and the
//! Istio CA API (`istio.v1.auth`), and weft's own L7 resources (`weft.l7.v1`) for waypoints
//! and gateways. Field numbers match the upstream protocols so that Istio
//! components interoperate with weft; the `.proto` text is weft's own.
//!
//! This crate owns only generated code and tiny helpers around it (type URLs, `Any`
//! packing, proto-JSON rendering and parsing). It must not contain policy or translation logic.

/// Generated modules, nested as their protobuf packages (generated code refers to sibling
/// packages by relative path). Use the short aliases below.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
    pub mod envoy {
        pub mod service {
            pub mod discovery {
                pub mod v3 {
                    include!(concat!(env!("OUT_DIR"), "/envoy.service.discovery.v3.rs"));
                }
            }
        }
    }
    pub mod istio {
        pub mod workload {
            include!(concat!(env!("OUT_DIR"), "/istio.workload.rs"));
        }
        pub mod security {
            include!(concat!(env!("OUT_DIR"), "/istio.security.rs"));
        }
        pub mod v1 {
            pub mod auth {
                include!(concat!(env!("OUT_DIR"), "/istio.v1.auth.rs"));
            }
        }
    }
    pub mod gateway_api_conformance {
        pub mod echo_basic {
            pub mod grpcecho {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/gateway_api_conformance.echo_basic.grpcecho.rs"
                ));
            }
        }
    }
    pub mod weft {
        pub mod l7 {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/weft.l7.v1.rs"));
            }
        }
        pub mod mesh {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/weft.mesh.v1.rs"));
            }
        }
    }
}

/// Envoy's aggregated discovery service (delta and state-of-the-world).
pub use pb::envoy::service::discovery::v3 as discovery;
/// The gRPC echo service of Gateway API's conformance suite (served by `weft x echo`).
pub use pb::gateway_api_conformance::echo_basic::grpcecho;
/// `google.rpc.Status`, used for NACK details.
pub use pb::google;
/// Istio's L4 authorization API (`istio.security.Authorization`).
pub use pb::istio::security;
/// Istio's certificate authority API (`istio.v1.auth.IstioCertificateService`).
pub use pb::istio::v1::auth as ca;
/// Istio's ambient workload API (`istio.workload.Address` and friends).
pub use pb::istio::workload;
/// weft's own L7 resources: the waypoint's routes, L7 policies and JWT rules.
pub use pb::weft::l7::v1 as l7;
/// weft's mesh-wide settings for node proxies (`weft.mesh.v1.MeshConfig`).
pub use pb::weft::mesh::v1 as mesh;

mod json;
pub use json::{JsonError, from_json, to_json};

/// Type URL of `istio.workload.Address` (workloads and services).
pub const ADDRESS_TYPE_URL: &str = "type.googleapis.com/istio.workload.Address";
/// Type URL of `istio.security.Authorization` (L4 policies).
pub const AUTHORIZATION_TYPE_URL: &str = "type.googleapis.com/istio.security.Authorization";

/// Type URL of `weft.l7.v1.Waypoint` (one waypoint's L7 configuration).
pub const WAYPOINT_TYPE_URL: &str = "type.googleapis.com/weft.l7.v1.Waypoint";
/// Type URL of `weft.l7.v1.Gateway` (one ingress/egress gateway's configuration).
pub const GATEWAY_TYPE_URL: &str = "type.googleapis.com/weft.l7.v1.Gateway";
/// Type URL of `weft.mesh.v1.MeshConfig` (mesh-wide settings, one resource named
/// [`MESH_CONFIG_NAME`]).
pub const MESH_CONFIG_TYPE_URL: &str = "type.googleapis.com/weft.mesh.v1.MeshConfig";
/// The name of the one `weft.mesh.v1.MeshConfig` resource.
pub const MESH_CONFIG_NAME: &str = "mesh";
/// Name of the `istio.security.Match` extension carrying a `weft.l7.v1.RequestMatch`.
pub const REQUEST_MATCH_EXTENSION: &str = "weft.l7.request";
/// Type URL of `weft.l7.v1.RequestMatch` inside that extension.
pub const REQUEST_MATCH_TYPE_URL: &str = "type.googleapis.com/weft.l7.v1.RequestMatch";

/// Packs a message into a `google.protobuf.Any` with the given type URL.
pub fn pack_any<M: prost::Message>(type_url: &str, message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_owned(),
        value: message.encode_to_vec(),
    }
}
