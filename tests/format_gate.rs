//! The formatting gate of `make lint` (`scripts/check-format.sh`) on a scratch copy of the
//! crate: it passes on the copy as it is, and fails, naming the file, once any file drifts,
//! whether `cargo fmt` reaches that file or not (a module declared inside a macro).

use std::path::Path;
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_gate_fails_on_any_drifted_file() {
    let copy = tempfile::tempdir().expect("temporary directory");
    copy_crate(Path::new(ROOT), copy.path());
    let clean = gate(copy.path());
    assert!(
        clean.status.success(),
        "the copy as it is: {}",
        text(&clean)
    );

    // A file of the module tree.
    let delta = copy.path().join("src/xds/delta.rs");
    let original = std::fs::read_to_string(&delta).expect("read delta.rs");
    std::fs::write(&delta, original.replacen("use ", "use  ", 1)).expect("drift delta.rs");
    let drifted = gate(copy.path());
    assert!(!drifted.status.success(), "{}", text(&drifted));
    assert!(text(&drifted).contains("delta.rs"), "{}", text(&drifted));
    std::fs::write(&delta, original).expect("restore delta.rs");

    // A module that only a macro declares: `cargo fmt` does not see it, the gate does.
    let lib = copy.path().join("src/lib.rs");
    let mut declared = std::fs::read_to_string(&lib).expect("read lib.rs");
    declared.push_str(
        "\nmacro_rules! declare {\n    ($module:ident) => {\n        pub mod $module;\n    };\n}\n\
         declare!(hidden);\n",
    );
    std::fs::write(&lib, declared).expect("declare a module in a macro");
    let hidden = copy.path().join("src/hidden.rs");
    std::fs::write(&hidden, "pub fn answer() -> u32 {\n    42\n}\n").expect("write hidden.rs");
    let formatted = gate(copy.path());
    assert!(formatted.status.success(), "{}", text(&formatted));
    std::fs::write(&hidden, "pub fn answer()->u32{42}\n").expect("drift hidden.rs");
    let cargo_fmt = Command::new("cargo")
        .args(["fmt", "--check"])
        .current_dir(copy.path())
        .output()
        .expect("run cargo fmt");
    assert!(
        cargo_fmt.status.success(),
        "cargo fmt alone was expected to miss hidden.rs: {}",
        text(&cargo_fmt)
    );
    let drifted = gate(copy.path());
    assert!(!drifted.status.success(), "{}", text(&drifted));
    assert!(text(&drifted).contains("hidden.rs"), "{}", text(&drifted));
}

fn gate(dir: &Path) -> Output {
    Command::new("bash")
        .arg(Path::new(ROOT).join("scripts/check-format.sh"))
        .arg(dir)
        .output()
        .expect("run scripts/check-format.sh")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The manifests, the lock file and every Rust file (the signer module's too): what the gate
/// and `cargo fmt` read.
fn copy_crate(from: &Path, to: &Path) {
    for file in ["Cargo.toml", "Cargo.lock", "build.rs", "module/Cargo.toml"] {
        if let Some(parent) = to.join(file).parent() {
            std::fs::create_dir_all(parent).expect("create a crate directory");
        }
        std::fs::copy(from.join(file), to.join(file)).expect("copy a crate file");
    }
    for dir in ["src", "tests", "benches", "module/src"] {
        copy_rust_files(&from.join(dir), &to.join(dir));
    }
}

fn copy_rust_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read a source directory") {
        let path = entry.expect("directory entry").path();
        let target = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            copy_rust_files(&path, &target);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            std::fs::create_dir_all(to).expect("create a directory");
            std::fs::copy(&path, &target).expect("copy a Rust file");
        }
    }
}
