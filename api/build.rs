//! Generates the gRPC code of the etcd v3 API (`proto/etcd`) and of the node
//! API (`proto/berth`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    // A vendored protoc: the build needs nothing installed on the machine.
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(
            config,
            &[
                "proto/etcd/rpc.proto",
                "proto/etcd/kv.proto",
                "proto/etcd/auth.proto",
            ],
            &["proto/etcd"],
        )?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(config, &["proto/berth/node.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
