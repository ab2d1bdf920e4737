//! Compiles the kubelet API definitions without protoc: `protox` parses the .proto files into a
//! descriptor set that tonic's generator consumes.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "deviceplugin/v1beta1/api.proto",
        "pluginregistration/v1/api.proto",
        "dra/v1/api.proto",
        "dra/health/v1/api.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
