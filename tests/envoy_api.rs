//! The Envoy API protos the build compiles (`proto/envoy-api/`) are the locked `envoy-types`
//! package's own: exactly the files that the list in `proto/envoy-api.txt` needs, each as the
//! package ships it but for the one line that list describes. `LATTICE_XDS_UPDATE_GOLDEN=1`
//! (what `make envoy-api` runs) copies them again; then read the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const VENDORED: &str = "proto/envoy-api";
const LIST: &str = "proto/envoy-api.txt";

/// Include roots inside the package's `proto/` directory, searched in this order.
const UPSTREAM_ROOTS: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

/// The line that differs from upstream (file, upstream text, vendored text): see the list's header.
const NAME_FIX: (&str, &str, &str) = (
    "envoy/extensions/clusters/dynamic_forward_proxy/v3/cluster.proto",
    " common.dynamic_forward_proxy.v3.DnsCacheConfig",
    " .envoy.extensions.common.dynamic_forward_proxy.v3.DnsCacheConfig",
);

#[test]
fn vendored_envoy_protos_are_the_locked_packages_own() {
    let upstream = upstream_files();
    let vendored = vendored_files(Path::new(VENDORED));
    if std::env::var_os("LATTICE_XDS_UPDATE_GOLDEN").is_some() {
        rewrite(&upstream, &vendored);
        return;
    }
    assert!(
        upstream.len() > 50,
        "{LIST} needs only {} files?",
        upstream.len()
    );
    let mut problems = Vec::new();
    for (name, text) in &upstream {
        match vendored.get(name) {
            None => problems.push(format!("{name}: missing")),
            Some(copy) if copy != text => problems.push(format!("{name}: differs from upstream")),
            Some(_) => {}
        }
    }
    for name in vendored.keys().filter(|name| !upstream.contains_key(*name)) {
        problems.push(format!("{name}: not needed by {LIST}"));
    }
    assert!(
        problems.is_empty(),
        "{VENDORED} is out of date with the locked envoy-types (`make envoy-api` copies it again):\n{}",
        problems.join("\n")
    );
}

/// The files of the list and everything they import, as the locked package ships them (with the
/// fixed line), by name.
fn upstream_files() -> BTreeMap<String, String> {
    let package = envoy_types_protos();
    let fixed = tempfile::tempdir().expect("temporary directory");
    let (file, from, to) = NAME_FIX;
    let source = std::fs::read_to_string(package.join("data-plane-api").join(file))
        .expect("the fixed file is in envoy-types");
    assert!(
        source.contains(from),
        "{file} no longer has {from:?}: the fix in {LIST} is no longer needed"
    );
    let target = fixed.path().join(file);
    std::fs::create_dir_all(target.parent().expect("parent")).expect("create directories");
    std::fs::write(&target, source.replace(from, to)).expect("write the fixed file");

    let roots = std::iter::once(fixed.path().to_path_buf())
        .chain(UPSTREAM_ROOTS.iter().map(|root| package.join(root)));
    let mut compiler = protox::Compiler::new(roots).expect("include roots");
    compiler.include_imports(true);
    compiler
        .open_files(list())
        .unwrap_or_else(|error| panic!("{LIST} does not compile from envoy-types: {error:?}"));
    compiler
        .files()
        // Files without a path are protox's own well-known types (google/protobuf/*).
        .filter_map(|file| Some((file.name().to_string(), file.path()?.to_path_buf())))
        .map(|(name, path)| {
            let text = std::fs::read_to_string(&path).expect("read an upstream file");
            (name, text)
        })
        .collect()
}

fn vendored_files(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, files);
                continue;
            }
            let name = path.strip_prefix(root).expect("under the root");
            let text = std::fs::read_to_string(&path).expect("read a vendored file");
            files.insert(name.to_string_lossy().replace('\\', "/"), text);
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

fn rewrite(upstream: &BTreeMap<String, String>, vendored: &BTreeMap<String, String>) {
    let root = Path::new(VENDORED);
    for name in vendored.keys().filter(|name| !upstream.contains_key(*name)) {
        std::fs::remove_file(root.join(name)).expect("remove a file no longer needed");
    }
    for (name, text) in upstream {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create directories");
        std::fs::write(&path, text).expect("write a vendored file");
    }
}

fn list() -> Vec<String> {
    std::fs::read_to_string(LIST)
        .expect("the list of Envoy API files")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The `proto/` directory of the `envoy-types` package that Cargo.lock names. Every package of
/// this platform is on disk by now (the tests were built), so cargo is asked offline.
fn envoy_types_protos() -> PathBuf {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version=1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .args([
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "envoy-types")
        .and_then(|package| package["manifest_path"].as_str())
        .expect("envoy-types is a resolved package");
    Path::new(manifest)
        .parent()
        .expect("a package directory")
        .join("proto")
}

fn host_triple() -> String {
    let output = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}
