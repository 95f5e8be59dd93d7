//! Compiles `proto/lp_rpc.proto` (package `net`) into prost messages and tonic client and
//! server stubs. Needs `protoc` (Debian `protobuf-compiler`, installed by scripts/setup.sh);
//! `PROTOC` overrides the path.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/lp_rpc.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_protos(&["proto/lp_rpc.proto"], &["proto"])?;
    Ok(())
}
