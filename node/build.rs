//! Compiles the hand-written protos with protox (pure Rust), so no system protoc is needed:
//! the device plugin API (`api.proto`), CSI v1 (`csi.proto`) and kubelet plugin
//! registration (`pluginregistration.proto`).

/// Every proto under `proto/`; each becomes one generated module.
const PROTOS: [&str; 3] = ["api.proto", "csi.proto", "pluginregistration.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
