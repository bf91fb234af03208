//! Generates the `baton.v1` code with protox, a pure-Rust protobuf compiler,
//! so that building Baton needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/baton/v1/raft.proto",
        "proto/baton/v1/peer.proto",
        "proto/baton/v1/control.proto",
        "proto/baton/v1/heart.proto",
        "proto/baton/v1/rejection.proto",
        "proto/baton/state/v1/state.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // Maps as BTreeMaps: a HashMap encodes its entries in a random order,
    // and stored formats must encode equal values to equal bytes.
    tonic_prost_build::configure().btree_map(".").compile_fds(descriptors)?;
    Ok(())
}
