//! Compiles the project's own gRPC API (`proto/`) with protox, and a descriptor set of the Envoy
//! resources the controller serves, so that config dumps and golden files can be written as the
//! proto3 JSON that Envoy itself reads. No system `protoc` is needed.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The Envoy API files whose messages the controller puts on the wire (directly or inside `Any`).
const ENVOY_PROTOS: &[&str] = &[
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto",
    "envoy/extensions/filters/http/lua/v3/lua.proto",
    "envoy/extensions/filters/http/aws_request_signing/v3/aws_request_signing.proto",
    "envoy/extensions/filters/http/dynamic_forward_proxy/v3/dynamic_forward_proxy.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/network/dns_resolver/cares/v3/cares_dns_resolver.proto",
    ENVOY_NAME_FIX.0,
];

/// A relative type name that protox resolves more strictly than protoc: the package
/// `envoy.extensions.clusters.common` (imported by the same file) shadows
/// `envoy.extensions.common`. The file is copied with the name written out in full.
const ENVOY_NAME_FIX: (&str, &str, &str) = (
    "envoy/extensions/clusters/dynamic_forward_proxy/v3/cluster.proto",
    " common.dynamic_forward_proxy.v3.DnsCacheConfig",
    " .envoy.extensions.common.dynamic_forward_proxy.v3.DnsCacheConfig",
);

/// Include roots inside the `envoy-types` package, which ships the Envoy API protos.
const ENVOY_INCLUDES: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=LATTICE_XDS_ENVOY_PROTO_DIR");
    let out = PathBuf::from(env::var("OUT_DIR")?);

    let admin = protox::compile(["lattice_xds/admin/v1/admin.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(admin)?;

    let root = envoy_proto_dir()?;
    let fixed = out.join("envoy-fixed");
    let (file, from, to) = ENVOY_NAME_FIX;
    let source = fs::read_to_string(root.join("data-plane-api").join(file))?;
    fs::create_dir_all(fixed.join(file).parent().ok_or("no parent")?)?;
    fs::write(fixed.join(file), source.replace(from, to))?;

    let includes = std::iter::once(fixed).chain(ENVOY_INCLUDES.iter().map(|dir| root.join(dir)));
    let mut compiler = protox::Compiler::new(includes)?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(ENVOY_PROTOS)?;
    fs::write(
        out.join("envoy_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    Ok(())
}

/// Finds the `proto/` directory of the `envoy-types` package this build resolved.
///
/// Cargo does not tell a build script where a dependency's sources are, so the registry source
/// directories are searched for the version in `Cargo.lock`. `LATTICE_XDS_ENVOY_PROTO_DIR`
/// overrides the search (a vendored build, for instance).
fn envoy_proto_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Ok(dir) = env::var("LATTICE_XDS_ENVOY_PROTO_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let version = locked_version("envoy-types")?;
    let cargo_home = env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| env::var("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    let wanted = format!("envoy-types-{version}");
    for registry in fs::read_dir(cargo_home.join("registry/src"))? {
        let candidate = registry?.path().join(&wanted).join("proto");
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "no {wanted}/proto under {}/registry/src",
        cargo_home.display()
    )
    .into())
}

fn locked_version(package: &str) -> Result<String, Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = fs::read_to_string(manifest_dir.join("Cargo.lock"))?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&needle).ok_or("package not in Cargo.lock")? + needle.len();
    let end = lock[start..].find('"').ok_or("malformed Cargo.lock")?;
    Ok(lock[start..start + end].to_string())
}
