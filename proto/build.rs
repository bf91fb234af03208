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
    // Every gRPC method, so that metrics can label calls by a fixed set.
    let mut methods = String::from("/// Every gRPC method of the `baton.v1` services: (path, service, method).\n");
    methods.push_str("pub const GRPC_METHODS: &[(&str, &str, &str)] = &[\n");
    for file in &descriptors.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            for method in &service.method {
                methods.push_str(&format!(
                    "    (\"/{full}/{m}\", \"{s}\", \"{m}\"),\n",
                    m = method.name(),
                    s = service.name()
                ));
            }
        }
    }
    methods.push_str("];\n");
    std::fs::write(
        std::path::Path::new(&std::env::var("OUT_DIR")?).join("grpc_methods.rs"),
        methods,
    )?;
    // Maps as BTreeMaps: a HashMap encodes its entries in a random order,
    // and stored formats must encode equal values to equal bytes.
    tonic_prost_build::configure().btree_map(".").compile_fds(descriptors)?;
    Ok(())
}
