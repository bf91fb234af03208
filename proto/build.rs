//! Generates the `baton.v1` code with protox, a pure-Rust protobuf compiler,
//! so that building Baton needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/baton/v1/raft.proto",
        "proto/baton/v1/peer.proto",
        "proto/baton/v1/control.proto",
        "proto/baton/v1/heart.proto",
        "proto/baton/v1/rejection.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
