//! Compiles the project's own gRPC API (`proto/`) with protox, and a descriptor set of the Envoy
//! resources the controller serves, so that config dumps and golden files can be written as the
//! proto3 JSON that Envoy itself reads. No system `protoc` is needed.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/extensions/common/matching/v3/extension_matcher.proto",
    "envoy/extensions/filters/common/matcher/action/v3/skip_action.proto",
    "envoy/type/matcher/v3/http_inputs.proto",
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
    // The signer alone (without the `controller` feature) needs neither.
    if env::var_os("CARGO_FEATURE_CONTROLLER").is_none() {
        return Ok(());
    }
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

/// Finds the `proto/` directory of the `envoy-types` package this build resolved, from
/// `cargo metadata` (so a vendored or mirrored build finds it as well).
/// `LATTICE_XDS_ENVOY_PROTO_DIR` overrides it.
fn envoy_proto_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Ok(dir) = env::var("LATTICE_XDS_ENVOY_PROTO_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    println!("cargo:rerun-if-changed=Cargo.lock");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "envoy-types")
        .and_then(|package| package["manifest_path"].as_str())
        .ok_or("envoy-types is not among the resolved packages")?;
    let dir = Path::new(manifest)
        .parent()
        .ok_or("envoy-types has no package directory")?
        .join("proto");
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    Ok(dir)
}
