//! Compiles the project's own gRPC API (`proto/lattice_xds/`) with protox, and a descriptor set
//! of the Envoy resources the controller serves (`proto/envoy-api/`, listed in
//! `proto/envoy-api.txt`), so that config dumps and golden files can be written as the proto3
//! JSON that Envoy itself reads.
//!
//! Everything it reads is in the repository: no system `protoc`, no other package's files and
//! no call to cargo, so a build needs only the packages it downloaded itself, whether the
//! registry was empty, warm or vendored.

use std::env;
use std::fs;
use std::path::PathBuf;

/// The Envoy API files the controller puts on the wire, one per line (`#` starts a comment).
const ENVOY_LIST: &str = "proto/envoy-api.txt";
/// Those files and everything they import, as the locked `envoy-types` package ships them.
const ENVOY_ROOT: &str = "proto/envoy-api";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // The signer alone (without the `controller` feature) needs neither.
    if env::var_os("CARGO_FEATURE_CONTROLLER").is_none() {
        return Ok(());
    }
    let out = PathBuf::from(env::var("OUT_DIR")?);

    let admin = protox::compile(["lattice_xds/admin/v1/admin.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(admin)?;

    let list = fs::read_to_string(ENVOY_LIST)?;
    // `make envoy-api` copies the files of a list that may name some not copied yet: then the
    // build compiles those that are there, and the copy makes the rest.
    println!("cargo:rerun-if-env-changed=LATTICE_XDS_UPDATE_GOLDEN");
    let updating = env::var_os("LATTICE_XDS_UPDATE_GOLDEN").is_some();
    let files = list
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|file| !updating || PathBuf::from(ENVOY_ROOT).join(file).exists());
    let mut compiler = protox::Compiler::new([ENVOY_ROOT])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(files)?;
    fs::write(
        out.join("envoy_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    Ok(())
}
