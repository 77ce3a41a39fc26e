//! Compiles the `.proto` files under `proto/` with protox (no `protoc` needed) and
//! generates prost messages plus tonic clients and servers. The descriptor set is
//! kept so that messages can be rendered in the proto JSON mapping.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/envoy/discovery.proto",
        "proto/istio/workload.proto",
        "proto/istio/authorization.proto",
        "proto/istio/ca.proto",
        "proto/weft/l7.proto",
        "proto/weft/mesh.proto",
        "proto/gateway_api_conformance/grpcecho.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("weft_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
