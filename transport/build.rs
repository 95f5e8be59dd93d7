//! Compiles `proto/lp_rpc.proto` (package `net`) into prost messages and tonic client and
//! server stubs. Needs `protoc` (Debian `protobuf-compiler`, installed by scripts/setup.sh);
//! `PROTOC` overrides the path.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/lp_rpc.proto");
    // The service stubs need tonic; the pure build (no `net` feature) has messages only.
    let net = std::env::var_os("CARGO_FEATURE_NET").is_some();
    tonic_prost_build::configure()
        .build_client(net)
        .build_server(net)
        .build_transport(false)
        .compile_protos(&["proto/lp_rpc.proto"], &["proto"])?;
    Ok(())
}
